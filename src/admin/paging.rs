//! Kong's list parameters: `size` and `offset` pagination, `tags` filtering.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::plugins::query;

/// Kong's default page size and its largest.
pub const DEFAULT_SIZE: usize = 100;
pub const MAX_SIZE: usize = 1000;

/// A list request's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub size: usize,
    /// Index of the first entity of the page.
    pub start: usize,
    pub tags: Option<Tags>,
}

/// `tags=a,b` (every tag) or `tags=a/b` (any of them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tags {
    All(Vec<String>),
    Any(Vec<String>),
}

/// A bad list parameter: Kong's error name and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BadQuery {
    pub name: &'static str,
    pub message: String,
}

impl BadQuery {
    /// The 400 body, as Kong's (code 9), for every list (`/upstreams/{upstream}/health` too).
    pub fn body(&self) -> Value {
        json!({ "code": 9, "name": self.name, "message": self.message })
    }
}

impl ListQuery {
    /// Parse `size`, `offset` and `tags` from a query string (other parameters are ignored).
    pub fn parse(query: Option<&str>) -> Result<ListQuery, BadQuery> {
        let mut out = ListQuery {
            size: DEFAULT_SIZE,
            start: 0,
            tags: None,
        };
        for (key, value) in form_urlencoded_pairs(query.unwrap_or("")) {
            match key.as_str() {
                "size" => {
                    out.size = value
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_SIZE).contains(n))
                        .ok_or_else(|| BadQuery {
                            name: "invalid size",
                            message: format!("size must be an integer between 1 and {MAX_SIZE}"),
                        })?;
                }
                "offset" => {
                    out.start = decode_offset(&value).ok_or_else(|| BadQuery {
                        name: "invalid offset",
                        message: "invalid offset".into(),
                    })?;
                }
                "tags" => out.tags = Some(Tags::parse(&value)?),
                _ => {}
            }
        }
        Ok(out)
    }

    /// The page of `entities` this query asks for, as Kong's `{"data": [...], "next": ...}`;
    /// `path` is the list's path, for the `next` link.
    pub fn page(&self, entities: Vec<Value>, path: &str) -> Value {
        let matching: Vec<Value> = entities
            .into_iter()
            .filter(|e| self.tags.as_ref().is_none_or(|t| t.matches(e)))
            .collect();
        let end = self.start.saturating_add(self.size).min(matching.len());
        let more = end < matching.len();
        let data: Vec<Value> = matching
            .into_iter()
            .skip(self.start)
            .take(self.size)
            .collect();
        let next = more.then(|| {
            let mut next = format!("{path}?offset={}", encode_offset(end));
            if self.size != DEFAULT_SIZE {
                next.push_str(&format!("&size={}", self.size));
            }
            if let Some(tags) = &self.tags {
                // The next page is of the same filtered list.
                next.push_str("&tags=");
                next.extend(percent_encoding::utf8_percent_encode(
                    &tags.to_query(),
                    percent_encoding::NON_ALPHANUMERIC,
                ));
            }
            next
        });
        let mut page = json!({ "data": data, "next": next });
        if more {
            // Kong leaves `offset` out on the last page.
            page["offset"] = json!(encode_offset(end));
        }
        page
    }
}

impl Tags {
    /// The `tags` parameter that parses back to these tags.
    fn to_query(&self) -> String {
        match self {
            Tags::All(tags) => tags.join(","),
            Tags::Any(tags) => tags.join("/"),
        }
    }

    fn parse(value: &str) -> Result<Tags, BadQuery> {
        let split = |sep: char| value.split(sep).map(str::to_string).collect::<Vec<_>>();
        let tags = if value.contains(',') && value.contains('/') {
            return Err(BadQuery {
                name: "invalid tags",
                message: "invalid option (tags: cannot mix 'and' and 'or')".into(),
            });
        } else if value.contains('/') {
            Tags::Any(split('/'))
        } else {
            Tags::All(split(','))
        };
        let list = match &tags {
            Tags::All(l) | Tags::Any(l) => l,
        };
        if list.iter().any(|t| t.is_empty()) {
            return Err(BadQuery {
                name: "invalid tags",
                message: "invalid option (tags: must not be empty)".into(),
            });
        }
        Ok(tags)
    }

    fn matches(&self, entity: &Value) -> bool {
        let has = |t: &String| {
            entity
                .get("tags")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(t)))
        };
        match self {
            Tags::All(l) => l.iter().all(has),
            Tags::Any(l) => l.iter().any(has),
        }
    }
}

fn encode_offset(index: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("gatehouse:{index}"))
}

fn decode_offset(token: &str) -> Option<usize> {
    let raw = URL_SAFE_NO_PAD.decode(token.trim_end_matches('=')).ok()?;
    std::str::from_utf8(&raw)
        .ok()?
        .strip_prefix("gatehouse:")?
        .parse()
        .ok()
}

/// `application/x-www-form-urlencoded` pairs, decoded (`+` is a space).
pub fn form_urlencoded_pairs(text: &str) -> Vec<(String, String)> {
    query::pairs(text)
        .map(|(k, v)| (query::decode(k).into_owned(), query::decode(v).into_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entities(n: usize) -> Vec<Value> {
        (0..n)
            .map(|i| json!({"id": i, "tags": if i % 2 == 0 { json!(["even"]) } else { json!(["odd", "x"]) }}))
            .collect()
    }

    #[test]
    fn pages_follow_next_until_the_end() {
        let mut seen = Vec::new();
        let mut query = Some("size=3".to_string());
        while let Some(q) = query {
            let page = ListQuery::parse(Some(&q))
                .expect("query")
                .page(entities(8), "/x");
            for e in page["data"].as_array().expect("data") {
                seen.push(e["id"].as_u64().expect("id"));
            }
            query = page["next"]
                .as_str()
                .map(|n| n.trim_start_matches("/x?").to_string());
        }
        assert_eq!(seen, (0..8).collect::<Vec<u64>>());
    }

    #[test]
    fn next_keeps_the_tag_filter_and_the_last_page_has_no_offset() {
        let mut seen = Vec::new();
        let mut query = Some("size=2&tags=odd/none".to_string());
        let mut pages = 0;
        while let Some(q) = query {
            let page = ListQuery::parse(Some(&q))
                .expect("query")
                .page(entities(9), "/x");
            pages += 1;
            for e in page["data"].as_array().expect("data") {
                seen.push(e["id"].as_u64().expect("id"));
            }
            query = page["next"]
                .as_str()
                .map(|n| n.trim_start_matches("/x?").to_string());
            assert_eq!(page.get("offset").is_some(), query.is_some(), "{page}");
        }
        assert_eq!(seen, vec![1, 3, 5, 7]);
        assert_eq!(pages, 2);
    }

    #[test]
    fn tags_filter_with_and_or() {
        let ids = |q: &str| {
            let page = ListQuery::parse(Some(q))
                .expect("query")
                .page(entities(5), "/x");
            page["data"]
                .as_array()
                .expect("data")
                .iter()
                .map(|e| e["id"].as_u64().expect("id"))
                .collect::<Vec<_>>()
        };
        assert_eq!(ids("tags=even"), vec![0, 2, 4]);
        assert_eq!(ids("tags=odd,x"), vec![1, 3]);
        assert_eq!(ids("tags=even,x"), Vec::<u64>::new());
        assert_eq!(ids("tags=even/x"), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn bad_parameters_are_named() {
        for (q, name) in [
            ("size=0", "invalid size"),
            ("size=abc", "invalid size"),
            ("size=1001", "invalid size"),
            ("offset=zzz", "invalid offset"),
            ("tags=a,b/c", "invalid tags"),
            ("tags=", "invalid tags"),
        ] {
            assert_eq!(ListQuery::parse(Some(q)).expect_err(q).name, name, "{q}");
        }
    }
}

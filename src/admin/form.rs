//! Admin API request bodies: JSON, or form-encoded with Kong's keys (`paths[]=/a`,
//! `config.allow[]=10.0.0.0/8`, `config.minute=5`, `service.id=…`), into one JSON object.
//!
//! Form values are strings here; the endpoints give them their types from the entity's schema
//! ([`super::schemas::type_form_values`]), as Kong does.

use serde_json::{Map, Value};

use crate::plugins::query;

/// The largest index a form key may give (`a[10000]=`).
const MAX_LIST_INDEX: usize = 10_000;

/// Whether a `Content-Type` value names the media type `media` (parameters ignored).
pub fn media_is(content_type: &str, media: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|m| m.trim().eq_ignore_ascii_case(media))
}

/// Whether `content_type` is JSON (anything else is read as a form).
pub fn is_json(content_type: &str) -> bool {
    media_is(content_type, "application/json")
}

/// The body as a JSON object: `content_type` decides between JSON and form encoding.
pub fn body_object(content_type: &str, body: &[u8]) -> Result<Map<String, Value>, String> {
    if body.is_empty() {
        return Ok(Map::new());
    }
    if is_json(content_type) {
        return match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(mut m)) => {
                // `"id": null` is no id (Kong's null: unset), as the entity schemas say: one is
                // generated, or taken from the URL.
                if m.get("id").is_some_and(Value::is_null) {
                    m.remove("id");
                }
                Ok(m)
            }
            Ok(_) => Err("the body must be a JSON object".into()),
            Err(e) => Err(format!("cannot parse JSON body: {e}")),
        };
    }
    let text = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8".to_string())?;
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    let mut out = Map::new();
    for (key, value) in query::pairs(text) {
        let key = query::decode(key);
        let value = query::decode(value).into_owned();
        insert(&mut out, &key, value)?;
    }
    Ok(out)
}

/// Put `value` at Kong's form `key` (`a`, `a.b`, `a[]`, `a[2]`, `a.b[]`).
fn insert(out: &mut Map<String, Value>, key: &str, value: String) -> Result<(), String> {
    let (path, array) = match key.find('[') {
        Some(i) if key.ends_with(']') => (&key[..i], Some(&key[i + 1..key.len() - 1])),
        _ => (key, None),
    };
    if path.is_empty() || path.split('.').any(str::is_empty) {
        return Err(format!("invalid form key `{key}`"));
    }
    let typed = Value::String(value);
    let mut node = out;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            match array {
                None => {
                    node.insert(part.to_string(), typed);
                }
                Some(index) => {
                    let slot = node
                        .entry(part.to_string())
                        .or_insert_with(|| Value::Array(Vec::new()));
                    let Value::Array(list) = slot else {
                        return Err(format!("`{path}` is given both as a value and a list"));
                    };
                    match index.parse::<usize>() {
                        // Kong's 1-based `a[1]=`; a gap is filled up to the index, which is
                        // bounded so that a key cannot ask for a huge allocation.
                        Ok(i) if (1..=MAX_LIST_INDEX).contains(&i) => {
                            if list.len() < i {
                                list.resize(i, Value::Null);
                            }
                            list[i - 1] = typed;
                        }
                        _ if index.is_empty() => list.push(typed),
                        _ => return Err(format!("invalid list index in `{key}`")),
                    }
                }
            }
            return Ok(());
        }
        let next = node
            .entry(part.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(map) = next else {
            return Err(format!("`{part}` is given both as a value and an object"));
        };
        node = map;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn form(text: &str) -> Value {
        Value::Object(
            body_object("application/x-www-form-urlencoded", text.as_bytes()).expect("form"),
        )
    }

    #[test]
    fn kong_form_keys() {
        assert_eq!(
            form("name=user-route&paths[]=%2Fapi%2Fusers&paths[]=/v2&strip_path=false"),
            json!({"name": "user-route", "paths": ["/api/users", "/v2"], "strip_path": "false"})
        );
        assert_eq!(
            form(
                "name=ip-restriction&config.allow[]=10.0.0.0%2F8&config.allow[]=172.16.0.0/12&config.minute=5"
            ),
            json!({"name": "ip-restriction", "config": {"allow": ["10.0.0.0/8", "172.16.0.0/12"], "minute": "5"}})
        );
        assert_eq!(
            form("username=123&port=8080&service.id=abc&methods[2]=POST&methods[1]=GET"),
            json!({"username": "123", "port": "8080", "service": {"id": "abc"}, "methods": ["GET", "POST"]})
        );
        assert_eq!(form(""), json!({}));
    }

    #[test]
    fn bad_bodies_are_refused() {
        for bad in [
            "a=1&a[]=2",
            "a=1&a.b=2",
            "=x",
            "a..b=1",
            "a[x]=1",
            // A huge index would be a huge allocation (or an overflow).
            "a[99999999999]=1",
            "a[18446744073709551615]=1",
            "a[0]=1",
        ] {
            assert!(
                body_object("application/x-www-form-urlencoded", bad.as_bytes()).is_err(),
                "{bad}"
            );
        }
        assert!(body_object("application/json", b"[1]").is_err());
        assert!(body_object("application/json", b"{").is_err());
        // No body is `{}`; a JSON body of blanks is not JSON (schemathesis sent `\n`).
        assert!(body_object("application/json", b"").is_ok_and(|m| m.is_empty()));
        assert!(body_object("application/json", b"\n").is_err());
    }

    /// The entity schemas allow `"id": null` (schemathesis sent it, and got a 400).
    #[test]
    fn a_null_id_is_no_id() {
        let body = body_object("application/json", br#"{"id": null, "username": "x"}"#)
            .expect("a JSON object");
        assert_eq!(Value::Object(body), json!({"username": "x"}));
    }
}

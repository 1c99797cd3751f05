//! Named fields of a request body, for plugins that take a credential from it: URL-encoded
//! forms and JSON objects (Kong's `kong.request.get_body()` also reads multipart forms; this
//! version does not).

use bytes::Bytes;
use http::HeaderMap;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use super::query;

/// How a body is encoded, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Form,
    Json,
    /// Another type, or none: no fields can be read.
    Other,
}

impl BodyKind {
    pub fn of(headers: &HeaderMap) -> BodyKind {
        let Some(ct) = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
        else {
            return BodyKind::Other;
        };
        let essence = ct.split(';').next().unwrap_or("").trim();
        if essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            BodyKind::Form
        } else if essence.eq_ignore_ascii_case("application/json")
            || essence.to_ascii_lowercase().ends_with("+json")
        {
            BodyKind::Json
        } else {
            BodyKind::Other
        }
    }
}

/// The body could not be read as its `Content-Type` says.
#[derive(Debug, thiserror::Error)]
#[error("the request body is not valid {0}")]
pub struct BadBody(&'static str);

/// The values of field `name` (a JSON field's string value; other JSON types are not keys).
pub fn values(kind: BodyKind, body: &[u8], name: &str) -> Result<Vec<String>, BadBody> {
    match kind {
        BodyKind::Other => Ok(Vec::new()),
        BodyKind::Form => {
            let text = std::str::from_utf8(body).map_err(|_| BadBody("form data"))?;
            Ok(query::values(text, name)
                .into_iter()
                .map(|v| v.into_owned())
                .collect())
        }
        BodyKind::Json => {
            if body.is_empty() {
                return Ok(Vec::new());
            }
            let doc: Value = serde_json::from_slice(body).map_err(|_| BadBody("JSON"))?;
            Ok(match doc.get(name) {
                Some(Value::String(s)) => vec![s.clone()],
                _ => Vec::new(),
            })
        }
    }
}

/// The body without field `name`.
pub fn without(kind: BodyKind, body: &[u8], name: &str) -> Result<Bytes, BadBody> {
    match kind {
        BodyKind::Other => Ok(Bytes::copy_from_slice(body)),
        BodyKind::Form => {
            let text = std::str::from_utf8(body).map_err(|_| BadBody("form data"))?;
            Ok(Bytes::from(query::without(text, name).unwrap_or_default()))
        }
        BodyKind::Json => without_json_member(body, name),
    }
}

/// The top-level members of a JSON object as they were written (values untouched).
struct RawMembers<'a>(Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for RawMembers<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = RawMembers<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawMembers<'de>, A::Error> {
                let mut members = Vec::new();
                while let Some(entry) = map.next_entry::<String, &'de RawValue>()? {
                    members.push(entry);
                }
                Ok(RawMembers(members))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// The object without member `name`, every other member written back byte for byte: parsing
/// into values and printing them again would change numbers (`1.10`, 23-digit integers).
fn without_json_member(body: &[u8], name: &str) -> Result<Bytes, BadBody> {
    let doc: &RawValue = serde_json::from_slice(body).map_err(|_| BadBody("JSON"))?;
    let Ok(RawMembers(members)) = serde_json::from_str::<RawMembers<'_>>(doc.get()) else {
        // Not an object: nothing to remove.
        return Ok(Bytes::copy_from_slice(body));
    };
    if !members.iter().any(|(k, _)| k == name) {
        return Ok(Bytes::copy_from_slice(body));
    }
    let mut out = String::with_capacity(body.len());
    out.push('{');
    for (k, v) in members.iter().filter(|(k, _)| k != name) {
        if out.len() > 1 {
            out.push(',');
        }
        // A key that was valid JSON text re-encodes without error.
        out.push_str(&serde_json::to_string(k).unwrap_or_default());
        out.push(':');
        out.push_str(v.get());
    }
    out.push('}');
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::CONTENT_TYPE, ct.parse().unwrap());
        h
    }

    #[test]
    fn kinds_from_content_type() {
        assert_eq!(
            BodyKind::of(&headers("application/x-www-form-urlencoded; charset=utf-8")),
            BodyKind::Form
        );
        assert_eq!(BodyKind::of(&headers("Application/JSON")), BodyKind::Json);
        assert_eq!(
            BodyKind::of(&headers("application/vnd.api+json")),
            BodyKind::Json
        );
        assert_eq!(BodyKind::of(&headers("text/plain")), BodyKind::Other);
        assert_eq!(BodyKind::of(&HeaderMap::new()), BodyKind::Other);
    }

    #[test]
    fn reads_and_removes_fields() {
        let form = b"a=1&apikey=k%2B1&b=2";
        assert_eq!(values(BodyKind::Form, form, "apikey").unwrap(), ["k+1"]);
        assert_eq!(
            &without(BodyKind::Form, form, "apikey").unwrap()[..],
            b"a=1&b=2"
        );
        let json = br#"{"apikey":"k1","n":1,"nested":{"apikey":"no"}}"#;
        assert_eq!(values(BodyKind::Json, json, "apikey").unwrap(), ["k1"]);
        assert!(values(BodyKind::Json, json, "n").unwrap().is_empty());
        assert_eq!(
            &without(BodyKind::Json, json, "apikey").unwrap()[..],
            br#"{"n":1,"nested":{"apikey":"no"}}"#
        );
        // Other members are kept byte for byte, numbers included.
        let exact =
            br#"{ "big": 12345678901234567890123, "apikey": "k", "price": 1.10, "s": "\u00e9" }"#;
        assert_eq!(
            &without(BodyKind::Json, exact, "apikey").unwrap()[..],
            br#"{"big":12345678901234567890123,"price":1.10,"s":"\u00e9"}"#
        );
        assert_eq!(
            &without(BodyKind::Json, b"[1,2]", "apikey").unwrap()[..],
            b"[1,2]"
        );
        assert!(values(BodyKind::Json, b"{oops", "apikey").is_err());
        assert!(values(BodyKind::Form, b"\xff", "apikey").is_err());
        assert!(values(BodyKind::Json, b"", "apikey").unwrap().is_empty());
    }
}

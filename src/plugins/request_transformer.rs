//! `request-transformer` (Kong priority 801), header addition only in this version: `add.headers`
//! entries (`"Name: value"`) are set on the upstream request when the client did not send that
//! header (Kong's `add` semantics: never overwrite). The gateway's own `X-Forwarded-*` headers
//! are set first, so, as in Kong, they cannot be overridden this way.
//!
//! Kong's other operations (`remove`, `rename`, `replace`, `append`, `http_method`, query string
//! and body edits) are rejected with a clear error rather than ignored.

use http::{HeaderName, HeaderValue};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Plugin, RequestCtx};

#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Section {
    #[serde(default)]
    pub headers: Vec<String>,
    #[serde(default)]
    pub querystring: Vec<String>,
    #[serde(default)]
    pub body: Vec<String>,
    #[serde(default)]
    pub json_types: Vec<String>,
    #[serde(default)]
    pub uri: Option<String>,
}

impl Section {
    fn is_empty(&self) -> bool {
        self.headers.is_empty()
            && self.querystring.is_empty()
            && self.body.is_empty()
            && self.json_types.is_empty()
            && self.uri.is_none()
    }
}

#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub http_method: Option<String>,
    #[serde(default)]
    pub remove: Section,
    #[serde(default)]
    pub rename: Section,
    #[serde(default)]
    pub replace: Section,
    #[serde(default)]
    pub add: Section,
    #[serde(default)]
    pub append: Section,
}

/// Header names a transformer may not add.
const FORBIDDEN: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

pub struct RequestTransformer {
    add_headers: Vec<(HeaderName, HeaderValue)>,
}

/// Parse Kong's `"Name: value"` (or `"Name:value"`) header entries.
pub fn parse_header_entries(
    field: &str,
    entries: &[String],
    errors: &mut Vec<(String, String)>,
) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let parsed = entry.split_once(':').and_then(|(n, v)| {
            Some((
                HeaderName::from_bytes(n.trim().as_bytes()).ok()?,
                HeaderValue::from_str(v.trim()).ok()?,
            ))
        });
        match parsed {
            Some(pair) => out.push(pair),
            None => errors.push((
                format!("{field}[{i}]"),
                // The value is not echoed: it may come from a secret reference.
                "invalid header entry; expected `Name: value`".to_string(),
            )),
        }
    }
    out
}

impl Plugin for RequestTransformer {
    const NAME: &'static str = "request-transformer";
    const PRIORITY: i32 = 801;
    type Config = Config;

    fn new(c: Config, _: &super::BuildContext<'_>) -> Result<Self, Vec<(String, String)>> {
        let mut errors = Vec::new();
        for (name, section) in [
            ("remove", &c.remove),
            ("rename", &c.rename),
            ("replace", &c.replace),
            ("append", &c.append),
        ] {
            if !section.is_empty() {
                errors.push((name.into(), format!("`{name}` is not supported by this version of Gatehouse (only `add.headers`)")));
            }
        }
        if c.http_method.is_some() {
            errors.push((
                "http_method".into(),
                "not supported by this version of Gatehouse".into(),
            ));
        }
        if !c.add.querystring.is_empty()
            || !c.add.body.is_empty()
            || !c.add.json_types.is_empty()
            || c.add.uri.is_some()
        {
            errors.push((
                "add".into(),
                "only `add.headers` is supported by this version of Gatehouse".into(),
            ));
        }
        let add_headers = parse_header_entries("add.headers", &c.add.headers, &mut errors);
        for (i, (name, _)) in add_headers.iter().enumerate() {
            // Framing and connection headers belong to the gateway: adding them would desync
            // the upstream connection.
            if FORBIDDEN.contains(&name.as_str()) {
                errors.push((
                    format!("add.headers[{i}]"),
                    format!("`{name}` cannot be added: it belongs to the connection"),
                ));
            }
        }
        if errors.is_empty() {
            Ok(RequestTransformer { add_headers })
        } else {
            Err(errors)
        }
    }

    fn on_upstream_request(&self, _ctx: &mut RequestCtx, req: &mut http::request::Parts) {
        for (name, value) in &self.add_headers {
            if !req.headers.contains_key(name) {
                req.headers.insert(name.clone(), value.clone());
            }
        }
    }
}

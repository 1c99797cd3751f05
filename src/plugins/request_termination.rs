//! `request-termination` (Kong priority 2): answer matching requests with a fixed response and
//! never contact the upstream. Useful for maintenance windows, decommissioned routes, stub
//! endpoints and baseline benchmarks.
//!
//! Config (Kong's schema): `status_code` (default 503; 200..=599 here, since an informational
//! status cannot end an exchange), `message` *or* `body` +
//! `content_type`, `echo` (answer with a JSON description of the request), `trigger` (only
//! terminate when a header or query parameter of that name is present).

use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Flow, Plugin, RequestCtx, json_response};
use crate::proxy::body::ProxyBody;

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_status")]
    pub status_code: u16,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub echo: bool,
    #[serde(default)]
    pub trigger: Option<String>,
}

fn default_status() -> u16 {
    503
}

pub struct RequestTermination {
    status: StatusCode,
    body: Bytes,
    content_type: HeaderValue,
    echo: bool,
    trigger: Option<http::HeaderName>,
    trigger_query: Option<String>,
}

impl RequestTermination {
    /// The configured status code.
    pub fn status_code(&self) -> u16 {
        self.status.as_u16()
    }

    fn triggered(&self, req: &http::request::Parts) -> bool {
        let Some(name) = &self.trigger else {
            return true;
        };
        if req.headers.contains_key(name) {
            return true;
        }
        let query = req.uri.query().unwrap_or("");
        let wanted = self.trigger_query.as_deref().unwrap_or("");
        query
            .split('&')
            .any(|pair| pair.split('=').next() == Some(wanted))
    }

    fn echo_body(&self, req: &http::request::Parts) -> Bytes {
        let headers: serde_json::Map<String, serde_json::Value> = req
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into(),
                )
            })
            .collect();
        let body = serde_json::json!({
            "message": String::from_utf8_lossy(&self.body),
            "request": {
                "method": req.method.as_str(),
                "path": req.uri.path(),
                "query": req.uri.query(),
                "headers": headers,
            }
        });
        Bytes::from(body.to_string())
    }
}

impl Plugin for RequestTermination {
    const NAME: &'static str = "request-termination";
    const PRIORITY: i32 = 2;
    type Config = Config;

    fn new(c: Config, _: &super::BuildContext<'_>) -> Result<Self, Vec<(String, String)>> {
        let mut errors = Vec::new();
        let status = StatusCode::from_u16(c.status_code)
            .ok()
            .filter(|s| (200..=599).contains(&s.as_u16()));
        if status.is_none() {
            errors.push((
                "status_code".into(),
                "value should be between 200 and 599".into(),
            ));
        }
        if c.message.is_some() && (c.body.is_some() || c.content_type.is_some()) {
            errors.push((
                "message".into(),
                "message cannot be used with content_type or body".into(),
            ));
        }
        if c.content_type.is_some() && c.body.is_none() {
            errors.push(("content_type".into(), "content_type requires a body".into()));
        }
        if c.echo && c.content_type.is_some() && c.body.is_some() {
            errors.push((
                "echo".into(),
                "echo cannot be used with content_type and body".into(),
            ));
        }
        let content_type = match c.content_type.as_deref().map(HeaderValue::from_str) {
            None => HeaderValue::from_static("application/json; charset=utf-8"),
            Some(Ok(v)) => v,
            Some(Err(_)) => {
                errors.push(("content_type".into(), "not a valid header value".into()));
                HeaderValue::from_static("")
            }
        };
        let trigger = match c
            .trigger
            .as_deref()
            .map(|t| http::HeaderName::from_bytes(t.as_bytes()))
        {
            None => None,
            Some(Ok(n)) => Some(n),
            Some(Err(_)) => {
                errors.push((
                    "trigger".into(),
                    "not a valid header or query parameter name".into(),
                ));
                None
            }
        };
        let Some(status) = status.filter(|_| errors.is_empty()) else {
            return Err(errors);
        };
        let body = match (c.body, c.message) {
            (Some(body), _) => Bytes::from(body),
            (None, message) => {
                let message = message.unwrap_or_else(|| {
                    status
                        .canonical_reason()
                        .unwrap_or("Terminated")
                        .to_string()
                });
                if c.echo {
                    Bytes::from(message)
                } else {
                    Bytes::from(serde_json::json!({ "message": message }).to_string())
                }
            }
        };
        Ok(RequestTermination {
            status,
            body,
            content_type,
            echo: c.echo,
            trigger_query: c.trigger,
            trigger,
        })
    }

    async fn on_request(&self, _ctx: &mut RequestCtx, req: &mut http::request::Parts) -> Flow {
        if !self.triggered(req) {
            return Flow::Continue;
        }
        if self.echo {
            return Flow::Respond(Box::new(json_response(self.status, self.echo_body(req))));
        }
        let mut resp = http::Response::new(ProxyBody::full(self.body.clone()));
        *resp.status_mut() = self.status;
        resp.headers_mut()
            .insert(http::header::CONTENT_TYPE, self.content_type.clone());
        Flow::Respond(Box::new(resp))
    }
}

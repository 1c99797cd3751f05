//! `correlation-id` (Kong priority 100001): make sure every request carries an identifier in a
//! header (`Kong-Request-ID` by default) so that logs of the gateway and the services can be
//! joined. An identifier sent by the client is kept; otherwise one is generated and added to
//! the upstream request, and with `echo_downstream` it is returned to the client as well.
//!
//! Generators (Kong's): `uuid` (random v4), `uuid#counter` (default: one random UUID per process
//! followed by `#` and a counter, cheaper than a UUID per request), and `tracker`
//! (`server_addr-server_port-pid-connection-connection_requests-time`).

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

use http::{HeaderName, HeaderValue};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Flow, Plugin, RequestCtx};

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_header")]
    pub header_name: String,
    #[serde(default = "default_generator")]
    pub generator: String,
    #[serde(default)]
    pub echo_downstream: bool,
}

fn default_header() -> String {
    "Kong-Request-ID".into()
}
fn default_generator() -> String {
    "uuid#counter".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Generator {
    Uuid,
    UuidCounter,
    Tracker,
}

pub struct CorrelationId {
    header: HeaderName,
    generator: Generator,
    echo: bool,
}

/// The id chosen for this request, kept for the response phase when echoing.
#[derive(Clone)]
struct ChosenId(HeaderValue);

static PROCESS_UUID: LazyLock<String> = LazyLock::new(|| uuid::Uuid::new_v4().to_string());
static COUNTER: AtomicU64 = AtomicU64::new(0);

impl CorrelationId {
    fn generate(&self, ctx: &RequestCtx) -> Option<HeaderValue> {
        let s = match self.generator {
            Generator::Uuid => uuid::Uuid::new_v4().to_string(),
            Generator::UuidCounter => {
                let n = COUNTER.fetch_add(1, Ordering::Relaxed) + 1;
                format!("{}#{n}", *PROCESS_UUID)
            }
            Generator::Tracker => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                format!(
                    "{}-{}-{}-{}-{}-{}.{:03}",
                    ctx.local.ip(),
                    ctx.local.port(),
                    std::process::id(),
                    ctx.connection_id,
                    ctx.connection_requests,
                    now.as_secs(),
                    now.subsec_millis()
                )
            }
        };
        HeaderValue::from_str(&s).ok()
    }
}

impl Plugin for CorrelationId {
    const NAME: &'static str = "correlation-id";
    const PRIORITY: i32 = 100_001;
    type Config = Config;

    fn new(c: Config, _: &super::BuildContext<'_>) -> Result<Self, Vec<(String, String)>> {
        let mut errors = Vec::new();
        let header = HeaderName::from_bytes(c.header_name.as_bytes()).ok();
        if header.is_none() {
            errors.push(("header_name".into(), "not a valid header name".into()));
        }
        let generator = match c.generator.as_str() {
            "uuid" => Some(Generator::Uuid),
            "uuid#counter" => Some(Generator::UuidCounter),
            "tracker" => Some(Generator::Tracker),
            _ => {
                errors.push((
                    "generator".into(),
                    "expected one of: uuid, uuid#counter, tracker".into(),
                ));
                None
            }
        };
        match (header, generator) {
            (Some(header), Some(generator)) => Ok(CorrelationId {
                header,
                generator,
                echo: c.echo_downstream,
            }),
            _ => Err(errors),
        }
    }

    async fn on_request(&self, ctx: &mut RequestCtx, req: &mut http::request::Parts) -> Flow {
        let existing = req
            .headers
            .get(&self.header)
            .filter(|v| !v.is_empty())
            .cloned();
        let id = match existing {
            Some(v) => Some(v),
            None => {
                let v = self.generate(ctx);
                if let Some(v) = &v {
                    req.headers.insert(self.header.clone(), v.clone());
                }
                v
            }
        };
        if self.echo
            && let Some(id) = id
        {
            ctx.extensions.insert(ChosenId(id));
        }
        Flow::Continue
    }

    fn on_response(&self, ctx: &mut RequestCtx, resp: &mut http::response::Parts) {
        if self.echo
            && let Some(ChosenId(id)) = ctx.extensions.get::<ChosenId>()
        {
            resp.headers.insert(self.header.clone(), id.clone());
        }
    }
}

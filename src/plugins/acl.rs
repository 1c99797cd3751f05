//! `acl` (Kong priority 950): let through only consumers of some groups, or all but some.
//!
//! Config (Kong's): `allow` or `deny` (exactly one), lists of group names given to consumers by
//! `acls` entries; `hide_groups_header` (default false) stops the consumer's groups from going
//! upstream in `X-Consumer-Groups`.
//!
//! It runs after the authentication plugins: a request without a consumer gets
//! `401 {"message":"You cannot consume this service"}`, a consumer outside the allowed groups
//! (or in a denied one) `403` with the same message.

use std::sync::Arc;

use http::StatusCode;
use http::header::HeaderName;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::auth::{refusal, set_or_remove};
use super::{BuildContext, Flow, Plugin, RequestCtx};
use crate::consumers::Consumers;

pub const X_CONSUMER_GROUPS: HeaderName = HeaderName::from_static("x-consumer-groups");

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub allow: Option<Vec<String>>,
    #[serde(default)]
    pub deny: Option<Vec<String>>,
    #[serde(default)]
    pub hide_groups_header: bool,
}

pub struct Acl {
    /// The listed groups, and whether they are the allowed (true) or the denied ones.
    groups: Vec<String>,
    allow: bool,
    hide_groups_header: bool,
    consumers: Arc<Consumers>,
}

const REFUSED: &str = "You cannot consume this service";

impl Plugin for Acl {
    const NAME: &'static str = "acl";
    const PRIORITY: i32 = 950;
    const CONSUMER_SCOPED: bool = false;
    type Config = Config;

    fn new(c: Config, ctx: &BuildContext<'_>) -> Result<Self, Vec<(String, String)>> {
        let (groups, allow) = match (c.allow, c.deny) {
            (Some(a), None) if !a.is_empty() => (a, true),
            (None, Some(d)) if !d.is_empty() => (d, false),
            (Some(a), Some(d)) if !a.is_empty() && !d.is_empty() => {
                return Err(vec![(
                    String::new(),
                    "only one of these fields must be non-empty: 'config.allow', 'config.deny'"
                        .into(),
                )]);
            }
            _ => {
                return Err(vec![(
                    String::new(),
                    "at least one of these fields must be non-empty: 'config.allow', 'config.deny'"
                        .into(),
                )]);
            }
        };
        Ok(Acl {
            groups,
            allow,
            hide_groups_header: c.hide_groups_header,
            consumers: ctx.consumers.clone(),
        })
    }

    async fn on_request(&self, ctx: &mut RequestCtx, req: &mut http::request::Parts) -> Flow {
        let Some(consumer) = ctx.consumer.and_then(|c| self.consumers.get(c)) else {
            return Flow::Respond(Box::new(refusal(StatusCode::UNAUTHORIZED, REFUSED, None)));
        };
        let listed = self.groups.iter().any(|g| consumer.in_group(g));
        if listed != self.allow {
            return Flow::Respond(Box::new(refusal(StatusCode::FORBIDDEN, REFUSED, None)));
        }
        let groups = (!self.hide_groups_header)
            .then_some(consumer.groups_header.as_ref())
            .flatten();
        set_or_remove(&mut req.headers, X_CONSUMER_GROUPS, groups);
        Flow::Continue
    }
}

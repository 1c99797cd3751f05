//! `ip-restriction` (Kong priority 990): allow or deny requests by the client's address.
//!
//! Config (Kong's): `allow` and `deny`, lists of IPv4/IPv6 addresses and CIDR blocks (at least
//! one list must be non-empty), `status` (default 403) and `message` (default
//! `Your IP address is not allowed`). The address is the client's as resolved through the
//! trusted proxies (`--trusted-ips`), never a header a client could forge. `deny` is checked
//! first; when `allow` is non-empty, an address outside it is refused.
//!
//! The membership test costs the same for ten networks or ten thousand (see [`cidr_set`]).

pub mod cidr_set;

use http::StatusCode;
use ipnet::IpNet;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Flow, Plugin, RequestCtx, json_message};
use cidr_set::CidrSet;

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub allow: Option<Vec<String>>,
    #[serde(default)]
    pub deny: Option<Vec<String>>,
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub message: Option<String>,
}

pub struct IpRestriction {
    allow: CidrSet,
    deny: CidrSet,
    status: StatusCode,
    message: String,
}

/// Parse `10.0.0.0/8`, `10.1.2.3` or `::1` entries into `set`, reporting bad ones.
fn parse_list(field: &str, list: &[String], set: &mut CidrSet, errors: &mut Vec<(String, String)>) {
    for (i, entry) in list.iter().enumerate() {
        let entry = entry.trim();
        let net = entry
            .parse::<IpNet>()
            .ok()
            .or_else(|| entry.parse::<std::net::IpAddr>().ok().map(IpNet::from));
        match net {
            Some(net) => set.insert(net),
            None => errors.push((
                format!("{field}[{i}]"),
                format!("invalid ip or cidr range: '{entry}'"),
            )),
        }
    }
}

impl Plugin for IpRestriction {
    const NAME: &'static str = "ip-restriction";
    const PRIORITY: i32 = 990;
    type Config = Config;

    fn new(c: Config, _: &super::BuildContext<'_>) -> Result<Self, Vec<(String, String)>> {
        let mut errors = Vec::new();
        let mut allow = CidrSet::default();
        let mut deny = CidrSet::default();
        parse_list(
            "allow",
            c.allow.as_deref().unwrap_or_default(),
            &mut allow,
            &mut errors,
        );
        parse_list(
            "deny",
            c.deny.as_deref().unwrap_or_default(),
            &mut deny,
            &mut errors,
        );
        if c.allow.as_ref().is_none_or(Vec::is_empty) && c.deny.as_ref().is_none_or(Vec::is_empty) {
            errors.push((
                String::new(),
                "at least one of these fields must be non-empty: 'config.allow', 'config.deny'"
                    .into(),
            ));
        }
        let status = match c.status {
            None => Some(StatusCode::FORBIDDEN),
            Some(s) => StatusCode::from_u16(s)
                .ok()
                .filter(|s| (200..=599).contains(&s.as_u16())),
        };
        let Some(status) = status else {
            errors.push((
                "status".into(),
                "value should be between 200 and 599".into(),
            ));
            return Err(errors);
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(IpRestriction {
            allow,
            deny,
            status,
            message: c
                .message
                .unwrap_or_else(|| "Your IP address is not allowed".into()),
        })
    }

    async fn on_request(&self, ctx: &mut RequestCtx, _req: &mut http::request::Parts) -> Flow {
        let ip = ctx.client_ip;
        let refused =
            self.deny.contains(ip) || (!self.allow.is_empty() && !self.allow.contains(ip));
        if refused {
            return Flow::Respond(Box::new(json_message(self.status, &self.message)));
        }
        Flow::Continue
    }
}

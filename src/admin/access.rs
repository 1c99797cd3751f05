//! Who may use the Admin API: an optional token (Kong's `Kong-Admin-Token` header) and an
//! optional list of client networks. Both are checked before a request is read further.

use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;

/// The header that carries the admin token (Kong Enterprise's name for it).
pub const TOKEN_HEADER: &str = "kong-admin-token";

/// The Admin API's access rules (default: none; the listener is on loopback).
#[derive(Debug, Clone, Default)]
pub struct Access {
    token: Option<String>,
    allow: Vec<IpNet>,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The client's address is outside the allowed networks (403).
    Address,
    /// The token is missing or wrong (401).
    Token,
}

impl Access {
    /// `token`: required in every request when set; `allow`: IP addresses or CIDR blocks
    /// (empty: every address).
    pub fn new(token: Option<String>, allow: &[String]) -> Result<Access, String> {
        let allow = allow
            .iter()
            .map(|a| {
                let a = a.trim();
                a.parse::<IpNet>()
                    .or_else(|_| a.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("`{a}` is not an IP address or CIDR block"))
            })
            .collect::<Result<_, _>>()?;
        if token.as_deref().is_some_and(str::is_empty) {
            return Err("the admin token must not be empty".into());
        }
        Ok(Access { token, allow })
    }

    /// Whether a client at `peer` may connect at all.
    pub fn admits(&self, peer: IpAddr) -> bool {
        self.allow.is_empty() || self.allow.iter().any(|n| n.contains(&peer))
    }

    /// Check a request's headers (the address was checked at accept).
    pub fn check(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let Some(expected) = &self.token else {
            return Ok(());
        };
        let given = headers
            .get(TOKEN_HEADER)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        aws_lc_rs::constant_time::verify_slices_are_equal(given, expected.as_bytes())
            .map_err(|_| Refusal::Token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_networks() {
        let open = Access::default();
        assert!(open.admits("203.0.113.9".parse().expect("ip")));
        assert_eq!(open.check(&HeaderMap::new()), Ok(()));

        let guarded = Access::new(Some("s3cret".into()), &["10.0.0.0/8".into(), "::1".into()])
            .expect("valid");
        assert!(guarded.admits("10.1.2.3".parse().expect("ip")));
        assert!(guarded.admits("::1".parse().expect("ip")));
        assert!(!guarded.admits("127.0.0.1".parse().expect("ip")));
        let mut headers = HeaderMap::new();
        assert_eq!(guarded.check(&headers), Err(Refusal::Token));
        headers.insert(TOKEN_HEADER, "wrong".parse().expect("value"));
        assert_eq!(guarded.check(&headers), Err(Refusal::Token));
        headers.insert(TOKEN_HEADER, "s3cret".parse().expect("value"));
        assert_eq!(guarded.check(&headers), Ok(()));

        assert!(Access::new(None, &["nope".into()]).is_err());
        assert!(Access::new(Some(String::new()), &[]).is_err());
    }
}

//! The typed `healthchecks` block of an upstream: Kong's schema and defaults, plus the passive
//! ejection extension (`passive.unhealthy.base_ejection_time` / `max_ejection_time`).
//!
//! [`Healthchecks::parse`] reports every problem as `(field path, message)`, paths relative to
//! the `healthchecks` object (`active.healthy.interval`), as plugin configs do.

use std::collections::BTreeMap;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

/// Kong's bound on intervals (seconds).
const MAX_INTERVAL: f64 = 65_535.0;
/// Kong's bound on the success and failure counters.
const MAX_COUNTER: u32 = 255;
/// Kong's bound on `concurrency`.
const MAX_CONCURRENCY: u32 = (1 << 31) - 1;

/// An upstream's `healthchecks`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Healthchecks {
    pub active: Active,
    pub passive: Passive,
    /// Kong's percentage of healthy weight below which the whole upstream counts as down.
    pub threshold: f64,
}

/// `type` of a check. Only `http` and `tcp` can be probed; the others are accepted when
/// probing is off (exported Kong configs carry them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckType {
    #[default]
    Http,
    Https,
    Tcp,
    Grpc,
    Grpcs,
}

/// `healthchecks.active`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Active {
    #[serde(rename = "type")]
    pub kind: CheckType,
    /// Seconds allowed for one probe (connect and response head).
    pub timeout: f64,
    /// Probes of one upstream in flight at once.
    pub concurrency: u32,
    pub http_path: String,
    pub https_verify_certificate: bool,
    pub https_sni: Option<String>,
    /// Extra request headers; Kong gives each name a list of values.
    pub headers: Option<BTreeMap<String, HeaderValues>>,
    pub healthy: ActiveHealthy,
    pub unhealthy: ActiveUnhealthy,
}

impl Default for Active {
    fn default() -> Self {
        Active {
            kind: CheckType::Http,
            timeout: 1.0,
            concurrency: 10,
            http_path: "/".into(),
            https_verify_certificate: true,
            https_sni: None,
            headers: None,
            healthy: ActiveHealthy::default(),
            unhealthy: ActiveUnhealthy::default(),
        }
    }
}

/// One header value or several.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum HeaderValues {
    One(String),
    Many(Vec<String>),
}

impl HeaderValues {
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let list: &[String] = match self {
            HeaderValues::One(v) => std::slice::from_ref(v),
            HeaderValues::Many(v) => v,
        };
        list.iter().map(String::as_str)
    }
}

/// `healthchecks.active.healthy`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActiveHealthy {
    /// Seconds between probes of healthy targets; 0 turns them off.
    pub interval: f64,
    pub http_statuses: Vec<u32>,
    pub successes: u32,
}

impl Default for ActiveHealthy {
    fn default() -> Self {
        ActiveHealthy {
            interval: 0.0,
            http_statuses: vec![200, 302],
            successes: 0,
        }
    }
}

/// `healthchecks.active.unhealthy`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActiveUnhealthy {
    /// Seconds between probes of unhealthy targets; 0 turns them off.
    pub interval: f64,
    pub http_statuses: Vec<u32>,
    pub tcp_failures: u32,
    pub timeouts: u32,
    pub http_failures: u32,
}

impl Default for ActiveUnhealthy {
    fn default() -> Self {
        ActiveUnhealthy {
            interval: 0.0,
            http_statuses: vec![429, 404, 500, 501, 502, 503, 504, 505],
            tcp_failures: 0,
            timeouts: 0,
            http_failures: 0,
        }
    }
}

/// `healthchecks.passive`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Passive {
    #[serde(rename = "type")]
    pub kind: CheckType,
    pub healthy: PassiveHealthy,
    pub unhealthy: PassiveUnhealthy,
}

/// `healthchecks.passive.healthy`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PassiveHealthy {
    pub http_statuses: Vec<u32>,
    pub successes: u32,
}

impl Default for PassiveHealthy {
    fn default() -> Self {
        let mut statuses: Vec<u32> = (200..=208).collect();
        statuses.push(226);
        statuses.extend(300..=308);
        PassiveHealthy {
            http_statuses: statuses,
            successes: 0,
        }
    }
}

/// `healthchecks.passive.unhealthy`, with the ejection extension.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PassiveUnhealthy {
    pub http_statuses: Vec<u32>,
    pub tcp_failures: u32,
    pub timeouts: u32,
    pub http_failures: u32,
    /// Extension: seconds a target stays out after its first ejection when no active check
    /// can bring it back; the n-th ejection in a row lasts n times this.
    pub base_ejection_time: f64,
    /// Extension: the longest ejection (seconds).
    pub max_ejection_time: f64,
}

impl Default for PassiveUnhealthy {
    fn default() -> Self {
        PassiveUnhealthy {
            http_statuses: vec![429, 500, 503],
            tcp_failures: 0,
            timeouts: 0,
            http_failures: 0,
            base_ejection_time: 30.0,
            max_ejection_time: 300.0,
        }
    }
}

type FieldErrors = Vec<(String, String)>;

impl Healthchecks {
    /// Decode and validate a `healthchecks` value (`null` means Kong's defaults: all off).
    pub fn parse(value: &serde_json::Value) -> Result<Healthchecks, FieldErrors> {
        let raw = if value.is_null() {
            serde_json::Value::Object(Default::default())
        } else {
            value.clone()
        };
        let hc: Healthchecks = serde_path_to_error::deserialize(raw).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            vec![(path, e.into_inner().to_string())]
        })?;
        let errors = hc.validate();
        if errors.is_empty() {
            Ok(hc)
        } else {
            Err(errors)
        }
    }

    fn validate(&self) -> FieldErrors {
        let mut errors = Vec::new();
        let mut err = |path: &str, msg: String| errors.push((path.to_string(), msg));
        let a = &self.active;
        if self.active_enabled() {
            match a.kind {
                CheckType::Http | CheckType::Https | CheckType::Tcp => {}
                CheckType::Grpc | CheckType::Grpcs => err(
                    "active.type",
                    "grpc health checks are not supported by this version of Gatehouse: use http or tcp".into(),
                ),
            }
        }
        if !(a.timeout > 0.0 && a.timeout <= MAX_INTERVAL) {
            err(
                "active.timeout",
                format!("value should be between 0 and {MAX_INTERVAL} (exclusive of 0)"),
            );
        }
        if a.concurrency == 0 || a.concurrency > MAX_CONCURRENCY {
            err(
                "active.concurrency",
                format!("value should be between 1 and {MAX_CONCURRENCY}"),
            );
        }
        if !a.http_path.starts_with('/')
            || http::uri::PathAndQuery::try_from(a.http_path.as_str()).is_err()
        {
            err(
                "active.http_path",
                format!(
                    "should start with: / and be a valid path (got `{}`)",
                    a.http_path
                ),
            );
        }
        if let Some(headers) = &a.headers {
            for (name, values) in headers {
                let path = format!("active.headers.{name}");
                if HeaderName::from_bytes(name.as_bytes()).is_err() {
                    err(&path, "invalid header name".into());
                }
                if values.iter().any(|v| HeaderValue::from_str(v).is_err()) {
                    err(&path, "invalid header value".into());
                }
            }
        }
        for (path, v) in [
            ("active.healthy.interval", a.healthy.interval),
            ("active.unhealthy.interval", a.unhealthy.interval),
        ] {
            if !(0.0..=MAX_INTERVAL).contains(&v) {
                err(
                    path,
                    format!("value should be between 0 and {MAX_INTERVAL}"),
                );
            } else if v > 0.0 && v < 0.001 {
                // A timer of zero length cannot run: the checker would stop probing.
                err(path, "value should be 0 (off) or at least 0.001".into());
            }
        }
        let p = &self.passive;
        for (path, v) in [
            ("active.healthy.successes", a.healthy.successes),
            ("active.unhealthy.tcp_failures", a.unhealthy.tcp_failures),
            ("active.unhealthy.timeouts", a.unhealthy.timeouts),
            ("active.unhealthy.http_failures", a.unhealthy.http_failures),
            ("passive.healthy.successes", p.healthy.successes),
            ("passive.unhealthy.tcp_failures", p.unhealthy.tcp_failures),
            ("passive.unhealthy.timeouts", p.unhealthy.timeouts),
            ("passive.unhealthy.http_failures", p.unhealthy.http_failures),
        ] {
            if v > MAX_COUNTER {
                err(path, format!("value should be between 0 and {MAX_COUNTER}"));
            }
        }
        for (path, list) in [
            ("active.healthy.http_statuses", &a.healthy.http_statuses),
            ("active.unhealthy.http_statuses", &a.unhealthy.http_statuses),
            ("passive.healthy.http_statuses", &p.healthy.http_statuses),
            (
                "passive.unhealthy.http_statuses",
                &p.unhealthy.http_statuses,
            ),
        ] {
            for (i, s) in list.iter().enumerate() {
                if !(200..=999).contains(s) {
                    err(
                        &format!("{path}[{i}]"),
                        "value should be between 200 and 999".into(),
                    );
                }
            }
        }
        let (base, max) = (
            p.unhealthy.base_ejection_time,
            p.unhealthy.max_ejection_time,
        );
        if !(base > 0.0 && base <= MAX_INTERVAL) {
            err(
                "passive.unhealthy.base_ejection_time",
                format!("value should be between 0 and {MAX_INTERVAL} (exclusive of 0)"),
            );
        }
        if !(max >= base && max <= MAX_INTERVAL) {
            err(
                "passive.unhealthy.max_ejection_time",
                format!("value should be between base_ejection_time and {MAX_INTERVAL}"),
            );
        }
        if !(0.0..=100.0).contains(&self.threshold) {
            err("threshold", "value should be between 0 and 100".into());
        }
        errors
    }

    /// Whether active probing runs (either interval above 0), as in Kong.
    pub fn active_enabled(&self) -> bool {
        self.active.healthy.interval > 0.0 || self.active.unhealthy.interval > 0.0
    }

    /// Whether live traffic can change a target's health (a passive counter above 0).
    pub fn passive_enabled(&self) -> bool {
        let u = &self.passive.unhealthy;
        u.http_failures > 0 || u.tcp_failures > 0 || u.timeouts > 0
    }

    /// Kong's `HEALTHCHECKS_OFF`: neither active nor passive checks can change anything.
    pub fn is_off(&self) -> bool {
        !self.active_enabled() && !self.passive_enabled()
    }

    /// Whether active probes can bring an unhealthy target back (unhealthy targets are probed
    /// and successes count); when not, an unhealthy target is ejected for a time instead.
    pub fn active_recovers(&self) -> bool {
        self.active.unhealthy.interval > 0.0 && self.active.healthy.successes > 0
    }

    pub(crate) fn active_timeout(&self) -> Duration {
        secs(self.active.timeout)
    }
}

/// Seconds given as a number, as a duration (negative or NaN values are 0; they do not pass
/// validation anyway).
pub(crate) fn secs(v: f64) -> Duration {
    Duration::try_from_secs_f64(v).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errs(v: serde_json::Value) -> Vec<String> {
        Healthchecks::parse(&v)
            .unwrap_err()
            .into_iter()
            .map(|(p, _)| p)
            .collect()
    }

    #[test]
    fn defaults_are_kongs() {
        let hc = Healthchecks::parse(&serde_json::Value::Null).unwrap();
        assert_eq!(hc, Healthchecks::default());
        assert!(hc.is_off());
        assert_eq!(hc.active.timeout, 1.0);
        assert_eq!(hc.active.concurrency, 10);
        assert_eq!(hc.active.http_path, "/");
        assert_eq!(hc.active.healthy.http_statuses, [200, 302]);
        assert_eq!(
            hc.active.unhealthy.http_statuses,
            [429, 404, 500, 501, 502, 503, 504, 505]
        );
        assert_eq!(hc.passive.unhealthy.http_statuses, [429, 500, 503]);
        assert_eq!(hc.passive.healthy.http_statuses.len(), 9 + 1 + 9);
        assert_eq!(hc.passive.unhealthy.base_ejection_time, 30.0);
        assert_eq!(hc.passive.unhealthy.max_ejection_time, 300.0);
        // Partial blocks keep the defaults of what they leave out.
        let hc = Healthchecks::parse(&json!({"active": {"healthy": {"interval": 5}}})).unwrap();
        assert_eq!(hc.active.healthy.http_statuses, [200, 302]);
        assert!(hc.active_enabled() && !hc.passive_enabled() && !hc.active_recovers());
    }

    #[test]
    fn accepts_a_kong_export() {
        let v = json!({
            "threshold": 0,
            "active": {
                "type": "http", "timeout": 1, "concurrency": 10, "http_path": "/",
                "https_verify_certificate": true, "https_sni": null, "headers": {"x-a": ["1", "2"]},
                "healthy": {"interval": 0, "successes": 0, "http_statuses": [200, 302]},
                "unhealthy": {"interval": 0, "http_failures": 0, "tcp_failures": 0,
                              "timeouts": 0, "http_statuses": [429, 500]}
            },
            "passive": {
                "type": "http",
                "healthy": {"successes": 0, "http_statuses": [200]},
                "unhealthy": {"http_failures": 0, "tcp_failures": 0, "timeouts": 0,
                              "http_statuses": [500]}
            }
        });
        assert!(Healthchecks::parse(&v).unwrap().is_off());
        assert!(Healthchecks::parse(&json!({"active": {"type": "https"}})).is_ok());
    }

    #[test]
    fn rejects_with_field_paths() {
        assert_eq!(
            errs(json!({"active": {"type": "grpc", "unhealthy": {"interval": 1}}})),
            ["active.type"]
        );
        assert_eq!(errs(json!({"active": {"type": "udp"}})), ["active.type"]);
        assert_eq!(errs(json!({"active": {"nope": 1}})), ["active.nope"]);
        assert_eq!(
            errs(json!({"active": {"healthy": {"successes": 256}}})),
            ["active.healthy.successes"]
        );
        assert_eq!(
            errs(json!({"passive": {"unhealthy": {"http_statuses": [500, 99]}}})),
            ["passive.unhealthy.http_statuses[1]"]
        );
        assert_eq!(
            errs(json!({"active": {"http_path": "x", "concurrency": 0, "timeout": 0}})),
            ["active.timeout", "active.concurrency", "active.http_path"]
        );
        assert_eq!(
            errs(json!({"active": {"unhealthy": {"interval": -1}}})),
            ["active.unhealthy.interval"]
        );
        assert_eq!(
            errs(
                json!({"passive": {"unhealthy": {"base_ejection_time": 10, "max_ejection_time": 5}}})
            ),
            ["passive.unhealthy.max_ejection_time"]
        );
        assert_eq!(errs(json!({"threshold": 101})), ["threshold"]);
        assert_eq!(
            errs(json!({"active": {"headers": {"bad name": "x"}}})),
            ["active.headers.bad name"]
        );
    }
}

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::DnsError;

/// The port of a nameserver given without one.
const DNS_PORT: u16 = 53;

/// Which address records a name is looked up for, and in what order.
///
/// Kong's `dns_order` (default `LAST,SRV,A,CNAME`) looks up A records only; CNAMEs are
/// followed by the nameserver either way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LookupOrder {
    /// A records only.
    Ipv4,
    /// AAAA records only.
    Ipv6,
    /// A records; AAAA records only when the name has no A record.
    #[default]
    Ipv4ThenIpv6,
    /// A and AAAA records (queried in parallel), every address of both.
    Ipv4AndIpv6,
}

/// Settings of the [`Resolver`](super::Resolver) and the [`Watcher`](super::Watcher).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// The nameservers to ask, in order (Kong's `dns_resolver`). Empty: the system's, from
    /// `/etc/resolv.conf` (with its `search`, `ndots`, `timeout` and `attempts` options).
    pub nameservers: Vec<SocketAddr>,
    /// Answer names listed in `/etc/hosts` from it, without asking a nameserver (Kong's
    /// `dns_hostsfile`). The file is read once, when the resolver is built.
    pub hosts_file: bool,
    /// Which address records to look up.
    pub order: LookupOrder,
    /// Floor of an answer's lifetime: an answer with a shorter TTL (0 included) is kept this
    /// long before the name is asked again.
    pub min_ttl: Duration,
    /// Ceiling of an answer's lifetime: a name is asked again after this long at most, however
    /// long its TTL (hosts file entries included).
    pub max_ttl: Duration,
    /// First wait before asking again after a failed resolution (NXDOMAIN, no address, no
    /// answer in time); each further failure doubles it up to `max_error_retry`. The last good
    /// answer stays in use meanwhile.
    pub error_retry: Duration,
    /// Ceiling of the wait between retries of a failing name.
    pub max_error_retry: Duration,
    /// How long to wait for one nameserver's answer to one query. `None`: the system's (or
    /// the resolver library's, 5 s) when `nameservers` is empty, 2 s otherwise.
    pub timeout: Option<Duration>,
    /// How many times a query is retried when no nameserver answers in time. `None`: the
    /// system's when `nameservers` is empty, 2 otherwise.
    pub attempts: Option<usize>,
}

impl Default for DnsConfig {
    fn default() -> DnsConfig {
        DnsConfig {
            nameservers: Vec::new(),
            hosts_file: true,
            order: LookupOrder::default(),
            min_ttl: Duration::from_secs(1),
            max_ttl: Duration::from_secs(3600),
            error_retry: Duration::from_secs(1),
            max_error_retry: Duration::from_secs(30),
            timeout: None,
            attempts: None,
        }
    }
}

impl DnsConfig {
    /// The default settings with explicit nameservers.
    pub fn with_nameservers(nameservers: impl IntoIterator<Item = SocketAddr>) -> DnsConfig {
        DnsConfig {
            nameservers: nameservers.into_iter().collect(),
            ..DnsConfig::default()
        }
    }

    /// Check that the settings make sense together.
    pub fn validate(&self) -> Result<(), DnsError> {
        if self.min_ttl > self.max_ttl {
            return Err(DnsError::InvalidSetting("min_ttl is above max_ttl"));
        }
        if self.max_ttl.is_zero() {
            return Err(DnsError::InvalidSetting("max_ttl must be above 0"));
        }
        if self.error_retry.is_zero() {
            return Err(DnsError::InvalidSetting("error_retry must be above 0"));
        }
        if self.error_retry > self.max_error_retry {
            return Err(DnsError::InvalidSetting(
                "error_retry is above max_error_retry",
            ));
        }
        if self.timeout.is_some_and(|t| t.is_zero()) {
            return Err(DnsError::InvalidSetting("timeout must be above 0"));
        }
        if self.attempts == Some(0) {
            return Err(DnsError::InvalidSetting("attempts must be at least 1"));
        }
        let mut seen = HashSet::new();
        for ns in &self.nameservers {
            if !seen.insert(ns) {
                return Err(DnsError::DuplicateNameserver(*ns));
            }
        }
        Ok(())
    }
}

/// One nameserver as Kong's `dns_resolver` writes it: `ip`, `ip:port`, `ipv6` or
/// `[ipv6]:port`; the port defaults to 53.
pub fn parse_nameserver(s: &str) -> Result<SocketAddr, DnsError> {
    let s = s.trim();
    let invalid = || DnsError::InvalidNameserver(s.to_string());
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return if addr.port() == 0 {
            Err(invalid())
        } else {
            Ok(addr)
        };
    }
    let bare = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    bare.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, DNS_PORT))
        .map_err(|_| invalid())
}

/// A comma-separated list of nameservers (Kong's `dns_resolver`); blank entries are skipped.
pub fn parse_nameservers(s: &str) -> Result<Vec<SocketAddr>, DnsError> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(parse_nameserver)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameservers_take_kongs_forms() {
        assert_eq!(
            parse_nameservers("8.8.8.8, 127.0.0.1:5353,[::1]:54,::1").ok(),
            Some(vec![
                "8.8.8.8:53".parse().unwrap(),
                "127.0.0.1:5353".parse().unwrap(),
                "[::1]:54".parse().unwrap(),
                "[::1]:53".parse().unwrap(),
            ])
        );
        assert_eq!(
            parse_nameserver("[::1]").ok(),
            Some("[::1]:53".parse().unwrap())
        );
        for bad in ["", "dns.example", "127.0.0.1:0", "127.0.0.1:70000", "[::1"] {
            assert!(parse_nameserver(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_nameservers(" , ").ok(), Some(vec![]));
    }

    #[test]
    fn settings_out_of_order_are_refused() {
        assert!(DnsConfig::default().validate().is_ok());
        let bad = [
            DnsConfig {
                min_ttl: Duration::from_secs(10),
                max_ttl: Duration::from_secs(5),
                ..DnsConfig::default()
            },
            DnsConfig {
                error_retry: Duration::ZERO,
                ..DnsConfig::default()
            },
            DnsConfig {
                attempts: Some(0),
                ..DnsConfig::default()
            },
            DnsConfig::with_nameservers(["127.0.0.1:53".parse().unwrap(); 2]),
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?}");
        }
    }
}

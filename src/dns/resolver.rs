use std::net::IpAddr;
use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::Name;

use super::{DnsConfig, DnsError, LookupOrder};

/// Per-query timeout with explicit nameservers, unless configured.
const EXPLICIT_TIMEOUT: Duration = Duration::from_secs(2);
/// Attempts per query with explicit nameservers, unless configured.
const EXPLICIT_ATTEMPTS: usize = 2;
/// How far in the future an IP literal's answer "expires": never, in practice.
const LITERAL_LIFETIME: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Every address behind a name, and until when that answer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Sorted, without duplicates (so that two answers listing the same addresses in another
    /// order compare equal); never empty.
    pub addrs: Vec<IpAddr>,
    /// When to ask again: the answer's TTL clamped to `[min_ttl, max_ttl]`; far in the future
    /// for an IP literal.
    pub valid_until: Instant,
}

/// The address an IP literal target names (`127.0.0.1`, `::1`, `[::1]`), if it is one.
pub fn ip_literal(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok()
}

/// A DNS stub resolver: the hosts file, then the configured (or the system's) nameservers.
/// Answers are cached for their (clamped) TTL, so resolving a name again before its answer
/// expires sends no query. Cheap to share behind an `Arc`.
pub struct Resolver {
    inner: TokioResolver,
    config: DnsConfig,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Resolver {
    /// A resolver with `config`: the system configuration when it names no nameserver.
    /// Sends nothing yet; queries run on the tokio runtime of whoever calls
    /// [`resolve`](Self::resolve).
    pub fn new(config: DnsConfig) -> Result<Resolver, DnsError> {
        config.validate()?;
        let mut builder = if config.nameservers.is_empty() {
            TokioResolver::builder_tokio().map_err(|e| DnsError::SystemConfig(e.to_string()))?
        } else {
            let servers = config
                .nameservers
                .iter()
                .map(|ns| {
                    let mut server = NameServerConfig::udp_and_tcp(ns.ip());
                    for conn in &mut server.connections {
                        conn.port = ns.port();
                    }
                    server
                })
                .collect();
            let mut builder = TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            );
            let opts = builder.options_mut();
            opts.timeout = EXPLICIT_TIMEOUT;
            opts.attempts = EXPLICIT_ATTEMPTS;
            builder
        };
        let opts: &mut ResolverOpts = builder.options_mut();
        if let Some(timeout) = config.timeout {
            opts.timeout = timeout;
        }
        if let Some(attempts) = config.attempts {
            opts.attempts = attempts;
        }
        opts.ip_strategy = match config.order {
            LookupOrder::Ipv4 => LookupIpStrategy::Ipv4Only,
            LookupOrder::Ipv6 => LookupIpStrategy::Ipv6Only,
            LookupOrder::Ipv4ThenIpv6 => LookupIpStrategy::Ipv4thenIpv6,
            LookupOrder::Ipv4AndIpv6 => LookupIpStrategy::Ipv4AndIpv6,
        };
        opts.use_hosts_file = if config.hosts_file {
            ResolveHosts::Always
        } else {
            ResolveHosts::Never
        };
        opts.positive_min_ttl = Some(config.min_ttl);
        opts.positive_max_ttl = Some(config.max_ttl);
        // A cached "no such name" must not outlive the first retry, or the retries would only
        // replay it.
        opts.negative_min_ttl = None;
        opts.negative_max_ttl = Some(config.error_retry);
        let inner = builder
            .build()
            .map_err(|e| DnsError::SystemConfig(e.to_string()))?;
        Ok(Resolver { inner, config })
    }

    pub fn config(&self) -> &DnsConfig {
        &self.config
    }

    /// Every address of `host`. An IP literal is its own answer, valid forever, without a
    /// query; a name in the hosts file is answered from it.
    pub async fn resolve(&self, host: &str) -> Result<Resolved, DnsError> {
        let now = Instant::now();
        if let Some(ip) = ip_literal(host) {
            return Ok(Resolved {
                addrs: vec![ip],
                valid_until: now.checked_add(LITERAL_LIFETIME).unwrap_or(now),
            });
        }
        if host.is_empty() {
            return Err(DnsError::InvalidName {
                host: String::new(),
                reason: "empty".into(),
            });
        }
        if let Err(e) = Name::from_utf8(host) {
            return Err(DnsError::InvalidName {
                host: host.to_string(),
                reason: e.to_string(),
            });
        }
        let lookup = self
            .inner
            .lookup_ip(host)
            .await
            .map_err(|e| classify(host, e))?;
        let mut addrs: Vec<IpAddr> = lookup.iter().collect();
        addrs.sort_unstable();
        addrs.dedup();
        if addrs.is_empty() {
            return Err(DnsError::NoAddress {
                host: host.to_string(),
            });
        }
        let now = Instant::now();
        let ttl = lookup
            .valid_until()
            .saturating_duration_since(now)
            .clamp(self.config.min_ttl, self.config.max_ttl);
        Ok(Resolved {
            addrs,
            valid_until: now + ttl,
        })
    }
}

fn classify(host: &str, e: NetError) -> DnsError {
    let host = host.to_string();
    if e.is_nx_domain() {
        DnsError::NxDomain { host }
    } else if e.is_no_records_found() {
        DnsError::NoAddress { host }
    } else if matches!(e, NetError::Timeout) {
        DnsError::Timeout { host }
    } else {
        DnsError::Lookup {
            host,
            reason: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_literals_with_or_without_brackets() {
        assert_eq!(ip_literal("127.0.0.2"), Some([127, 0, 0, 2].into()));
        assert_eq!(
            ip_literal("[::1]"),
            Some(std::net::Ipv6Addr::LOCALHOST.into())
        );
        assert_eq!(
            ip_literal("::1"),
            Some(std::net::Ipv6Addr::LOCALHOST.into())
        );
        assert_eq!(ip_literal("api.internal"), None);
        assert_eq!(ip_literal("[api.internal]"), None);
    }
}

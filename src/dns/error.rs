use std::net::SocketAddr;

/// Why a name could not be resolved, or a resolver not built.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DnsError {
    /// A nameserver setting is not `ip`, `ip:port` or `[ipv6]:port`.
    #[error("invalid nameserver `{0}`: expected ip, ip:port or [ipv6]:port")]
    InvalidNameserver(String),
    /// A nameserver setting repeats one already given.
    #[error("duplicate nameserver `{0}`")]
    DuplicateNameserver(SocketAddr),
    /// A TTL or retry setting is out of order (floor above ceiling, zero where a duration is
    /// needed).
    #[error("invalid dns setting: {0}")]
    InvalidSetting(&'static str),
    /// The system configuration (`/etc/resolv.conf`) could not be read.
    #[error("cannot read the system resolver configuration: {0}")]
    SystemConfig(String),
    /// The host is not a valid domain name.
    #[error("`{host}` is not a valid host name: {reason}")]
    InvalidName { host: String, reason: String },
    /// The name does not exist (NXDOMAIN).
    #[error("`{host}` does not exist (NXDOMAIN)")]
    NxDomain { host: String },
    /// The name exists but has no address record of the families looked up.
    #[error("`{host}` has no address record")]
    NoAddress { host: String },
    /// No nameserver answered in time.
    #[error("resolving `{host}` timed out")]
    Timeout { host: String },
    /// Any other failure of the lookup (refused, server failure, I/O error).
    #[error("resolving `{host}` failed: {reason}")]
    Lookup { host: String, reason: String },
}

impl DnsError {
    /// The name is known not to have addresses (as opposed to a failure to ask).
    pub fn is_not_found(&self) -> bool {
        matches!(self, DnsError::NxDomain { .. } | DnsError::NoAddress { .. })
    }
}

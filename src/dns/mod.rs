//! Resolution of upstream targets named by host name.
//!
//! A [`Resolver`] turns a host name into every address behind it (A and AAAA records, the
//! hosts file first), with the answer's TTL clamped to the configured floor and ceiling. A
//! [`Watcher`] keeps a set of names resolved on its own tasks: it re-resolves each name when
//! its answer expires, publishes the current address set of every name through a lock-free
//! read path, signals each change so the caller can rebuild what depends on it, and keeps the
//! last good answer of a name whose resolution fails, retrying with backoff.
//!
//! See `docs/dns.md` for the settings, their defaults and the limits.

mod addresses;
mod backoff;
mod config;
mod error;
mod resolver;
mod watcher;

pub use addresses::{AddressMap, Addresses};
pub use backoff::Backoff;
pub use config::{DnsConfig, LookupOrder, parse_nameserver, parse_nameservers};
pub use error::DnsError;
pub use resolver::{Resolved, Resolver, ip_literal};
pub use watcher::Watcher;

//! Client address resolution.
//!
//! # Contract
//!
//! [`client_ip`] follows nginx's `ngx_http_realip_module`, which Kong drives
//! with `trusted_ips` (`set_real_ip_from`), `real_ip_header` and
//! `real_ip_recursive`:
//!
//! * If the TCP peer is not in [`RealIpConfig::trusted`], the peer is the
//!   client; the header is ignored (a client cannot spoof its address).
//! * Otherwise the configured header is read: every occurrence, in order, each
//!   a comma-separated list; entries are whitespace-trimmed, empty entries are
//!   skipped, and an entry may be `ip`, `ip:port`, `[v6]` or `[v6]:port`.
//! * Non-recursive: the **last** entry is the client (even if it is itself a
//!   trusted address, as in nginx).
//! * Recursive: walk from the right, skipping trusted addresses; the first
//!   untrusted address is the client. If every entry is trusted, the leftmost
//!   one is.
//!
//! # Fallback on bad input (never trust garbage)
//!
//! * Missing header, or no non-empty entry: the peer.
//! * Non-recursive, the last entry does not parse (or the last header
//!   occurrence is not visible ASCII): the peer.
//! * Recursive: the walk stops at the first entry that does not parse and
//!   returns the last good address seen, i.e. the peer if the rightmost entry
//!   is bad, otherwise the address of the last trusted hop. This is exactly
//!   what nginx does, and every address it can return was either the peer or
//!   written by a trusted proxy.
//!
//! IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are normalised to IPv4, for
//! the peer, for header entries, for the returned address and for the trusted
//! list (a mapped network with prefix ≥ 96 becomes the matching IPv4 network).
//!
//! # Limits
//!
//! * Only IP addresses are handled: `unix:` entries in the trusted list are
//!   rejected; RFC 7239 `Forwarded` syntax (`for=…`) and obfuscated
//!   identifiers are not parsed (they count as unparseable entries).
//! * IPv6 zone ids (`fe80::1%eth0`) are not accepted.
//! * Matching is a linear scan over the (aggregated) networks of the peer's
//!   family, so it stays cheap for the short lists gateways use; no locks and
//!   no allocation per request.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use http::{HeaderMap, HeaderName};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Error building a [`TrustedProxies`] list.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum ClientIpError {
    /// An entry is neither an IP address nor a CIDR block.
    #[error("invalid trusted proxy entry {entry:?}: expected an IP address or a CIDR block")]
    InvalidEntry {
        /// The offending entry, trimmed.
        entry: String,
    },
    /// `unix:` (nginx's marker for unix-socket peers) is not supported.
    #[error("trusted proxy entry {entry:?}: unix-socket peers are not supported")]
    UnixNotSupported {
        /// The offending entry, trimmed.
        entry: String,
    },
}

/// The set of proxies whose forwarding header is believed (`trusted_ips`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    v4: Vec<Ipv4Net>,
    v6: Vec<Ipv6Net>,
}

impl TrustedProxies {
    /// Parses a list of IP addresses and CIDR blocks, IPv4 or IPv6. Each item
    /// may itself be a comma-separated list (Kong's `trusted_ips =
    /// 0.0.0.0/0,::/0`); whitespace and empty items are ignored. Host bits
    /// of a CIDR block are ignored (`10.1.2.3/8` is `10.0.0.0/8`).
    ///
    /// # Errors
    ///
    /// [`ClientIpError::InvalidEntry`] for an item that is neither an address
    /// nor a CIDR block (ports and brackets are not accepted here);
    /// [`ClientIpError::UnixNotSupported`] for `unix:`.
    pub fn parse(list: &[String]) -> Result<Self, ClientIpError> {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for entry in list.iter().flat_map(|item| item.split(',')) {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            if entry.eq_ignore_ascii_case("unix:") {
                return Err(ClientIpError::UnixNotSupported {
                    entry: entry.to_owned(),
                });
            }
            let net = match entry.parse::<IpNet>() {
                Ok(net) => net,
                Err(_) => match entry.parse::<IpAddr>() {
                    Ok(ip) => IpNet::from(ip),
                    Err(_) => {
                        return Err(ClientIpError::InvalidEntry {
                            entry: entry.to_owned(),
                        });
                    }
                },
            };
            match net.trunc() {
                IpNet::V4(n) => v4.push(n),
                IpNet::V6(n) => match mapped_v4_net(n) {
                    Some(n) => v4.push(n),
                    None => v6.push(n),
                },
            }
        }
        Ok(Self {
            v4: Ipv4Net::aggregate(&v4),
            v6: Ipv6Net::aggregate(&v6),
        })
    }

    /// Trusts nobody: the peer address is always the client.
    #[must_use]
    pub fn none() -> Self {
        Self::default()
    }

    /// Whether `ip` (IPv4-mapped IPv6 is treated as IPv4) is trusted.
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip.to_canonical() {
            IpAddr::V4(ip) => self.v4.iter().any(|n| n.contains(&ip)),
            IpAddr::V6(ip) => self.v6.iter().any(|n| n.contains(&ip)),
        }
    }

    /// Whether no address is trusted.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }
}

/// `::ffff:0:0/96` and below, as the equivalent IPv4 network.
fn mapped_v4_net(net: Ipv6Net) -> Option<Ipv4Net> {
    let addr = net.addr().to_ipv4_mapped()?;
    let prefix = net.prefix_len().checked_sub(96)?;
    Ipv4Net::new(addr, prefix).ok()
}

/// Real-IP settings (Kong's `trusted_ips`, `real_ip_header`,
/// `real_ip_recursive`).
#[derive(Debug, Clone)]
pub struct RealIpConfig {
    /// Peers whose header is believed and, when recursive, hops skipped.
    pub trusted: TrustedProxies,
    /// Header carrying the address list (default `x-forwarded-for`).
    pub header: HeaderName,
    /// Walk the list past trusted hops (default `false`).
    pub recursive: bool,
    /// Without `recursive`: which entry counting from the right is the client (default 1, the
    /// last one, as nginx; Traefik's `ipStrategy.depth`). A list shorter than this gives the peer.
    pub depth: usize,
}

impl Default for RealIpConfig {
    fn default() -> Self {
        Self {
            trusted: TrustedProxies::none(),
            header: HeaderName::from_static("x-forwarded-for"),
            recursive: false,
            depth: 1,
        }
    }
}

/// Parses one header entry: `ip`, `ip:port`, `[v6]` or `[v6]:port`.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let ip = if let Ok(ip) = entry.parse::<IpAddr>() {
        ip
    } else if let Ok(sa) = entry.parse::<SocketAddr>() {
        sa.ip()
    } else {
        entry
            .strip_prefix('[')?
            .strip_suffix(']')?
            .parse::<Ipv6Addr>()
            .ok()?
            .into()
    };
    Some(ip.to_canonical())
}

/// One item of the header list, seen from the right.
enum Entry {
    Addr(IpAddr),
    Garbage,
}

/// The non-empty entries of every occurrence of `name`, from the right.
fn entries_from_right<'h>(
    headers: &'h HeaderMap,
    name: &HeaderName,
) -> impl Iterator<Item = Entry> + 'h {
    headers.get_all(name).iter().rev().flat_map(|value| {
        let (text, garbage) = match value.to_str() {
            Ok(text) => (text, false),
            Err(_) => ("", true),
        };
        let bad = garbage.then_some(Entry::Garbage);
        bad.into_iter().chain(
            text.rsplit(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(|e| parse_entry(e).map_or(Entry::Garbage, Entry::Addr)),
        )
    })
}

/// The client address as the gateway should see it.
///
/// See the module documentation for the exact rules and fallbacks.
#[must_use]
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, cfg: &RealIpConfig) -> IpAddr {
    let peer = peer.to_canonical();
    if !cfg.trusted.contains(peer) {
        return peer;
    }
    let mut entries = entries_from_right(headers, &cfg.header);
    if !cfg.recursive {
        return match entries.nth(cfg.depth.max(1) - 1) {
            Some(Entry::Addr(ip)) => ip,
            Some(Entry::Garbage) | None => peer,
        };
    }
    let mut current = peer;
    for entry in entries {
        match entry {
            Entry::Garbage => return current,
            Entry::Addr(ip) => {
                current = ip;
                if !cfg.trusted.contains(ip) {
                    return ip;
                }
            }
        }
    }
    current
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        match s.parse() {
            Ok(ip) => ip,
            Err(e) => panic!("bad test ip {s:?}: {e}"),
        }
    }

    fn trusted(list: &[&str]) -> TrustedProxies {
        let list: Vec<String> = list.iter().map(|s| (*s).to_owned()).collect();
        match TrustedProxies::parse(&list) {
            Ok(t) => t,
            Err(e) => panic!("bad test list {list:?}: {e}"),
        }
    }

    fn headers(name: &str, values: &[&[u8]]) -> HeaderMap {
        let mut map = HeaderMap::new();
        let name = HeaderName::from_bytes(name.as_bytes()).expect("test header name");
        for v in values {
            map.append(
                name.clone(),
                HeaderValue::from_bytes(v).expect("test header value"),
            );
        }
        map
    }

    #[test]
    fn depth_counts_entries_from_the_right() {
        let map = headers("x-forwarded-for", &[b"6.6.6.6, 203.0.113.7, 10.0.0.2"]);
        let cfg = |depth| RealIpConfig {
            trusted: trusted(&["10.0.0.0/8"]),
            header: HeaderName::from_static("x-forwarded-for"),
            recursive: false,
            depth,
        };
        assert_eq!(client_ip(ip("10.0.0.1"), &map, &cfg(1)), ip("10.0.0.2"));
        assert_eq!(client_ip(ip("10.0.0.1"), &map, &cfg(2)), ip("203.0.113.7"));
        assert_eq!(client_ip(ip("10.0.0.1"), &map, &cfg(3)), ip("6.6.6.6"));
        // Deeper than the list: the peer, never a guess.
        assert_eq!(client_ip(ip("10.0.0.1"), &map, &cfg(4)), ip("10.0.0.1"));
        // An untrusted peer is always the client, whatever the depth.
        assert_eq!(client_ip(ip("8.8.8.8"), &map, &cfg(2)), ip("8.8.8.8"));
    }

    #[test]
    fn trusted_parse_table() {
        #[rustfmt::skip]
        type Case = (&'static [&'static str], &'static [(&'static str, bool)]);
        let cases: &[Case] = &[
            (
                &["10.0.0.0/8", "::1"],
                &[
                    ("10.1.2.3", true),
                    ("11.0.0.1", false),
                    ("::1", true),
                    ("::2", false),
                    ("::ffff:10.9.9.9", true),
                    ("::ffff:11.0.0.1", false),
                ],
            ),
            (
                &["0.0.0.0/0,::/0"],
                &[
                    ("1.2.3.4", true),
                    ("2001:db8::1", true),
                    ("::", true),
                    ("255.255.255.255", true),
                ],
            ),
            (
                &[" 192.168.1.1 , 2001:db8::/32 ", ""],
                &[
                    ("192.168.1.1", true),
                    ("192.168.1.2", false),
                    ("2001:db8:ffff::1", true),
                    ("2001:db9::1", false),
                ],
            ),
            // host bits are ignored, like nginx
            (
                &["10.1.2.3/8"],
                &[("10.200.0.1", true), ("11.0.0.0", false)],
            ),
            // mapped IPv6 entries and networks apply to IPv4 peers
            (
                &["::ffff:172.16.0.0/108"],
                &[("172.16.5.5", true), ("172.32.0.1", false)],
            ),
            (
                &["::ffff:1.2.3.4"],
                &[("1.2.3.4", true), ("::ffff:1.2.3.4", true)],
            ),
            // IPv4 does not leak into IPv6 and vice versa
            (&["0.0.0.0/0"], &[("1.1.1.1", true), ("2001:db8::1", false)]),
            (
                &["::/0"],
                &[
                    ("2001:db8::1", true),
                    ("1.1.1.1", false),
                    ("::ffff:1.1.1.1", false),
                ],
            ),
            (&[], &[("127.0.0.1", false), ("::1", false)]),
        ];
        for (list, checks) in cases {
            let t = trusted(list);
            assert_eq!(t.is_empty(), checks.iter().all(|(_, b)| !b), "{list:?}");
            for (addr, want) in *checks {
                assert_eq!(t.contains(ip(addr)), *want, "{list:?} contains {addr}");
            }
        }
        assert!(TrustedProxies::none().is_empty());
        assert!(!TrustedProxies::none().contains(ip("127.0.0.1")));
    }

    #[test]
    fn trusted_parse_errors() {
        for bad in [
            "10.0.0.0/33",
            "nope",
            "10.0.0",
            "1.2.3.4:80",
            "[::1]",
            "fe80::1%eth0",
            "::1/129",
        ] {
            let err = TrustedProxies::parse(&[bad.to_owned()]);
            assert_eq!(
                err,
                Err(ClientIpError::InvalidEntry {
                    entry: bad.to_owned()
                }),
                "{bad:?}"
            );
        }
        assert_eq!(
            TrustedProxies::parse(&["10.0.0.1, unix:".to_owned()]),
            Err(ClientIpError::UnixNotSupported {
                entry: "unix:".to_owned()
            })
        );
    }

    #[test]
    fn parse_entry_table() {
        #[rustfmt::skip]
        let cases: &[(&str, Option<&str>)] = &[
            ("1.2.3.4", Some("1.2.3.4")),
            ("1.2.3.4:8080", Some("1.2.3.4")),
            ("2001:db8::1", Some("2001:db8::1")),
            ("[2001:db8::1]", Some("2001:db8::1")),
            ("[2001:db8::1]:443", Some("2001:db8::1")),
            ("::ffff:1.2.3.4", Some("1.2.3.4")),
            ("[::ffff:1.2.3.4]:1", Some("1.2.3.4")),
            ("unknown", None),
            ("1.2.3.4:99999", None),
            ("1.2.3", None),
            ("[1.2.3.4]", None),
            ("[2001:db8::1", None),
            ("for=1.2.3.4", None),
            ("1.2.3.4 5.6.7.8", None),
            ("", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_entry(input), want.map(ip), "{input:?}");
        }
    }

    #[test]
    fn client_ip_table() {
        const XFF: &str = "x-forwarded-for";
        // (description, trusted, header name, recursive, peer, header values, expected)
        #[rustfmt::skip]
        type Case = (
            &'static str,
            &'static [&'static str],
            &'static str,
            bool,
            &'static str,
            &'static [&'static [u8]],
            &'static str,
        );
        let cases: &[Case] = &[
            (
                "untrusted peer ignores header",
                &["10.0.0.0/8"],
                XFF,
                false,
                "203.0.113.7",
                &[b"1.1.1.1"],
                "203.0.113.7",
            ),
            (
                "untrusted peer ignores header, recursive",
                &["10.0.0.0/8"],
                XFF,
                true,
                "203.0.113.7",
                &[b"10.0.0.1, 1.1.1.1"],
                "203.0.113.7",
            ),
            (
                "empty trusted list",
                &[],
                XFF,
                true,
                "10.0.0.1",
                &[b"1.1.1.1"],
                "10.0.0.1",
            ),
            (
                "trusted peer, no header",
                &["10.0.0.0/8"],
                XFF,
                false,
                "10.0.0.1",
                &[],
                "10.0.0.1",
            ),
            (
                "trusted peer, single entry",
                &["10.0.0.0/8"],
                XFF,
                false,
                "10.0.0.1",
                &[b"198.51.100.1"],
                "198.51.100.1",
            ),
            (
                "non-recursive takes the last entry",
                &["10.0.0.0/8"],
                XFF,
                false,
                "10.0.0.1",
                &[b"1.1.1.1, 198.51.100.1"],
                "198.51.100.1",
            ),
            (
                "non-recursive takes the last entry even if trusted",
                &["10.0.0.0/8"],
                XFF,
                false,
                "10.0.0.1",
                &[b"198.51.100.1, 10.0.0.2"],
                "10.0.0.2",
            ),
            (
                "non-recursive: last of the last occurrence",
                &["10.0.0.0/8"],
                XFF,
                false,
                "10.0.0.1",
                &[b"1.1.1.1, 2.2.2.2", b"3.3.3.3, 4.4.4.4"],
                "4.4.4.4",
            ),
            (
                "whitespace and empty entries",
                &["10.0.0.0/8"],
                XFF,
                false,
                "10.0.0.1",
                &[b"  1.1.1.1 ,\t198.51.100.1\t, ,"],
                "198.51.100.1",
            ),
            (
                "ports and brackets",
                &["10.0.0.0/8"],
                XFF,
                false,
                "10.0.0.1",
                &[b"[2001:db8::5]:443"],
                "2001:db8::5",
            ),
            (
                "ip:port",
                &["10.0.0.0/8"],
                XFF,
                false,
                "10.0.0.1",
                &[b"198.51.100.1:5555"],
                "198.51.100.1",
            ),
            (
                "mapped entry normalised",
                &["10.0.0.0/8"],
                XFF,
                false,
                "10.0.0.1",
                &[b"::ffff:198.51.100.1"],
                "198.51.100.1",
            ),
            (
                "mapped peer normalised and trusted",
                &["10.0.0.0/8"],
                XFF,
                false,
                "::ffff:10.0.0.1",
                &[b"198.51.100.1"],
                "198.51.100.1",
            ),
            (
                "mapped untrusted peer returned as IPv4",
                &["10.0.0.0/8"],
                XFF,
                false,
                "::ffff:203.0.113.7",
                &[b"1.1.1.1"],
                "203.0.113.7",
            ),
            (
                "IPv6 proxy",
                &["2001:db8::/32"],
                XFF,
                false,
                "2001:db8::1",
                &[b"203.0.113.9"],
                "203.0.113.9",
            ),
            (
                "non-recursive, garbage last entry -> peer",
                &["10.0.0.0/8"],
                XFF,
                false,
                "10.0.0.1",
                &[b"198.51.100.1, garbage"],
                "10.0.0.1",
            ),
            (
                "non-recursive, only empty entries -> peer",
                &["10.0.0.0/8"],
                XFF,
                false,
                "10.0.0.1",
                &[b" , ,"],
                "10.0.0.1",
            ),
            (
                "non-recursive, non-ASCII last occurrence -> peer",
                &["10.0.0.0/8"],
                XFF,
                false,
                "10.0.0.1",
                &[b"1.1.1.1", b"\xff1.2.3.4"],
                "10.0.0.1",
            ),
            (
                "recursive skips trusted hops",
                &["10.0.0.0/8"],
                XFF,
                true,
                "10.0.0.1",
                &[b"198.51.100.1, 10.0.0.3, 10.0.0.2"],
                "198.51.100.1",
            ),
            (
                "recursive stops at first untrusted from the right",
                &["10.0.0.0/8"],
                XFF,
                true,
                "10.0.0.1",
                &[b"1.1.1.1, 198.51.100.1, 10.0.0.2"],
                "198.51.100.1",
            ),
            (
                "recursive, all trusted -> leftmost",
                &["10.0.0.0/8"],
                XFF,
                true,
                "10.0.0.1",
                &[b"10.0.0.9, 10.0.0.3, 10.0.0.2"],
                "10.0.0.9",
            ),
            (
                "recursive across occurrences",
                &["10.0.0.0/8"],
                XFF,
                true,
                "10.0.0.1",
                &[b"198.51.100.1", b"10.0.0.3", b"10.0.0.2"],
                "198.51.100.1",
            ),
            (
                "recursive, garbage rightmost -> peer",
                &["10.0.0.0/8"],
                XFF,
                true,
                "10.0.0.1",
                &[b"198.51.100.1, garbage"],
                "10.0.0.1",
            ),
            (
                "recursive, garbage after trusted hop -> last good (trusted hop)",
                &["10.0.0.0/8"],
                XFF,
                true,
                "10.0.0.1",
                &[b"198.51.100.1, nope, 10.0.0.2"],
                "10.0.0.2",
            ),
            (
                "recursive, garbage left of the client is never reached",
                &["10.0.0.0/8"],
                XFF,
                true,
                "10.0.0.1",
                &[b"nope, 198.51.100.1, 10.0.0.2"],
                "198.51.100.1",
            ),
            (
                "recursive, non-ASCII occurrence stops the walk",
                &["10.0.0.0/8"],
                XFF,
                true,
                "10.0.0.1",
                &[b"198.51.100.1", b"\xff", b"10.0.0.2"],
                "10.0.0.2",
            ),
            (
                "custom header, trust all",
                &["0.0.0.0/0", "::/0"],
                "x-real-ip",
                false,
                "192.0.2.1",
                &[b"198.51.100.1"],
                "198.51.100.1",
            ),
            (
                "custom header is the one read",
                &["0.0.0.0/0"],
                "x-real-ip",
                false,
                "192.0.2.1",
                &[],
                "192.0.2.1",
            ),
            // spoofing: the client sends its own X-Forwarded-For; the trusted
            // proxy appends the real client address.
            (
                "spoof: fake entry prepended, recursive",
                &["10.0.0.0/8"],
                XFF,
                true,
                "10.0.0.1",
                &[b"6.6.6.6, 198.51.100.1"],
                "198.51.100.1",
            ),
            (
                "spoof: fake trusted-looking entry, recursive",
                &["10.0.0.0/8"],
                XFF,
                true,
                "10.0.0.1",
                &[b"6.6.6.6, 10.9.9.9, 198.51.100.1"],
                "198.51.100.1",
            ),
            (
                "spoof: fake entry in a separate header line, recursive",
                &["10.0.0.0/8"],
                XFF,
                true,
                "10.0.0.1",
                &[b"6.6.6.6", b"198.51.100.1"],
                "198.51.100.1",
            ),
            (
                "spoof: fake entry, two trusted hops, recursive",
                &["10.0.0.0/8"],
                XFF,
                true,
                "10.0.0.1",
                &[b"6.6.6.6, 198.51.100.1, 10.0.0.2"],
                "198.51.100.1",
            ),
            (
                "spoof: fake entry, non-recursive",
                &["10.0.0.0/8"],
                XFF,
                false,
                "10.0.0.1",
                &[b"6.6.6.6, 198.51.100.1"],
                "198.51.100.1",
            ),
            (
                "spoof: fake entry wins only if the real client is trusted",
                &["10.0.0.0/8"],
                XFF,
                true,
                "10.0.0.1",
                &[b"6.6.6.6, 10.0.0.50"],
                "6.6.6.6",
            ),
            (
                "spoof: direct client forging XFF",
                &["10.0.0.0/8"],
                XFF,
                true,
                "198.51.100.1",
                &[b"10.0.0.2, 1.1.1.1"],
                "198.51.100.1",
            ),
        ];
        for &(desc, list, header, recursive, peer, values, want) in cases {
            let cfg = RealIpConfig {
                trusted: trusted(list),
                header: HeaderName::from_bytes(header.as_bytes()).expect("test header name"),
                recursive,
                depth: 1,
            };
            // headers under another name must never be read
            let mut map = headers(header, values);
            let decoy = if header == XFF { "x-real-ip" } else { XFF };
            map.append(
                HeaderName::from_bytes(decoy.as_bytes()).expect("decoy name"),
                HeaderValue::from_static("9.9.9.9"),
            );
            assert_eq!(client_ip(ip(peer), &map, &cfg), ip(want), "{desc}");
        }
    }

    #[test]
    fn real_ip_config_default() {
        let cfg = RealIpConfig::default();
        assert_eq!(cfg.header, "x-forwarded-for");
        assert!(!cfg.recursive);
        assert!(cfg.trusted.is_empty());
        let map = headers("x-forwarded-for", &[b"1.1.1.1"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &map, &cfg), ip("10.0.0.1"));
    }
}

//! A set of IPv4/IPv6 networks with a membership test whose cost does not depend on how many
//! networks the set holds: networks are grouped by prefix length, one hash set per length, and
//! a lookup masks the address once per distinct length present (at most 33 for IPv4 and 129
//! for IPv6; a handful in practice).

use std::net::IpAddr;

use foldhash::HashSet;
use ipnet::IpNet;

/// Networks grouped by prefix length.
#[derive(Debug, Default, Clone)]
pub struct CidrSet {
    v4: Vec<(u8, HashSet<u32>)>,
    v6: Vec<(u8, HashSet<u128>)>,
}

fn mask4(addr: u32, len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        addr & (u32::MAX << (32 - u32::from(len)))
    }
}

fn mask6(addr: u128, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        addr & (u128::MAX << (128 - u32::from(len)))
    }
}

impl CidrSet {
    /// Add a network (an address alone is a /32 or /128). IPv4-mapped IPv6 networks of /96 or
    /// longer are stored as IPv4, so `::ffff:10.0.0.0/104` and `10.0.0.0/8` mean the same.
    pub fn insert(&mut self, net: IpNet) {
        match net {
            IpNet::V4(n) => self.insert_v4(u32::from(n.network()), n.prefix_len()),
            IpNet::V6(n) => match n.network().to_ipv4_mapped() {
                Some(v4) if n.prefix_len() >= 96 => {
                    self.insert_v4(u32::from(v4), n.prefix_len() - 96)
                }
                _ => {
                    let len = n.prefix_len();
                    let key = mask6(u128::from(n.network()), len);
                    match self.v6.iter_mut().find(|(l, _)| *l == len) {
                        Some((_, set)) => {
                            set.insert(key);
                        }
                        None => self.v6.push((len, HashSet::from_iter([key]))),
                    }
                }
            },
        }
    }

    fn insert_v4(&mut self, addr: u32, len: u8) {
        let key = mask4(addr, len);
        match self.v4.iter_mut().find(|(l, _)| *l == len) {
            Some((_, set)) => {
                set.insert(key);
            }
            None => self.v4.push((len, HashSet::from_iter([key]))),
        }
    }

    /// Whether `ip` falls in one of the networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip.to_canonical() {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4
                    .iter()
                    .any(|(len, set)| set.contains(&mask4(a, *len)))
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.v6
                    .iter()
                    .any(|(len, set)| set.contains(&mask6(a, *len)))
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(list: &[&str]) -> CidrSet {
        let mut s = CidrSet::default();
        for n in list {
            s.insert(n.parse().unwrap());
        }
        s
    }

    #[test]
    fn matches_networks_of_every_length() {
        let s = set(&[
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.1.7/32",
            "2001:db8::/32",
            "::1/128",
        ]);
        for (ip, want) in [
            ("10.255.0.1", true),
            ("11.0.0.1", false),
            ("172.31.255.255", true),
            ("172.32.0.0", false),
            ("192.168.1.7", true),
            ("192.168.1.8", false),
            ("2001:db8:1::5", true),
            ("2001:db9::1", false),
            ("::1", true),
            ("::ffff:10.1.2.3", true),
        ] {
            assert_eq!(s.contains(ip.parse().unwrap()), want, "{ip}");
        }
        assert!(set(&["0.0.0.0/0"]).contains("8.8.8.8".parse().unwrap()));
        assert!(!set(&["0.0.0.0/0"]).contains("::2".parse().unwrap()));
        assert!(set(&["::ffff:10.0.0.0/104"]).contains("10.9.9.9".parse().unwrap()));
    }

    #[test]
    fn agrees_with_a_linear_scan_on_many_networks() {
        // 10,000 /24s and a few other lengths; compare with ipnet's own containment.
        let mut nets: Vec<IpNet> = (0..10_000u32)
            .map(|i| {
                IpNet::new(IpAddr::from((0x0a00_0000u32 + (i << 8)).to_be_bytes()), 24).unwrap()
            })
            .collect();
        nets.push("172.16.0.0/12".parse().unwrap());
        nets.push("fd00::/8".parse().unwrap());
        let mut s = CidrSet::default();
        for n in &nets {
            s.insert(*n);
        }
        let mut x: u32 = 12345;
        for _ in 0..2_000 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let ip = IpAddr::from((0x0a00_0000u32 | (x & 0x00ff_ffff)).to_be_bytes());
            let ip = if x.is_multiple_of(7) {
                IpAddr::from((0xac10_0000u32 | (x & 0xffff)).to_be_bytes())
            } else {
                ip
            };
            let linear = nets.iter().any(|n| n.contains(&ip));
            assert_eq!(s.contains(ip), linear, "{ip}");
        }
    }
}

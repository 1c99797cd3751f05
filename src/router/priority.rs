//! Route precedence keys (Kong 3 `traditional_compatible`), computed per (route, path) pair.
//!
//! Contract: [`priority_key`] packs the precedence tuple
//! `(criteria count, all-hosts-plain, header count, path-is-regex, regex_priority, prefix length)`
//! into a `u128` such that comparing two keys as integers (larger = tried first) is exactly the
//! lexicographic comparison of the tuples. `regex_priority` only counts for regex paths and the
//! length only for prefix paths (Kong uses 0 for both otherwise). Ties between equal keys are
//! broken by the caller (ascending route id, then declaration order).

/// The inputs of one (route, path) pair's precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PriorityInput {
    /// Number of non-empty criteria among methods/hosts/paths/headers/query_params (0..=5).
    pub criteria: u8,
    /// The route has hosts and none of them is a wildcard.
    pub plain_hosts: bool,
    /// Number of distinct header names the route requires.
    pub header_count: usize,
    /// The path of this pair is a regex (`~...`), including regexes indexed as literals.
    pub regex: bool,
    /// The route's `regex_priority` (ignored unless `regex`).
    pub regex_priority: i64,
    /// Byte length of a prefix path (ignored when `regex`; 0 when the route has no paths).
    pub path_len: usize,
}

const LEN_BITS: u32 = 40;
const PRIO_SHIFT: u32 = LEN_BITS; // 64 bits of biased regex_priority
const REGEX_SHIFT: u32 = PRIO_SHIFT + 64; // 1 bit
const HEADERS_SHIFT: u32 = REGEX_SHIFT + 1; // 16 bits
const PLAIN_SHIFT: u32 = HEADERS_SHIFT + 16; // 1 bit
const CRITERIA_SHIFT: u32 = PLAIN_SHIFT + 1; // 3 bits (ends at bit 125)

/// Packs `input` into an integer key; larger keys take precedence.
pub(crate) fn priority_key(input: &PriorityInput) -> u128 {
    let criteria = u128::from(input.criteria.min(7));
    let plain = u128::from(input.plain_hosts);
    let headers = u128::from(u16::try_from(input.header_count).unwrap_or(u16::MAX));
    let regex = u128::from(input.regex);
    // Flipping the sign bit maps i64 order onto u64 order.
    let prio = if input.regex {
        u128::from((input.regex_priority as u64) ^ (1 << 63))
    } else {
        u128::from(1u64 << 63)
    };
    let len = if input.regex {
        0
    } else {
        let max = (1u64 << LEN_BITS) - 1;
        u128::from(u64::try_from(input.path_len).unwrap_or(max).min(max))
    };
    (criteria << CRITERIA_SHIFT)
        | (plain << PLAIN_SHIFT)
        | (headers << HEADERS_SHIFT)
        | (regex << REGEX_SHIFT)
        | (prio << PRIO_SHIFT)
        | len
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> PriorityInput {
        PriorityInput {
            criteria: 1,
            plain_hosts: false,
            header_count: 0,
            regex: false,
            regex_priority: 0,
            path_len: 0,
        }
    }

    #[test]
    fn tuple_order_is_lexicographic() {
        let b = base();
        let k = |p: PriorityInput| priority_key(&p);
        // Each field dominates every later field.
        assert!(
            k(PriorityInput { criteria: 2, ..b })
                > k(PriorityInput {
                    plain_hosts: true,
                    header_count: 9999,
                    regex: true,
                    regex_priority: i64::MAX,
                    ..b
                })
        );
        assert!(
            k(PriorityInput {
                plain_hosts: true,
                ..b
            }) > k(PriorityInput {
                header_count: 70_000,
                regex: true,
                regex_priority: i64::MAX,
                ..b
            })
        );
        assert!(
            k(PriorityInput {
                header_count: 2,
                ..b
            }) > k(PriorityInput {
                header_count: 1,
                regex: true,
                regex_priority: i64::MAX,
                ..b
            })
        );
        assert!(
            k(PriorityInput {
                regex: true,
                regex_priority: i64::MIN,
                ..b
            }) > k(PriorityInput {
                path_len: usize::MAX,
                ..b
            })
        );
        assert!(
            k(PriorityInput {
                regex: true,
                regex_priority: 1,
                ..b
            }) > k(PriorityInput {
                regex: true,
                regex_priority: 0,
                ..b
            })
        );
        assert!(
            k(PriorityInput {
                regex: true,
                regex_priority: -1,
                ..b
            }) > k(PriorityInput {
                regex: true,
                regex_priority: -2,
                ..b
            })
        );
        assert!(k(PriorityInput { path_len: 5, ..b }) > k(PriorityInput { path_len: 4, ..b }));
    }

    #[test]
    fn regex_priority_ignored_for_prefix_and_length_for_regex() {
        let b = base();
        assert_eq!(
            priority_key(&PriorityInput {
                regex_priority: 10,
                path_len: 3,
                ..b
            }),
            priority_key(&PriorityInput {
                regex_priority: -10,
                path_len: 3,
                ..b
            })
        );
        assert_eq!(
            priority_key(&PriorityInput {
                regex: true,
                path_len: 3,
                ..b
            }),
            priority_key(&PriorityInput {
                regex: true,
                path_len: 300,
                ..b
            })
        );
    }
}

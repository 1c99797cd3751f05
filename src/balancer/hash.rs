//! The one hash used for ring points and request keys.
//!
//! FNV-1a (64-bit) followed by MurmurHash3's `fmix64` finalizer. Both are fixed and seedless, so
//! every node, every restart and every rebuilt ring agree on where a key lands; the finalizer
//! fixes FNV-1a's weak high bits, which the ring uses.

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The balancing hash of `bytes`: stable across processes, versions of Rust and machines.
pub fn hash_key(bytes: &[u8]) -> u64 {
    fmix64(fnv1a(FNV_OFFSET, bytes))
}

/// `hash_key` of the concatenation of `parts`, without building it.
pub(crate) fn hash_parts(parts: &[&[u8]]) -> u64 {
    fmix64(parts.iter().fold(FNV_OFFSET, |h, p| fnv1a(h, p)))
}

fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_reference_values() {
        assert_eq!(fnv1a(FNV_OFFSET, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(FNV_OFFSET, b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn hash_key_is_pinned() {
        // Other nodes and older builds map keys with these exact values: never change them.
        assert_eq!(hash_key(b""), PINNED_EMPTY);
        assert_eq!(hash_key(b"10.0.0.1:8080"), PINNED_TARGET);
    }

    #[test]
    fn parts_hash_like_their_concatenation() {
        assert_eq!(
            hash_parts(&[b"10.0.0.1", b":8080"]),
            hash_key(b"10.0.0.1:8080")
        );
    }

    #[test]
    fn high_bits_are_spread() {
        // Sequential keys (user ids) must spread over the ring, which reads the high 32 bits.
        let mut buckets = [0u32; 16];
        for i in 0..16_000u32 {
            buckets[(hash_key(i.to_string().as_bytes()) >> 60) as usize] += 1;
        }
        for b in buckets {
            assert!((850..1150).contains(&b), "{buckets:?}");
        }
    }

    const PINNED_EMPTY: u64 = 0xefd0_1f60_ba99_2926;
    const PINNED_TARGET: u64 = 0xe8c7_2115_6ed5_2b14;
}

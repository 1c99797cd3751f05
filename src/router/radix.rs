//! Compressed byte-radix tree of prefix and exact paths.
//!
//! Contract: keys are arbitrary byte strings, each carrying `u32` values under one of two
//! kinds: *prefix* (the value applies to every path that starts with the key, byte-wise) and
//! *exact* (only to the path equal to the key). [`RadixTree::collect`] walks the request path
//! once, from the root down, and pushes the values of every matching key, in walk order
//! (shorter keys first; within one key, insertion order, then prefix before exact). Lookup
//! cost is bounded by the path length, independent of the number of keys.

/// One node; the root has an empty label.
#[derive(Debug, Default)]
struct Node {
    /// Edge label from the parent (non-empty except for the root).
    label: Box<[u8]>,
    /// Values of the prefix key ending at this node.
    prefix: Vec<u32>,
    /// Values of the exact key ending at this node.
    exact: Vec<u32>,
    /// First byte of each child's label, sorted; parallel to `children`.
    first: Vec<u8>,
    children: Vec<Node>,
}

/// A frozen node (72 bytes): children stored contiguously (breadth-first) in one array,
/// labels, values and extra child keys in shared arenas.
#[derive(Debug, Clone, Copy, Default)]
struct FlatNode {
    /// First label byte of children 0..8, child `i` in byte `i` (little-endian).
    keys: u64,
    /// Number of children.
    n_children: usize,
    /// Start, in the `keys` arena, of the words holding the first bytes of children 8...
    more_keys: usize,
    label_start: usize,
    label_len: usize,
    /// Values: `values[values_start..][..n_prefix]` then `[..n_exact]`.
    values_start: usize,
    n_prefix: usize,
    n_exact: usize,
    /// Index of the first child in the node array.
    first_child: usize,
}

/// Index of byte `b` among the first `n` (≤ 8) bytes of `word`, without branching per byte
/// (SWAR zero-byte search; the lowest hit is exact).
#[inline]
fn find_byte(word: u64, n: usize, b: u8) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let x = word ^ LO.wrapping_mul(u64::from(b));
    let mut hits = x.wrapping_sub(LO) & !x & HI;
    if n < 8 {
        hits &= (1u64 << (n * 8)) - 1;
    }
    (hits != 0).then(|| (hits.trailing_zeros() / 8) as usize)
}

/// A byte-radix tree mapping keys to value lists; see the module docs.
///
/// Built with [`RadixTree::insert`], then [`RadixTree::freeze`] lays it out flat for lookups;
/// [`RadixTree::collect`] sees only what was frozen.
#[derive(Debug, Default)]
pub(crate) struct RadixTree {
    /// Build-time tree (empty once frozen).
    root: Node,
    nodes: Vec<FlatNode>,
    /// First label bytes of children beyond the eighth, 8 per word.
    keys: Vec<u64>,
    labels: Vec<u8>,
    values: Vec<u32>,
    len: usize,
}

/// Which kind of key a value is inserted under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    Prefix,
    Exact,
}

fn common_prefix_len(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl Node {
    fn leaf(label: &[u8]) -> Node {
        Node {
            label: label.into(),
            ..Node::default()
        }
    }

    fn values_mut(&mut self, kind: KeyKind) -> &mut Vec<u32> {
        match kind {
            KeyKind::Prefix => &mut self.prefix,
            KeyKind::Exact => &mut self.exact,
        }
    }

    /// Inserts `value` for `key`, which is relative to this node (its label already consumed).
    fn insert(&mut self, key: &[u8], kind: KeyKind, value: u32) {
        let Some(&b) = key.first() else {
            self.values_mut(kind).push(value);
            return;
        };
        match self.first.binary_search(&b) {
            Err(pos) => {
                let mut leaf = Node::leaf(key);
                leaf.values_mut(kind).push(value);
                self.first.insert(pos, b);
                self.children.insert(pos, leaf);
            }
            Ok(pos) => {
                let child = &mut self.children[pos];
                let common = common_prefix_len(&child.label, key);
                if common < child.label.len() {
                    // Split the edge: `child` becomes the lower half under a new middle node.
                    let mut lower = std::mem::replace(child, Node::leaf(&key[..common]));
                    lower.label = lower.label[common..].into();
                    child.first.push(lower.label[0]);
                    child.children.push(lower);
                }
                child.insert(&key[common..], kind, value);
            }
        }
    }
}

impl RadixTree {
    /// Number of values inserted.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Adds `value` under `key` of the given kind.
    pub(crate) fn insert(&mut self, key: &[u8], kind: KeyKind, value: u32) {
        self.root.insert(key, kind, value);
        self.len += 1;
    }

    fn flatten(&mut self, node: &Node) -> FlatNode {
        let pack = |bytes: &[u8]| {
            bytes
                .iter()
                .rev()
                .fold(0u64, |w, &b| (w << 8) | u64::from(b))
        };
        let (head, tail) = node.first.split_at(node.first.len().min(8));
        let flat = FlatNode {
            keys: pack(head),
            n_children: node.first.len(),
            more_keys: self.keys.len(),
            label_start: self.labels.len(),
            label_len: node.label.len(),
            values_start: self.values.len(),
            n_prefix: node.prefix.len(),
            n_exact: node.exact.len(),
            first_child: 0,
        };
        self.keys.extend(tail.chunks(8).map(pack));
        self.labels.extend_from_slice(&node.label);
        self.values.extend_from_slice(&node.prefix);
        self.values.extend_from_slice(&node.exact);
        flat
    }

    /// Position of the child whose label starts with `b`.
    #[inline]
    fn child_slot(&self, node: &FlatNode, b: u8) -> Option<usize> {
        if let Some(i) = find_byte(node.keys, node.n_children, b) {
            return Some(i);
        }
        let extra = node.n_children.checked_sub(8)?;
        let words = self
            .keys
            .get(node.more_keys..node.more_keys + extra.div_ceil(8))?;
        words.iter().enumerate().find_map(|(w, &word)| {
            let i = find_byte(word, extra - w * 8, b)?;
            Some(8 + w * 8 + i)
        })
    }

    /// Lays the tree out for lookups (breadth-first, so siblings are contiguous) and drops the
    /// build-time tree. Call once, after the last `insert`.
    pub(crate) fn freeze(&mut self) {
        let root = std::mem::take(&mut self.root);
        self.nodes.clear();
        self.keys.clear();
        self.labels.clear();
        self.values.clear();
        let first = self.flatten(&root);
        self.nodes.push(first);
        let mut queue = std::collections::VecDeque::from([(&root, 0usize)]);
        while let Some((node, idx)) = queue.pop_front() {
            let first_child = self.nodes.len();
            if let Some(n) = self.nodes.get_mut(idx) {
                n.first_child = first_child;
            }
            for child in &node.children {
                let flat = self.flatten(child);
                queue.push_back((child, self.nodes.len()));
                self.nodes.push(flat);
            }
        }
        self.nodes.shrink_to_fit();
        self.keys.shrink_to_fit();
        self.labels.shrink_to_fit();
        self.values.shrink_to_fit();
    }

    /// Calls `out` with the values of every key matching `path` (see the module docs).
    #[inline]
    pub(crate) fn collect(&self, path: &[u8], mut out: impl FnMut(&[u32])) {
        let Some(mut node) = self.nodes.first() else {
            return;
        };
        let mut rest = path;
        loop {
            let values = self.values.get(node.values_start..).unwrap_or_default();
            if node.n_prefix > 0 {
                out(values.get(..node.n_prefix).unwrap_or_default());
            }
            let Some(&b) = rest.first() else {
                if node.n_exact > 0 {
                    out(values
                        .get(node.n_prefix..node.n_prefix + node.n_exact)
                        .unwrap_or_default());
                }
                return;
            };
            let Some(slot) = self.child_slot(node, b) else {
                return;
            };
            let Some(child) = self.nodes.get(node.first_child + slot) else {
                return;
            };
            let label = self
                .labels
                .get(child.label_start..child.label_start + child.label_len);
            // The first byte matched via the keys; labels are short, so a byte loop beats
            // a call to memcmp.
            match (label, rest.get(..child.label_len)) {
                (Some(label), Some(head))
                    if head.iter().zip(label).skip(1).all(|(a, b)| a == b) =>
                {
                    rest = &rest[child.label_len..];
                }
                _ => return,
            }
            node = child;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(t: &RadixTree, p: &str) -> Vec<u32> {
        let mut v = Vec::new();
        t.collect(p.as_bytes(), |s| v.extend_from_slice(s));
        v
    }

    #[test]
    fn find_byte_swar() {
        let word = u64::from_le_bytes([b'/', b'a', 0, 0x80, 0xff, b'z', 1, 7]);
        assert_eq!(find_byte(word, 8, b'/'), Some(0));
        assert_eq!(find_byte(word, 8, b'a'), Some(1));
        assert_eq!(find_byte(word, 8, 0), Some(2));
        assert_eq!(find_byte(word, 8, 0x80), Some(3));
        assert_eq!(find_byte(word, 8, 0xff), Some(4));
        assert_eq!(find_byte(word, 8, 7), Some(7));
        assert_eq!(find_byte(word, 7, 7), None);
        assert_eq!(find_byte(word, 2, 0), None);
        assert_eq!(find_byte(word, 8, b'b'), None);
        assert_eq!(find_byte(0, 0, 0), None);
    }

    #[test]
    fn wide_nodes() {
        // The root gets 256 children: exercises the keys arena beyond the inline word.
        let mut t = RadixTree::default();
        for b in 0..=255u8 {
            t.insert(&[b, b'x'], KeyKind::Prefix, u32::from(b));
        }
        t.insert(&[], KeyKind::Exact, 999);
        t.freeze();
        for b in 0..=255u8 {
            let mut got = Vec::new();
            t.collect(&[b, b'x', b'y'], |v| got.extend_from_slice(v));
            assert_eq!(got, vec![u32::from(b)]);
            got.clear();
            t.collect(&[b, b'y'], |v| got.extend_from_slice(v));
            assert!(got.is_empty());
        }
        let mut got = Vec::new();
        t.collect(&[], |v| got.extend_from_slice(v));
        assert_eq!(got, vec![999]);
    }

    #[test]
    fn prefix_and_exact_keys() {
        let mut t = RadixTree::default();
        t.insert(b"/api", KeyKind::Prefix, 1);
        t.insert(b"/api/v1", KeyKind::Prefix, 2);
        t.insert(b"/apix", KeyKind::Exact, 3);
        t.insert(b"/", KeyKind::Prefix, 4);
        t.insert(b"/api/v1", KeyKind::Exact, 5);
        t.insert(b"", KeyKind::Prefix, 6);
        t.insert(b"/ab", KeyKind::Prefix, 7);
        assert_eq!(
            collect(&t, "/api"),
            Vec::<u32>::new(),
            "nothing is visible before freeze"
        );
        t.freeze();
        assert_eq!(t.len(), 7);
        assert_eq!(collect(&t, "/api"), vec![6, 4, 1]);
        assert_eq!(collect(&t, "/apix"), vec![6, 4, 1, 3]);
        assert_eq!(collect(&t, "/apixy"), vec![6, 4, 1]);
        assert_eq!(collect(&t, "/api/v1"), vec![6, 4, 1, 2, 5]);
        assert_eq!(collect(&t, "/api/v1/x"), vec![6, 4, 1, 2]);
        assert_eq!(collect(&t, "/ab"), vec![6, 4, 7]);
        assert_eq!(collect(&t, "/a"), vec![6, 4]);
        assert_eq!(collect(&t, ""), vec![6]);
        assert_eq!(collect(&t, "x"), vec![6]);
    }

    #[test]
    fn splits_keep_values() {
        let mut t = RadixTree::default();
        t.insert(b"/services/abc", KeyKind::Prefix, 1);
        t.insert(b"/services/abd", KeyKind::Prefix, 2);
        t.insert(b"/serv", KeyKind::Prefix, 3);
        t.insert(b"/services/ab", KeyKind::Exact, 4);
        t.insert(b"/services/abc", KeyKind::Prefix, 5);
        t.freeze();
        assert_eq!(collect(&t, "/services/abc/1"), vec![3, 1, 5]);
        assert_eq!(collect(&t, "/services/abd"), vec![3, 2]);
        assert_eq!(collect(&t, "/services/ab"), vec![3, 4]);
        assert_eq!(collect(&t, "/ser"), Vec::<u32>::new());
    }

    #[test]
    fn many_keys_against_naive() {
        let mut t = RadixTree::default();
        let keys: Vec<String> = (0..500).map(|i| format!("/s{}/{}", i % 37, i)).collect();
        for (i, k) in keys.iter().enumerate() {
            let kind = if i % 3 == 0 {
                KeyKind::Exact
            } else {
                KeyKind::Prefix
            };
            t.insert(k.as_bytes(), kind, i as u32);
        }
        t.freeze();
        for probe in [
            "/s1/1",
            "/s1/38",
            "/s1/38x",
            "/s10/10/z",
            "/s3/",
            "/s36/499",
        ] {
            let mut got = collect(&t, probe);
            got.sort_unstable();
            let mut want: Vec<u32> = keys
                .iter()
                .enumerate()
                .filter(|(i, k)| {
                    if i % 3 == 0 {
                        probe == k.as_str()
                    } else {
                        probe.starts_with(k.as_str())
                    }
                })
                .map(|(i, _)| i as u32)
                .collect();
            want.sort_unstable();
            assert_eq!(got, want, "{probe}");
        }
    }
}

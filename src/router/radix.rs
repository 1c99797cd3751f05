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

/// A byte-radix tree mapping keys to value lists; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct RadixTree {
    root: Node,
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

    fn shrink(&mut self) {
        self.prefix.shrink_to_fit();
        self.exact.shrink_to_fit();
        self.first.shrink_to_fit();
        self.children.shrink_to_fit();
        for c in &mut self.children {
            c.shrink();
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

    /// Releases spare capacity once building is complete.
    pub(crate) fn shrink(&mut self) {
        self.root.shrink();
    }

    /// Calls `out` with the values of every key matching `path` (see the module docs).
    #[inline]
    pub(crate) fn collect(&self, path: &[u8], mut out: impl FnMut(&[u32])) {
        let mut node = &self.root;
        let mut rest = path;
        loop {
            if !node.prefix.is_empty() {
                out(&node.prefix);
            }
            let Some(&b) = rest.first() else {
                if !node.exact.is_empty() {
                    out(&node.exact);
                }
                return;
            };
            let Ok(pos) = node.first.binary_search(&b) else {
                return;
            };
            let child = &node.children[pos];
            match rest.strip_prefix(&*child.label) {
                Some(r) => rest = r,
                None => return,
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
    fn prefix_and_exact_keys() {
        let mut t = RadixTree::default();
        t.insert(b"/api", KeyKind::Prefix, 1);
        t.insert(b"/api/v1", KeyKind::Prefix, 2);
        t.insert(b"/apix", KeyKind::Exact, 3);
        t.insert(b"/", KeyKind::Prefix, 4);
        t.insert(b"/api/v1", KeyKind::Exact, 5);
        t.insert(b"", KeyKind::Prefix, 6);
        t.insert(b"/ab", KeyKind::Prefix, 7);
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
        t.shrink();
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

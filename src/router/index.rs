//! Per-host-bucket path index and the candidate buffer used by lookups.
//!
//! Contract: every (route, path) pair is an [`Entry`] identified by its *rank* (its position in
//! the global precedence order, smaller = tried first). A [`PathIndex`] holds the ranks of the
//! entries attached to one host bucket: prefix and literal paths in a radix tree, regex paths
//! with a literal prefix in the same tree under that prefix, regex paths without one in a
//! list (pre-filtered by a `RegexSet` when large), and path-less entries in a list.
//! [`PathIndex::collect`] pushes every rank whose path *may* match the request path: prefix,
//! exact and path-less entries are guaranteed path matches; regex entries must still be checked
//! with [`Entry::match_path`]. Collection does not allocate unless the buffer spills (more than
//! [`INLINE_CANDIDATES`] candidates) or a `RegexSet` runs.

use regex::{RegexSet, RegexSetBuilder};

use super::compile::{PathRegex, PathSpec};
use super::matchers::REGEX_SIZE_LIMIT;
use super::radix::{KeyKind, RadixTree};

/// Regex lists at least this long get a `RegexSet` pre-filter.
const REGEX_SET_MIN: usize = 16;

/// Candidates held on the stack before spilling to the heap.
pub(crate) const INLINE_CANDIDATES: usize = 32;

/// How an entry's path criterion is satisfied.
#[derive(Debug)]
pub(crate) enum EntryPath {
    /// The route has no paths.
    Any,
    /// A prefix (plain or literal regex) of this many bytes.
    Prefix(usize),
    /// An exact path (literal regex ending in `$`): consumes the whole request path.
    Exact,
    /// A real regex, anchored at the start of the path.
    Regex(Box<PathRegex>),
}

/// One (route, path) pair.
#[derive(Debug)]
pub(crate) struct Entry {
    /// Index of the route in the router's route table.
    pub route: u32,
    pub path: EntryPath,
}

impl Entry {
    pub(crate) fn new(route: u32, path: Option<&PathSpec>) -> Entry {
        let path = match path {
            None => EntryPath::Any,
            Some(PathSpec::Prefix(p)) => EntryPath::Prefix(p.len()),
            Some(PathSpec::Literal {
                literal,
                exact: false,
            }) => EntryPath::Prefix(literal.len()),
            Some(PathSpec::Literal { exact: true, .. }) => EntryPath::Exact,
            Some(PathSpec::Regex(re)) => EntryPath::Regex(re.clone()),
        };
        Entry { route, path }
    }

    /// For a collected candidate: the matched path length, or `None` if its regex fails.
    #[inline]
    pub(crate) fn match_path(&self, path: &str) -> Option<usize> {
        match &self.path {
            EntryPath::Any => Some(0),
            EntryPath::Prefix(n) => Some(*n),
            EntryPath::Exact => Some(path.len()),
            EntryPath::Regex(re) => re.regex.find(path).map(|m| m.end()),
        }
    }
}

/// The path index of one host bucket; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct PathIndex {
    tree: RadixTree,
    regex: Vec<u32>,
    regex_set: Option<RegexSet>,
    no_path: Vec<u32>,
}

impl PathIndex {
    /// Adds entry `rank`; ranks must be added in ascending order.
    pub(crate) fn insert(&mut self, rank: u32, path: Option<&PathSpec>) {
        match path {
            None => self.no_path.push(rank),
            Some(PathSpec::Prefix(p)) => self.tree.insert(p.as_bytes(), KeyKind::Prefix, rank),
            Some(PathSpec::Literal { literal, exact }) => {
                let kind = if *exact {
                    KeyKind::Exact
                } else {
                    KeyKind::Prefix
                };
                self.tree.insert(literal.as_bytes(), kind, rank);
            }
            // Regexes with a literal prefix are candidates only below that prefix.
            Some(PathSpec::Regex(re)) if !re.prefix.is_empty() => {
                self.tree
                    .insert(re.prefix.as_bytes(), KeyKind::Prefix, rank);
            }
            Some(PathSpec::Regex(_)) => self.regex.push(rank),
        }
    }

    /// Finalises the index once all entries are inserted.
    pub(crate) fn finish(&mut self, entries: &[Entry]) {
        self.tree.freeze();
        self.regex.shrink_to_fit();
        self.no_path.shrink_to_fit();
        if self.regex.len() < REGEX_SET_MIN {
            return;
        }
        let patterns =
            self.regex
                .iter()
                .filter_map(|&rank| match &entries.get(rank as usize)?.path {
                    EntryPath::Regex(re) => Some(re.regex.as_str()),
                    _ => None,
                });
        let set = RegexSetBuilder::new(patterns)
            .size_limit(REGEX_SIZE_LIMIT.saturating_mul(self.regex.len().min(64)))
            .build();
        // Without a usable set every regex entry is simply a candidate.
        self.regex_set = set.ok().filter(|s| s.len() == self.regex.len());
    }

    /// Pushes the ranks of all entries that may match `path`; see the module docs.
    #[inline]
    pub(crate) fn collect(&self, path: &str, out: &mut CandBuf) {
        if !self.no_path.is_empty() {
            out.extend(&self.no_path);
        }
        self.tree
            .collect(path.as_bytes(), |ranks| out.extend(ranks));
        if self.regex.is_empty() {
            return;
        }
        match &self.regex_set {
            None => out.extend(&self.regex),
            Some(set) => {
                for i in set.matches(path).iter() {
                    if let Some(&rank) = self.regex.get(i) {
                        out.push(rank);
                    }
                }
            }
        }
    }
}

/// A small-vector of candidate ranks: inline up to [`INLINE_CANDIDATES`], then on the heap.
#[derive(Debug)]
pub(crate) struct CandBuf {
    inline: [u32; INLINE_CANDIDATES],
    len: usize,
    spill: Vec<u32>,
}

impl CandBuf {
    pub(crate) fn new() -> CandBuf {
        CandBuf {
            inline: [0; INLINE_CANDIDATES],
            len: 0,
            spill: Vec::new(),
        }
    }

    #[inline]
    pub(crate) fn extend(&mut self, ranks: &[u32]) {
        // Lists are usually tiny: a loop beats a call to memcpy.
        for &r in ranks {
            self.push(r);
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, rank: u32) {
        match self.inline.get_mut(self.len) {
            Some(slot) if self.spill.is_empty() => {
                *slot = rank;
                self.len += 1;
            }
            _ => self.push_spilled(rank),
        }
    }

    #[cold]
    fn push_spilled(&mut self, rank: u32) {
        if self.spill.is_empty() {
            self.spill.reserve(INLINE_CANDIDATES * 4);
            self.spill.extend_from_slice(&self.inline[..self.len]);
        }
        self.spill.push(rank);
    }

    /// Sorts the candidates into precedence order, removes duplicates and returns them.
    pub(crate) fn sorted(&mut self) -> &[u32] {
        if self.spill.is_empty() && self.len <= 1 {
            return &self.inline[..self.len];
        }
        let slice: &mut [u32] = if self.spill.is_empty() {
            &mut self.inline[..self.len]
        } else {
            &mut self.spill
        };
        slice.sort_unstable();
        let mut w = 0;
        for r in 0..slice.len() {
            if w == 0 || slice[r] != slice[w - 1] {
                slice[w] = slice[r];
                w += 1;
            }
        }
        if self.spill.is_empty() {
            self.len = w;
            &self.inline[..w]
        } else {
            self.spill.truncate(w);
            &self.spill
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candbuf_spills_and_dedups() {
        let mut b = CandBuf::new();
        b.extend(&[5, 3, 3]);
        b.push(1);
        assert_eq!(b.sorted(), &[1, 3, 5]);
        let mut b = CandBuf::new();
        let many: Vec<u32> = (0..100).rev().chain(0..10).collect();
        b.extend(&many[..20]);
        b.extend(&many[20..]);
        let want: Vec<u32> = (0..100).collect();
        assert_eq!(b.sorted(), &want[..]);
        let mut empty = CandBuf::new();
        assert!(empty.sorted().is_empty());
    }
}

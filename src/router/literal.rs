//! Literal analysis of path regexes, so that regex routes can be indexed by the radix tree.
//!
//! Contract (both functions take the regex source after `~`, already known to compile, and
//! reason about `^(?:source)`; both are conservative: when unsure they answer "no literal"):
//! - [`literal_of_regex`]: `Some((lit, exact))` iff the regex matches exactly the paths that
//!   start with `lit` (`exact == false`) or equal `lit` (`exact == true`, source ended in `$`).
//! - [`literal_prefix_of_regex`]: a string `p` such that every path the regex matches starts
//!   with `p` (possibly empty). The regex still has to be evaluated; `p` only narrows the
//!   candidates.

/// Characters that are regex syntax outside a character class.
fn is_meta(c: char) -> bool {
    matches!(
        c,
        '\\' | '.' | '+' | '*' | '?' | '(' | ')' | '|' | '[' | ']' | '{' | '}' | '^' | '$'
    )
}

/// If `re` is only a literal (optionally followed by a final `$`), returns it unescaped.
pub(crate) fn literal_of_regex(re: &str) -> Option<(String, bool)> {
    let mut out = String::with_capacity(re.len());
    let mut chars = re.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e) if e.is_ascii_punctuation() => out.push(e),
                _ => return None,
            },
            '$' if chars.peek().is_none() => return Some((out, true)),
            c if is_meta(c) => return None,
            _ => out.push(c),
        }
    }
    Some((out, false))
}

/// Whether `re` has an alternation `|` outside every group and class, or anything that makes
/// that question hard to answer (the `x` flag, where `#` starts comments).
fn may_alternate_at_top_level(re: &str) -> bool {
    // Flag groups: `(?flags)` or `(?flags:...)`, flags among `imsRUux-`.
    let x_flag = re.split("(?").skip(1).any(|s| {
        s.chars()
            .take_while(|c| matches!(c, 'i' | 'm' | 's' | 'R' | 'U' | 'u' | 'x' | '-'))
            .any(|c| c == 'x')
    });
    if x_flag {
        return true;
    }
    let mut groups = 0usize;
    let mut classes = 0usize;
    let mut chars = re.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '[' => {
                classes += 1;
                // A `]` (after an optional `^`) right at the start of a class is literal.
                if chars.peek() == Some(&'^') {
                    chars.next();
                }
                if chars.peek() == Some(&']') {
                    chars.next();
                }
            }
            ']' if classes > 0 => classes -= 1,
            _ if classes > 0 => {}
            '(' => groups += 1,
            ')' => match groups.checked_sub(1) {
                Some(g) => groups = g,
                None => return true,
            },
            '|' if groups == 0 => return true,
            _ => {}
        }
    }
    // Unbalanced input cannot have compiled; treat it as unknown anyway.
    groups != 0 || classes != 0
}

/// A literal every match of `^(?:re)` starts with; see the module docs.
pub(crate) fn literal_prefix_of_regex(re: &str) -> String {
    if may_alternate_at_top_level(re) {
        return String::new();
    }
    let mut out = String::new();
    let mut chars = re.chars().peekable();
    while let Some(c) = chars.next() {
        let lit = match c {
            '\\' => match chars.next() {
                Some(e) if e.is_ascii_punctuation() => e,
                _ => break,
            },
            c if is_meta(c) => break,
            c => c,
        };
        // A quantified character is not certain to be there.
        if matches!(chars.peek(), Some('?' | '*' | '+' | '{')) {
            break;
        }
        out.push(lit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_regex_detection() {
        assert_eq!(literal_of_regex("/health$"), Some(("/health".into(), true)));
        assert_eq!(literal_of_regex("/api"), Some(("/api".into(), false)));
        assert_eq!(
            literal_of_regex("/a\\.json$"),
            Some(("/a.json".into(), true))
        );
        assert_eq!(literal_of_regex("/cost\\$"), Some(("/cost$".into(), false)));
        assert_eq!(
            literal_of_regex("/a b-c_~%20$"),
            Some(("/a b-c_~%20".into(), true))
        );
        assert_eq!(literal_of_regex(""), Some((String::new(), false)));
        for not in [
            "/a.json$", "/a$/b", "/a$$", "/a\\d$", "/(a)$", "/a|/b", "/a+$", "/a?", "^/a",
        ] {
            assert_eq!(literal_of_regex(not), None, "{not}");
        }
    }

    #[test]
    fn literal_prefixes() {
        let cases = [
            (r"/users/\d+$", "/users/"),
            (r"/users/(?<id>\d+)", "/users/"),
            (r"/api/(users|groups)/\d+", "/api/"),
            (r"/v1\.0/x.*", "/v1.0/x"),
            ("/ab?c", "/a"),
            ("/ab*", "/a"),
            ("/ab+", "/a"),
            ("/ab{2}", "/a"),
            (r"/a\.?", "/a"),
            ("/a|/b", ""),
            ("/a(x)|/b", ""),
            ("/a[|]b", "/a"),
            ("/a[]|]b", "/a"),
            ("/a[^]|]b", "/a"),
            (r"/a\|b", "/a|b"),
            ("/a(?i)b", "/a"),
            ("/a(?x)b # (\n|/c", ""),
            ("(?i)/a", ""),
            (r"/users/(?<index>\d+)", "/users/"),
            (r"/users/(?P<xid>\d+)", "/users/"),
            ("/a(?-x:b)|c", ""),
            (".*", ""),
            (r"\d+", ""),
            ("/é/ü", "/é/ü"),
            ("/x$", "/x"),
        ];
        for (re, want) in cases {
            assert_eq!(literal_prefix_of_regex(re), want, "{re}");
        }
    }

    #[test]
    fn prefixes_are_sound() {
        // Every path a regex matches must start with the extracted prefix.
        let regexes = [
            r"/users/\d+$",
            "/ab?c",
            "/a|/b",
            "/a(x)|/b",
            "/a[|]b",
            "/ab{0,2}c",
            r"/a\.?b",
            "/a(?i)b",
            "/x(y|z)*",
            "/q[a-c]+/?",
            "/(?:a|ab)c",
        ];
        let paths = [
            "/", "/a", "/ab", "/ac", "/abc", "/abbc", "/b", "/a|b", "/aB", "/ax", "/x", "/xy",
            "/xyz", "/q", "/qa/", "/users/1", "/a.b", "/abc/d", "/ac/x",
        ];
        for re in regexes {
            let prefix = literal_prefix_of_regex(re);
            let compiled = regex::Regex::new(&format!("^(?:{re})")).expect("regex");
            for p in paths {
                if compiled.is_match(p) {
                    assert!(
                        p.starts_with(&prefix),
                        "{re:?} matched {p:?} without {prefix:?}"
                    );
                }
            }
        }
    }
}

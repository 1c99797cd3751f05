//! Scale and differential tests: 10,000-route tables and a brute-force oracle.
//!
//! Contract: test-only. The oracle re-implements the documented semantics naively (every
//! route, every path, full precedence tuple) so that the indexed router can be compared with
//! it on pseudo-random route tables and requests.

use http::Method;

use super::test_util::{Req, Spec, find, get, req, route_of, router, spec};
use super::{RouteMatch, RouterBuilder};

#[test]
fn ten_thousand_mixed_routes() {
    let mut specs = Vec::new();
    for i in 0..10_000 {
        specs.push(match i % 5 {
            0 | 1 => spec().path(&format!("/svc{i}/v1")),
            2 => spec().path(&format!("~/svc{i}/health$")),
            3 => spec().host(&format!("svc{i}.example.com")).path("/"),
            _ => spec()
                .host(&format!("*.svc{i}.internal"))
                .path(&format!("/p{i}"))
                .method("GET"),
        });
    }
    specs.push(spec().path("/"));
    let r = router(&specs);
    assert_eq!(r.len(), 10_001);
    for i in (0..10_000).step_by(7) {
        let (q, want) = match i % 5 {
            0 | 1 => (get(&format!("/svc{i}/v1/users")), i),
            2 => (get(&format!("/svc{i}/health")), i),
            3 => (
                get("/anything").host(&format!("SVC{i}.example.com:8080")),
                i,
            ),
            _ => (
                get(&format!("/p{i}/x")).host(&format!("a.b.svc{i}.internal")),
                i,
            ),
        };
        assert_eq!(route_of(&r, &q), Some(want), "{q:?}");
    }
    // Near misses fall back to the catch-all route.
    assert_eq!(route_of(&r, &get("/svc0/v2")), Some(10_000));
    assert_eq!(route_of(&r, &get("/svc2/health/x")), Some(10_000));
    assert_eq!(route_of(&r, &get("/svc1/v")), Some(10_000));
    assert_eq!(
        route_of(&r, &get("/p4/x").host("svc4.internal")),
        Some(10_000)
    );
    assert_eq!(
        find(&r, &req("POST", "x.svc4.internal", "/p4")),
        RouteMatch::Matched(super::Matched {
            route: 10_000,
            matched_path_len: 1,
            captures: None
        })
    );
}

#[test]
fn ten_thousand_prefix_routes_without_fallback() {
    let mut b = RouterBuilder::new();
    for i in 0..10_000 {
        assert!(b.add(i, &spec().path(&format!("/svc{i}/v1")).0).is_ok());
    }
    let r = b.build();
    for i in 0..10_000 {
        assert_eq!(route_of(&r, &get(&format!("/svc{i}/v1/x"))), Some(i));
    }
    assert_eq!(find(&r, &get("/svc10000/v1")), RouteMatch::NotFound);
    assert_eq!(find(&r, &get("/svc1/v")), RouteMatch::NotFound);
}

/// xorshift64*: deterministic pseudo-random numbers for the differential test.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const HOSTS: &[&str] = &[
    "a.com",
    "b.a.com",
    "x.b.a.com",
    "a.org",
    "c.net",
    "a.com:81",
];
const ROUTE_HOSTS: &[&str] = &[
    "a.com",
    "b.a.com",
    "*.a.com",
    "a.*",
    "c.net",
    "a.com:81",
    "*.b.a.com",
];
const SEGMENTS: &[&str] = &[
    "", "/", "/a", "/ab", "/a/b", "/a/b/c", "/x", "/x/1", "/x/22", "/y/a",
];
const REGEXES: &[&str] = &[
    r"~/x/\d+$",
    r"~/x/(\d)",
    "~/a/b$",
    "~/a",
    r"~/(?<s>\w)/",
    "~/y/a$",
    "~/(?:a|x)/",
    "~/a|/y",
    "~/ab?",
    "~.*b",
    r"~/x/2\d*",
];
const METHODS: &[&str] = &["GET", "POST", "PUT"];

/// Naive reference semantics.
mod oracle {
    use std::sync::OnceLock;

    use super::Spec;

    /// The precedence tuple, compared lexicographically.
    type Key = (usize, bool, usize, bool, i64, usize);

    fn compiled_regexes() -> &'static [regex::Regex] {
        static CELL: OnceLock<Vec<regex::Regex>> = OnceLock::new();
        CELL.get_or_init(|| {
            super::REGEXES
                .iter()
                .map(|r| regex::Regex::new(&format!("^(?:{})", &r[1..])).expect("regex"))
                .collect()
        })
    }

    fn host_matches(pattern: &str, request: &str) -> bool {
        let request = request.to_ascii_lowercase();
        let (rname, rport) = match request.split_once(':') {
            Some((n, p)) => (n.to_owned(), Some(p.to_owned())),
            None => (request.clone(), None),
        };
        let (pname, pport) = match pattern.split_once(':') {
            Some((n, p)) => (n, Some(p.to_owned())),
            None => (pattern, None),
        };
        if pport.is_some() && pport != rport {
            return false;
        }
        if let Some(suffix) = pname.strip_prefix('*') {
            rname.len() > suffix.len() && rname.ends_with(suffix)
        } else if let Some(prefix) = pname.strip_suffix('*') {
            rname.len() > prefix.len() && rname.starts_with(prefix)
        } else {
            rname == pname
        }
    }

    /// Returns Some((matched, key)) for a (route, path) pair whose non-method criteria match.
    fn pair(s: &Spec, path: Option<&str>, q: &super::Req) -> Option<(usize, Key)> {
        let s = &s.0;
        if !s.hosts.is_empty() && !s.hosts.iter().any(|h| host_matches(h, &q.host)) {
            return None;
        }
        let headers_ok = s.headers.iter().all(|(n, vals)| {
            q.headers.get_all(n.as_str()).iter().any(|v| {
                vals.iter()
                    .any(|x| x.as_bytes().eq_ignore_ascii_case(v.as_bytes()))
            })
        });
        if !headers_ok {
            return None;
        }
        let (len, regex) = match path {
            None => (0, false),
            Some(p) => match p.strip_prefix('~') {
                Some(re) => {
                    let i = super::REGEXES.iter().position(|r| r[1..] == *re)?;
                    (compiled_regexes()[i].find(&q.path)?.end(), true)
                }
                None => (q.path.starts_with(p).then_some(p.len())?, false),
            },
        };
        let criteria = [
            !s.methods.is_empty(),
            !s.hosts.is_empty(),
            !s.paths.is_empty(),
            !s.headers.is_empty(),
            !s.query_params.is_empty(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        let plain = !s.hosts.is_empty() && s.hosts.iter().all(|h| !h.contains('*'));
        let key = (
            criteria,
            plain,
            s.headers.len(),
            regex,
            if regex { s.regex_priority } else { 0 },
            if regex { 0 } else { path.map_or(0, str::len) },
        );
        Some((len, key))
    }

    /// (route id, matched_path_len), or Err(allow) / Err(empty) for 405 / 404.
    pub(super) fn find(specs: &[Spec], q: &super::Req) -> Result<(usize, usize), Vec<String>> {
        let mut best: Option<(Key, usize, usize)> = None;
        let mut allow = Vec::new();
        for (id, s) in specs.iter().enumerate() {
            let paths: Vec<Option<&str>> = if s.0.paths.is_empty() {
                vec![None]
            } else {
                s.0.paths.iter().map(|p| Some(p.as_str())).collect()
            };
            for p in paths {
                let Some((len, key)) = pair(s, p, q) else {
                    continue;
                };
                if !s.0.methods.is_empty() && !s.0.methods.iter().any(|m| m == q.method.as_str()) {
                    allow.extend(s.0.methods.iter().cloned());
                    continue;
                }
                if best.as_ref().is_none_or(|(k, _, _)| key > *k) {
                    best = Some((key, id, len));
                }
            }
        }
        match best {
            Some((_, id, len)) => Ok((id, len)),
            None => {
                allow.sort();
                allow.dedup();
                Err(allow)
            }
        }
    }
}

fn random_spec(rng: &mut Rng) -> Spec {
    let mut s = spec();
    loop {
        if rng.below(3) == 0 {
            for _ in 0..=rng.below(2) {
                s = s.host(rng.pick(ROUTE_HOSTS));
            }
        }
        if rng.below(4) != 0 {
            for _ in 0..=rng.below(2) {
                let p = if rng.below(3) == 0 {
                    rng.pick(REGEXES)
                } else {
                    rng.pick(&SEGMENTS[1..])
                };
                s = s.path(p);
            }
        }
        if rng.below(3) == 0 {
            s = s.method(rng.pick(METHODS));
        }
        if rng.below(5) == 0 {
            s = s.header("x-h", &[rng.pick(&["1", "2"])]);
        }
        if rng.below(7) == 0 {
            s = s.header("x-k", &["k"]);
        }
        if !s.0.hosts.is_empty()
            || !s.0.paths.is_empty()
            || !s.0.methods.is_empty()
            || !s.0.headers.is_empty()
        {
            s = s.prio(rng.below(3) as i64 - 1);
            return s;
        }
    }
}

fn random_request(rng: &mut Rng) -> Req {
    let mut q = req(rng.pick(METHODS), rng.pick(HOSTS), rng.pick(SEGMENTS));
    if rng.below(2) == 0 {
        q = q.header("x-h", rng.pick(&["1", "2", "3"]));
    }
    if rng.below(3) == 0 {
        q = q.header("X-K", "K");
    }
    q
}

#[test]
fn differential_against_oracle() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for round in 0..40 {
        let n = 1 + rng.below(if round % 4 == 0 { 400 } else { 25 });
        let specs: Vec<Spec> = (0..n).map(|_| random_spec(&mut rng)).collect();
        let r = router(&specs);
        for _ in 0..300 {
            let q = random_request(&mut rng);
            let want = oracle::find(&specs, &q);
            let got = match find(&r, &q) {
                RouteMatch::Matched(m) => Ok((m.route, m.matched_path_len)),
                RouteMatch::MethodNotAllowed { allow } => {
                    assert!(!allow.is_empty());
                    Err(allow.iter().map(Method::to_string).collect())
                }
                RouteMatch::NotFound => Err(Vec::new()),
            };
            assert_eq!(
                got, want,
                "round {round}, request {q:?}\nroutes: {specs:#?}"
            );
        }
    }
}

//! Matching tests: each criterion alone and combined, 404/405, captures and path lengths.
//!
//! Contract: test-only; covers the matching semantics stated in the router's module docs.

use http::Method;

use super::test_util::{find, get, req, route_of, router, spec};
use super::{Captures, Matched, RouteMatch, Router};

fn matched(r: &Router, q: &super::test_util::Req) -> Matched {
    match find(r, q) {
        RouteMatch::Matched(m) => m,
        other => panic!("expected a match for {q:?}, got {other:?}"),
    }
}

#[test]
fn empty_router_is_not_found() {
    let r = router(&[]);
    assert!(r.is_empty());
    assert_eq!(r.len(), 0);
    assert_eq!(find(&r, &get("/")), RouteMatch::NotFound);
}

#[test]
fn prefix_paths_are_byte_prefixes() {
    let r = router(&[spec().path("/api")]);
    assert_eq!(r.len(), 1);
    for p in ["/api", "/api/", "/api/x/y", "/apix", "/api?"] {
        assert_eq!(route_of(&r, &get(p)), Some(0), "{p}");
    }
    for p in ["/", "/ap", "/API", "api", "", "/v1/api"] {
        assert_eq!(route_of(&r, &get(p)), None, "{p}");
    }
    assert_eq!(matched(&r, &get("/api/x")).matched_path_len, 4);
}

#[test]
fn root_path_matches_everything_starting_with_slash() {
    let r = router(&[spec().path("/")]);
    assert_eq!(route_of(&r, &get("/")), Some(0));
    assert_eq!(route_of(&r, &get("/anything/at/all")), Some(0));
    assert_eq!(route_of(&r, &get("")), None);
}

#[test]
fn any_path_of_a_route_may_match() {
    let r = router(&[spec().path("/a").path("/b")]);
    assert_eq!(route_of(&r, &get("/a/1")), Some(0));
    assert_eq!(route_of(&r, &get("/b/1")), Some(0));
    assert_eq!(route_of(&r, &get("/c")), None);
    assert_eq!(matched(&r, &get("/b/1")).matched_path_len, 2);
}

#[test]
fn regex_paths_are_anchored_at_the_start() {
    let r = router(&[spec().path(r"~/users/\d+")]);
    assert_eq!(route_of(&r, &get("/users/42")), Some(0));
    assert_eq!(route_of(&r, &get("/users/42/posts")), Some(0));
    assert_eq!(route_of(&r, &get("/v1/users/42")), None);
    assert_eq!(route_of(&r, &get("/users/x")), None);
    let m = matched(&r, &get("/users/42/posts"));
    assert_eq!(m.matched_path_len, "/users/42".len());
    assert_eq!(m.captures, None);
}

#[test]
fn regex_alternation_is_anchored_as_a_whole() {
    let r = router(&[spec().path("~/a|/b")]);
    assert_eq!(route_of(&r, &get("/a")), Some(0));
    assert_eq!(route_of(&r, &get("/b")), Some(0));
    assert_eq!(route_of(&r, &get("/x/b")), None);
}

#[test]
fn regex_with_dollar_is_an_exact_path() {
    let r = router(&[spec().path(r"~/users/\d+$")]);
    assert_eq!(route_of(&r, &get("/users/42")), Some(0));
    assert_eq!(route_of(&r, &get("/users/42/")), None);
}

#[test]
fn literal_regexes_behave_like_the_regex() {
    // Indexed as exact / prefix paths, but must match exactly what the regex would.
    let r = router(&[
        spec().path("~/health$"),
        spec().path("~/static"),
        spec().path(r"~/file\.json$"),
        spec().path(r"~/price\$"),
    ]);
    let cases = [
        ("/health", Some(0), 7),
        ("/health/", None, 0),
        ("/healthz", None, 0),
        ("/Health", None, 0),
        ("/static", Some(1), 7),
        ("/static/x.css", Some(1), 7),
        ("/staticx", Some(1), 7),
        ("/file.json", Some(2), 10),
        ("/fileXjson", None, 0),
        ("/file.json5", None, 0),
        ("/price$", Some(3), 7),
        ("/price$9", Some(3), 7),
        ("/price", None, 0),
    ];
    for (path, want, len) in cases {
        match find(&r, &get(path)) {
            RouteMatch::Matched(m) => {
                assert_eq!(Some(m.route), want, "{path}");
                assert_eq!(m.matched_path_len, len, "{path}");
                assert_eq!(m.captures, None, "{path}");
            }
            other => assert_eq!(want, None, "{path}: {other:?}"),
        }
    }
    // Cross-check against the regex crate for the literal patterns.
    for (pat, paths) in [
        ("/health$", ["/health", "/health/", "/healt"]),
        ("/static", ["/static", "/stat", "/static/"]),
    ] {
        let re = regex::Regex::new(&format!("^(?:{pat})")).expect("regex");
        let one = router(&[spec().path(&format!("~{pat}"))]);
        for p in paths {
            assert_eq!(
                route_of(&one, &get(p)).is_some(),
                re.is_match(p),
                "{pat} {p}"
            );
        }
    }
}

#[test]
fn captures_named_and_unnamed() {
    let r = router(&[spec().path(r"~/users/(?<id>\d+)/(\w+)(?:/(x))?(?P<rest>/.*)?$")]);
    let m = matched(&r, &get("/users/42/posts/tail"));
    assert_eq!(m.route, 0);
    assert_eq!(m.matched_path_len, "/users/42/posts/tail".len());
    let caps = m.captures.expect("captures");
    assert_eq!(
        *caps,
        Captures {
            unnamed: vec!["42".into(), "posts".into(), String::new(), "/tail".into()],
            named: vec![("id".into(), "42".into()), ("rest".into(), "/tail".into())],
        }
    );
    let m = matched(&r, &get("/users/7/a"));
    let caps = m.captures.expect("captures");
    assert_eq!(
        caps.unnamed,
        vec!["7".to_owned(), "a".into(), String::new(), String::new()]
    );
    assert_eq!(
        caps.named,
        vec![
            ("id".to_owned(), "7".to_owned()),
            ("rest".into(), String::new())
        ]
    );
}

#[test]
fn unnamed_only_captures() {
    let r = router(&[spec().path(r"~/(\w+)/(\d+)")]);
    let m = matched(&r, &get("/items/12/more"));
    assert_eq!(m.matched_path_len, "/items/12".len());
    let caps = m.captures.expect("captures");
    assert_eq!(caps.unnamed, vec!["items".to_owned(), "12".into()]);
    assert!(caps.named.is_empty());
}

#[test]
fn methods_are_exact_and_case_sensitive() {
    let r = router(&[spec().method("GET").method("HEAD"), spec().method("PURGE")]);
    assert_eq!(route_of(&r, &req("GET", "", "/x")), Some(0));
    assert_eq!(route_of(&r, &req("HEAD", "", "/")), Some(0));
    assert_eq!(route_of(&r, &req("PURGE", "", "/")), Some(1));
    assert_eq!(route_of(&r, &req("get", "", "/")), None);
    assert_eq!(matched(&r, &req("GET", "", "/x")).matched_path_len, 0);
}

#[test]
fn hosts_plain_case_insensitive_and_port_rules() {
    let r = router(&[
        spec().host("Example.com"),
        spec().host("api.example.com:8080"),
    ]);
    assert_eq!(route_of(&r, &get("/").host("example.com")), Some(0));
    assert_eq!(route_of(&r, &get("/").host("EXAMPLE.COM")), Some(0));
    assert_eq!(route_of(&r, &get("/").host("example.com:1234")), Some(0));
    assert_eq!(route_of(&r, &get("/").host("example.org")), None);
    assert_eq!(route_of(&r, &get("/").host("www.example.com")), None);
    assert_eq!(route_of(&r, &get("/").host("")), None);
    assert_eq!(
        route_of(&r, &get("/").host("api.example.com:8080")),
        Some(1)
    );
    assert_eq!(
        route_of(&r, &get("/").host("API.example.com:8080")),
        Some(1)
    );
    assert_eq!(route_of(&r, &get("/").host("api.example.com")), None);
    assert_eq!(route_of(&r, &get("/").host("api.example.com:8081")), None);
}

#[test]
fn ipv6_hosts() {
    let r = router(&[spec().host("[::1]:8000"), spec().host("[2001:db8::1]")]);
    assert_eq!(route_of(&r, &get("/").host("[::1]:8000")), Some(0));
    assert_eq!(
        route_of(&r, &get("/").host("[0:0:0:0:0:0:0:1]:8000")),
        Some(0)
    );
    assert_eq!(route_of(&r, &get("/").host("[::1]")), None);
    assert_eq!(route_of(&r, &get("/").host("[2001:DB8::1]:443")), Some(1));
    assert_eq!(route_of(&r, &get("/").host("[2001:db8::2]")), None);
}

#[test]
fn wildcard_suffix_hosts() {
    let r = router(&[spec().host("*.example.com")]);
    for h in [
        "a.example.com",
        "a.b.example.com",
        "A.Example.COM:99",
        "x-1.example.com",
    ] {
        assert_eq!(route_of(&r, &get("/").host(h)), Some(0), "{h}");
    }
    for h in [
        "example.com",
        ".example.com",
        "aexample.com",
        "a.example.org",
        "a.example.com.au",
    ] {
        assert_eq!(route_of(&r, &get("/").host(h)), None, "{h}");
    }
}

#[test]
fn wildcard_prefix_hosts() {
    let r = router(&[spec().host("example.*")]);
    for h in [
        "example.com",
        "example.org:8080",
        "EXAMPLE.co.uk",
        "example.x",
    ] {
        assert_eq!(route_of(&r, &get("/").host(h)), Some(0), "{h}");
    }
    for h in ["example", "example.", "www.example.com", "examples.com"] {
        assert_eq!(route_of(&r, &get("/").host(h)), None, "{h}");
    }
}

#[test]
fn wildcard_hosts_with_port() {
    let r = router(&[
        spec().host("*.example.com:8443"),
        spec().host("example.*:81"),
    ]);
    assert_eq!(route_of(&r, &get("/").host("a.example.com:8443")), Some(0));
    assert_eq!(route_of(&r, &get("/").host("a.example.com")), None);
    assert_eq!(route_of(&r, &get("/").host("a.example.com:443")), None);
    assert_eq!(route_of(&r, &get("/").host("example.net:81")), Some(1));
    assert_eq!(route_of(&r, &get("/").host("example.net")), None);
}

#[test]
fn any_host_of_a_route_may_match() {
    let r = router(&[spec().host("a.com").host("*.b.com").host("c.*").path("/p")]);
    for h in ["a.com", "x.b.com", "c.io"] {
        assert_eq!(route_of(&r, &get("/p").host(h)), Some(0), "{h}");
    }
    assert_eq!(route_of(&r, &get("/p").host("b.com")), None);
    assert_eq!(route_of(&r, &get("/q").host("a.com")), None);
}

#[test]
fn headers_exact_is_case_insensitive_any_occurrence() {
    let r = router(&[spec().header("X-API-Version", &["v2", "v3"])]);
    assert_eq!(
        route_of(&r, &get("/").header("x-api-version", "v2")),
        Some(0)
    );
    assert_eq!(
        route_of(&r, &get("/").header("X-Api-Version", "V3")),
        Some(0)
    );
    assert_eq!(
        route_of(
            &r,
            &get("/")
                .header("x-api-version", "v1")
                .header("x-api-version", "v3")
        ),
        Some(0)
    );
    assert_eq!(route_of(&r, &get("/").header("x-api-version", "v22")), None);
    assert_eq!(route_of(&r, &get("/").header("x-api-version", " v2")), None);
    assert_eq!(route_of(&r, &get("/")), None);
}

#[test]
fn headers_regex_is_unanchored_and_case_insensitive() {
    let r = router(&[
        spec().header("x-client", &[r"~*mobile-\d+"]),
        spec().header("x-exact", &["~*^abc$"]),
    ]);
    assert_eq!(
        route_of(&r, &get("/").header("x-client", "ios-MOBILE-12")),
        Some(0)
    );
    assert_eq!(route_of(&r, &get("/").header("x-client", "mobile-")), None);
    assert_eq!(route_of(&r, &get("/").header("x-exact", "ABC")), Some(1));
    assert_eq!(route_of(&r, &get("/").header("x-exact", "abcd")), None);
}

#[test]
fn all_headers_must_match() {
    let r = router(&[spec().header("a", &["1"]).header("b", &["2"])]);
    assert_eq!(
        route_of(&r, &get("/").header("a", "1").header("b", "2")),
        Some(0)
    );
    assert_eq!(route_of(&r, &get("/").header("a", "1")), None);
    assert_eq!(
        route_of(&r, &get("/").header("b", "2").header("a", "2")),
        None
    );
}

#[test]
fn header_presence_with_empty_values() {
    let r = router(&[spec().header("x-debug", &[])]);
    assert_eq!(route_of(&r, &get("/").header("x-debug", "")), Some(0));
    assert_eq!(
        route_of(&r, &get("/").header("x-debug", "anything")),
        Some(0)
    );
    assert_eq!(route_of(&r, &get("/")), None);
}

#[test]
fn query_params_exact_regex_presence_decoding() {
    let r = router(&[
        spec()
            .path("/exact")
            .query("region", &["eu-west", "eu central"]),
        spec().path("/regex").query("id", &[r"~*^a\d+$"]),
        spec().path("/presence").query("debug", &[]),
        spec().path("/encoded").query("full name", &["Jane Doe+"]),
    ]);
    let cases = [
        ("/exact", "region=eu-west", Some(0)),
        ("/exact", "x=1&region=eu%2Dwest&y", Some(0)),
        ("/exact", "region=eu+central", Some(0)),
        ("/exact", "region=eu%20central", Some(0)),
        ("/exact", "region=EU-WEST", None),
        ("/exact", "region=eu-west-1", None),
        ("/exact", "Region=eu-west", None),
        ("/exact", "region=us&region=eu-west", Some(0)),
        ("/regex", "id=A12", Some(1)),
        ("/regex", "id=%41%31", Some(1)),
        ("/regex", "id=b12", None),
        ("/regex", "id=a12x", None),
        ("/presence", "debug", Some(2)),
        ("/presence", "debug=0", Some(2)),
        ("/presence", "a=1&debug=", Some(2)),
        ("/presence", "debugx=1", None),
        ("/presence", "x=debug", None),
        ("/encoded", "full+name=Jane+Doe%2B", Some(3)),
        ("/encoded", "full%20name=Jane%20Doe%2b", Some(3)),
        ("/encoded", "full+name=Jane+Doe+", None),
    ];
    for (path, q, want) in cases {
        assert_eq!(route_of(&r, &get(path).query(q)), want, "{path}?{q}");
    }
    assert_eq!(route_of(&r, &get("/presence")), None);
    assert_eq!(route_of(&r, &get("/presence").query("")), None);
}

#[test]
fn all_criteria_combined() {
    let r = router(&[spec()
        .host("api.example.com")
        .path("/v1")
        .method("POST")
        .header("x-version", &["2"])
        .query("beta", &["1"])]);
    let ok = req("POST", "api.example.com", "/v1/items")
        .header("x-version", "2")
        .query("beta=1");
    assert_eq!(route_of(&r, &ok), Some(0));
    let mut wrong_host = ok.clone();
    wrong_host.host = "example.com".into();
    assert_eq!(find(&r, &wrong_host), RouteMatch::NotFound);
    let mut wrong_path = ok.clone();
    wrong_path.path = "/v2".into();
    assert_eq!(find(&r, &wrong_path), RouteMatch::NotFound);
    let mut wrong_header = ok.clone();
    wrong_header.headers.clear();
    assert_eq!(find(&r, &wrong_header), RouteMatch::NotFound);
    let mut wrong_query = ok.clone();
    wrong_query.query = Some("beta=2".into());
    assert_eq!(find(&r, &wrong_query), RouteMatch::NotFound);
    let mut wrong_method = ok.clone();
    wrong_method.method = Method::GET;
    assert_eq!(
        find(&r, &wrong_method),
        RouteMatch::MethodNotAllowed {
            allow: vec![Method::POST]
        }
    );
}

#[test]
fn pairwise_combinations() {
    let r = router(&[
        spec().host("h.com").path("/a"),
        spec().host("h.com").method("PUT"),
        spec().path("/b").header("x", &["1"]),
        spec().method("DELETE").query("q", &[]),
        spec().host("*.w.com").header("y", &["~*z"]),
        spec().path("~/r/(\\d+)").method("PATCH"),
    ]);
    assert_eq!(route_of(&r, &get("/a/1").host("h.com")), Some(0));
    assert_eq!(route_of(&r, &get("/a/1").host("i.com")), None);
    assert_eq!(route_of(&r, &req("PUT", "h.com", "/zzz")), Some(1));
    assert_eq!(route_of(&r, &get("/b").header("x", "1")), Some(2));
    assert_eq!(route_of(&r, &get("/c").header("x", "1")), None);
    assert_eq!(route_of(&r, &req("DELETE", "", "/").query("q=")), Some(3));
    assert_eq!(route_of(&r, &req("DELETE", "", "/").query("p=")), None);
    assert_eq!(
        route_of(&r, &get("/").host("a.w.com").header("y", "xZx")),
        Some(4)
    );
    assert_eq!(route_of(&r, &get("/").host("a.w.com")), None);
    assert_eq!(route_of(&r, &req("PATCH", "", "/r/5")), Some(5));
}

#[test]
fn method_not_allowed_reports_sorted_union() {
    let r = router(&[
        spec().path("/items").method("POST").method("GET"),
        spec().path("/items").method("PUT").method("GET"),
        spec().path("/items/special").method("DELETE"),
        spec().path("/other").method("PATCH"),
        spec()
            .path("/items")
            .method("OPTIONS")
            .header("x-admin", &["1"]),
    ]);
    assert_eq!(
        find(&r, &req("PATCH", "", "/items/special")),
        RouteMatch::MethodNotAllowed {
            allow: vec![Method::DELETE, Method::GET, Method::POST, Method::PUT]
        }
    );
    assert_eq!(
        find(&r, &req("PATCH", "", "/items")),
        RouteMatch::MethodNotAllowed {
            allow: vec![Method::GET, Method::POST, Method::PUT]
        }
    );
    assert_eq!(find(&r, &req("HEAD", "", "/nothing")), RouteMatch::NotFound);
    assert_eq!(route_of(&r, &req("GET", "", "/items")), Some(0));
}

#[test]
fn method_not_allowed_requires_other_criteria() {
    let r = router(&[spec().host("a.com").path("~/x/\\d+$").method("GET")]);
    assert_eq!(
        find(&r, &req("POST", "a.com", "/x/1")),
        RouteMatch::MethodNotAllowed {
            allow: vec![Method::GET]
        }
    );
    assert_eq!(
        find(&r, &req("POST", "a.com", "/x/a")),
        RouteMatch::NotFound
    );
    assert_eq!(
        find(&r, &req("POST", "b.com", "/x/1")),
        RouteMatch::NotFound
    );
}

#[test]
fn a_match_wins_over_method_not_allowed() {
    let r = router(&[
        spec().path("/api").method("GET").header("h", &["1"]),
        spec().path("/"),
    ]);
    assert_eq!(
        route_of(&r, &req("POST", "", "/api").header("h", "1")),
        Some(1)
    );
}

#[test]
fn router_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Router>();
    assert_send_sync::<super::RouterBuilder>();
}

#[test]
fn many_regexes_in_one_bucket_use_the_prefilter_correctly() {
    // Enough real regexes to get a RegexSet pre-filter; results must equal one-by-one matching.
    let mut specs: Vec<_> = (0..40)
        .map(|i| spec().path(&format!(r"~/r{i}/(\d+)$")).prio(i % 3))
        .collect();
    specs.push(spec().path(r"~/r\d+/(?<n>\d+)"));
    let r = router(&specs);
    for i in 0..40 {
        let m = matched(&r, &get(&format!("/r{i}/77")));
        assert_eq!(m.route, i as usize);
        assert_eq!(m.captures.map(|c| c.unnamed), Some(vec!["77".to_owned()]));
    }
    let m = matched(&r, &get("/r5/77/x"));
    assert_eq!(m.route, 40);
    assert_eq!(
        m.captures.map(|c| c.named),
        Some(vec![("n".to_owned(), "77".to_owned())])
    );
    assert_eq!(find(&r, &get("/r5/x")), RouteMatch::NotFound);
}

#[test]
fn default_router_is_empty() {
    let r = Router::default();
    assert!(r.is_empty());
    assert_eq!(find(&r, &req("GET", "a.com", "/")), RouteMatch::NotFound);
}

#[test]
fn plain_only_routes_do_not_match_requests_over_tls() {
    // The plain-only route is more specific, but a TLS request falls through to the next one.
    let r = router(&[spec().path("/api/v1").plain_only(), spec().path("/api")]);
    assert_eq!(route_of(&r, &get("/api/v1/users")), Some(0));
    assert_eq!(route_of(&r, &get("/api/v1/users").tls()), Some(1));
    // With nothing else to match: 404, and a plain-only route does not make it a 405.
    let r = router(&[
        spec().path("/x").plain_only(),
        spec().path("/x").method("POST"),
    ]);
    assert_eq!(route_of(&r, &get("/x").tls()), None);
    assert_eq!(
        find(&r, &get("/x").tls()),
        RouteMatch::MethodNotAllowed {
            allow: vec![Method::POST]
        }
    );
    let r = router(&[spec().path("/x").plain_only()]);
    assert_eq!(find(&r, &get("/x").tls()), RouteMatch::NotFound);
}

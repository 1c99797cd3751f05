//! Precedence tests: one test per rule of the Kong 3 compatible ordering, plus tie-breaks.
//!
//! Contract: test-only; each rule is checked in both declaration orders so that the outcome
//! cannot be an accident of declaration order.

use super::test_util::{Req, Spec, get, req, route_of, router, spec};
use super::{RouteMatch, RouterBuilder};

/// Asserts that `winner` beats `loser` for `request`, whichever is declared first.
fn beats(winner: Spec, loser: Spec, request: &Req) {
    let r = router(&[winner.clone(), loser.clone()]);
    assert_eq!(
        route_of(&r, request),
        Some(0),
        "declared first: {winner:?} vs {loser:?}"
    );
    let r = router(&[loser.clone(), winner.clone()]);
    assert_eq!(
        route_of(&r, request),
        Some(1),
        "declared second: {winner:?} vs {loser:?}"
    );
}

#[test]
fn more_criteria_wins_over_longer_path() {
    beats(
        spec().path("/").method("GET"),
        spec().path("/api/v1/users"),
        &get("/api/v1/users"),
    );
    beats(
        spec().path("/").query("a", &[]),
        spec().path("/api/v1"),
        &get("/api/v1").query("a=1"),
    );
    beats(
        spec().path("/").host("h.com"),
        spec().path("~/api/v1$").prio(100),
        &get("/api/v1").host("h.com"),
    );
    beats(
        spec().method("GET").host("*.h.com").header("x", &["1"]),
        spec().method("GET").host("a.h.com"),
        &get("/").host("a.h.com").header("x", "1"),
    );
}

#[test]
fn plain_hosts_beat_wildcards() {
    beats(
        spec().host("a.example.com").path("/"),
        spec().host("*.example.com").path("/long"),
        &get("/long").host("a.example.com"),
    );
    beats(
        spec().host("a.example.com"),
        spec().host("a.example.*"),
        &get("/").host("a.example.com"),
    );
    // One wildcard among the hosts makes the route non-plain.
    beats(
        spec().host("a.example.com").path("/"),
        spec()
            .host("a.example.com")
            .host("*.example.com")
            .path("/longer"),
        &get("/longer").host("a.example.com"),
    );
    // A plain host with port is still plain.
    beats(
        spec().host("a.example.com:81"),
        spec().host("*.example.com"),
        &get("/").host("a.example.com:81"),
    );
}

#[test]
fn more_headers_wins() {
    beats(
        spec().path("/").header("a", &["1"]).header("b", &["2"]),
        spec().path("/x").header("a", &["1"]),
        &get("/x").header("a", "1").header("b", "2"),
    );
    // Header count ranks above regex-ness.
    beats(
        spec().path("/").header("a", &["1"]).header("b", &[]),
        spec().path("~/x").header("a", &["1"]),
        &get("/x").header("a", "1").header("b", "2"),
    );
}

#[test]
fn regex_before_prefix() {
    beats(
        spec().path(r"~/users/\d+"),
        spec().path("/users/123"),
        &get("/users/123"),
    );
    // Literal (exact) regexes still count as regex.
    beats(
        spec().path("~/health$"),
        spec().path("/health"),
        &get("/health"),
    );
    beats(
        spec().path("~/st"),
        spec().path("/static/long/prefix"),
        &get("/static/long/prefix"),
    );
}

#[test]
fn regex_priority_orders_regexes() {
    beats(
        spec().path(r"~/a/\d+").prio(5),
        spec().path(r"~/a/.*").prio(4),
        &get("/a/1"),
    );
    beats(
        spec().path(r"~/a/.*").prio(-1),
        spec().path(r"~/a/\d+").prio(-2),
        &get("/a/1"),
    );
    // Exact-literal regexes take part in regex_priority like any regex.
    beats(
        spec().path(r"~/users/\d+").prio(1),
        spec().path("~/users/42$"),
        &get("/users/42"),
    );
    beats(
        spec().path("~/users/42$").prio(1),
        spec().path(r"~/users/\d+"),
        &get("/users/42"),
    );
}

#[test]
fn regex_priority_is_ignored_for_prefix_paths() {
    beats(
        spec().path("/api/v1"),
        spec().path("/api").prio(100),
        &get("/api/v1"),
    );
}

#[test]
fn regex_length_does_not_matter() {
    // Equal regex priority: declaration order (lower id) decides, not the pattern length.
    let r = router(&[spec().path("~/a"), spec().path(r"~/a/b/c/\d+")]);
    assert_eq!(route_of(&r, &get("/a/b/c/1")), Some(0));
    let r = router(&[spec().path(r"~/a/b/c/\d+"), spec().path("~/a")]);
    assert_eq!(route_of(&r, &get("/a/b/c/1")), Some(0));
}

#[test]
fn longer_prefix_wins() {
    beats(
        spec().path("/api/v1"),
        spec().path("/api"),
        &get("/api/v1/x"),
    );
    beats(spec().path("/apix"), spec().path("/api"), &get("/apix"));
    let r = router(&[
        spec().path("/"),
        spec().path("/a"),
        spec().path("/a/b"),
        spec().path("/a/b/c"),
    ]);
    for (p, want) in [
        ("/", 0),
        ("/z", 0),
        ("/a", 1),
        ("/ab", 1),
        ("/a/b", 2),
        ("/a/b/cd", 3),
    ] {
        assert_eq!(route_of(&r, &get(p)), Some(want), "{p}");
    }
}

#[test]
fn ties_go_to_the_lower_id() {
    let r = router(&[spec().path("/same"), spec().path("/same")]);
    assert_eq!(route_of(&r, &get("/same")), Some(0));
    // Ids added out of order: the lower id still wins.
    let mut b = RouterBuilder::new();
    for id in [7, 3, 5] {
        assert!(b.add(id, &spec().path("/x").method("GET").0).is_ok());
    }
    let r = b.build();
    assert_eq!(r.len(), 3);
    assert_eq!(route_of(&r, &get("/x")), Some(3));
    // Ties between host buckets too.
    let r = router(&[
        spec().host("*.a.com").path("/"),
        spec().host("*.b.a.com").path("/"),
    ]);
    assert_eq!(route_of(&r, &get("/").host("x.b.a.com")), Some(0));
}

#[test]
fn priority_is_per_path_of_multi_path_routes() {
    // Route 0's long path must not lend its length to its short path.
    let r = router(&[
        spec().path("/x").path("/very/long/path"),
        spec().path("/x/y"),
    ]);
    assert_eq!(route_of(&r, &get("/x/y/z")), Some(1));
    assert_eq!(route_of(&r, &get("/very/long/path/z")), Some(0));
    assert_eq!(route_of(&r, &get("/x/z")), Some(0));
    // Regex-ness and regex_priority are per path too.
    let r = router(&[
        spec().path("/b").path(r"~/a/\d+").prio(9),
        spec().path("/b/c").prio(0),
        spec().path(r"~/a/1").prio(1),
    ]);
    assert_eq!(route_of(&r, &get("/b/c")), Some(1));
    assert_eq!(route_of(&r, &get("/a/1")), Some(0));
    // Within a route, the best path reports its length.
    let r = router(&[spec().path("/a").path("/a/b")]);
    match r.find(&get("/a/b/c").view()) {
        RouteMatch::Matched(m) => assert_eq!(m.matched_path_len, 4),
        other => panic!("{other:?}"),
    }
}

#[test]
fn header_routes_and_path_routes_interleave_by_rank() {
    // Same criteria count (2): header count decides before path kind/length.
    let r = router(&[
        spec().path("/a/b/c").method("GET"),
        spec().path("/a").header("x", &["1"]),
        spec().path(r"~/a/b").method("GET"),
    ]);
    assert_eq!(route_of(&r, &get("/a/b/c").header("x", "1")), Some(1));
    assert_eq!(route_of(&r, &get("/a/b/c")), Some(2));
    assert_eq!(route_of(&r, &get("/a/b/c").header("x", "2")), Some(2));
    assert_eq!(
        route_of(&r, &req("POST", "", "/a/b/c").header("x", "1")),
        Some(1)
    );
}

#[test]
fn first_fully_matching_candidate_wins() {
    // Higher-ranked candidates failing a later criterion fall through to lower ones.
    let r = router(&[
        spec()
            .path("/api")
            .method("GET")
            .header("x", &["1"])
            .query("q", &["1"]),
        spec().path("/api").method("GET").header("x", &["1"]),
        spec().path("/api").method("GET"),
        spec().path("/"),
    ]);
    assert_eq!(
        route_of(&r, &get("/api").header("x", "1").query("q=1")),
        Some(0)
    );
    assert_eq!(
        route_of(&r, &get("/api").header("x", "1").query("q=2")),
        Some(1)
    );
    assert_eq!(route_of(&r, &get("/api").header("x", "2")), Some(2));
    assert_eq!(route_of(&r, &req("POST", "", "/api")), Some(3));
}

//! Validation tests: every error `RouterBuilder::add` can report, with its field path.
//!
//! Contract: test-only; checks that all problems of a spec are reported together and that a
//! rejected route is not added.

use super::test_util::{get, route_of, spec};
use super::{RouteSpec, RouteSpecError, RouterBuilder};

fn errors(s: &RouteSpec) -> Vec<RouteSpecError> {
    match RouterBuilder::new().add(0, s) {
        Ok(()) => Vec::new(),
        Err(e) => e,
    }
}

fn fields(s: &RouteSpec) -> Vec<String> {
    errors(s).into_iter().map(|e| e.field).collect()
}

fn single(s: &RouteSpec) -> RouteSpecError {
    let mut e = errors(s);
    assert_eq!(e.len(), 1, "{e:?}");
    e.remove(0)
}

#[test]
fn valid_specs_are_accepted() {
    let s = spec()
        .host("example.com")
        .host("*.example.com:8443")
        .host("example.*")
        .host("[::1]:8000")
        .path("/api")
        .path(r"~/users/(?<id>\d+)$")
        .method("GET")
        .method("M-SEARCH")
        .header("X-API-Version", &["v2", "~*^v\\d$"])
        .header("x-flag", &[])
        .query("region", &["eu-west", "~*^us"])
        .query("debug", &[]);
    assert_eq!(errors(&s.0), Vec::new());
}

#[test]
fn route_without_criteria() {
    let e = single(&RouteSpec {
        regex_priority: 3,
        ..RouteSpec::default()
    });
    assert_eq!(e.field, "@entity");
    assert_eq!(
        e.message,
        "must set one of 'methods', 'hosts', 'headers', 'paths', 'query_params'"
    );
    assert_eq!(e.to_string(), format!("@entity: {}", e.message));
}

#[test]
fn invalid_path_regex_reports_regex_error() {
    let e = single(&spec().path("/ok").path("~/users/(\\d+").0);
    assert_eq!(e.field, "paths[1]");
    assert!(
        e.message.starts_with("invalid regex '/users/(\\d+': "),
        "{}",
        e.message
    );
    assert!(e.message.contains("unclosed group"), "{}", e.message);
    // Unsupported PCRE syntax is reported, not silently accepted.
    assert_eq!(single(&spec().path("~/a(?=b)").0).field, "paths[0]");
}

#[test]
fn oversized_regex_is_rejected() {
    let e = single(&spec().path(r"~/(\w{100}){100}").0);
    assert_eq!(e.field, "paths[0]");
    assert!(e.message.contains("size limit"), "{}", e.message);
}

#[test]
fn path_must_start_with_slash_or_tilde() {
    for bad in ["api", "", " /api", "*/x"] {
        let e = single(&spec().path(bad).0);
        assert_eq!(e.field, "paths[0]");
        assert!(e.message.contains("must start with '/'"), "{}", e.message);
    }
    for bad in ["/a b", "/a?b=1", "/a#frag", "/a\n"] {
        assert_eq!(fields(&spec().path(bad).0), vec!["paths[0]"], "{bad:?}");
    }
}

#[test]
fn invalid_hosts() {
    let cases = [
        (
            "*.*.example.com",
            "invalid wildcard: must have at most one wildcard",
        ),
        (
            "*.example.*",
            "invalid wildcard: must have at most one wildcard",
        ),
        (
            "api.*.com",
            "invalid wildcard: must be placed at leftmost or rightmost label",
        ),
        (
            "*example.com",
            "invalid wildcard: must be placed at leftmost or rightmost label",
        ),
        ("example.com:99999", "invalid port number"),
        ("example.com:0", "invalid port number"),
        ("exa mple.com", "invalid hostname: exa mple.com"),
        ("example..com", "invalid hostname: example..com"),
        ("[::1", "invalid hostname: [::1"),
        ("", "must not be empty"),
    ];
    for (host, msg) in cases {
        let e = single(&spec().host("ok.com").host(host).0);
        assert_eq!(e.field, "hosts[1]", "{host}");
        assert_eq!(e.message, msg, "{host}");
    }
}

#[test]
fn invalid_methods() {
    for bad in ["get", "Get", "GE T", "", "G\"ET"] {
        let e = single(&spec().method("GET").method(bad).0);
        assert_eq!(e.field, "methods[1]", "{bad:?}");
        assert!(
            e.message.contains("must be an uppercase HTTP token"),
            "{}",
            e.message
        );
    }
}

#[test]
fn invalid_header_names_and_host_header() {
    let e = single(&spec().header("Host", &["a.com"]).0);
    assert_eq!(e.field, "headers.Host");
    assert_eq!(
        e.message,
        "cannot contain 'host' header, which must be specified in the 'hosts' attribute"
    );
    let e = single(&spec().header("bad name", &["1"]).0);
    assert_eq!(e.field, "headers.bad name");
    assert!(
        e.message.starts_with("invalid header name"),
        "{}",
        e.message
    );
    assert_eq!(fields(&spec().header("", &["1"]).0), vec!["headers."]);
    let e = single(&spec().header("X-A", &["1"]).header("x-a", &["2"]).0);
    assert_eq!(e.field, "headers.x-a");
    assert!(e.message.contains("duplicate"), "{}", e.message);
}

#[test]
fn invalid_header_and_query_regex_values() {
    let e = single(&spec().header("X-API-Version", &["v1", "~*("]).0);
    assert_eq!(e.field, "headers.X-API-Version[1]");
    assert!(
        e.message.starts_with("invalid regex '(': "),
        "{}",
        e.message
    );
    let e = single(&spec().query("region", &["~*[a-", "eu"]).0);
    assert_eq!(e.field, "query_params.region[0]");
    assert!(
        e.message.starts_with("invalid regex '[a-': "),
        "{}",
        e.message
    );
}

#[test]
fn invalid_query_param_names() {
    let e = single(&spec().query("ok", &[]).query("", &["1"]).0);
    assert_eq!(e.field, "query_params[1]");
    let e = single(&spec().query("a", &[]).query("a", &["1"]).0);
    assert_eq!(e.field, "query_params.a");
    assert!(e.message.contains("duplicate"), "{}", e.message);
}

#[test]
fn all_problems_are_reported_together() {
    let s = spec()
        .host("a.*.b")
        .host("ok.com")
        .host("x:y")
        .path("nope")
        .path("~(")
        .method("get")
        .header("host", &[])
        .header("X-V", &["~*)"])
        .query("q", &["~*("]);
    assert_eq!(
        fields(&s.0),
        vec![
            "methods[0]",
            "hosts[0]",
            "hosts[2]",
            "paths[0]",
            "paths[1]",
            "headers.host",
            "headers.X-V[0]",
            "query_params.q[0]",
        ]
    );
}

#[test]
fn rejected_routes_are_not_added() {
    let mut b = RouterBuilder::new();
    assert!(b.add(0, &spec().path("bad").0).is_err());
    assert!(b.add(1, &spec().path("/good").0).is_ok());
    let r = b.build();
    assert_eq!(r.len(), 1);
    assert_eq!(route_of(&r, &get("/good")), Some(1));
    assert_eq!(route_of(&r, &get("/")), None);
}

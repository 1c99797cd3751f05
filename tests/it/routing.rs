//! Route matching through the real gateway: every criterion, Kong's precedence, 404/405 and path
//! normalisation. Routes answer with `request-termination` carrying their name, so the body says
//! which route won.

use crate::harness::{TestGateway, json};
use crate::support::client;

/// A route entry answering `{"message": name}`.
fn route(name: &str, criteria: &str) -> String {
    format!(
        "- name: {name}\n{criteria}\n  plugins:\n  - name: request-termination\n    config: {{status_code: 200, message: {name}}}\n"
    )
}

fn config(routes: &[String]) -> String {
    format!("_format_version: \"3.0\"\nroutes:\n{}", routes.concat())
}

/// (status, matched route name or error message)
async fn hit(
    gw: &TestGateway,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut req = client().request(method.parse().unwrap(), gw.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let body = json(resp).await;
    (status, body["message"].as_str().unwrap_or("").to_string())
}

#[tokio::test]
async fn prefix_paths_are_byte_prefixes_and_longest_wins() {
    let gw = TestGateway::start(&config(&[
        route("api", "  paths: [/api]"),
        route("users", "  paths: [/api/users]"),
    ]));
    assert_eq!(hit(&gw, "GET", "/api", &[]).await, (200, "api".into()));
    assert_eq!(
        hit(&gw, "GET", "/api/users/42", &[]).await,
        (200, "users".into())
    );
    assert_eq!(
        hit(&gw, "GET", "/api/orders", &[]).await,
        (200, "api".into())
    );
    assert_eq!(hit(&gw, "GET", "/apix", &[]).await, (200, "api".into()));
    let (status, msg) = hit(&gw, "GET", "/other", &[]).await;
    assert_eq!(
        (status, msg.as_str()),
        (404, "no Route matched with those values")
    );
}

#[tokio::test]
async fn anchored_regex_is_an_exact_path_and_regex_beats_prefix() {
    let gw = TestGateway::start(&config(&[
        route("root", "  paths: [/]"),
        route("health", "  paths: [\"~/health$\"]"),
        route("user-id", "  paths: [\"~/users/(?<id>\\\\d+)$\"]"),
    ]));
    assert_eq!(
        hit(&gw, "GET", "/health", &[]).await,
        (200, "health".into())
    );
    assert_eq!(
        hit(&gw, "GET", "/health/x", &[]).await,
        (200, "root".into())
    );
    assert_eq!(hit(&gw, "GET", "/healthz", &[]).await, (200, "root".into()));
    assert_eq!(
        hit(&gw, "GET", "/users/42", &[]).await,
        (200, "user-id".into())
    );
    assert_eq!(
        hit(&gw, "GET", "/users/abc", &[]).await,
        (200, "root".into())
    );
}

#[tokio::test]
async fn regex_priority_orders_regex_routes() {
    let gw = TestGateway::start(&config(&[
        route("low", "  paths: [\"~/v\\\\d+/items\"]\n  regex_priority: 1"),
        route("high", "  paths: [\"~/v2/items\"]\n  regex_priority: 10"),
    ]));
    assert_eq!(
        hit(&gw, "GET", "/v2/items", &[]).await,
        (200, "high".into())
    );
    assert_eq!(hit(&gw, "GET", "/v3/items", &[]).await, (200, "low".into()));
}

#[tokio::test]
async fn methods_and_405_with_allow_header() {
    let gw = TestGateway::start(&config(&[
        route("orders-read", "  paths: [/api/orders]\n  methods: [GET]"),
        route(
            "orders-write",
            "  paths: [/api/orders]\n  methods: [POST, PUT]",
        ),
    ]));
    assert_eq!(
        hit(&gw, "GET", "/api/orders", &[]).await,
        (200, "orders-read".into())
    );
    assert_eq!(
        hit(&gw, "POST", "/api/orders", &[]).await,
        (200, "orders-write".into())
    );
    let resp = client()
        .delete(gw.url("/api/orders/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "GET, POST, PUT");
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(json(resp).await["message"], "Method not allowed");
}

#[tokio::test]
async fn hosts_exact_wildcard_and_port() {
    let gw = TestGateway::start(&config(&[
        route("exact", "  hosts: [api.example.com]"),
        route("wild", "  hosts: [\"*.example.com\"]"),
        route("suffix-wild", "  hosts: [\"example.*\"]"),
        route("with-port", "  hosts: [\"ported.example.org:8080\"]"),
    ]));
    assert_eq!(
        hit(&gw, "GET", "/", &[("host", "api.example.com")]).await,
        (200, "exact".into())
    );
    assert_eq!(
        hit(&gw, "GET", "/", &[("host", "API.Example.com:9999")]).await,
        (200, "exact".into())
    );
    assert_eq!(
        hit(&gw, "GET", "/", &[("host", "a.b.example.com")]).await,
        (200, "wild".into())
    );
    assert_eq!(
        hit(&gw, "GET", "/", &[("host", "example.net")]).await,
        (200, "suffix-wild".into())
    );
    assert_eq!(
        hit(&gw, "GET", "/", &[("host", "ported.example.org:8080")]).await,
        (200, "with-port".into())
    );
    assert_eq!(
        hit(&gw, "GET", "/", &[("host", "ported.example.org")])
            .await
            .0,
        404
    );
    assert_eq!(hit(&gw, "GET", "/", &[("host", "other.org")]).await.0, 404);
}

#[tokio::test]
async fn headers_exact_and_regex_values() {
    let gw = TestGateway::start(&config(&[
        route("v1", "  paths: [/api]"),
        route("v2", "  paths: [/api]\n  headers:\n    X-API-Version: [v2]"),
        route(
            "beta",
            "  paths: [/api]\n  headers:\n    X-Client: [\"~*^beta-\\\\d+$\"]",
        ),
    ]));
    assert_eq!(hit(&gw, "GET", "/api", &[]).await, (200, "v1".into()));
    assert_eq!(
        hit(&gw, "GET", "/api", &[("x-api-version", "v2")]).await,
        (200, "v2".into())
    );
    assert_eq!(
        hit(&gw, "GET", "/api", &[("x-api-version", "V2")]).await,
        (200, "v2".into())
    );
    assert_eq!(
        hit(&gw, "GET", "/api", &[("x-api-version", "v3")]).await,
        (200, "v1".into())
    );
    assert_eq!(
        hit(&gw, "GET", "/api", &[("x-client", "BETA-12")]).await,
        (200, "beta".into())
    );
    assert_eq!(
        hit(&gw, "GET", "/api", &[("x-client", "beta-x")]).await,
        (200, "v1".into())
    );
}

#[tokio::test]
async fn query_params_route_by_region() {
    let gw = TestGateway::start(&config(&[
        route("global", "  paths: [/api/users]"),
        route(
            "eu",
            "  paths: [/api/users]\n  query_params:\n    region: [eu-west]",
        ),
    ]));
    assert_eq!(
        hit(&gw, "GET", "/api/users?region=eu-west", &[]).await,
        (200, "eu".into())
    );
    assert_eq!(
        hit(&gw, "GET", "/api/users?a=1&region=eu%2Dwest", &[]).await,
        (200, "eu".into())
    );
    assert_eq!(
        hit(&gw, "GET", "/api/users?region=us-east", &[]).await,
        (200, "global".into())
    );
    assert_eq!(
        hit(&gw, "GET", "/api/users", &[]).await,
        (200, "global".into())
    );
}

#[tokio::test]
async fn more_criteria_win_over_longer_paths() {
    let gw = TestGateway::start(&config(&[
        route("long-path", "  paths: [/api/orders/special]"),
        route("method-and-path", "  paths: [/api]\n  methods: [POST]"),
    ]));
    assert_eq!(
        hit(&gw, "POST", "/api/orders/special", &[]).await,
        (200, "method-and-path".into())
    );
    assert_eq!(
        hit(&gw, "GET", "/api/orders/special", &[]).await,
        (200, "long-path".into())
    );
}

#[tokio::test]
async fn dot_segments_cannot_bypass_a_stricter_route() {
    let gw = TestGateway::start(&config(&[
        route("public", "  paths: [/api/public]"),
        "- name: admin\n  paths: [/api/admin]\n  plugins:\n  - name: request-termination\n    config: {status_code: 403, message: admin-protected}\n".to_string(),
    ]));
    for path in [
        "/api/public/../admin",
        "/api/public/%2e%2e/admin",
        "/api//public/./../admin",
        "/api/%61dmin",
    ] {
        assert_eq!(
            hit(&gw, "GET", path, &[]).await,
            (403, "admin-protected".into()),
            "{path}"
        );
    }
    let (status, msg) = hit(&gw, "GET", "/api/public%2f..%2fadmin", &[]).await;
    assert_eq!(status, 400);
    assert!(msg.contains("encoded slash"), "{msg}");
    assert_eq!(hit(&gw, "GET", "/api/public/a%5cb", &[]).await.0, 400);
    assert_eq!(hit(&gw, "GET", "/api/public/a%00b", &[]).await.0, 400);
}

#[tokio::test]
async fn https_only_route_answers_426() {
    let gw = TestGateway::start(&config(&[route(
        "secure",
        "  paths: [/secure]\n  protocols: [https]",
    )]));
    let resp = client().get(gw.url("/secure")).send().await.unwrap();
    assert_eq!(resp.status(), 426);
    assert_eq!(json(resp).await["message"], "Please use HTTPS protocol");
}

#[tokio::test]
async fn a_swapped_configuration_takes_effect_at_once() {
    let gw = TestGateway::start(&config(&[route("old", "  paths: [/old]")]));
    assert_eq!(hit(&gw, "GET", "/old", &[]).await, (200, "old".into()));
    gw.swap(&config(&[route("new", "  paths: [/new]")]));
    assert_eq!(hit(&gw, "GET", "/new", &[]).await, (200, "new".into()));
    assert_eq!(hit(&gw, "GET", "/old", &[]).await.0, 404);
}

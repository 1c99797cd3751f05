//! The pipeline's first plugins (request-termination, correlation-id, request-transformer,
//! ip-restriction) and Kong's plugin precedence, end to end.

use crate::harness::{TestGateway, json};
use crate::support::{Upstream, client};

#[tokio::test]
async fn request_termination_variants() {
    let gw = TestGateway::start(
        r#"_format_version: "3.0"
routes:
- paths: [/maint]
  plugins: [{name: request-termination}]
- paths: [/teapot]
  plugins: [{name: request-termination, config: {status_code: 418, body: "<b>tea</b>", content_type: text/html}}]
- paths: [/trig]
  plugins: [{name: request-termination, config: {status_code: 403, message: blocked, trigger: x-block}}]
- paths: [/echo]
  plugins: [{name: request-termination, config: {status_code: 200, echo: true}}]
"#,
    );
    let resp = client().get(gw.url("/maint")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(json(resp).await["message"], "Service Unavailable");
    let resp = client().get(gw.url("/teapot")).send().await.unwrap();
    assert_eq!(resp.status(), 418);
    assert_eq!(resp.headers()["content-type"], "text/html");
    assert_eq!(resp.text().await.unwrap(), "<b>tea</b>");
    // Without the trigger the route has no service: 503 from the gateway, not the plugin.
    assert_eq!(
        client().get(gw.url("/trig")).send().await.unwrap().status(),
        503
    );
    assert_eq!(
        client()
            .get(gw.url("/trig"))
            .header("x-block", "1")
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        client()
            .get(gw.url("/trig?x-block"))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    let resp = client()
        .get(gw.url("/echo?q=1"))
        .header("x-probe", "p")
        .send()
        .await
        .unwrap();
    let body = json(resp).await;
    assert_eq!(body["request"]["query"], "q=1");
    assert_eq!(body["request"]["headers"]["x-probe"], "p");
}

#[tokio::test]
async fn correlation_id_is_generated_kept_and_echoed() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&format!(
        "_format_version: \"3.0\"\nservices:\n- name: s\n  url: http://{}\n  routes: [{{paths: [/]}}]\nplugins:\n- name: correlation-id\n  config: {{header_name: X-Request-Id, generator: uuid, echo_downstream: true}}\n",
        up.addr()
    ));
    let resp = client().get(gw.url("/")).send().await.unwrap();
    let echoed = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let body = json(resp).await;
    assert_eq!(body["headers"]["x-request-id"], echoed.as_str());
    assert_eq!(echoed.len(), 36, "a UUID: {echoed}");
    let resp = client()
        .get(gw.url("/"))
        .header("x-request-id", "abc-123-def")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "abc-123-def");
    assert_eq!(json(resp).await["headers"]["x-request-id"], "abc-123-def");
    // Also on requests no route matched (global plugins run there).
    let gw2 = TestGateway::start(
        "_format_version: \"3.0\"\nplugins:\n- name: correlation-id\n  config: {echo_downstream: true}\n",
    );
    let resp = client().get(gw2.url("/none")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert!(
        resp.headers()["kong-request-id"]
            .to_str()
            .unwrap()
            .contains('#')
    );
}

#[tokio::test]
async fn request_transformer_adds_headers_without_overwriting() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&format!(
        r#"_format_version: "3.0"
services:
- name: user-service
  url: http://{}
  routes: [{{name: users, paths: [/api/users]}}]
plugins:
- name: request-transformer
  service: user-service
  config:
    add:
      headers:
      - "X-Gateway-Version: 1.0"
      - "X-Forwarded-Proto: https"
      - "X-Team: core"
"#,
        up.addr()
    ));
    let resp = client()
        .get(gw.url("/api/users/me"))
        .header("x-team", "client-set")
        .send()
        .await
        .unwrap();
    let h = json(resp).await["headers"].clone();
    assert_eq!(h["x-gateway-version"], "1.0");
    assert_eq!(h["x-team"], "client-set", "add never overwrites");
    assert_eq!(
        h["x-forwarded-proto"], "http",
        "as in Kong, X-Forwarded-* cannot be overridden"
    );
}

#[tokio::test]
async fn route_plugin_overrides_service_and_global() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&format!(
        r#"_format_version: "3.0"
services:
- name: s
  url: http://{}
  plugins:
  - name: request-transformer
    config: {{add: {{headers: ["X-Scope: service"]}}}}
  routes:
  - name: special
    paths: [/special]
    plugins:
    - name: request-transformer
      config: {{add: {{headers: ["X-Scope: route"]}}}}
  - name: plain
    paths: [/plain]
- name: other
  url: http://{}
  routes: [{{name: other, paths: [/other]}}]
plugins:
- name: request-transformer
  config: {{add: {{headers: ["X-Scope: global"]}}}}
"#,
        up.addr(),
        up.addr()
    ));
    for (path, scope) in [
        ("/special", "route"),
        ("/plain", "service"),
        ("/other", "global"),
    ] {
        let body = json(client().get(gw.url(path)).send().await.unwrap()).await;
        assert_eq!(body["headers"]["x-scope"], scope, "{path}");
    }
}

#[tokio::test]
async fn ip_restriction_uses_the_resolved_client_address() {
    use gatehouse::proxy::ServerConfig;
    use gatehouse::proxy::client_ip::{RealIpConfig, TrustedProxies};
    let yaml = r#"_format_version: "3.0"
routes:
- name: internal
  paths: [/internal]
  plugins:
  - name: ip-restriction
    config: {allow: ["10.0.0.0/8", "172.16.0.0/12"]}
  - name: request-termination
    config: {status_code: 200, message: welcome}
- name: blocked
  paths: [/blocked]
  plugins:
  - name: ip-restriction
    config: {deny: ["127.0.0.1"], status: 451, message: "not from here"}
  - name: request-termination
    config: {status_code: 200, message: welcome}
"#;
    // Direct clients: the socket address (127.0.0.1) decides; headers are not believed.
    let gw = TestGateway::start(yaml);
    let resp = client()
        .get(gw.url("/internal"))
        .header("x-forwarded-for", "10.1.2.3")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(
        json(resp).await["message"],
        "Your IP address is not allowed"
    );
    let resp = client().get(gw.url("/blocked")).send().await.unwrap();
    assert_eq!(resp.status(), 451);
    assert_eq!(json(resp).await["message"], "not from here");
    // Behind a trusted proxy: the forwarded client address decides.
    let config = ServerConfig {
        real_ip: RealIpConfig {
            trusted: TrustedProxies::parse(&["127.0.0.1".to_string()]).unwrap(),
            ..RealIpConfig::default()
        },
        ..ServerConfig::default()
    };
    let gw = TestGateway::start_with(yaml, config);
    let ok = client()
        .get(gw.url("/internal"))
        .header("x-forwarded-for", "172.20.0.9")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let denied = client()
        .get(gw.url("/internal"))
        .header("x-forwarded-for", "8.8.8.8")
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    let unblocked = client()
        .get(gw.url("/blocked"))
        .header("x-forwarded-for", "8.8.8.8")
        .send()
        .await
        .unwrap();
    assert_eq!(
        unblocked.status(),
        200,
        "the proxy's own address is not the client's"
    );
}

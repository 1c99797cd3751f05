//! Upstream TLS: `https` services verified against their `ca_certificates` (or the system's
//! roots) with SNI from the upstream `Host`; untrusted, expired, wrong-name and too-deep chains
//! answered 502 naming the TLS failure; `tls_verify: false`; client certificates for upstreams
//! that require them; TLS connections pooled apart by server name and settings; config errors.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, date_time_ymd};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use crate::harness::{TestGateway, config_errors, json};
use crate::support::{Upstream, client};
use crate::tls::q;

const CA_ID: &str = "7f1f3c52-0d6e-4d4a-9a52-2f0a5f3b1c01";
const CLIENT_CERT_ID: &str = "0b4c1d2e-3f40-4a5b-8c6d-7e8f9a0b1c2d";

/// A certificate authority: a root, or an intermediate with the chain above it.
pub(crate) struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// Intermediates from this CA up to (not including) the root, PEM, nearest first.
    chain: String,
}

/// A certificate chain (leaf first, no root) and its key, PEM.
pub(crate) struct Leaf {
    cert: String,
    key: String,
}

impl Ca {
    pub(crate) fn root() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("key");
        Ca {
            issuer: CertifiedIssuer::self_signed(params, key).expect("root"),
            chain: String::new(),
        }
    }

    fn intermediate(&self) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("key");
        let issuer = CertifiedIssuer::signed_by(params, key, &self.issuer).expect("intermediate");
        let chain = format!("{}{}", issuer.pem(), self.chain);
        Ca { issuer, chain }
    }

    pub(crate) fn pem(&self) -> String {
        self.issuer.pem()
    }

    pub(crate) fn leaf(&self, names: &[&str]) -> Leaf {
        self.leaf_with(names, |_| {})
    }

    fn leaf_with(&self, names: &[&str], edit: impl FnOnce(&mut CertificateParams)) -> Leaf {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("params");
        edit(&mut params);
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf");
        Leaf {
            cert: format!("{}{}", cert.pem(), self.chain),
            key: key.serialize_pem(),
        }
    }
}

/// A TLS server configuration presenting `leaf`, requiring a client certificate issued by
/// `client_ca` when given.
pub(crate) fn server_config(leaf: &Leaf, client_ca: Option<&Ca>) -> Arc<ServerConfig> {
    let certs = CertificateDer::pem_slice_iter(leaf.cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("chain");
    let key = PrivateKeyDer::from_pem_slice(leaf.key.as_bytes()).expect("key");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions");
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            roots.add(ca.issuer.der().clone()).expect("client CA");
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        }
    };
    Arc::new(builder.with_single_cert(certs, key).expect("server config"))
}

/// The document head: the trusted CA as a `ca_certificates` entity.
fn head(ca: &Ca) -> String {
    format!(
        "_format_version: \"3.0\"\nca_certificates:\n- id: {CA_ID}\n  cert: {}\n",
        q(&ca.pem())
    )
}

/// An upstream named `name` sending `Host: host_header` to the single target `up`.
fn upstream(name: &str, host_header: &str, up: &Upstream) -> String {
    format!(
        "- name: {name}\n  host_header: {host_header}\n  targets:\n  - target: {}\n",
        up.addr()
    )
}

/// A service `name` to `url` with extra fields (YAML lines indented by two), routed on `/name`.
fn service(name: &str, url: &str, fields: &str) -> String {
    format!("- name: {name}\n  url: {url}\n  retries: 0\n{fields}  routes:\n  - paths: [/{name}]\n")
}

fn trusted() -> String {
    format!("  ca_certificates: [{CA_ID}]\n")
}

/// GET `path`: status and JSON body.
async fn get(gw: &TestGateway, path: &str) -> (u16, serde_json::Value) {
    let resp = client().get(gw.url(path)).send().await.expect("request");
    let status = resp.status().as_u16();
    (status, json(resp).await)
}

fn message(body: &serde_json::Value) -> &str {
    body["message"].as_str().unwrap_or("")
}

#[tokio::test]
async fn https_upstreams_are_verified_with_sni_from_the_upstream_host() {
    let ca = Ca::root();
    let up = Upstream::start_tls(server_config(&ca.leaf(&["api.test", "127.0.0.1"]), None)).await;
    let addr = up.addr();
    let yaml = format!(
        "{}upstreams:\n{}{}services:\n{}{}{}{}{}",
        head(&ca),
        upstream("api-up", "api.test", &up),
        upstream("other-up", "other.test", &up),
        service("named", "https://api-up", &trusted()),
        service("ip", &format!("https://{addr}"), &trusted()),
        service("system", &format!("https://{addr}"), ""),
        service(
            "insecure",
            &format!("https://{addr}"),
            "  tls_verify: false\n"
        ),
        service("wrong-name", "https://other-up", &trusted()),
    );
    let gw = TestGateway::start(&yaml);

    // By name: SNI and Host are the upstream's host_header, verified against the CA.
    let (status, body) = get(&gw, "/named/x").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["headers"]["host"], "api.test");
    assert_eq!(body["path"], "/x");
    assert_eq!(up.tls_server_names(), vec![Some("api.test".to_string())]);

    // By IP address: no SNI, verified against the certificate's IP address.
    let (status, body) = get(&gw, "/ip").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["headers"]["host"], addr.to_string());
    assert_eq!(up.tls_server_names().last(), Some(&None));

    // The test CA is not in the system's store.
    let (status, body) = get(&gw, "/system").await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(
        message(&body),
        "TLS error with the upstream server: the upstream's certificate is not issued by a trusted CA"
    );

    // ... unless verification is off.
    let (status, body) = get(&gw, "/insecure").await;
    assert_eq!(status, 200, "{body}");

    // A certificate for another name.
    let (status, body) = get(&gw, "/wrong-name").await;
    assert_eq!(status, 502, "{body}");
    assert!(
        message(&body).contains("does not match the server name"),
        "{body}"
    );
    // Two handshakes completed (named, ip) plus the unverified one.
    assert_eq!(up.tls_server_names().len(), 3);

    // preserve_host: the client's Host is the server name too (as Kong's $upstream_host).
    let yaml = format!(
        "_format_version: \"3.0\"\nservices:\n- name: kept\n  url: https://{addr}\n  tls_verify: false\n  routes:\n  - paths: [/kept]\n    preserve_host: true\n"
    );
    let gw = TestGateway::start(&yaml);
    let resp = client()
        .get(gw.url("/kept"))
        .header("host", "client.test:8000")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    assert_eq!(json(resp).await["headers"]["host"], "client.test:8000");
    assert_eq!(
        up.tls_server_names().last(),
        Some(&Some("client.test".to_string()))
    );
}

#[tokio::test]
async fn expired_certificates_and_chains_deeper_than_tls_verify_depth_are_refused() {
    let root = Ca::root();
    let intermediate = root.intermediate();
    let deep = Upstream::start_tls(server_config(&intermediate.leaf(&["127.0.0.1"]), None)).await;
    let expired = Upstream::start_tls(server_config(
        &root.leaf_with(&["127.0.0.1"], |p| {
            p.not_before = date_time_ymd(2020, 1, 1);
            p.not_after = date_time_ymd(2021, 1, 1);
        }),
        None,
    ))
    .await;
    let deep_url = format!("https://{}", deep.addr());
    let yaml = format!(
        "{}services:\n{}{}{}{}{}",
        head(&root),
        service(
            "depth0",
            &deep_url,
            &format!("{}  tls_verify_depth: 0\n", trusted())
        ),
        service(
            "depth1",
            &deep_url,
            &format!("{}  tls_verify_depth: 1\n", trusted())
        ),
        service("unlimited", &deep_url, &trusted()),
        service(
            "expired",
            &format!("https://{}", expired.addr()),
            &trusted()
        ),
        service(
            "expired-unverified",
            &format!("https://{}", expired.addr()),
            "  tls_verify: false\n"
        ),
    );
    let gw = TestGateway::start(&yaml);

    let (status, body) = get(&gw, "/depth0").await;
    assert_eq!(status, 502, "{body}");
    assert!(
        message(&body).contains("longer than tls_verify_depth allows"),
        "{body}"
    );
    for path in ["/depth1", "/unlimited", "/expired-unverified"] {
        let (status, body) = get(&gw, path).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    let (status, body) = get(&gw, "/expired").await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(
        message(&body),
        "TLS error with the upstream server: the upstream's certificate has expired"
    );
}

#[tokio::test]
async fn client_certificates_are_presented_to_upstreams_that_require_them() {
    let ca = Ca::root();
    let client_ca = Ca::root();
    let client_leaf = client_ca.leaf(&["gateway.test"]);
    let up = Upstream::start_tls(server_config(&ca.leaf(&["127.0.0.1"]), Some(&client_ca))).await;
    let url = format!("https://{}", up.addr());
    let yaml = format!(
        "{}certificates:\n- id: {CLIENT_CERT_ID}\n  cert: {}\n  key: {}\nservices:\n{}{}",
        head(&ca),
        q(&client_leaf.cert),
        q(&client_leaf.key),
        service(
            "mtls",
            &url,
            &format!(
                "{}  client_certificate: {{id: {CLIENT_CERT_ID}}}\n",
                trusted()
            )
        ),
        service("anonymous", &url, &trusted()),
    );
    let gw = TestGateway::start(&yaml);

    // Without a body (the lean client) and with one (hyper's client).
    let (status, body) = get(&gw, "/mtls").await;
    assert_eq!(status, 200, "{body}");
    let resp = client()
        .post(gw.url("/mtls/echo"))
        .body("over mutual TLS")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.expect("body"), "over mutual TLS");

    // The upstream refuses a gateway that has no certificate to show.
    let (status, body) = get(&gw, "/anonymous").await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(
        message(&body),
        "TLS error with the upstream server: the upstream refused the client certificate"
    );
    let resp = client()
        .post(gw.url("/anonymous/echo"))
        .body("refused")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 502);
    assert!(
        json(resp).await["message"]
            .as_str()
            .is_some_and(|m| m.contains("refused the client certificate")),
    );
    // Only the requests with the certificate got through.
    assert_eq!(up.request_count(), 2);
}

#[tokio::test]
async fn tls_connections_are_pooled_apart_by_server_name_and_settings() {
    let ca = Ca::root();
    let up = Upstream::start_tls(server_config(&ca.leaf(&["a.test", "b.test"]), None)).await;
    let yaml = format!(
        "{}upstreams:\n{}{}services:\n{}{}{}",
        head(&ca),
        upstream("a-up", "a.test", &up),
        upstream("b-up", "b.test", &up),
        service("a", "https://a-up", &trusted()),
        service("b", "https://b-up", &trusted()),
        service("a-unverified", "https://a-up", "  tls_verify: false\n"),
    );
    let gw = TestGateway::start(&yaml);

    for _ in 0..3 {
        for path in ["/a", "/b"] {
            let (status, body) = get(&gw, path).await;
            assert_eq!(status, 200, "{body}");
        }
    }
    // One connection per server name, each reused.
    assert_eq!(up.connections_accepted(), 2);
    assert_eq!(
        up.tls_server_names(),
        vec![Some("a.test".to_string()), Some("b.test".to_string())]
    );

    // Other verification settings, same name and target: a connection of its own.
    for _ in 0..2 {
        let (status, body) = get(&gw, "/a-unverified").await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(up.connections_accepted(), 3);

    // Requests with a body (hyper's client) are pooled too.
    for i in 0..3 {
        let resp = client()
            .post(gw.url("/a/echo"))
            .body(format!("body {i}"))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.expect("body"), format!("body {i}"));
    }
    assert_eq!(up.connections_accepted(), 4);
    assert_eq!(up.request_count(), 11);
}

#[tokio::test]
async fn an_upstream_that_never_finishes_the_handshake_is_given_up_on_in_time() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    // Accepts and holds connections without a byte of TLS.
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            open.push(s);
        }
    });
    let yaml = format!(
        "_format_version: \"3.0\"\nservices:\n{}",
        service(
            "silent",
            &format!("https://{addr}"),
            "  connect_timeout: 300\n"
        )
    );
    let gw = TestGateway::start(&yaml);
    let started = Instant::now();
    let (status, body) = get(&gw, "/silent").await;
    assert_eq!(status, 502, "{body}");
    assert!(started.elapsed() < Duration::from_secs(3));
    held.abort();
}

#[test]
fn tls_settings_errors_name_file_line_and_field() {
    let yaml = format!(
        r#"_format_version: "3.0"
ca_certificates:
- id: 5a1e0000-0000-4000-8000-000000000001
  cert: "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"
- id: 5a1e0000-0000-4000-8000-000000000002
  cert: {}
  cert_digest: "00ff"
services:
- name: unknown-ca
  url: https://example.test
  ca_certificates: [5a1e0000-0000-4000-8000-00000000dead]
- name: unknown-client-cert
  url: https://example.test
  client_certificate: {{id: 5a1e0000-0000-4000-8000-00000000beef}}
- name: too-deep
  url: https://example.test
  tls_verify_depth: 65
- name: plain
  url: http://example.test
  tls_verify: true
"#,
        q(&Ca::root().pem())
    );
    config_errors(
        &yaml,
        &[
            "kong.yml:4:3: ca_certificates[0].cert: not a PEM certificate",
            "kong.yml:7:3: ca_certificates[1].cert_digest: does not match the certificate",
            "kong.yml:11:21: services[0].ca_certificates[0]: no ca_certificate with id `5a1e0000-0000-4000-8000-00000000dead`",
            "kong.yml:14:3: services[1].client_certificate: no certificate with id `5a1e0000-0000-4000-8000-00000000beef`",
            "kong.yml:17:3: services[2].tls_verify_depth: value should be between 0 and 64",
            "kong.yml:20:3: services[3].tls_verify: only applies to services whose protocol is https",
        ],
    );
}

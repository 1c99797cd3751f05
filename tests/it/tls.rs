//! TLS termination on the second listener: certificates by SNI (exact, wildcard, default),
//! protocol versions, resumption, `https` seen by routes and upstreams, reloads, config errors.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, HandshakeKind, ProtocolVersion, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::harness::TestGateway;
use crate::support::Upstream;

/// A test CA and leaf certificates it signs.
pub(crate) struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

/// A leaf certificate: its DER (to compare with what the server presents) and PEM pair.
pub(crate) struct Leaf {
    der: CertificateDer<'static>,
    pub(crate) cert: String,
    pub(crate) key: String,
}

impl Pki {
    pub(crate) fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("key");
        Pki {
            ca: CertifiedIssuer::self_signed(params, key).expect("CA"),
        }
    }

    pub(crate) fn leaf(&self, names: &[&str]) -> Leaf {
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("params");
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.ca).expect("leaf");
        Leaf {
            der: cert.der().clone(),
            // The chain: leaf, then the CA.
            cert: format!("{}{}", cert.pem(), self.ca.pem()),
            key: key.serialize_pem(),
        }
    }

    /// The CA certificate (PEM), as `ca_certificates` hold it.
    pub(crate) fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    fn ca_der(&self) -> CertificateDer<'static> {
        self.ca.der().clone()
    }
}

/// A YAML double-quoted scalar (JSON strings are valid YAML).
pub(crate) fn q(s: &str) -> String {
    serde_json::to_string(s).expect("string")
}

/// A configuration with routes to `up` and these certificates (`(leaf, snis)`).
fn config(up: &Upstream, certs: &[(&Leaf, &[&str])]) -> String {
    let mut yaml = format!(
        "_format_version: \"3.0\"\nservices:\n- name: svc\n  url: http://{}\n  routes:\n  - name: any\n    paths: [/any]\n  - name: secure\n    paths: [/secure]\n    protocols: [https]\n  - name: plain\n    paths: [/plain]\n    protocols: [http]\ncertificates:\n",
        up.addr()
    );
    for (leaf, snis) in certs {
        yaml.push_str(&format!(
            "- cert: {}\n  key: {}\n  snis: [{}]\n",
            q(&leaf.cert),
            q(&leaf.key),
            snis.join(", ")
        ));
    }
    yaml
}

fn client_config(
    pki: &Pki,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca_der()).expect("root");
    let mut config = ClientConfig::builder_with_provider(gatehouse::tls::provider())
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

pub(crate) fn default_client(pki: &Pki) -> Arc<ClientConfig> {
    client_config(pki, rustls::DEFAULT_VERSIONS)
}

pub(crate) async fn connect(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    name: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_string()).map_err(std::io::Error::other)?;
    TlsConnector::from(config.clone()).connect(name, tcp).await
}

/// What the server presented: the leaf certificate.
fn leaf_of(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    let (_, conn) = stream.get_ref();
    conn.peer_certificates().expect("peer certificates")[0].clone()
}

/// GET `url` (its authority as `Host`) on an established connection: status and body.
async fn get(stream: TlsStream<TcpStream>, url: &str) -> (u16, serde_json::Value) {
    let uri: http::Uri = url.parse().expect("url");
    let host = uri.authority().expect("authority").as_str();
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("http handshake");
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", host)
        .body(Empty::<Bytes>::new())
        .expect("request");
    let resp = sender.send_request(req).await.expect("response");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test]
async fn certificates_are_chosen_by_sni() {
    let up = Upstream::start().await;
    let pki = Pki::new();
    let a = pki.leaf(&["a.test"]);
    let b = pki.leaf(&["*.b.test"]);
    let fallback = pki.leaf(&["unknown.test", "127.0.0.1"]);
    let gw = TestGateway::start_tls(&config(
        &up,
        &[(&a, &["a.test"]), (&b, &["\"*.b.test\""]), (&fallback, &[])],
    ));
    let addr = gw.tls_addr.expect("TLS listener");
    let client = default_client(&pki);
    for (name, expected) in [
        ("a.test", &a),
        ("A.TEST", &a),
        ("x.b.test", &b),
        ("unknown.test", &fallback),
    ] {
        let stream = connect(addr, &client, name).await.expect(name);
        assert_eq!(leaf_of(&stream), expected.der, "{name}");
    }
    // A wildcard covers one label only: the default answers (and the client refuses it).
    assert!(connect(addr, &client, "y.x.b.test").await.is_err());
    // Without SNI (an IP address as the name), the default.
    let stream = connect(addr, &client, "127.0.0.1").await.expect("no SNI");
    assert_eq!(leaf_of(&stream), fallback.der);
}

#[tokio::test]
async fn first_certificate_is_the_default_when_all_have_snis() {
    let up = Upstream::start().await;
    let pki = Pki::new();
    let a = pki.leaf(&["a.test", "other.test"]);
    let c = pki.leaf(&["c.test"]);
    let gw = TestGateway::start_tls(&config(&up, &[(&a, &["a.test"]), (&c, &["c.test"])]));
    let stream = connect(
        gw.tls_addr.expect("tls"),
        &default_client(&pki),
        "other.test",
    )
    .await
    .expect("default");
    assert_eq!(leaf_of(&stream), a.der);
}

#[tokio::test]
async fn tls_12_and_13_are_accepted_and_older_refused() {
    let up = Upstream::start().await;
    let pki = Pki::new();
    let a = pki.leaf(&["a.test"]);
    let gw = TestGateway::start_tls(&config(&up, &[(&a, &["a.test"])]));
    let addr = gw.tls_addr.expect("tls");
    for (version, expected) in [
        (&rustls::version::TLS12, ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, ProtocolVersion::TLSv1_3),
    ] {
        let stream = connect(addr, &client_config(&pki, &[version]), "a.test")
            .await
            .expect("handshake");
        let (_, conn) = stream.get_ref();
        assert_eq!(conn.protocol_version(), Some(expected));
        assert_eq!(conn.alpn_protocol(), Some(&b"http/1.1"[..]));
        let (status, body) = get(stream, &gw.tls_url("a.test", "/any")).await;
        assert_eq!(status, 200);
        assert_eq!(body["headers"]["x-forwarded-proto"], "https");
    }
    // A TLS 1.1 ClientHello (no supported_versions extension) gets an alert, not a ServerHello.
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(&tls11_client_hello()).await.expect("write");
    let mut reply = Vec::new();
    let _ = tcp.read_to_end(&mut reply).await;
    // A fatal alert record, no ServerHello.
    assert_eq!(reply.first(), Some(&0x15), "{reply:?}");
    assert_eq!(reply.get(5), Some(&2), "{reply:?}");
}

/// A minimal TLS 1.1 ClientHello (RSA/AES-128-CBC-SHA and ECDHE-RSA-AES128-SHA).
fn tls11_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x02];
    body.extend_from_slice(&[7u8; 32]);
    body.push(0); // session id
    body.extend_from_slice(&[0x00, 0x04, 0x00, 0x2f, 0xc0, 0x13]);
    body.extend_from_slice(&[0x01, 0x00]); // compression: null
    let mut handshake = vec![0x01, 0x00];
    handshake.extend_from_slice(&(body.len() as u16).to_be_bytes());
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

#[tokio::test]
async fn requests_over_tls_are_https() {
    let up = Upstream::start().await;
    let pki = Pki::new();
    let a = pki.leaf(&["a.test"]);
    let gw = TestGateway::start_tls(&config(&up, &[(&a, &["a.test"])]));
    let addr = gw.tls_addr.expect("tls");
    let client = default_client(&pki);

    let stream = connect(addr, &client, "a.test").await.expect("tls");
    let (status, body) = get(stream, &gw.tls_url("a.test", "/secure")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["headers"]["x-forwarded-proto"], "https");
    assert_eq!(
        body["headers"]["x-forwarded-port"],
        addr.port().to_string().as_str()
    );
    // The https-only route still refuses plain HTTP.
    assert_eq!(gw.get("/secure", &[]).await.status, 426);
    assert_eq!(gw.get("/any", &[]).await.status, 200);
    // An http-only route does not match over TLS (nothing else does here: 404).
    let stream = connect(addr, &client, "a.test").await.expect("tls");
    assert_eq!(get(stream, &gw.tls_url("a.test", "/plain")).await.0, 404);
    assert_eq!(gw.get("/plain", &[]).await.status, 200);
}

#[tokio::test]
async fn returning_clients_resume() {
    let up = Upstream::start().await;
    let pki = Pki::new();
    let a = pki.leaf(&["a.test"]);
    let gw = TestGateway::start_tls(&config(&up, &[(&a, &["a.test"])]));
    let addr = gw.tls_addr.expect("tls");
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let client = client_config(&pki, &[version]);
        let first = connect(addr, &client, "a.test").await.expect("first");
        assert_eq!(
            first.get_ref().1.handshake_kind(),
            Some(HandshakeKind::Full)
        );
        // A request, so that the TLS 1.3 tickets sent after the handshake are read.
        assert_eq!(get(first, &gw.tls_url("a.test", "/any")).await.0, 200);
        let second = connect(addr, &client, "a.test").await.expect("second");
        assert_eq!(
            second.get_ref().1.handshake_kind(),
            Some(HandshakeKind::Resumed),
            "{version:?}"
        );
        assert_eq!(get(second, &gw.tls_url("a.test", "/any")).await.0, 200);
    }
}

#[tokio::test]
async fn reload_changes_certificates() {
    let up = Upstream::start().await;
    let pki = Pki::new();
    let old = pki.leaf(&["a.test"]);
    let new = pki.leaf(&["a.test"]);
    let gw = TestGateway::start_tls(&config(&up, &[(&old, &["a.test"])]));
    let addr = gw.tls_addr.expect("tls");
    // Fresh client configs: no session to resume, so the certificate is presented again.
    let stream = connect(addr, &default_client(&pki), "a.test")
        .await
        .expect("old");
    assert_eq!(leaf_of(&stream), old.der);
    gw.swap(&config(&up, &[(&new, &["a.test"])]));
    let stream = connect(addr, &default_client(&pki), "a.test")
        .await
        .expect("new");
    assert_eq!(leaf_of(&stream), new.der);
}

#[tokio::test]
async fn tls_listener_without_certificates_refuses_until_a_reload_adds_one() {
    let up = Upstream::start().await;
    let pki = Pki::new();
    let yaml = format!(
        "_format_version: \"3.0\"\nservices:\n- name: svc\n  url: http://{}\n  routes:\n  - paths: [/]\n",
        up.addr()
    );
    let gw = TestGateway::start_tls(&yaml);
    let addr = gw
        .tls_addr
        .expect("the TLS listener starts without certificates");
    assert_eq!(gw.get("/", &[]).await.status, 200);
    assert!(
        connect(addr, &default_client(&pki), "a.test")
            .await
            .is_err(),
        "no certificate to present: the handshake is refused"
    );
    let leaf = pki.leaf(&["a.test"]);
    gw.swap(&config(&up, &[(&leaf, &["a.test"])]));
    let stream = connect(addr, &default_client(&pki), "a.test")
        .await
        .expect("handshake once a certificate is configured");
    assert_eq!(leaf_of(&stream), leaf.der);
    assert_eq!(get(stream, &gw.tls_url("a.test", "/any")).await.0, 200);
}

#[tokio::test]
async fn certificates_by_file_reference_are_read_again_on_reload() {
    let up = Upstream::start().await;
    let pki = Pki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let write_pair = |leaf: &Leaf| {
        std::fs::write(dir.path().join("site.crt"), &leaf.cert).expect("cert");
        std::fs::write(dir.path().join("site.key"), &leaf.key).expect("key");
    };
    let yaml = format!(
        "_format_version: \"3.0\"\nservices:\n- name: svc\n  url: http://{}\n  routes:\n  - paths: [/any]\ncertificates:\n- cert_file: {}\n  key_file: {}\n  snis: [a.test]\n",
        up.addr(),
        q(&dir.path().join("site.crt").display().to_string()),
        q(&dir.path().join("site.key").display().to_string()),
    );
    let first = pki.leaf(&["a.test"]);
    write_pair(&first);
    let gw = TestGateway::start_tls(&yaml);
    let addr = gw.tls_addr.expect("tls");
    let stream = connect(addr, &default_client(&pki), "a.test")
        .await
        .expect("first");
    assert_eq!(leaf_of(&stream), first.der);
    // Renewed on disk: a reload serves the new pair.
    let renewed = pki.leaf(&["a.test"]);
    write_pair(&renewed);
    gw.swap(&yaml);
    let stream = connect(addr, &default_client(&pki), "a.test")
        .await
        .expect("renewed");
    assert_eq!(leaf_of(&stream), renewed.der);
    assert_eq!(get(stream, &gw.tls_url("a.test", "/any")).await.0, 200);
    // A missing file is a configuration error at its field.
    let errs = errors(&yaml.replace("site.key", "gone.key"));
    let e = find(&errs, "certificates[0].key_file");
    assert!(e.message.contains("gone.key"), "{e}");
    assert!(e.line.is_some(), "{e}");
}

#[tokio::test]
async fn plugins_run_only_on_the_protocols_they_name() {
    let up = Upstream::start().await;
    let pki = Pki::new();
    let leaf = pki.leaf(&["a.test"]);
    let yaml = format!(
        "_format_version: \"3.0\"\nservices:\n- name: svc\n  url: http://{}\n  routes:\n  - paths: [/any]\n    plugins:\n    - name: request-termination\n      protocols: [https]\n      config: {{status_code: 418, message: tls only}}\n    - name: correlation-id\n      protocols: [http]\n      config: {{header_name: X-Plain-Id, echo_downstream: true}}\ncertificates:\n- cert: {}\n  key: {}\n",
        up.addr(),
        q(&leaf.cert),
        q(&leaf.key)
    );
    let gw = TestGateway::start_tls(&yaml);
    // Plain HTTP: the https-only termination does not run, the http-only plugin does.
    let plain = gw.get("/any", &[]).await;
    assert_eq!(plain.status, 200);
    assert!(
        !plain.header("x-plain-id").is_empty(),
        "{:?}",
        plain.headers
    );
    // Over TLS: the other way round.
    let stream = connect(gw.tls_addr.expect("tls"), &default_client(&pki), "a.test")
        .await
        .expect("tls");
    let (status, body) = get(stream, &gw.tls_url("a.test", "/any")).await;
    assert_eq!(status, 418);
    assert_eq!(body["message"], "tls only");
}

fn errors(yaml: &str) -> Vec<gatehouse::config::ConfigError> {
    match gatehouse::snapshot::load_str("kong.yml", yaml) {
        Err(e) => e.0,
        Ok(_) => panic!("expected errors for:\n{yaml}"),
    }
}

fn find<'a>(
    errs: &'a [gatehouse::config::ConfigError],
    path: &str,
) -> &'a gatehouse::config::ConfigError {
    errs.iter()
        .find(|e| e.path == path)
        .unwrap_or_else(|| panic!("no error at {path}: {errs:#?}"))
}

#[test]
fn certificate_errors_name_the_field() {
    let pki = Pki::new();
    let a = pki.leaf(&["a.test"]);
    let b = pki.leaf(&["b.test"]);
    let yaml = format!(
        "_format_version: \"3.0\"\ncertificates:\n- cert: \"not a pem\"\n  key: {}\n- cert: {}\n  key: {}\n  snis: [a.test]\n- id: c3\n  cert: {}\n  key: {}\n  snis: [a.test, \"*.*.test\"]\nsnis:\n- name: b.test\n  certificate: nope\n- name: A.test\n  certificate: c3\n",
        q(&a.key),
        q(&a.cert),
        q(&b.key),
        q(&b.cert),
        q(&b.key),
    );
    let errs = errors(&yaml);
    let e = find(&errs, "certificates[0].cert");
    assert_eq!(e.line, Some(3), "{e}");
    assert!(e.message.contains("PEM"), "{e}");
    assert!(
        find(&errs, "certificates[1].key")
            .message
            .contains("does not match")
    );
    let dup = find(&errs, "certificates[2].snis[0]");
    assert_eq!(dup.line, Some(11), "{dup}");
    assert!(dup.message.contains("duplicate SNI `a.test`"), "{dup}");
    assert!(
        find(&errs, "certificates[2].snis[1]")
            .message
            .contains("wildcard")
    );
    assert!(find(&errs, "snis[0].certificate").message.contains("nope"));
    assert!(
        find(&errs, "snis[1].name")
            .message
            .contains("duplicate SNI `a.test`")
    );
    let text = gatehouse::config::ConfigErrors(errs.clone()).to_string();
    assert!(text.contains("kong.yml:3:"), "{text}");
}

#[test]
fn the_command_starts_the_tls_listener_unless_off() {
    let pki = Pki::new();
    let a = pki.leaf(&["a.test"]);
    let yaml = format!(
        "_format_version: \"3.0\"\nservices:\n- name: s\n  url: http://127.0.0.1:9\n  routes:\n  - paths: [/]\ncertificates:\n- cert: {}\n  key: {}\n",
        q(&a.cert),
        q(&a.key)
    );
    let file = crate::cli::write(&yaml);
    let field = |line: &str| {
        line.split("proxy_tls=")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or("")
            .to_string()
    };
    let on = crate::cli::Running::start_with_env(
        file.path(),
        &[("GATEHOUSE_PROXY_TLS_LISTEN", "127.0.0.1:0")],
    );
    let addr: SocketAddr = field(&on.started).parse().expect("TLS address logged");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let stream = rt.block_on(connect(addr, &default_client(&pki), "a.test"));
    assert_eq!(leaf_of(&stream.expect("handshake")), a.der);
    on.signal("-TERM");
    on.assert_exits_cleanly();

    let off =
        crate::cli::Running::start_with_env(file.path(), &[("GATEHOUSE_PROXY_TLS_LISTEN", "off")]);
    assert_eq!(field(&off.started), "off");
    off.signal("-TERM");
    off.assert_exits_cleanly();
}

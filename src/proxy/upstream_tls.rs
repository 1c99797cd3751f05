//! TLS to upstreams (`https` services): one [`ClientTls`] per service, built once per snapshot
//! from the service's settings ([`TlsSettings`]), and used by every connection the workers open
//! to the service's targets. Reusable by other protocols over TLS (pass ALPN protocols).
//!
//! - **Verification** is on unless a service says `tls_verify: false`: the chain is checked
//!   against the service's `ca_certificates`, or else the system's trust store (read once per
//!   process with `rustls-native-certs`), and the name against the server name.
//! - **Server name**: the host of the `Host` header sent upstream, port removed (Kong's
//!   `proxy_ssl_name $upstream_host`); an IP address sends no SNI and is verified against the
//!   certificate's IP addresses.
//! - **Depth**: `tls_verify_depth` caps the intermediate certificates between the upstream's
//!   certificate and a trusted root (OpenSSL's meaning: 0 = issued by the root itself).
//! - **Client certificate**: the service's `client_certificate` is presented when the upstream
//!   asks for one.
//! - **Pooling**: a TLS connection is pooled under a key naming the settings' fingerprint and
//!   the server name besides `host:port` ([`TlsDest::key`]), so it is never reused for another
//!   server name, other verification settings, or a plain request.
//!
//! A failed handshake is mapped to a short reason by [`failure`], which the gateway sends in its
//! 502 body (the full error goes to the debug log).

use std::hash::{Hash, Hasher};
use std::io;
use std::sync::{Arc, OnceLock};

use http::HeaderValue;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::sign::CertifiedKey;
use rustls::{
    AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct, Error as TlsError,
    OtherError, RootCertStore, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::snapshot::TargetAddr;

/// The TLS settings of one service.
#[derive(Clone, Default)]
pub struct TlsSettings {
    /// Verify the upstream's certificate (chain, validity and name).
    pub verify: bool,
    /// Most intermediate certificates allowed in the verified chain; `None`: no limit.
    pub verify_depth: Option<u32>,
    /// Trusted roots; empty means the system's trust store.
    pub ca_certificates: Vec<CertificateDer<'static>>,
    /// Presented to upstreams that ask for a client certificate.
    pub client_certificate: Option<Arc<CertifiedKey>>,
    /// ALPN protocols offered (none for HTTP/1.1).
    pub alpn: Vec<Vec<u8>>,
}

/// Why a [`ClientTls`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientTlsError {
    #[error("unusable CA certificate: {0}")]
    BadCa(TlsError),
    #[error("TLS client configuration: {0}")]
    Verifier(#[from] rustls::client::VerifierBuilderError),
    #[error("TLS client configuration: {0}")]
    Rustls(#[from] TlsError),
}

/// A TLS client configuration for one set of [`TlsSettings`].
pub struct ClientTls {
    config: Arc<ClientConfig>,
    /// Fingerprint of the settings: connections made with equal settings are interchangeable.
    id: u64,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientTls({:016x})", self.id)
    }
}

impl ClientTls {
    /// Build the client configuration (verifier, trust roots, client certificate, ALPN).
    pub fn new(settings: &TlsSettings) -> Result<ClientTls, ClientTlsError> {
        let provider = crate::tls::provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
        let verifier: Arc<dyn ServerCertVerifier> = if settings.verify {
            let roots = if settings.ca_certificates.is_empty() {
                system_roots()
            } else {
                let mut roots = RootCertStore::empty();
                for ca in &settings.ca_certificates {
                    roots.add(ca.clone()).map_err(ClientTlsError::BadCa)?;
                }
                Arc::new(roots)
            };
            if roots.is_empty() {
                // An empty system store (warned about when read): every certificate is
                // untrusted, which each request reports, rather than refusing the configuration.
                Arc::new(NoVerification {
                    provider: provider.clone(),
                    refuse: true,
                })
            } else {
                let inner =
                    WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
                        .build()?;
                match settings.verify_depth {
                    None => inner,
                    Some(depth) => Arc::new(DepthLimited {
                        inner,
                        roots,
                        depth: depth as usize,
                        algorithms: provider.signature_verification_algorithms,
                    }),
                }
            }
        } else {
            Arc::new(NoVerification {
                provider: provider.clone(),
                refuse: false,
            })
        };
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match &settings.client_certificate {
            Some(key) => builder.with_client_cert_resolver(Arc::new(ClientCert(key.clone()))),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = settings.alpn.clone();
        Ok(ClientTls {
            config: Arc::new(config),
            id: fingerprint(settings),
        })
    }

    /// The rustls configuration (for clients of other protocols).
    pub fn config(&self) -> &Arc<ClientConfig> {
        &self.config
    }

    /// Where a request to `target` goes over TLS when its `Host` header is `host`: the server
    /// name to send and verify, and the pool key of such connections.
    pub fn dest(&self, host: Option<&HeaderValue>, target: &TargetAddr) -> TlsDest<'_> {
        let host = host
            .and_then(|h| h.to_str().ok())
            .map(host_without_port)
            .filter(|h| !h.is_empty())
            .unwrap_or(&target.host);
        // A host that is no valid name (a client's, kept by preserve_host) verifies against
        // nothing and sends no SNI.
        let name =
            ServerName::try_from(host)
                .map(|n| n.to_owned())
                .unwrap_or(ServerName::IpAddress(
                    std::net::Ipv4Addr::UNSPECIFIED.into(),
                ));
        let key = format!("tls:{:016x}:{host}@{}", self.id, target.key).into();
        TlsDest {
            tls: self,
            name,
            key,
        }
    }

    /// The TLS handshake over `tcp` for `name`.
    pub async fn handshake(
        &self,
        name: ServerName<'static>,
        tcp: TcpStream,
    ) -> io::Result<TlsStream<TcpStream>> {
        TlsConnector::from(self.config.clone())
            .connect(name, tcp)
            .await
    }
}

/// One TLS destination of a request (see [`ClientTls::dest`]).
pub struct TlsDest<'a> {
    pub tls: &'a ClientTls,
    pub name: ServerName<'static>,
    /// The pool key of connections to this destination.
    pub key: Arc<str>,
}

/// `host` of `host:port`, `[v6]:port` or `[v6]` (brackets removed).
fn host_without_port(h: &str) -> &str {
    if let Some(rest) = h.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match h.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => h,
    }
}

/// The `Host` header of a request to `target` over TLS when nothing else sets it: the target's,
/// without the port when it is 443 (as Kong does for https).
pub fn host_header(target: &TargetAddr) -> Option<HeaderValue> {
    if target.port != 443 {
        return None;
    }
    let host = if target.host.contains(':') {
        format!("[{}]", target.host)
    } else {
        target.host.clone()
    };
    HeaderValue::from_str(&host).ok()
}

fn fingerprint(s: &TlsSettings) -> u64 {
    // SipHash with fixed keys: equal settings give equal fingerprints across reloads, so pooled
    // connections survive a reload that does not change a service's TLS settings.
    #[allow(deprecated)]
    let mut h = std::hash::SipHasher::new();
    s.verify.hash(&mut h);
    s.verify_depth.hash(&mut h);
    for ca in &s.ca_certificates {
        ca.as_ref().hash(&mut h);
    }
    if let Some(key) = &s.client_certificate {
        for c in &key.cert {
            c.as_ref().hash(&mut h);
        }
    }
    s.alpn.hash(&mut h);
    h.finish()
}

/// The system's trust store, read once.
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!(error = %e, "reading the system's trusted certificates");
            }
            let mut roots = RootCertStore::empty();
            let (added, ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                tracing::warn!(
                    "no trusted certificates found in the system's store: https upstreams without `ca_certificates` fail verification"
                );
            }
            tracing::debug!(added, ignored, "system trust store loaded");
            Arc::new(roots)
        })
        .clone()
}

/// Presents one client certificate whenever an upstream asks.
#[derive(Debug)]
struct ClientCert(Arc<CertifiedKey>);

impl ResolvesClientCert for ClientCert {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
    fn has_certs(&self) -> bool {
        true
    }
}

/// No chain verification: `tls_verify: false` accepts any certificate (the handshake
/// signatures are still checked: they prove the peer holds the key of the certificate it sent);
/// with `refuse` (no trusted root at all) every certificate is untrusted.
#[derive(Debug)]
struct NoVerification {
    provider: Arc<CryptoProvider>,
    refuse: bool,
}

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        if self.refuse {
            return Err(TlsError::InvalidCertificate(
                CertificateError::UnknownIssuer,
            ));
        }
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The standard verification, then a second path search that only accepts chains of at most
/// `depth` intermediates (webpki itself has no depth setting).
#[derive(Debug)]
struct DepthLimited {
    inner: Arc<WebPkiServerVerifier>,
    roots: Arc<RootCertStore>,
    depth: usize,
    algorithms: WebPkiSupportedAlgorithms,
}

/// The verified chain is longer than `tls_verify_depth` allows.
#[derive(Debug, thiserror::Error)]
#[error("certificate chain longer than tls_verify_depth allows")]
struct TooDeep;

impl ServerCertVerifier for DepthLimited {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        let too_deep =
            || TlsError::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(TooDeep))));
        let cert = webpki::EndEntityCert::try_from(end_entity).map_err(|_| too_deep())?;
        let depth = self.depth;
        let within = |path: &webpki::VerifiedPath<'_>| {
            if path.intermediate_certificates().count() > depth {
                Err(webpki::Error::MaximumPathDepthExceeded)
            } else {
                Ok(())
            }
        };
        cert.verify_for_usage(
            self.algorithms.all,
            &self.roots.roots,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
            None,
            Some(&within),
        )
        .map_err(|_| too_deep())?;
        Ok(verified)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The short reason of a TLS failure carried by `e` (a handshake error, or an alert the upstream
/// sent later, as a TLS 1.3 server refusing a client certificate does); `None` when `e` is not
/// a TLS error.
pub fn failure(e: &io::Error) -> Option<&'static str> {
    let tls = e.get_ref()?.downcast_ref::<TlsError>()?;
    Some(match tls {
        TlsError::InvalidCertificate(c) => match c {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the upstream's certificate has expired"
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the upstream's certificate is not valid yet"
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                "the upstream's certificate does not match the server name"
            }
            CertificateError::UnknownIssuer => {
                "the upstream's certificate is not issued by a trusted CA"
            }
            CertificateError::Other(o) if o.0.downcast_ref::<TooDeep>().is_some() => {
                "the upstream's certificate chain is longer than tls_verify_depth allows"
            }
            _ => "the upstream's certificate is invalid",
        },
        TlsError::AlertReceived(
            AlertDescription::CertificateRequired
            | AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::AccessDenied,
        ) => "the upstream refused the client certificate",
        TlsError::AlertReceived(_) => "the upstream refused the handshake",
        _ => "the handshake failed",
    })
}

/// [`failure`] for the first I/O error in the source chain of `e` (a hyper error, say).
pub fn failure_in(e: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return failure(io);
        }
        next = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_come_from_the_host_without_its_port() {
        assert_eq!(host_without_port("api.example.com:8443"), "api.example.com");
        assert_eq!(host_without_port("api.example.com"), "api.example.com");
        assert_eq!(host_without_port("[::1]:443"), "::1");
        assert_eq!(host_without_port("[::1]"), "::1");
        assert_eq!(host_without_port("10.0.0.1:443"), "10.0.0.1");
    }

    #[test]
    fn keys_differ_by_settings_and_name_and_ip_names_send_no_sni() {
        let verify = ClientTls::new(&TlsSettings {
            verify: true,
            ..Default::default()
        })
        .unwrap();
        let insecure = ClientTls::new(&TlsSettings::default()).unwrap();
        let target = crate::snapshot::target_addr("10.0.0.1", 443);
        let a = verify.dest(Some(&HeaderValue::from_static("a.example")), &target);
        let b = verify.dest(Some(&HeaderValue::from_static("b.example:443")), &target);
        let c = insecure.dest(Some(&HeaderValue::from_static("a.example")), &target);
        assert_ne!(a.key, b.key);
        assert_ne!(a.key, c.key);
        assert_ne!(&*a.key, &*target.key);
        assert!(matches!(b.name, ServerName::DnsName(ref n) if n.as_ref() == "b.example"));
        let ip = verify.dest(None, &target);
        assert!(matches!(ip.name, ServerName::IpAddress(_)));
        assert_eq!(host_header(&target).unwrap(), "10.0.0.1");
    }
}

//! TLS termination: the configuration's certificates compiled once per snapshot into a
//! [`CertStore`], and the rustls server configuration of the TLS listener, whose certificate
//! resolver picks a certificate by SNI from the snapshot serving at handshake time (so a reload
//! changes certificates without a restart). See `docs/tls.md`.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use rustls::{Error as RustlsError, InconsistentKeys, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::ConfigDoc;
use crate::proxy::handler::Shared;

/// Sessions remembered by the server for resumption by session id (TLS 1.2) or stateful ticket.
const SESSION_CACHE_SIZE: usize = 4096;

/// The one crypto provider of the gateway (aws-lc-rs).
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .clone()
}

/// Why the TLS listener could not be configured.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("TLS configuration: {0}")]
    Rustls(#[from] RustlsError),
}

/// The certificates of one configuration, indexed by server name.
#[derive(Default)]
pub struct CertStore {
    /// Per certificate: its key pairs, the primary first, then the alternate.
    certs: Vec<Vec<Arc<CertifiedKey>>>,
    exact: HashMap<String, usize>,
    /// `*.example.com`, keyed `example.com`.
    leading_wildcard: HashMap<String, usize>,
    /// `example.*`, keyed `example`.
    trailing_wildcard: HashMap<String, usize>,
    default: Option<usize>,
    /// Index in the document's `certificates` -> index in `certs` (`None`: it had errors).
    by_doc: Vec<Option<usize>>,
}

impl CertStore {
    /// The primary key pair of the document's certificate at `doc_index` (for client
    /// certificates presented to upstreams).
    pub fn key_of(&self, doc_index: usize) -> Option<Arc<CertifiedKey>> {
        let idx = (*self.by_doc.get(doc_index)?)?;
        self.certs.get(idx)?.first().cloned()
    }

    /// Whether the configuration has no certificate.
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }

    /// How many certificates there are.
    pub fn len(&self) -> usize {
        self.certs.len()
    }

    /// The index of the certificate for `server_name`: the exact name, then a leading
    /// wildcard, then a trailing one, then the default.
    pub fn select(&self, server_name: Option<&str>) -> Option<usize> {
        let Some(name) = server_name else {
            return self.default;
        };
        let lowered;
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = name.to_ascii_lowercase();
            lowered.as_str()
        } else {
            name
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        self.exact
            .get(name)
            .or_else(|| {
                name.split_once('.')
                    .and_then(|(_, rest)| self.leading_wildcard.get(rest))
            })
            .or_else(|| {
                name.rsplit_once('.')
                    .and_then(|(head, _)| self.trailing_wildcard.get(head))
            })
            .copied()
            .or(self.default)
    }

    /// The key pair to present for `server_name` to a client offering `schemes`: of the
    /// selected certificate, the first key pair able to sign with one of them.
    pub fn resolve(
        &self,
        server_name: Option<&str>,
        schemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        let keys = self.certs.get(self.select(server_name)?)?;
        keys.iter()
            .find(|k| k.key.choose_scheme(schemes).is_some())
            .or_else(|| keys.first())
            .cloned()
    }
}

/// Compile the certificates and SNIs of `doc`; each problem goes to `report(path, message)`.
pub fn compile_certificates(doc: &ConfigDoc, report: &mut dyn FnMut(String, String)) -> CertStore {
    let provider = provider();
    let mut store = CertStore::default();
    // Index in `doc.certificates` -> index in `store.certs` (certificates with errors are left out).
    let mut compiled: Vec<Option<usize>> = Vec::with_capacity(doc.certificates.len());
    for c in &doc.certificates {
        let path = &c.path;
        let mut keys = Vec::with_capacity(2);
        if let Some(k) = certified_key(
            &provider,
            (&c.item.cert, &format!("{path}.cert")),
            (&c.item.key, &format!("{path}.key")),
            report,
        ) {
            keys.push(Arc::new(k));
        }
        match (&c.item.cert_alt, &c.item.key_alt) {
            (Some(cert), Some(key)) => {
                if let Some(k) = certified_key(
                    &provider,
                    (cert, &format!("{path}.cert_alt")),
                    (key, &format!("{path}.key_alt")),
                    report,
                ) {
                    keys.push(Arc::new(k));
                }
            }
            (Some(_), None) => report(
                format!("{path}.cert_alt"),
                "`cert_alt` requires `key_alt`".into(),
            ),
            (None, Some(_)) => report(
                format!("{path}.key_alt"),
                "`key_alt` requires `cert_alt`".into(),
            ),
            (None, None) => {}
        }
        if keys.is_empty() {
            compiled.push(None);
        } else {
            compiled.push(Some(store.certs.len()));
            store.certs.push(keys);
        }
    }

    let mut declared: HashMap<String, &str> = HashMap::new();
    let mut has_sni = vec![false; doc.certificates.len()];
    for s in &doc.snis {
        let at = if s.item.bare {
            s.path.clone()
        } else {
            format!("{}.name", s.path)
        };
        let name = s.item.name.to_ascii_lowercase();
        if let Err(message) = check_sni(&name) {
            report(at, message);
            continue;
        }
        if let Some(first) = declared.get(&name) {
            report(
                at,
                format!("duplicate SNI `{name}`: already declared at {first}"),
            );
            continue;
        }
        declared.insert(name.clone(), &s.path);
        let Some(cert) = s.parent else { continue };
        if let Some(flag) = has_sni.get_mut(cert) {
            *flag = true;
        }
        let Some(Some(idx)) = compiled.get(cert).copied() else {
            continue;
        };
        if let Some(rest) = name.strip_prefix("*.") {
            store.leading_wildcard.insert(rest.to_string(), idx);
        } else if let Some(head) = name.strip_suffix(".*") {
            store.trailing_wildcard.insert(head.to_string(), idx);
        } else {
            store.exact.insert(name, idx);
        }
    }
    // The default: the first certificate without SNIs, else the first one.
    store.default = compiled
        .iter()
        .zip(&has_sni)
        .find_map(|(idx, named)| if *named { None } else { *idx })
        .or_else(|| compiled.iter().find_map(|idx| *idx));
    store.by_doc = compiled;
    store
}

/// A chain and key from PEM, checked to belong together.
fn certified_key(
    provider: &CryptoProvider,
    (cert, cert_path): (&str, &str),
    (key, key_path): (&str, &str),
    report: &mut dyn FnMut(String, String),
) -> Option<CertifiedKey> {
    let chain = match CertificateDer::pem_slice_iter(cert.as_bytes()).collect::<Result<Vec<_>, _>>()
    {
        Ok(chain) if chain.is_empty() => {
            report(
                cert_path.into(),
                "no PEM certificate (`-----BEGIN CERTIFICATE-----`) found".into(),
            );
            None
        }
        Ok(chain) => Some(chain),
        Err(e) => {
            report(
                cert_path.into(),
                format!("not a PEM certificate chain: {e}"),
            );
            None
        }
    };
    let key = match PrivateKeyDer::from_pem_slice(key.as_bytes()) {
        Ok(key) => match provider.key_provider.load_private_key(key) {
            Ok(key) => Some(key),
            Err(e) => {
                report(key_path.into(), format!("unusable private key: {e}"));
                None
            }
        },
        Err(e) => {
            report(
                key_path.into(),
                format!("not a PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"),
            );
            None
        }
    };
    let certified = CertifiedKey::new(chain?, key?);
    match certified.keys_match() {
        Ok(()) | Err(RustlsError::InconsistentKeys(InconsistentKeys::Unknown)) => Some(certified),
        Err(RustlsError::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            report(
                key_path.into(),
                format!("private key does not match the certificate in `{cert_path}`"),
            );
            None
        }
        Err(e) => {
            report(cert_path.into(), format!("unusable certificate: {e}"));
            None
        }
    }
}

/// Kong's rules for an SNI name: a host name, with at most one wildcard label, leftmost or
/// rightmost; no IP address, no port.
fn check_sni(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 253 {
        return Err("must be a host name of 1 to 253 characters".into());
    }
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!(
            "`{name}` is an IP address; an SNI must be a host name"
        ));
    }
    let labels: Vec<&str> = name.split('.').collect();
    let wildcards = labels.iter().filter(|l| l.contains('*')).count();
    let last = labels.len() - 1;
    for (i, label) in labels.iter().enumerate() {
        if *label == "*" {
            if labels.len() < 2 || (i != 0 && i != last) || wildcards > 1 {
                return Err(format!(
                    "`{name}`: a wildcard must be the whole leftmost or rightmost label, once"
                ));
            }
            continue;
        }
        let valid = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !valid {
            return Err(format!(
                "`{name}` is not a valid host name (label `{label}`)"
            ));
        }
    }
    Ok(())
}

/// Picks the certificate from the configuration serving at handshake time.
pub struct SniResolver {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SniResolver").finish_non_exhaustive()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let snapshot = self.shared.snapshot.load();
        let key = snapshot
            .certificates
            .resolve(hello.server_name(), hello.signature_schemes());
        if key.is_none() {
            tracing::debug!(sni = ?hello.server_name(), "no certificate for this TLS handshake");
        }
        key
    }
}

/// The rustls configuration of the TLS listener: TLS 1.3 and 1.2, ALPN `h2` (when `http2`) and
/// `http/1.1`, a session cache and stateless tickets, certificates by SNI from the current
/// snapshot.
pub fn server_config(
    shared: Arc<Shared>,
    http2: bool,
) -> Result<Arc<rustls::ServerConfig>, TlsSetupError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver { shared }));
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_SIZE);
    config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::check_sni;

    #[test]
    fn sni_names() {
        for ok in ["a.test", "*.b.test", "example.*", "x_y.test", "localhost"] {
            assert!(check_sni(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "*",
            "a.*.test",
            "*.*.test",
            "127.0.0.1",
            "a..test",
            "-a.test",
            "a.test:443",
        ] {
            assert!(check_sni(bad).is_err(), "{bad}");
        }
    }
}

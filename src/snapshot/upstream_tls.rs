//! Compiling upstream TLS: Kong's `ca_certificates` entities, and the TLS settings of services
//! that speak TLS to their upstream (`tls_verify`, `tls_verify_depth`, `ca_certificates`,
//! `client_certificate`) into one [`ClientTls`] per service. See `docs/tls.md`.

use std::collections::HashMap;
use std::sync::Arc;

use aws_lc_rs::digest;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::config::ConfigDoc;
use crate::config::model::Service;
use crate::proxy::upstream_tls::{ClientTls, TlsSettings};
use crate::tls::CertStore;

/// Kong's bound on `tls_verify_depth`.
const MAX_VERIFY_DEPTH: u32 = 64;

/// The `ca_certificates` of a document by id; `None` for one that did not compile (its errors
/// were reported).
pub(super) type CaCerts = HashMap<String, Option<CertificateDer<'static>>>;

/// Compile the `ca_certificates` of `doc`; each problem goes to `report(path, message)`.
pub(super) fn compile_ca_certificates(
    doc: &ConfigDoc,
    report: &mut dyn FnMut(String, String),
) -> CaCerts {
    let mut cas = CaCerts::new();
    for c in &doc.ca_certificates {
        let cert = ca_certificate(&c.path, &c.item.cert, c.item.cert_digest.as_deref(), report);
        match &c.item.id {
            Some(id) => {
                cas.insert(id.clone(), cert);
            }
            None => report(
                format!("{}.id", c.path),
                "required field missing (services name CA certificates by id)".into(),
            ),
        }
    }
    cas
}

fn ca_certificate(
    path: &str,
    pem: &str,
    cert_digest: Option<&str>,
    report: &mut dyn FnMut(String, String),
) -> Option<CertificateDer<'static>> {
    let at = format!("{path}.cert");
    let mut certs =
        match CertificateDer::pem_slice_iter(pem.as_bytes()).collect::<Result<Vec<_>, _>>() {
            Ok(certs) => certs,
            Err(e) => {
                report(at, format!("not a PEM certificate: {e}"));
                return None;
            }
        };
    let cert = match certs.len() {
        0 => {
            report(
                at,
                "no PEM certificate (`-----BEGIN CERTIFICATE-----`) found".into(),
            );
            return None;
        }
        1 => certs.remove(0),
        _ => {
            report(at, "please submit only one certificate at a time".into());
            return None;
        }
    };
    if let Err(e) = webpki::anchor_from_trusted_cert(&cert) {
        report(at, format!("not a usable CA certificate: {e}"));
        return None;
    }
    if let Some(expected) = cert_digest {
        let actual: String = digest::digest(&digest::SHA256, cert.as_ref())
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if !expected.eq_ignore_ascii_case(&actual) {
            report(
                format!("{path}.cert_digest"),
                format!("does not match the certificate (its SHA-256 is {actual})"),
            );
            return None;
        }
    }
    Some(cert)
}

/// Whether `s` sets any TLS field.
fn sets_tls_fields(s: &Service) -> Option<&'static str> {
    if s.tls_verify.is_some() {
        Some("tls_verify")
    } else if s.tls_verify_depth.is_some() {
        Some("tls_verify_depth")
    } else if s.ca_certificates.as_ref().is_some_and(|c| !c.is_empty()) {
        Some("ca_certificates")
    } else if s.client_certificate.is_some() {
        Some("client_certificate")
    } else {
        None
    }
}

/// The TLS client of the service at `path`, when its protocol speaks TLS (`uses_tls`), with
/// `alpn` offered; TLS fields on a service that does not are an error, as in Kong.
pub(super) fn service_tls(
    report: &mut dyn FnMut(String, String),
    path: &str,
    s: &Service,
    uses_tls: bool,
    alpn: Vec<Vec<u8>>,
    (doc, certs, cas): (&ConfigDoc, &CertStore, &CaCerts),
) -> Option<Arc<ClientTls>> {
    if !uses_tls {
        if let Some(field) = sets_tls_fields(s) {
            report(
                format!("{path}.{field}"),
                "only applies to services whose protocol is https".into(),
            );
        }
        return None;
    }
    let mut ok = true;
    if let Some(depth) = s.tls_verify_depth
        && depth > MAX_VERIFY_DEPTH
    {
        report(
            format!("{path}.tls_verify_depth"),
            format!("value should be between 0 and {MAX_VERIFY_DEPTH}"),
        );
        ok = false;
    }
    let mut ca_certificates = Vec::new();
    for (i, id) in s.ca_certificates.iter().flatten().enumerate() {
        match cas.get(id) {
            Some(Some(cert)) => ca_certificates.push(cert.clone()),
            Some(None) => ok = false,
            None => {
                report(
                    format!("{path}.ca_certificates[{i}]"),
                    format!("no ca_certificate with id `{id}`"),
                );
                ok = false;
            }
        }
    }
    let client_certificate = match &s.client_certificate {
        None => None,
        Some(r) => {
            let id = r.key().unwrap_or("");
            let found = doc
                .certificates
                .iter()
                .position(|c| c.item.id.as_deref() == Some(id));
            match found {
                Some(idx) => match certs.key_of(idx) {
                    Some(key) => Some(key),
                    None => {
                        ok = false; // the certificate's own errors were reported
                        None
                    }
                },
                None => {
                    report(
                        format!("{path}.client_certificate"),
                        format!("no certificate with id `{id}`"),
                    );
                    ok = false;
                    None
                }
            }
        }
    };
    if !ok {
        return None;
    }
    let settings = TlsSettings {
        verify: s.tls_verify.unwrap_or(true),
        verify_depth: s.tls_verify_depth,
        ca_certificates,
        client_certificate,
        alpn,
    };
    match ClientTls::new(&settings) {
        Ok(tls) => Some(Arc::new(tls)),
        Err(e) => {
            report(path.to_string(), e.to_string());
            None
        }
    }
}

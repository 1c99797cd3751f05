//! PEM material by file reference: a certificate's `cert_file`, `key_file`, `cert_alt_file`
//! and `key_alt_file` (and a CA certificate's `cert_file`) name files whose text becomes
//! `cert`, `key`, … when the document is loaded, so that certificates renewed on disk (by an
//! ACME client, say) need not be pasted into the configuration. A relative path is relative to
//! the declarative file's directory. Reloading the configuration reads the files again.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// `(reference field, field it fills)`.
const FILE_FIELDS: &[(&str, &str)] = &[
    ("cert_file", "cert"),
    ("key_file", "key"),
    ("cert_alt_file", "cert_alt"),
    ("key_alt_file", "key_alt"),
];

/// Replace the file references of `certificates` and `ca_certificates` in `document` by the
/// files' text; `source` is the declarative file's name (for relative paths);
/// `report(path, message)` receives each failure.
pub fn inline_pem_files(
    document: &mut Value,
    source: &str,
    report: &mut dyn FnMut(String, String),
) {
    let base = Path::new(source)
        .parent()
        .filter(|p| p.is_dir())
        .map(Path::to_path_buf)
        .unwrap_or_default();
    for collection in ["certificates", "ca_certificates"] {
        let Some(Value::Array(list)) = document.get_mut(collection) else {
            continue;
        };
        for (i, entity) in list.iter_mut().enumerate() {
            let Value::Object(fields) = entity else {
                continue;
            };
            for (reference, target) in FILE_FIELDS {
                let Some(value) = fields.remove(*reference) else {
                    continue;
                };
                let at = format!("{collection}[{i}].{reference}");
                let Value::String(name) = value else {
                    report(at, "expected a file path".into());
                    continue;
                };
                if fields.contains_key(*target) {
                    report(
                        at,
                        format!("`{reference}` and `{target}` cannot both be given"),
                    );
                    continue;
                }
                let path: PathBuf = base.join(&name);
                match std::fs::read_to_string(&path) {
                    Ok(text) => {
                        fields.insert((*target).to_string(), Value::String(text));
                    }
                    Err(e) => report(at, format!("cannot read {}: {e}", path.display())),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_become_pem_fields_and_problems_are_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("site.pem"), "CERT TEXT").expect("write");
        let source = dir.path().join("kong.yml").display().to_string();
        let mut doc = serde_json::json!({
            "certificates": [
                {"cert_file": "site.pem", "key": "inline"},
                {"cert_file": "missing.pem", "key_file": 3},
                {"cert": "x", "cert_file": "site.pem"},
            ],
            "ca_certificates": [{"cert_file": dir.path().join("site.pem")}],
        });
        let mut errors = Vec::new();
        inline_pem_files(&mut doc, &source, &mut |p, m| errors.push((p, m)));
        assert_eq!(doc["certificates"][0]["cert"], "CERT TEXT");
        assert!(doc["certificates"][0].get("cert_file").is_none());
        assert_eq!(doc["ca_certificates"][0]["cert"], "CERT TEXT");
        let paths: Vec<&str> = errors.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "certificates[1].cert_file",
                "certificates[1].key_file",
                "certificates[2].cert_file"
            ]
        );
        assert!(errors[0].1.contains("missing.pem"), "{errors:?}");
    }
}

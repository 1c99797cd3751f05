//! Secret references (`{vault://env/NAME}`), resolved when a document is loaded so that secrets
//! need not be written inline. Only Kong's `env` vault exists: `{vault://env/my-secret}` reads
//! the environment variable `MY_SECRET` (upper-cased, `-` becomes `_`), and
//! `{vault://env/my-secret/key}` reads `key` from that variable's JSON object value.
//!
//! Any string value that is exactly one reference is resolved; other strings are left alone.
//! A reference that cannot be resolved is a configuration error at that field.

use serde_json::Value;

/// Resolve every reference in `value`; `report(path, message)` receives each failure.
pub fn resolve_references(
    value: &mut Value,
    path: &mut String,
    report: &mut dyn FnMut(&str, String),
) {
    match value {
        Value::String(s) => {
            if let Some(reference) = parse_reference(s) {
                match resolve(reference) {
                    Ok(secret) => *s = secret,
                    Err(message) => report(path, message),
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                resolve_references(item, path, report);
                path.truncate(len);
            }
        }
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                resolve_references(v, path, report);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

fn parse_reference(s: &str) -> Option<&str> {
    s.trim()
        .strip_prefix("{vault://")
        .and_then(|r| r.strip_suffix('}'))
}

fn resolve(reference: &str) -> Result<String, String> {
    let (vault, rest) = reference
        .split_once('/')
        .ok_or_else(|| format!("invalid vault reference `{{vault://{reference}}}`"))?;
    if vault != "env" {
        return Err(format!(
            "vault `{vault}` is not supported (only `env`): `{{vault://{reference}}}`"
        ));
    }
    let (name, key) = match rest.split_once('/') {
        Some((n, k)) => (n, Some(k)),
        None => (rest, None),
    };
    if name.is_empty() {
        return Err("vault reference names no variable".into());
    }
    let var: String = name
        .chars()
        .map(|c| {
            if c == '-' {
                '_'
            } else {
                c.to_ascii_uppercase()
            }
        })
        .collect();
    let raw = std::env::var(&var).map_err(|_| {
        format!("environment variable `{var}` (from `{{vault://{reference}}}`) is not set")
    })?;
    match key {
        None => Ok(raw),
        Some(key) => {
            let json: Value = serde_json::from_str(&raw)
                .map_err(|_| format!("environment variable `{var}` is not a JSON object"))?;
            match json.get(key) {
                Some(Value::String(s)) => Ok(s.clone()),
                Some(other) => Ok(other.to_string()),
                None => Err(format!(
                    "key `{key}` not found in environment variable `{var}`"
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_env_references() {
        // Variable names unique to this test; the process environment is shared by tests.
        // SAFETY-free: set_var is safe in edition 2024 only inside unsafe; use a pre-set variable instead.
        let home = std::env::var("PATH").unwrap();
        let mut v = serde_json::json!({"a": {"secret": "{vault://env/path}"}, "b": ["{vault://env/GATEHOUSE_NOPE_X}"]});
        let mut errors = Vec::new();
        resolve_references(&mut v, &mut String::new(), &mut |p, m| {
            errors.push((p.to_string(), m))
        });
        assert_eq!(v["a"]["secret"], home);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0, "b[0]");
        assert!(errors[0].1.contains("GATEHOUSE_NOPE_X"));
    }

    #[test]
    fn other_vaults_are_errors_and_plain_strings_untouched() {
        let mut v = serde_json::json!({"a": "{vault://aws/x}", "b": "plain {vault"});
        let mut errors = Vec::new();
        resolve_references(&mut v, &mut String::new(), &mut |p, m| {
            errors.push((p.to_string(), m))
        });
        assert_eq!(errors.len(), 1);
        assert_eq!(v["b"], "plain {vault");
    }
}

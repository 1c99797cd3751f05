//! Entities as the Admin API shows them: Kong's shapes, from the configuration serving now.
//!
//! Each endpoint collection (`services`, `key-auths`, …) maps to a declarative collection; an
//! entity is its export ([`crate::config::export`]) with Kong's presentation: references as
//! `{"id": …}`, `created_at`/`updated_at` filled in, empty lists as `null`, a service's `url`
//! expanded into `protocol`, `host`, `port` and `path`, a plugin's `config` with every field
//! (defaults filled in from the plugin's schema).

use serde_json::{Map, Value, json};

use crate::config::export;
use crate::snapshot::Snapshot;

/// An Admin API collection: its endpoint name, its declarative collection, and the fields a
/// `{name or id}` in a URL may match besides `id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    pub endpoint: &'static str,
    pub collection: &'static str,
    pub natural_keys: &'static [&'static str],
    /// For credentials: the endpoint under `/consumers/{consumer}/`.
    pub consumer_endpoint: Option<&'static str>,
}

pub const KINDS: &[Kind] = &[
    kind("services", "services", &["name"]),
    kind("routes", "routes", &["name"]),
    kind("upstreams", "upstreams", &["name"]),
    kind("targets", "targets", &["target"]),
    kind("consumers", "consumers", &["username", "custom_id"]),
    kind("plugins", "plugins", &["instance_name"]),
    kind("certificates", "certificates", &[]),
    kind("snis", "snis", &["name"]),
    kind("ca_certificates", "ca_certificates", &[]),
    credential("key-auths", "keyauth_credentials", &["key"], "key-auth"),
    credential("jwts", "jwt_secrets", &["key"], "jwt"),
    credential(
        "basic-auths",
        "basicauth_credentials",
        &["username"],
        "basic-auth",
    ),
    credential(
        "hmac-auths",
        "hmacauth_credentials",
        &["username"],
        "hmac-auth",
    ),
    credential("acls", "acls", &["group"], "acls"),
];

const fn kind(
    endpoint: &'static str,
    collection: &'static str,
    natural_keys: &'static [&'static str],
) -> Kind {
    Kind {
        endpoint,
        collection,
        natural_keys,
        consumer_endpoint: None,
    }
}

const fn credential(
    endpoint: &'static str,
    collection: &'static str,
    natural_keys: &'static [&'static str],
    under_consumer: &'static str,
) -> Kind {
    Kind {
        endpoint,
        collection,
        natural_keys,
        consumer_endpoint: Some(under_consumer),
    }
}

impl Kind {
    /// The kind served at `/{endpoint}`.
    pub fn by_endpoint(endpoint: &str) -> Option<Kind> {
        KINDS.iter().copied().find(|k| k.endpoint == endpoint)
    }

    /// The credential kind served at `/consumers/{c}/{endpoint}`.
    pub fn by_consumer_endpoint(endpoint: &str) -> Option<Kind> {
        KINDS
            .iter()
            .copied()
            .find(|k| k.consumer_endpoint == Some(endpoint))
    }

    /// Whether entities of this kind carry `updated_at` (Kong's credentials have only
    /// `created_at`).
    pub fn has_updated_at(&self) -> bool {
        self.consumer_endpoint.is_none()
    }

    /// Fields Kong generates when a write does not give them (`auto = true` in its schemas):
    /// a key-auth `key`, a JWT `key` and `secret`, an HMAC `secret`.
    pub fn generated_fields(&self) -> &'static [&'static str] {
        match self.collection {
            "keyauth_credentials" => &["key"],
            "jwt_secrets" => &["key", "secret"],
            "hmacauth_credentials" => &["secret"],
            _ => &[],
        }
    }

    /// Every entity of this kind, in declaration order, shaped as Kong shows them.
    pub fn list(&self, snapshot: &Snapshot) -> Vec<Value> {
        export::collection(&snapshot.doc, self.collection)
            .into_iter()
            .map(|v| present(self.collection, v, snapshot.loaded_at))
            .collect()
    }

    /// The entity `key` names: its id, or one of the kind's natural keys.
    pub fn find(&self, snapshot: &Snapshot, key: &str) -> Option<Value> {
        let list = self.list(snapshot);
        let by = |field: &str| {
            list.iter()
                .find(|e| e.get(field).and_then(Value::as_str) == Some(key))
                .cloned()
        };
        by("id").or_else(|| self.natural_keys.iter().find_map(|f| by(f)))
    }

    /// The id of the entity `key` names.
    pub fn id_of(&self, snapshot: &Snapshot, key: &str) -> Option<String> {
        self.find(snapshot, key)
            .as_ref()
            .and_then(id_of)
            .map(String::from)
    }

    /// Whether `key` names `entity`: its id or one of its natural keys.
    pub fn is_named(&self, entity: &Value, key: &str) -> bool {
        std::iter::once("id")
            .chain(self.natural_keys.iter().copied())
            .any(|f| entity.get(f).and_then(Value::as_str) == Some(key))
    }
}

/// The id of an entity value.
pub fn id_of(entity: &Value) -> Option<&str> {
    entity.get("id").and_then(Value::as_str)
}

/// Whether `entity`'s reference `field` (`service`, `consumer`, …) names the entity `id`.
pub fn refers_to(entity: &Value, field: &str, id: &str) -> bool {
    entity
        .get(field)
        .and_then(|r| r.get("id"))
        .and_then(Value::as_str)
        == Some(id)
}

/// Kong's presentation of an exported entity.
fn present(collection: &str, value: Value, loaded_at: i64) -> Value {
    let Value::Object(mut v) = value else {
        return value;
    };
    if collection == "services" {
        expand_url(&mut v);
    }
    for (_, field) in v.iter_mut() {
        if matches!(field, Value::Array(a) if a.is_empty())
            || matches!(field, Value::Object(o) if o.is_empty())
        {
            *field = Value::Null;
        }
    }
    if collection == "plugins" {
        if v.get("config").is_none_or(Value::is_null) {
            v.insert("config".into(), json!({}));
        }
        // Every config field, with its default where it has no value (Kong's presentation).
        let name = v
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if let Some(config) = v.get_mut("config") {
            super::schemas::fill_plugin_defaults(&name, config);
        }
    }
    for stamp in ["created_at", "updated_at"] {
        let missing = v.get(stamp).is_none_or(Value::is_null);
        let has_field = stamp == "created_at" || v.contains_key(stamp);
        if missing && has_field {
            v.insert(stamp.into(), json!(loaded_at));
        }
    }
    Value::Object(v)
}

/// A service's `url` shorthand as Kong stores it: `protocol`, `host`, `port`, `path`.
pub(super) fn expand_url(v: &mut Map<String, Value>) {
    if let Some(Value::String(url)) = v.remove("url")
        && let Ok(uri) = url.parse::<http::Uri>()
    {
        let protocol = uri.scheme_str().unwrap_or("http").to_string();
        v.insert("protocol".into(), json!(protocol));
        v.insert("host".into(), json!(uri.host().unwrap_or_default()));
        if let Some(port) = uri.port_u16() {
            v.insert("port".into(), json!(port));
        }
        let path = uri.path();
        let path = (!path.is_empty() && (path != "/" || url.ends_with('/'))).then_some(path);
        v.insert("path".into(), json!(path));
    }
    let protocol = v
        .get("protocol")
        .and_then(Value::as_str)
        .unwrap_or("http")
        .to_string();
    v.insert("protocol".into(), json!(protocol));
    if v.get("port").is_none_or(Value::is_null) {
        let port = if matches!(protocol.as_str(), "https" | "grpcs" | "tls") {
            443
        } else {
            80
        };
        v.insert("port".into(), json!(port));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        crate::snapshot::load_str(
            "t.yaml",
            r#"_format_version: "3.0"
services:
- name: users
  url: http://users.internal:8080/v1
  routes:
  - name: r
    paths: [/users]
consumers:
- username: alice
  keyauth_credentials: [{key: k}]
"#,
        )
        .expect("valid")
    }

    #[test]
    fn services_are_shown_as_kong_stores_them() {
        let snap = snapshot();
        let services = Kind::by_endpoint("services").expect("kind").list(&snap);
        let s = &services[0];
        assert_eq!(s["protocol"], "http");
        assert_eq!(s["host"], "users.internal");
        assert_eq!(s["port"], 8080);
        assert_eq!(s["path"], "/v1");
        assert!(s.get("url").is_none());
        assert_eq!(s["tags"], Value::Null);
        assert_eq!(s["retries"], 5);
        assert_eq!(s["created_at"], json!(snap.loaded_at));
        let route = Kind::by_endpoint("routes")
            .expect("kind")
            .find(&snap, "r")
            .expect("by name");
        assert_eq!(route["service"]["id"], s["id"]);
        assert_eq!(route["methods"], Value::Null);
        assert_eq!(route["paths"], json!(["/users"]));
    }

    #[test]
    fn entities_are_found_by_id_or_natural_key() {
        let snap = snapshot();
        let consumers = Kind::by_endpoint("consumers").expect("kind");
        let alice = consumers.find(&snap, "alice").expect("by username");
        let id = id_of(&alice).expect("id");
        assert_eq!(consumers.find(&snap, id), Some(alice.clone()));
        assert_eq!(consumers.find(&snap, "bob"), None);
        let keys = Kind::by_consumer_endpoint("key-auth").expect("kind");
        let key = &keys.list(&snap)[0];
        assert!(refers_to(key, "consumer", id));
    }
}

//! A document as flat declarative collections: every entity at the top level, with its `id`
//! and its references (`service`, `route`, `consumer`, `upstream`, `certificate`) as
//! `{"id": ...}`. Loading the export back gives the same entities with the same ids.

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::model::{ConfigDoc, Located};

/// The collections of a document in export order (each entity after those it names).
pub const COLLECTIONS: &[&str] = &[
    "services",
    "routes",
    "upstreams",
    "targets",
    "consumers",
    "keyauth_credentials",
    "jwt_secrets",
    "basicauth_credentials",
    "hmacauth_credentials",
    "acls",
    "plugins",
    "certificates",
    "snis",
    "ca_certificates",
];

/// The document as a declarative object: `_format_version` and every non-empty collection.
pub fn declarative(doc: &ConfigDoc) -> Value {
    let mut out = Map::new();
    out.insert("_format_version".into(), json!("3.0"));
    for &name in COLLECTIONS {
        let list = collection(doc, name);
        if !list.is_empty() {
            out.insert(name.into(), Value::Array(list));
        }
    }
    Value::Object(out)
}

/// One collection's entities (an unknown name gives none).
pub fn collection(doc: &ConfigDoc, name: &str) -> Vec<Value> {
    let service_ids = ids(&doc.services, |s| s.id.as_deref());
    let route_ids = ids(&doc.routes, |r| r.id.as_deref());
    let upstream_ids = ids(&doc.upstreams, |u| u.id.as_deref());
    let consumer_ids = ids(&doc.consumers, |c| c.id.as_deref());
    let certificate_ids = ids(&doc.certificates, |c| c.id.as_deref());
    let c = &doc.credentials;
    match name {
        "services" => plain(&doc.services),
        "routes" => with_parent(&doc.routes, "service", &service_ids),
        "upstreams" => plain(&doc.upstreams),
        "targets" => with_parent(&doc.targets, "upstream", &upstream_ids),
        "consumers" => plain(&doc.consumers),
        "keyauth_credentials" => with_parent(&c.keyauth, "consumer", &consumer_ids),
        "jwt_secrets" => with_parent(&c.jwt, "consumer", &consumer_ids),
        "basicauth_credentials" => with_parent(&c.basicauth, "consumer", &consumer_ids),
        "hmacauth_credentials" => with_parent(&c.hmacauth, "consumer", &consumer_ids),
        "acls" => with_parent(&c.acls, "consumer", &consumer_ids),
        "plugins" => doc
            .plugins
            .iter()
            .map(|(p, scope)| {
                let mut v = to_object(&p.item);
                for (field, index, list) in [
                    ("service", scope.service, &service_ids),
                    ("route", scope.route, &route_ids),
                    ("consumer", scope.consumer, &consumer_ids),
                ] {
                    set_ref(&mut v, field, index.and_then(|i| list.get(i)));
                }
                Value::Object(v)
            })
            .collect(),
        "certificates" => plain(&doc.certificates),
        "snis" => with_parent(&doc.snis, "certificate", &certificate_ids),
        "ca_certificates" => plain(&doc.ca_certificates),
        _ => Vec::new(),
    }
}

fn ids<T>(list: &[Located<T>], id: impl Fn(&T) -> Option<&str>) -> Vec<String> {
    list.iter()
        .map(|l| id(&l.item).unwrap_or_default().to_string())
        .collect()
}

fn to_object<T: Serialize>(item: &T) -> Map<String, Value> {
    match serde_json::to_value(item) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

fn plain<T: Serialize>(list: &[Located<T>]) -> Vec<Value> {
    list.iter()
        .map(|l| Value::Object(to_object(&l.item)))
        .collect()
}

/// Entities nested under a parent (or naming one): the reference becomes `{"id": ...}`.
fn with_parent<T: Serialize>(list: &[Located<T>], field: &str, parents: &[String]) -> Vec<Value> {
    list.iter()
        .map(|l| {
            let mut v = to_object(&l.item);
            set_ref(&mut v, field, l.parent.and_then(|i| parents.get(i)));
            Value::Object(v)
        })
        .collect()
}

fn set_ref(v: &mut Map<String, Value>, field: &str, id: Option<&String>) {
    match id {
        Some(id) => v.insert(field.into(), json!({ "id": id })),
        None => v.insert(field.into(), Value::Null),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_export_loads_back_to_the_same_entities() {
        let yaml = r#"_format_version: "3.0"
services:
- name: s
  url: http://127.0.0.1:9/base
  routes:
  - paths: [/a]
    plugins: [{name: key-auth}]
  - name: b
    paths: [/b]
    methods: [GET]
upstreams:
- name: u
  targets: [{target: "127.0.0.1:1", weight: 5}]
consumers:
- username: alice
  keyauth_credentials: [{key: k1}]
  jwt_secrets: [{key: iss-1, secret: s3cr3t}]
  basicauth_credentials: [{username: alice, password: pw}]
  hmacauth_credentials: [{username: alice-h, secret: hs}]
  acls: [{group: admins}]
plugins:
- name: acl
  route: b
  config: {allow: [admins]}
ca_certificates:
- cert: "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n"
"#;
        let doc = crate::config::load_str("a.yaml", yaml).expect("valid");
        let exported = serde_json::to_string_pretty(&declarative(&doc)).expect("json");
        let back = crate::config::load_str("export.json", &exported)
            .unwrap_or_else(|e| panic!("{e}\n{exported}"));
        for name in COLLECTIONS {
            assert_eq!(
                collection(&back, name),
                collection(&doc, name),
                "collection {name}"
            );
        }
        let cas = collection(&back, "ca_certificates");
        assert_eq!(cas.len(), 1, "ca_certificates are exported");
        assert!(cas[0]["id"].is_string());
        let routes = collection(&back, "routes");
        assert_eq!(routes.len(), 2);
        assert_eq!(
            routes[0]["service"]["id"],
            doc.services[0].item.id.clone().expect("id")
        );
        let plugins = collection(&back, "plugins");
        assert_eq!(plugins.len(), 2);
        assert_eq!(
            plugins[0]["route"]["id"],
            doc.routes[0].item.id.clone().expect("id")
        );
        assert_eq!(
            plugins[1]["route"]["id"],
            doc.routes[1].item.id.clone().expect("id")
        );
    }
}

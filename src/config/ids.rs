//! Ids for entities declared without one.
//!
//! Every entity of a decoded document has an `id` (Kong's UUIDs): the one it was given, or a
//! UUID v5 derived from what identifies it (its name, or its parent and a field that names it
//! without revealing a secret), so that the same file gives the same ids on every node, every
//! reload, and after an export is loaded back. Entities without a natural key (an unnamed
//! route, say) are identified by their place in the file.

use super::model::{ConfigDoc, Located};
use crate::consumers::generated_id;

/// Fill in the `id` of every entity that has none.
pub fn assign(doc: &mut ConfigDoc) {
    for s in &mut doc.services {
        let key = natural_or_path(s.item.name.as_deref(), &s.path);
        s.item
            .id
            .get_or_insert_with(|| generated_id("services", &key));
    }
    for r in &mut doc.routes {
        let key = natural_or_path(r.item.name.as_deref(), &r.path);
        r.item
            .id
            .get_or_insert_with(|| generated_id("routes", &key));
    }
    for u in &mut doc.upstreams {
        let name = u.item.name.clone();
        u.item
            .id
            .get_or_insert_with(|| generated_id("upstreams", &name));
    }
    let upstream_ids: Vec<String> = ids_of(&doc.upstreams, |u| u.id.as_deref());
    for t in &mut doc.targets {
        let parent = parent_id(&upstream_ids, t.parent);
        let key = format!("{parent}:{}", t.item.target);
        t.item
            .id
            .get_or_insert_with(|| generated_id("targets", &key));
    }
    for c in &mut doc.consumers {
        let c = &mut c.item;
        let natural = c
            .username
            .as_deref()
            .or(c.custom_id.as_deref())
            .unwrap_or("")
            .to_string();
        c.id.get_or_insert_with(|| generated_id("consumers", &natural));
    }
    let consumer_ids: Vec<String> = ids_of(&doc.consumers, |c| c.id.as_deref());
    let creds = &mut doc.credentials;
    // Key-auth keys are secrets: a key is identified by its rank among its consumer's keys.
    let mut per_consumer = std::collections::HashMap::<usize, usize>::new();
    for c in &mut creds.keyauth {
        let Some(consumer) = c.parent else { continue };
        let n = per_consumer.entry(consumer).or_default();
        *n += 1;
        let key = format!("{}:{n}", parent_id(&consumer_ids, c.parent));
        c.item
            .id
            .get_or_insert_with(|| generated_id("keyauth_credentials", &key));
    }
    credential_ids(&mut creds.jwt, &consumer_ids, "jwt_secrets", |c| {
        (&mut c.id, c.key.clone())
    });
    credential_ids(
        &mut creds.basicauth,
        &consumer_ids,
        "basicauth_credentials",
        |c| (&mut c.id, c.username.clone()),
    );
    credential_ids(
        &mut creds.hmacauth,
        &consumer_ids,
        "hmacauth_credentials",
        |c| (&mut c.id, c.username.clone()),
    );
    credential_ids(&mut creds.acls, &consumer_ids, "acls", |c| {
        (&mut c.id, c.group.clone())
    });
    let service_ids = ids_of(&doc.services, |s| s.id.as_deref());
    let route_ids = ids_of(&doc.routes, |r| r.id.as_deref());
    for (p, scope) in &mut doc.plugins {
        // One instance of a plugin per scope: name and scope identify it.
        let key = format!(
            "{}:{}:{}:{}",
            p.item.name,
            scope
                .service
                .map_or("", |i| parent_id(&service_ids, Some(i))),
            scope.route.map_or("", |i| parent_id(&route_ids, Some(i))),
            scope
                .consumer
                .map_or("", |i| parent_id(&consumer_ids, Some(i))),
        );
        p.item
            .id
            .get_or_insert_with(|| generated_id("plugins", &key));
    }
    for c in &mut doc.certificates {
        let path = c.path.clone();
        c.item
            .id
            .get_or_insert_with(|| generated_id("certificates", &path));
    }
    for s in &mut doc.snis {
        let name = s.item.name.to_ascii_lowercase();
        s.item.id.get_or_insert_with(|| generated_id("snis", &name));
    }
    for c in &mut doc.ca_certificates {
        let path = c.path.clone();
        c.item
            .id
            .get_or_insert_with(|| generated_id("ca_certificates", &path));
    }
}

fn natural_or_path(name: Option<&str>, path: &str) -> String {
    match name {
        Some(n) => format!("name:{n}"),
        None => format!("path:{path}"),
    }
}

fn ids_of<T>(list: &[Located<T>], id: impl Fn(&T) -> Option<&str>) -> Vec<String> {
    list.iter()
        .map(|l| id(&l.item).unwrap_or_default().to_string())
        .collect()
}

fn parent_id(ids: &[String], parent: Option<usize>) -> &str {
    parent.and_then(|i| ids.get(i)).map_or("", |s| s.as_str())
}

/// Credentials identified by their consumer and one field (`natural` gives the id slot and the
/// field's value).
fn credential_ids<T>(
    list: &mut [Located<T>],
    consumer_ids: &[String],
    collection: &str,
    natural: impl Fn(&mut T) -> (&mut Option<String>, String),
) {
    for c in list {
        let consumer = parent_id(consumer_ids, c.parent).to_string();
        let (id, key) = natural(&mut c.item);
        id.get_or_insert_with(|| generated_id(collection, &format!("{consumer}:{key}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entity_gets_a_stable_id() {
        let yaml = r#"_format_version: "3.0"
services:
- name: s
  url: http://127.0.0.1:9
  routes:
  - paths: [/a]
  - name: named
    id: 11111111-1111-4111-8111-111111111111
    paths: [/b]
  plugins:
  - name: key-auth
consumers:
- username: alice
  keyauth_credentials: [{key: k1}, {key: k2}]
  acls: [{group: g}]
upstreams:
- name: u
  targets: [{target: "127.0.0.1:1"}]
"#;
        let a = crate::config::load_str("a.yaml", yaml).expect("valid");
        let b = crate::config::load_str("b.yaml", yaml).expect("valid");
        assert_eq!(a, b_with_locator(b, &a));
        let route_ids: Vec<_> = a.routes.iter().map(|r| r.item.id.clone()).collect();
        assert_eq!(
            route_ids[1].as_deref(),
            Some("11111111-1111-4111-8111-111111111111")
        );
        let keys: Vec<_> = a
            .credentials
            .keyauth
            .iter()
            .map(|k| k.item.id.clone().expect("id"))
            .collect();
        assert_ne!(keys[0], keys[1]);
        for id in [
            a.services[0].item.id.as_deref(),
            route_ids[0].as_deref(),
            a.upstreams[0].item.id.as_deref(),
            a.targets[0].item.id.as_deref(),
            a.consumers[0].item.id.as_deref(),
            a.credentials.acls[0].item.id.as_deref(),
            a.plugins[0].0.item.id.as_deref(),
        ] {
            let id = id.expect("every entity has an id");
            assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
        }
        // The consumer's id is the one the credential tables use.
        assert_eq!(
            a.consumers[0].item.id.as_deref(),
            Some(generated_id("consumers", "alice").as_str())
        );
    }

    /// `b` with `a`'s locator (the file name differs; the entities must not).
    fn b_with_locator(mut b: ConfigDoc, a: &ConfigDoc) -> ConfigDoc {
        b.locator = a.locator.clone();
        b
    }
}

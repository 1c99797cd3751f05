//! Kong's `flattened_errors` (`POST /config?flatten_errors=1`): the errors of an invalid
//! declarative configuration grouped by entity, with the entity's type, name, id and tags, as
//! the Kong Ingress Controller reads them.

use serde_json::{Map, Value, json};

use crate::config::ConfigErrors;

/// The declarative collections and the entity type Kong names their entities by.
const ENTITY_TYPES: &[(&str, &str)] = &[
    ("services", "service"),
    ("routes", "route"),
    ("upstreams", "upstream"),
    ("targets", "target"),
    ("consumers", "consumer"),
    ("plugins", "plugin"),
    ("certificates", "certificate"),
    ("snis", "sni"),
    ("ca_certificates", "ca_certificate"),
    ("keyauth_credentials", "keyauth_credential"),
    ("jwt_secrets", "jwt_secret"),
    ("basicauth_credentials", "basicauth_credential"),
    ("hmacauth_credentials", "hmacauth_credential"),
    ("acls", "acl"),
];

/// `errors` of the configuration `posted` (its decoded document, for the entities' names, ids
/// and tags), one entry per entity in the order of their first error. Errors outside any
/// entity are returned apart, as `(path, message)`.
pub fn flatten(
    errors: &ConfigErrors,
    posted: Option<&Value>,
) -> (Vec<Value>, Vec<(String, String)>) {
    let mut entities: Vec<(String, Value)> = Vec::new();
    let mut outside = Vec::new();
    for e in &errors.0 {
        let Some((entity_path, entity_type, field)) = split(&e.path) else {
            outside.push((e.path.clone(), e.message.clone()));
            continue;
        };
        let at = match entities.iter().position(|(p, _)| *p == entity_path) {
            Some(i) => i,
            None => {
                let declared = posted.and_then(|d| lookup(d, &entity_path));
                let text = |field: &str| declared.and_then(|v| v.get(field)).cloned();
                let name = ["name", "username", "target", "group", "key"]
                    .iter()
                    .find_map(|f| text(f).filter(Value::is_string))
                    .unwrap_or(Value::Null);
                entities.push((
                    entity_path.clone(),
                    json!({
                        "entity_type": entity_type,
                        "entity_name": name,
                        "entity_id": text("id").unwrap_or(Value::Null),
                        "entity_tags": text("tags").unwrap_or_else(|| json!([])),
                        "entity": declared.cloned().unwrap_or(Value::Null),
                        "errors": [],
                    }),
                ));
                entities.len() - 1
            }
        };
        let error = if field.is_empty() {
            json!({ "type": "entity", "message": e.message })
        } else {
            json!({ "type": "field", "field": field, "message": e.message })
        };
        if let Some(Value::Array(list)) = entities[at].1.get_mut("errors") {
            list.push(error);
        }
    }
    (entities.into_iter().map(|(_, v)| v).collect(), outside)
}

/// `services[0].routes[1].paths[0]` → (`services[0].routes[1]`, `route`, `paths[0]`): the
/// innermost entity a path is in, its type, and the field within it.
fn split(path: &str) -> Option<(String, &'static str, String)> {
    let segments: Vec<&str> = path.split('.').collect();
    let (i, entity_type) = segments.iter().enumerate().rev().find_map(|(i, s)| {
        let (name, rest) = s.split_once('[')?;
        rest.strip_suffix(']')?.parse::<usize>().ok()?;
        ENTITY_TYPES
            .iter()
            .find(|(collection, _)| *collection == name)
            .map(|(_, t)| (i, *t))
    })?;
    Some((
        segments[..=i].join("."),
        entity_type,
        segments[i + 1..].join("."),
    ))
}

/// The value at a path of `name[index]` segments.
fn lookup<'a>(document: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(document, |node, segment| {
        let (name, rest) = segment.split_once('[')?;
        let index: usize = rest.strip_suffix(']')?.parse().ok()?;
        node.get(name)?.get(index)
    })
}

/// The `fields` Kong sends beside `flattened_errors`: what no entity holds.
pub fn outside_fields(outside: &[(String, String)]) -> Map<String, Value> {
    outside
        .iter()
        .map(|(path, message)| (path.clone(), json!(message)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigError;

    fn error(path: &str, message: &str) -> ConfigError {
        ConfigError {
            source: "<admin>".into(),
            line: None,
            column: None,
            path: path.into(),
            message: message.into(),
        }
    }

    #[test]
    fn errors_are_grouped_by_the_innermost_entity() {
        let posted = json!({
            "services": [{
                "name": "svc",
                "tags": ["k8s"],
                "routes": [{ "name": "r0" }, { "name": "r1", "id": "5f9e", "paths": ["~("] }],
            }],
        });
        let errors = ConfigErrors(vec![
            error("services[0].routes[1].paths[0]", "invalid regex"),
            error("services[0]", "required field missing: `host`"),
            error("services[0].routes[1].methods[0]", "bad method"),
            error("", "unknown top-level field `x`"),
        ]);
        let (entities, outside) = flatten(&errors, Some(&posted));
        assert_eq!(entities.len(), 2);
        assert_eq!(entities[0]["entity_type"], "route");
        assert_eq!(entities[0]["entity_name"], "r1");
        assert_eq!(entities[0]["entity_id"], "5f9e");
        assert_eq!(
            entities[0]["errors"],
            json!([
                {"type": "field", "field": "paths[0]", "message": "invalid regex"},
                {"type": "field", "field": "methods[0]", "message": "bad method"},
            ])
        );
        assert_eq!(entities[1]["entity_type"], "service");
        assert_eq!(entities[1]["entity_tags"], json!(["k8s"]));
        assert_eq!(entities[1]["errors"][0]["type"], "entity");
        assert_eq!(
            outside,
            vec![(String::new(), "unknown top-level field `x`".to_string())]
        );
        // A plugin's config field stays a field of the plugin.
        let (entities, _) = flatten(
            &ConfigErrors(vec![error("plugins[2].config.allow[0]", "not a CIDR")]),
            None,
        );
        assert_eq!(entities[0]["entity_type"], "plugin");
        assert_eq!(entities[0]["errors"][0]["field"], "config.allow[0]");
        assert_eq!(entities[0]["entity_name"], Value::Null);
    }
}

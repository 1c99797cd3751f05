//! Entity and plugin schemas: the JSON Schemas of the configuration model's types (derived
//! from the same structs that decode the declarative file, so they cannot drift), shown in
//! Kong's schema form (`GET /schemas/{entity}`, `GET /schemas/plugins/{name}`), used by the
//! OpenAPI description, and the source of the plugin config defaults the views fill in.

use std::collections::HashMap;
use std::sync::LazyLock;

use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use super::views::Kind;
use crate::config::model;
use crate::plugins::{KNOWN_PLUGINS, PluginInstance};

/// The JSON Schema (2020-12, self-contained) of `T`.
fn inline_schema<T: JsonSchema>() -> Value {
    SchemaSettings::draft2020_12()
        .with(|s| s.inline_subschemas = true)
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value()
}

/// The JSON Schema of the entities of a declarative collection, as the model decodes them.
pub fn entity_json_schema(collection: &str) -> Option<Value> {
    let schema = match collection {
        "services" => inline_schema::<model::Service>(),
        "routes" => inline_schema::<model::Route>(),
        "upstreams" => inline_schema::<model::Upstream>(),
        "targets" => inline_schema::<model::Target>(),
        "consumers" => inline_schema::<model::Consumer>(),
        "plugins" => inline_schema::<model::Plugin>(),
        "certificates" => inline_schema::<model::Certificate>(),
        "snis" => inline_schema::<model::Sni>(),
        "ca_certificates" => inline_schema::<model::CaCertificate>(),
        "keyauth_credentials" => inline_schema::<model::KeyauthCredential>(),
        "jwt_secrets" => inline_schema::<model::JwtSecret>(),
        "basicauth_credentials" => inline_schema::<model::BasicauthCredential>(),
        "hmacauth_credentials" => inline_schema::<model::HmacauthCredential>(),
        "acls" => inline_schema::<model::Acl>(),
        _ => return None,
    };
    Some(schema)
}

/// Every known plugin's config schema, built once.
static PLUGIN_CONFIGS: LazyLock<HashMap<&'static str, Value>> = LazyLock::new(|| {
    KNOWN_PLUGINS
        .iter()
        .filter_map(|&name| Some((name, crate::plugins::config_schema(name)?.to_value())))
        .collect()
});

/// The JSON Schema of plugin `name`'s `config`.
pub fn plugin_config_json_schema(name: &str) -> Option<&'static Value> {
    PLUGIN_CONFIGS.get(name)
}

/// `GET /schemas/{entity}`: the entity's fields in Kong's form.
pub fn entity(kind: Kind) -> Option<Value> {
    let schema = entity_json_schema(kind.collection)?;
    Some(json!({ "fields": kong_fields(&schema) }))
}

/// `GET /schemas/plugins/{name}`: the plugin entity's fields with `config` as the plugin's own
/// record (Kong's form); `consumer` is marked `eq: null` for plugins that cannot be scoped to
/// a consumer.
pub fn plugin(name: &str) -> Option<Value> {
    let config = plugin_config_json_schema(name)?;
    let entity = entity_json_schema("plugins")?;
    let consumer_scoped = PluginInstance::consumer_scoped(name).unwrap_or(true);
    let fields: Vec<Value> = kong_fields(&entity)
        .into_iter()
        .map(|field| {
            let Value::Object(mut f) = field else {
                return field;
            };
            if let Some(config_field) = f.get_mut("config") {
                let mut record = kong_type(config);
                if let Value::Object(r) = &mut record {
                    r.insert("required".into(), json!(true));
                }
                *config_field = record;
            }
            if !consumer_scoped && let Some(Value::Object(c)) = f.get_mut("consumer") {
                c.insert("eq".into(), Value::Null);
            }
            Value::Object(f)
        })
        .collect();
    Some(json!({ "fields": fields }))
}

/// Fill the defaults of plugin `name`'s schema into `config` (Kong shows every field, with
/// `null` for those without a value and a default). Fields present are left as they are.
pub fn fill_plugin_defaults(name: &str, config: &mut Value) {
    if let Some(schema) = plugin_config_json_schema(name) {
        fill_defaults(schema, config);
    }
}

fn fill_defaults(schema: &Value, value: &mut Value) {
    let (Some(Value::Object(properties)), Value::Object(object)) =
        (schema.get("properties"), value)
    else {
        return;
    };
    for (field, property) in properties {
        let property = non_null(property);
        match object.get_mut(field) {
            Some(present) if !present.is_null() => fill_defaults(property, present),
            _ => {
                let mut default = property.get("default").cloned().unwrap_or(Value::Null);
                fill_defaults(property, &mut default);
                object.insert(field.clone(), default);
            }
        }
    }
}

/// Give the string values of a form-encoded entity of `collection` the types its schema
/// says (Kong types form values by its schemas): integers, numbers, booleans; a single value
/// where a list goes becomes a list of one (`paths=/a`); a value that read as a number where
/// a string goes stays a string. A plugin's `config` is typed by the schema of `plugin`.
/// Values that do not read as their type are left for validation to name.
pub fn type_form_values(collection: &str, plugin: Option<&str>, entity: &mut Map<String, Value>) {
    let Some(schema) = entity_json_schema(collection) else {
        return;
    };
    let mut object = Value::Object(std::mem::take(entity));
    type_value(&schema, &mut object);
    if let (Some(config_schema), Some(config)) = (
        plugin.and_then(plugin_config_json_schema),
        object.get_mut("config"),
    ) {
        type_value(config_schema, config);
    }
    if let Value::Object(typed) = object {
        *entity = typed;
    }
}

/// The JSON types a schema admits (an `anyOf`'s alternatives together).
fn admitted_types(schema: &Value) -> Vec<&str> {
    let mut types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if let Some(Value::Array(alternatives)) = schema.get("anyOf") {
        for a in alternatives {
            types.extend(admitted_types(a));
        }
    }
    types
}

/// The alternative of `schema` that admits `json_type` (itself when it has no `anyOf`).
fn alternative<'a>(schema: &'a Value, json_type: &str) -> &'a Value {
    match schema.get("anyOf").and_then(Value::as_array) {
        Some(alternatives) => alternatives
            .iter()
            .find(|a| admitted_types(a).contains(&json_type))
            .unwrap_or(schema),
        None => schema,
    }
}

fn type_value(schema: &Value, value: &mut Value) {
    let types = admitted_types(schema);
    match value {
        Value::Object(map) => {
            let schema = alternative(schema, "object");
            if let Some(Value::Object(properties)) = schema.get("properties") {
                for (field, v) in map.iter_mut() {
                    if let Some(property) = properties.get(field) {
                        type_value(property, v);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = alternative(schema, "array").get("items") {
                items.iter_mut().for_each(|v| type_value(item, v));
            }
        }
        Value::String(text) if !types.contains(&"string") => {
            let typed = if types.contains(&"integer") {
                text.parse::<i64>().ok().map(Value::from)
            } else {
                None
            }
            .or_else(|| {
                types
                    .contains(&"number")
                    .then(|| {
                        text.parse::<f64>()
                            .ok()
                            .and_then(serde_json::Number::from_f64)
                    })
                    .flatten()
                    .map(Value::Number)
            })
            .or_else(|| {
                (types.contains(&"boolean") && (text == "true" || text == "false"))
                    .then(|| Value::Bool(text == "true"))
            });
            if let Some(typed) = typed {
                *value = typed;
            } else if types.contains(&"array") {
                let mut list = Value::Array(vec![std::mem::take(value)]);
                type_value(schema, &mut list);
                *value = list;
            }
        }
        _ => {}
    }
}

/// The alternative of an optional value that is not `null` (`anyOf: [T, null]`), or the
/// schema itself.
fn non_null(schema: &Value) -> &Value {
    match schema.get("anyOf").and_then(Value::as_array) {
        Some(alternatives) => alternatives
            .iter()
            .find(|a| a.get("type").and_then(Value::as_str) != Some("null"))
            .unwrap_or(schema),
        None => schema,
    }
}

/// The fields of an object schema in Kong's form: `[{"name": {"type": ...}}, ...]`.
fn kong_fields(schema: &Value) -> Vec<Value> {
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(Value::Object(properties)) = schema.get("properties") else {
        return Vec::new();
    };
    properties
        .iter()
        .map(|(name, property)| {
            let mut field = kong_type(property);
            if let Value::Object(f) = &mut field {
                if required.contains(&name.as_str()) {
                    f.insert("required".into(), json!(true));
                }
                if let Some(d) = property.get("default") {
                    f.insert("default".into(), d.clone());
                }
            }
            json!({ name.clone(): field })
        })
        .collect()
}

/// One JSON Schema type in Kong's vocabulary: `string`, `integer`, `number`, `boolean`,
/// `array` (with `elements`), `map` (with `keys` and `values`), `record` (with `fields`),
/// `json` for anything.
fn kong_type(schema: &Value) -> Value {
    let schema = non_null(schema);
    let mut out = Map::new();
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let main = types.iter().copied().find(|t| *t != "null");
    match main {
        Some("object") if schema.get("properties").is_some() => {
            out.insert("type".into(), json!("record"));
            out.insert("fields".into(), Value::Array(kong_fields(schema)));
        }
        Some("object") => {
            out.insert("type".into(), json!("map"));
            out.insert("keys".into(), json!({ "type": "string" }));
            let values = schema
                .get("additionalProperties")
                .map_or_else(|| json!({ "type": "json" }), kong_type);
            out.insert("values".into(), values);
        }
        Some("array") => {
            out.insert("type".into(), json!("array"));
            let elements = schema
                .get("items")
                .map_or_else(|| json!({ "type": "json" }), kong_type);
            out.insert("elements".into(), elements);
        }
        Some(t @ ("string" | "integer" | "number" | "boolean")) => {
            out.insert("type".into(), json!(t));
            if let (Some(min), Some(max)) = (schema.get("minimum"), schema.get("maximum")) {
                out.insert("between".into(), json!([min, max]));
            }
        }
        // An untagged choice (a string or a list of them, say): its first form.
        _ => match schema.get("anyOf").and_then(Value::as_array) {
            Some(alternatives) if !alternatives.is_empty() => return kong_type(&alternatives[0]),
            _ => {
                out.insert("type".into(), json!("json"));
            }
        },
    }
    if let Some(Value::Array(choices)) = schema.get("enum") {
        out.insert("one_of".into(), Value::Array(choices.clone()));
    }
    if let Some(d) = schema.get("description") {
        out.insert("description".into(), d.clone());
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field<'a>(fields: &'a Value, name: &str) -> &'a Value {
        fields["fields"]
            .as_array()
            .and_then(|fs| fs.iter().find_map(|f| f.get(name)))
            .unwrap_or_else(|| panic!("no field {name} in {fields}"))
    }

    #[test]
    fn plugin_schemas_are_in_kongs_form_with_their_defaults() {
        let schema = plugin("key-auth").expect("key-auth");
        let config = field(&schema, "config");
        assert_eq!(config["type"], "record");
        assert_eq!(config["required"], true);
        let key_names = field(config, "key_names");
        assert_eq!(key_names["type"], "array");
        assert_eq!(key_names["elements"]["type"], "string");
        assert_eq!(key_names["default"], json!(["apikey"]));
        assert_eq!(field(config, "hide_credentials")["default"], false);
        assert_eq!(field(&schema, "consumer")["eq"], Value::Null);
        assert_eq!(
            field(&schema, "protocols")["default"],
            json!(["grpc", "grpcs", "http", "https"])
        );
        // A required config field is marked so.
        let forward = plugin("forward-auth").expect("forward-auth");
        assert_eq!(
            field(field(&forward, "config"), "address")["required"],
            true
        );
        assert!(plugin("no-such-plugin").is_none());
    }

    #[test]
    fn every_known_plugin_and_entity_has_a_schema() {
        for name in KNOWN_PLUGINS {
            assert!(plugin(name).is_some(), "{name}");
        }
        for kind in super::super::views::KINDS {
            let schema = entity(*kind).unwrap_or_else(|| panic!("{}", kind.collection));
            assert!(
                !schema["fields"].as_array().expect("fields").is_empty(),
                "{}",
                kind.collection
            );
        }
        let services = entity(Kind::by_endpoint("services").expect("kind")).expect("schema");
        assert_eq!(field(&services, "retries")["default"], 5);
        assert_eq!(field(&services, "connect_timeout")["default"], 60000);
    }

    #[test]
    fn form_values_take_their_schemas_types() {
        let typed = |collection: &str, plugin: Option<&str>, value: Value| {
            let Value::Object(mut map) = value else {
                panic!("an object")
            };
            type_form_values(collection, plugin, &mut map);
            Value::Object(map)
        };
        assert_eq!(
            typed(
                "services",
                None,
                json!({"name": "123", "port": "8080", "retries": "2", "enabled": "false", "tags": "a"})
            ),
            json!({"name": "123", "port": 8080, "retries": 2, "enabled": false, "tags": ["a"]})
        );
        assert_eq!(
            typed(
                "routes",
                None,
                json!({"paths": "/a", "strip_path": "true", "service": {"id": "x"}})
            ),
            json!({"paths": ["/a"], "strip_path": true, "service": {"id": "x"}})
        );
        // A plugin's config by the plugin's schema: a message that reads as a number stays text.
        assert_eq!(
            typed(
                "plugins",
                Some("request-termination"),
                json!({"name": "request-termination", "config": {"status_code": "403", "message": "404"}})
            ),
            json!({"name": "request-termination", "config": {"status_code": 403, "message": "404"}})
        );
        assert_eq!(
            typed(
                "plugins",
                Some("hmac-auth"),
                json!({"config": {"clock_skew": "1.5", "enforce_headers": "date"}})
            ),
            json!({"config": {"clock_skew": 1.5, "enforce_headers": ["date"]}})
        );
        // What does not read as its type is left for validation to name.
        assert_eq!(
            typed("services", None, json!({"port": "eighty"})),
            json!({"port": "eighty"})
        );
    }

    #[test]
    fn plugin_config_defaults_are_filled_in_and_given_values_kept() {
        let mut config = json!({ "hide_credentials": true });
        fill_plugin_defaults("key-auth", &mut config);
        assert_eq!(config["hide_credentials"], true);
        assert_eq!(config["key_names"], json!(["apikey"]));
        assert_eq!(config["key_in_header"], true);
        assert_eq!(config["anonymous"], Value::Null);
        // Nested records get theirs too.
        let mut config = json!({ "add": { "headers": ["x-a:1"] } });
        fill_plugin_defaults("request-transformer", &mut config);
        assert_eq!(config["add"]["headers"], json!(["x-a:1"]));
        assert_eq!(config["add"]["querystring"], json!([]));
        assert_eq!(config["remove"]["headers"], json!([]));
        assert_eq!(config["http_method"], Value::Null);
    }
}

//! The OpenAPI 3.1 description of the Admin API (`GET /openapi.json`), written from the route
//! table that requests are dispatched on ([`super::routes`]) and from the configuration model's
//! JSON Schemas ([`super::schemas`]): a route cannot exist undescribed, nor a description
//! without its route.

use std::sync::LazyLock;

use http::Method;
use serde_json::{Map, Value, json};

use super::routes::{self, Op, Route};
use super::schemas;
use super::views::{KINDS, Kind};
use crate::plugins::KNOWN_PLUGINS;

/// The description, built once.
pub fn document() -> &'static Value {
    static DOCUMENT: LazyLock<Value> = LazyLock::new(build);
    &DOCUMENT
}

fn build() -> Value {
    let mut paths = Map::new();
    for route in routes::table() {
        let mut item = Map::new();
        let parameters: Vec<Value> = route.params().map(|p| path_parameter(route, p)).collect();
        if !parameters.is_empty() {
            item.insert("parameters".into(), Value::Array(parameters));
        }
        for method in route.methods {
            item.insert(
                method.as_str().to_ascii_lowercase(),
                operation(route, method),
            );
        }
        paths.insert(route.template(), Value::Object(item));
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Gatehouse Admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Kong-compatible management API of one Gatehouse node. Entities are \
                addressed by id or by their natural key (name, username, key...). Writes to \
                single entities need a database (`gatehouse run` without `-c`); without one \
                they answer 405 `operation unsupported`, and the whole configuration is \
                replaced with `POST /config`.",
        },
        "servers": [{ "url": "http://127.0.0.1:8001" }],
        "paths": paths,
        "components": components(),
    })
}

/// The name of the component schema for entities of `kind`.
fn schema_name(kind: Kind) -> String {
    kind.collection.to_string()
}

fn reference(kind: Kind) -> Value {
    json!({ "$ref": format!("#/components/schemas/{}", schema_name(kind)) })
}

fn components() -> Value {
    let mut schemas = Map::new();
    for &kind in KINDS {
        let Some(model) = schemas::entity_json_schema(kind.collection) else {
            continue;
        };
        schemas.insert(schema_name(kind), as_presented(model.clone()));
        for component in ["input", "patch", "replace"] {
            if let Some(body) = body_component(kind, component) {
                schemas.insert(format!("{}-{component}", schema_name(kind)), body);
            }
        }
    }
    for name in KNOWN_PLUGINS {
        if let Some(config) = schemas::plugin_config_json_schema(name) {
            let mut config = config.clone();
            if let Value::Object(c) = &mut config {
                c.remove("$schema");
                c.insert(
                    "description".into(),
                    json!(format!("`config` of the `{name}` plugin.")),
                );
            }
            schemas.insert(format!("plugin-config-{name}"), config);
        }
    }
    schemas.insert(
        "Error".into(),
        json!({
            "type": "object",
            "required": ["message"],
            "properties": {
                "message": { "type": "string" },
                "code": { "type": "integer", "description": "Kong's error code (2 schema violation, 5 unique constraint violation, 12 operation unsupported, 14 invalid declarative configuration...)" },
                "name": { "type": "string" },
                "fields": { "type": "object", "description": "Field path to what is wrong with it." },
            },
        }),
    );
    schemas.insert("Anything".into(), json!({ "description": "A JSON value." }));
    let error = |description: &str| {
        json!({
            "description": description,
            "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } },
        })
    };
    json!({
        "schemas": schemas,
        "responses": {
            "BadRequest": error("The request is malformed or the entity does not validate (Kong's `schema violation`, code 2, with `fields`)."),
            "NotFound": error("No such entity (or route)."),
            "Conflict": error("A unique field is taken (code 5), or another write reached the database first."),
            "ReadOnly": error("Without a database: `operation unsupported` (code 12)."),
            "Unavailable": error("The database cannot take writes now."),
            "Unauthorized": error("`--admin-token` is set and `Kong-Admin-Token` does not match."),
            "Forbidden": error("The client's address is outside `--admin-allow`."),
            "TooLarge": error("The body is larger than 64 MiB."),
        },
    })
}

/// A model schema as responses show it: every field present, `null` when unset (Kong's
/// presentation), references as `{"id": ...}`.
fn as_presented(mut schema: Value) -> Value {
    if let Value::Object(s) = &mut schema {
        s.remove("$schema");
        s.remove("required");
        s.remove("additionalProperties");
        if let Some(Value::Object(properties)) = s.get_mut("properties") {
            for property in properties.values_mut() {
                let mut p = std::mem::take(property);
                if let Value::Object(o) = &mut p {
                    // A default describes input, not what a response holds.
                    o.remove("default");
                }
                *property = json!({ "anyOf": [p, { "type": "null" }] });
            }
        }
    }
    schema
}

/// A model schema as a request body: what the declarative file accepts for one entity, less
/// what the Admin API fills in itself (a key-auth `key`, a jwt `secret`...), and with the
/// plugin `name` limited to the plugins this build knows.
fn as_input(kind: Kind, mut schema: Value) -> Value {
    if let Value::Object(s) = &mut schema {
        s.remove("$schema");
        let generated = kind.generated_fields();
        if let Some(Value::Array(required)) = s.get_mut("required") {
            required.retain(|f| !f.as_str().is_some_and(|f| generated.contains(&f)));
        }
        if let Some(Value::Object(properties)) = s.get_mut("properties") {
            for field in generated {
                if let Some(p) = properties.get_mut(*field) {
                    // `null`, as an absent field, asks for one to be generated.
                    *p = json!({ "anyOf": [std::mem::take(p), { "type": "null" }] });
                }
            }
        }
        if kind.endpoint == "plugins"
            && let Some(Value::Object(name)) =
                s.get_mut("properties").and_then(|p| p.get_mut("name"))
        {
            name.insert("enum".into(), json!(KNOWN_PLUGINS));
        }
    }
    schema
}

/// A request body schema of `kind`: `input` (a new entity), `patch` (fields merged into one),
/// `replace` (a `PUT`: as `patch`, less the times the node sets).
fn body_component(kind: Kind, component: &str) -> Option<Value> {
    let input = as_input(kind, schemas::entity_json_schema(kind.collection)?);
    if component == "input" {
        return Some(input);
    }
    let mut body = input;
    if let Value::Object(b) = &mut body {
        b.remove("required");
    }
    if component == "replace" {
        // A `PUT` keeps the stored entity's creation time and sets its update time: what the
        // body says of them is not read.
        ignore_properties(
            &mut body,
            &["created_at", "updated_at"],
            "Ignored: set by the node.",
        );
    }
    Some(body)
}

/// `fields` of a body schema described as taking anything, and read for nothing.
fn ignore_properties(schema: &mut Value, fields: &[&str], why: &str) {
    if let Some(Value::Object(properties)) = schema.get_mut("properties") {
        for field in fields {
            if let Some(p) = properties.get_mut(*field) {
                *p = json!({ "description": why });
            }
        }
    }
}

/// The reference a top-level entity of `kind` must carry: the configuration refuses a target
/// without its `upstream`, an SNI without its `certificate`, a credential without its
/// `consumer` (below a parent's path, the path names it).
fn required_reference(kind: Kind) -> Option<&'static str> {
    match kind.endpoint {
        "targets" => Some("upstream"),
        "snis" => Some("certificate"),
        _ if kind.consumer_endpoint.is_some() => Some("consumer"),
        _ => None,
    }
}

fn path_parameter(route: &Route, name: &str) -> Value {
    let description = match route.op {
        Op::PluginSchema => "A plugin name.".to_string(),
        Op::Tag => "A tag.".to_string(),
        Op::TargetHealth { .. } if name == "address" => {
            "One address (`ip:port`) of a host name target.".to_string()
        }
        _ => {
            let kind = KINDS.iter().find(|k| routes::singular(**k) == name);
            match kind {
                Some(k) if !k.natural_keys.is_empty() => {
                    format!("The {} id, or its {}.", name, k.natural_keys.join(" or "))
                }
                _ => format!("The {name} id."),
            }
        }
    };
    json!({
        "name": name,
        "in": "path",
        "required": true,
        "schema": { "type": "string" },
        "description": description,
    })
}

fn ok_json(description: &str, schema: Value) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": schema } },
    })
}

fn list_of(kind: Kind) -> Value {
    json!({
        "type": "object",
        "required": ["data", "next"],
        "properties": {
            "data": { "type": "array", "items": reference(kind) },
            "next": { "type": ["string", "null"], "description": "The path of the next page, `null` on the last." },
            "offset": { "type": "string", "description": "Pass as `offset` for the next page; absent on the last." },
        },
    })
}

fn refs(codes: &[(&str, &str)]) -> Map<String, Value> {
    codes
        .iter()
        .map(|(code, name)| {
            (
                code.to_string(),
                json!({ "$ref": format!("#/components/responses/{name}") }),
            )
        })
        .collect()
}

/// What a request body does to an entity.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Write {
    /// `POST`, and `POST /schemas/{entity}/validate`: the body is the whole entity.
    Create,
    /// `PUT`: the body replaces the entity; `key_from_url`: the entity's natural key (`name`,
    /// `username`, `group`...) is taken from the path when the body leaves it out, as in
    /// Kong's upsert (`PUT /consumers/bob` with no body creates `bob`).
    Replace { key_from_url: bool },
    /// `PATCH`: the body's fields are merged in; none is needed, and no body changes nothing.
    Update,
}

/// The request body of an operation on `kind`. `top_level`: at a top-level path (`POST
/// /targets`, `PUT /targets/{target}`), where the entity names its parent itself.
/// `path_names`: the reference field a parent's path fills (`consumer` below
/// `/consumers/{consumer}/`). The body itself is required where the entity schema
/// requires a field (an absent body is `{}`).
fn body_of(kind: Kind, top_level: bool, write: Write, path_names: Option<&str>) -> Value {
    let component = match write {
        Write::Create => "input",
        Write::Replace { .. } => "replace",
        Write::Update => "patch",
    };
    let base = match path_names.and_then(|field| Some((field, body_component(kind, component)?))) {
        // Below a parent's path the path names the parent, whatever the body says (Kong's
        // nested endpoints).
        Some((field, mut inline)) => {
            ignore_properties(&mut inline, &[field], "Ignored: the path names it.");
            inline
        }
        None => {
            json!({ "$ref": format!("#/components/schemas/{}-{component}", schema_name(kind)) })
        }
    };
    let mut required: Vec<String> = match write {
        Write::Create => Vec::new(), // in the `-input` component already
        Write::Replace { key_from_url } => {
            let from_url = kind.natural_keys.first().filter(|_| key_from_url);
            input_required(kind)
                .into_iter()
                .filter(|f| from_url.is_none_or(|k| f != k))
                .collect()
        }
        Write::Update => Vec::new(),
    };
    let mut properties = Map::new();
    if top_level
        && write != Write::Update
        && let Some(field) = required_reference(kind)
    {
        required.push(field.into());
        properties.insert(field.into(), json!({ "not": { "type": "null" } }));
    }
    let body_required = match write {
        Write::Create => !required.is_empty() || !input_required(kind).is_empty(),
        _ => !required.is_empty(),
    };
    let schema = if required.is_empty() {
        base
    } else {
        json!({ "allOf": [base, { "required": required, "properties": properties }] })
    };
    json!({
        "required": body_required,
        "content": {
            "application/json": { "schema": schema },
            "application/x-www-form-urlencoded": {
                "schema": { "type": "object", "description": "Kong's form keys: `paths[]=/a`, `config.minute=5`, `service.id=...`." },
            },
            "multipart/form-data": {
                "schema": { "type": "object", "description": "The same keys as parts (`curl -F cert=@site.pem`)." },
            },
        },
    })
}

/// The fields a request body creating a `kind` entity must have.
fn input_required(kind: Kind) -> Vec<String> {
    let Some(model) = schemas::entity_json_schema(kind.collection) else {
        return Vec::new();
    };
    as_input(kind, model)["required"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

fn list_parameters() -> Value {
    json!([
        { "name": "size", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 1000, "default": 100 } },
        { "name": "offset", "in": "query", "schema": { "type": "string" } },
        { "name": "tags", "in": "query", "schema": { "type": "string" }, "description": "`a,b`: every tag; `a/b`: any of them." },
    ])
}

fn operation(route: &Route, method: &Method) -> Value {
    let template = route.template();
    let mut responses: Map<String, Value>;
    let mut op = Map::new();
    let summary: String;
    let kind = route.op.subject();
    let any = json!({ "$ref": "#/components/schemas/Anything" });
    let object = json!({ "type": "object" });
    match (route.op, method.as_str()) {
        (Op::Root, _) => {
            summary = "Node information: version, node id, configuration, plugins.".into();
            responses = Map::from_iter([("200".into(), ok_json("Node information.", object))]);
        }
        (Op::Status, _) => {
            summary = "Health of the node and its database.".into();
            responses = Map::from_iter([("200".into(), ok_json("Status.", object))]);
        }
        (Op::Endpoints, _) => {
            summary = "Every path template of this API.".into();
            responses = Map::from_iter([("200".into(), ok_json("`{\"data\": [paths]}`.", object))]);
        }
        (Op::OpenApi, _) => {
            summary = "This description.".into();
            responses = Map::from_iter([("200".into(), ok_json("OpenAPI 3.1.", object))]);
        }
        (Op::Config, "GET") => {
            summary = "The configuration serving now, as a declarative document.".into();
            responses = Map::from_iter([(
                "200".into(),
                ok_json(
                    "`{\"config\": text}`; the text loads back to the same entities and ids.",
                    object,
                ),
            )]);
        }
        (Op::Config, _) => {
            summary = "Replace the whole configuration (validated first; stored before the answer in database mode).".into();
            op.insert(
                "requestBody".into(),
                json!({
                    "required": true,
                    "content": {
                        "application/json": { "schema": object },
                        "application/yaml": { "schema": { "type": "string" } },
                        "application/x-www-form-urlencoded": { "schema": { "type": "object", "properties": { "config": { "type": "string" } } } },
                        "multipart/form-data": { "schema": { "type": "object", "properties": { "config": { "type": "string" } } } },
                    },
                }),
            );
            op.insert("parameters".into(), json!([
                { "name": "check_hash", "in": "query", "schema": { "type": "string", "enum": ["0", "1", "false", "true"] }, "description": "`1`: answer 304 and change nothing when the configuration is the one serving now." },
                { "name": "flatten_errors", "in": "query", "schema": { "type": "string", "enum": ["0", "1", "false", "true"] }, "description": "`1`: list the errors per entity in `flattened_errors` (as the Kong Ingress Controller reads them)." },
            ]));
            responses = Map::from_iter([
                (
                    "201".into(),
                    ok_json("The entities now serving, by collection and id.", object),
                ),
                (
                    "304".into(),
                    json!({ "description": "Unchanged (`check_hash=1`)." }),
                ),
            ]);
            responses.extend(refs(&[
                ("400", "BadRequest"),
                ("409", "Conflict"),
                ("503", "Unavailable"),
            ]));
        }
        (Op::PluginsEnabled, _) => {
            summary = "The plugins this build knows.".into();
            responses = Map::from_iter([(
                "200".into(),
                ok_json("`{\"enabled_plugins\": [...]}`.", object),
            )]);
        }
        (Op::PluginSchema, _) => {
            summary = "A plugin's schema in Kong's form (fields, types, defaults).".into();
            responses = Map::from_iter([("200".into(), ok_json("`{\"fields\": [...]}`.", object))]);
            responses.extend(refs(&[("404", "NotFound")]));
        }
        (Op::EntitySchema(_), _) => {
            summary = "The entity's schema in Kong's form.".into();
            responses = Map::from_iter([("200".into(), ok_json("`{\"fields\": [...]}`.", object))]);
        }
        (Op::EntityValidate(k), _) => {
            summary = format!(
                "Check a `{}` entity as `POST /{}` would, without storing it.",
                k.collection, k.endpoint
            );
            op.insert("requestBody".into(), body_of(k, true, Write::Create, None));
            responses = Map::from_iter([("200".into(), ok_json("Valid.", object))]);
            responses.extend(refs(&[("400", "BadRequest"), ("409", "Conflict")]));
        }
        (Op::UpstreamHealth, _) => {
            summary = "The health of an upstream's targets.".into();
            op.insert("parameters".into(), list_parameters());
            responses =
                Map::from_iter([("200".into(), ok_json("Targets with their `health`.", any))]);
            responses.extend(refs(&[("400", "BadRequest"), ("404", "NotFound")]));
        }
        (Op::Tags | Op::Tag, _) => {
            summary = if route.op == Op::Tags {
                "Every tag of every entity.".into()
            } else {
                "The entities with one tag.".into()
            };
            op.insert("parameters".into(), json!([
                { "name": "size", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 1000, "default": 100 } },
                { "name": "offset", "in": "query", "schema": { "type": "string" } },
            ]));
            let entry = json!({
                "type": "object",
                "required": ["entity_name", "entity_id", "tag"],
                "properties": {
                    "entity_name": { "type": "string" },
                    "entity_id": { "type": "string" },
                    "tag": { "type": "string" },
                },
            });
            responses = Map::from_iter([(
                "200".into(),
                ok_json(
                    "A page.",
                    json!({
                        "type": "object",
                        "required": ["data", "next"],
                        "properties": {
                            "data": { "type": "array", "items": entry },
                            "next": { "type": ["string", "null"] },
                            "offset": { "type": "string" },
                        },
                    }),
                ),
            )]);
            responses.extend(refs(&[("400", "BadRequest")]));
        }
        (Op::TargetHealth { healthy, .. }, _) => {
            summary = format!(
                "Set the target (every address of a host name target, or one) {} on this node.",
                if healthy { "healthy" } else { "unhealthy" }
            );
            responses = Map::from_iter([("204".into(), json!({ "description": "Set." }))]);
            responses.extend(refs(&[("404", "NotFound")]));
        }
        (Op::Collection(k) | Op::Children { child: k, .. }, "GET") => {
            summary = format!(
                "List `{}` entities{}.",
                k.collection,
                if matches!(route.op, Op::Children { .. }) {
                    " of the parent"
                } else {
                    ""
                }
            );
            op.insert("parameters".into(), list_parameters());
            responses = Map::from_iter([("200".into(), ok_json("A page.", list_of(k)))]);
            responses.extend(refs(&[("400", "BadRequest")]));
            if matches!(route.op, Op::Children { .. }) {
                responses.extend(refs(&[("404", "NotFound")]));
            }
        }
        (Op::Collection(k) | Op::Children { child: k, .. }, _) => {
            summary = format!("Create a `{}` entity.", k.collection);
            let (top_level, path_names) = match route.op {
                Op::Children { field, .. } => (false, Some(field)),
                _ => (true, None),
            };
            op.insert(
                "requestBody".into(),
                body_of(k, top_level, Write::Create, path_names),
            );
            responses = Map::from_iter([("201".into(), ok_json("Created.", reference(k)))]);
            responses.extend(refs(&[
                ("400", "BadRequest"),
                ("405", "ReadOnly"),
                ("409", "Conflict"),
                ("503", "Unavailable"),
            ]));
            if matches!(route.op, Op::Children { .. }) {
                responses.extend(refs(&[("404", "NotFound")]));
            }
        }
        (Op::Entity(k) | Op::Child { child: k, .. } | Op::Parent { parent: k, .. }, m) => {
            let (verb, status) = match m {
                "GET" => ("Read", "200"),
                "PUT" => ("Create or replace (upsert)", "200"),
                "PATCH" => ("Update (fields merged in)", "200"),
                _ => ("Delete (with Kong's cascade)", "204"),
            };
            summary = format!("{verb} one `{}` entity.", k.collection);
            responses = if status == "204" {
                Map::from_iter([(
                    "204".into(),
                    json!({ "description": "Deleted, or not there." }),
                )])
            } else {
                Map::from_iter([(status.into(), ok_json("The entity.", reference(k)))])
            };
            if matches!(m, "PUT" | "PATCH") {
                let write = match (m, route.op) {
                    ("PATCH", _) => Write::Update,
                    // The path's key is the child's, not this parent's.
                    (_, Op::Parent { .. }) => Write::Replace {
                        key_from_url: false,
                    },
                    _ => Write::Replace { key_from_url: true },
                };
                let top_level = matches!(route.op, Op::Entity(_));
                let path_names = match route.op {
                    Op::Child { field, .. } => Some(field),
                    _ => None,
                };
                op.insert(
                    "requestBody".into(),
                    body_of(k, top_level, write, path_names),
                );
            }
            if m != "GET" {
                responses.extend(refs(&[
                    ("400", "BadRequest"),
                    ("405", "ReadOnly"),
                    ("409", "Conflict"),
                    ("503", "Unavailable"),
                ]));
            }
            if m != "DELETE" || !matches!(route.op, Op::Entity(_)) {
                responses.extend(refs(&[("404", "NotFound")]));
            }
        }
    }
    responses.extend(refs(&[
        ("401", "Unauthorized"),
        ("403", "Forbidden"),
        ("413", "TooLarge"),
    ]));
    let tag = kind.map_or("node", |k| k.endpoint);
    op.insert("summary".into(), json!(summary));
    op.insert(
        "operationId".into(),
        json!(format!(
            "{}{}",
            method.as_str().to_ascii_lowercase(),
            operation_suffix(&template)
        )),
    );
    op.insert("tags".into(), json!([tag]));
    op.insert("responses".into(), Value::Object(responses));
    Value::Object(op)
}

/// The operations as a Markdown table (method, path, summary), in the order of the route
/// table: the reference section of `docs/admin-api.md`, which a test keeps equal to it.
pub fn reference_markdown() -> String {
    let doc = document();
    let mut out = String::from("| Method | Path | What it does |\n| --- | --- | --- |\n");
    for route in routes::table() {
        let template = route.template();
        for method in route.methods {
            let summary = doc["paths"][&template][method.as_str().to_ascii_lowercase()]["summary"]
                .as_str()
                .unwrap_or_default();
            out.push_str(&format!("| `{method}` | `{template}` | {summary} |\n"));
        }
    }
    out
}

/// `/services/{service}/routes` → `-services-service-routes`.
fn operation_suffix(template: &str) -> String {
    let mut out = String::new();
    for part in template.split('/').filter(|p| !p.is_empty()) {
        out.push('-');
        out.extend(
            part.chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .map(|c| if c == '_' { '-' } else { c }),
        );
    }
    if out.is_empty() { "-root".into() } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every route of the router is described, with every method it answers, and nothing else
    /// is: the description is the table.
    #[test]
    fn every_route_is_described_and_every_description_is_routed() {
        let doc = document();
        let paths = doc["paths"].as_object().expect("paths");
        for route in routes::table() {
            let item = paths
                .get(&route.template())
                .unwrap_or_else(|| panic!("{} is not described", route.template()));
            for method in route.methods {
                let op = &item[method.as_str().to_ascii_lowercase()];
                assert!(
                    op.is_object(),
                    "{method} {} is not described",
                    route.template()
                );
                assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()));
            }
        }
        for (template, item) in paths {
            // Replace each parameter by a value and resolve it as a request would be.
            let segments: Vec<&str> = template
                .split('/')
                .filter(|s| !s.is_empty())
                .map(|s| if s.starts_with('{') { "x" } else { s })
                .collect();
            let (route, _) = routes::resolve(&segments)
                .unwrap_or_else(|| panic!("{template} is described but not routed"));
            for method in item.as_object().expect("item").keys() {
                if method == "parameters" {
                    continue;
                }
                let m = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).expect("method");
                assert!(
                    route.methods.contains(&m),
                    "{method} {template} is described but not routed"
                );
            }
        }
        assert_eq!(paths.len(), routes::table().len());
    }

    /// The reference section of the Admin API page is this description (run with
    /// `GATEHOUSE_BLESS=1` to write it after a change of routes).
    #[test]
    fn the_admin_api_reference_page_lists_every_operation() {
        const BEGIN: &str =
            "<!-- operations:begin (generated from /openapi.json; a test checks it) -->\n";
        const END: &str = "<!-- operations:end -->";
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/admin-api.md");
        let page = std::fs::read_to_string(path).expect("docs/admin-api.md");
        let (Some(start), Some(end)) = (page.find(BEGIN), page.find(END)) else {
            panic!("docs/admin-api.md has no operations section");
        };
        let listed = &page[start + BEGIN.len()..end];
        let expected = reference_markdown();
        if listed != expected {
            if std::env::var_os("GATEHOUSE_BLESS").is_some() {
                let updated = format!("{}{BEGIN}{expected}{}", &page[..start], &page[end..]);
                std::fs::write(path, updated).expect("write docs/admin-api.md");
            } else {
                panic!(
                    "docs/admin-api.md lists other operations than the router; expected:\n{expected}"
                );
            }
        }
    }

    #[test]
    fn operation_ids_are_unique_and_references_resolve() {
        let doc = document();
        let mut ids = Vec::new();
        let mut refs = Vec::new();
        collect(doc, &mut ids, &mut refs);
        let count = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), count, "duplicate operationId");
        for r in refs {
            let pointer = r.trim_start_matches('#');
            assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
        }
    }

    fn collect(v: &Value, ids: &mut Vec<String>, refs: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("operationId", Value::String(s)) => ids.push(s.clone()),
                        ("$ref", Value::String(s)) => refs.push(s.clone()),
                        _ => collect(v, ids, refs),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| collect(v, ids, refs)),
            _ => {}
        }
    }
}

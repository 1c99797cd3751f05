//! The Admin API's answers in Kong's shapes: JSON bodies, Kong's error codes and names
//! (`schema violation`, `unique constraint violation`, `primary key violation`, `operation
//! unsupported`, `invalid declarative configuration`), and the small replies every endpoint
//! uses.

use bytes::Bytes;
use http::{Method, Response, StatusCode, header};
use http_body_util::Full;
use serde_json::{Value, json};

use super::flat_errors;
use super::routes::Op;
use crate::config::ConfigErrors;

pub(super) type Reply = Response<Full<Bytes>>;

/// A write without a database: Kong's DB-less refusal (405, `operation unsupported`).
pub(super) fn read_only(op: Op, method: &Method) -> Reply {
    // Only entity routes have writes that need a database.
    let collection = op.subject().map_or("", |k| k.collection);
    let verb = match *method {
        Method::POST => "create",
        Method::DELETE => "delete",
        _ => "update",
    };
    json_response(
        StatusCode::METHOD_NOT_ALLOWED,
        &json!({
            "code": 12,
            "name": "operation unsupported",
            "message": format!("cannot {verb} '{collection}' entities when not using a database"),
        }),
    )
}

/// Why a `POST` body is not a new entity.
pub(super) enum Unacceptable {
    /// Not a body of fields (a 400 with the reason).
    Body(String),
    /// Its `id` is another entity's (Kong's `primary key violation`).
    TakenId(String),
}

impl Unacceptable {
    pub(super) fn reply(&self) -> Reply {
        match self {
            Unacceptable::Body(message) => error(StatusCode::BAD_REQUEST, message),
            Unacceptable::TakenId(id) => json_response(
                StatusCode::BAD_REQUEST,
                &json!({
                    "code": 3,
                    "name": "primary key violation",
                    "message": format!("primary key violation on key '{{id=\"{id}\"}}'"),
                    "fields": { "id": id },
                }),
            ),
        }
    }
}

/// Kong's `400` for an invalid `POST /config`: `fields` by path (with line and column), or,
/// when `flattened` is given (`?flatten_errors=1`, with the posted document when it
/// decoded), the errors per entity in `flattened_errors`.
pub(super) fn invalid_config(errors: &ConfigErrors, flattened: Option<Option<&Value>>) -> Reply {
    let mut body = json!({
        "code": 14,
        "name": "invalid declarative configuration",
        "message": format!("declarative config is invalid: {}", errors.0.len()),
    });
    if let Some(posted) = flattened {
        let (entities, outside) = flat_errors::flatten(errors, posted);
        body["fields"] = Value::Object(flat_errors::outside_fields(&outside));
        body["flattened_errors"] = Value::Array(entities);
    } else {
        let fields: serde_json::Map<String, Value> = errors
            .0
            .iter()
            .map(|e| {
                let at = match (e.line, e.column) {
                    (Some(l), Some(c)) => format!(" (line {l}, column {c})"),
                    _ => String::new(),
                };
                (e.path.clone(), json!(format!("{}{at}", e.message)))
            })
            .collect();
        body["fields"] = Value::Object(fields);
    }
    json_response(StatusCode::BAD_REQUEST, &body)
}

/// Kong's answer to an invalid entity: `400` schema violation with `fields` (paths relative
/// to the entity at `at`), or `409` when a unique field is taken (Kong's `UNIQUE violation
/// detected on '{name="example"}'`, with the taken value in `fields`).
pub(super) fn schema_violation(errors: &ConfigErrors, at: &str) -> Reply {
    let prefix = format!("{at}.");
    let mut fields = serde_json::Map::new();
    let mut taken = serde_json::Map::new();
    for e in &errors.0 {
        let field = if e.path == at {
            None
        } else {
            Some(e.path.strip_prefix(&prefix).unwrap_or(&e.path))
        };
        if is_unique_violation(&e.message) {
            // The value named in the message; secrets (a key-auth key) are not repeated.
            let value = e
                .message
                .split('`')
                .nth(1)
                .map_or(Value::Null, |v| json!(v));
            let field = field.unwrap_or("cache_key").to_string();
            taken.insert(field.clone(), value);
            // Reported with the rest when the entity is also invalid otherwise (a 400).
            fields.insert(field, json!(e.message));
            continue;
        }
        let Some(field) = field else {
            // About the entity as a whole: a required field it lacks is named, as Kong does;
            // anything else goes under Kong's `@entity`.
            match e
                .message
                .strip_prefix("required field missing: `")
                .and_then(|rest| rest.strip_suffix('`'))
            {
                Some(field) => {
                    // A message about the field's value says more: it stays.
                    fields
                        .entry(field.to_string())
                        .or_insert_with(|| json!("required field missing"));
                }
                None => {
                    let entity = fields.entry("@entity").or_insert_with(|| json!([]));
                    if let Value::Array(list) = entity {
                        list.push(json!(e.message));
                    }
                }
            }
            continue;
        };
        fields.insert(field.to_string(), json!(e.message));
    }
    if !taken.is_empty() && taken.len() == fields.len() {
        let keys: Vec<String> = taken
            .iter()
            .map(|(f, v)| match v.as_str() {
                Some(v) => format!("{f}=\"{v}\""),
                None => f.clone(),
            })
            .collect();
        return json_response(
            StatusCode::CONFLICT,
            &json!({
                "code": 5,
                "name": "unique constraint violation",
                "message": format!("UNIQUE violation detected on '{{{}}}'", keys.join(",")),
                "fields": taken,
            }),
        );
    }
    // Kong: entity-level errors first, then `field: message`, `;`-separated.
    let mut summary: Vec<String> = Vec::new();
    if let Some(Value::Array(list)) = fields.get("@entity") {
        summary.extend(list.iter().filter_map(Value::as_str).map(String::from));
    }
    for (f, m) in &fields {
        if let Some(m) = m.as_str() {
            summary.push(format!("{f}: {m}"));
        }
    }
    let message = match summary.len() {
        1 => format!("schema violation ({})", summary[0]),
        n => format!("{n} schema violations ({})", summary.join("; ")),
    };
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({
            "code": 2,
            "name": "schema violation",
            "message": message,
            "fields": fields,
        }),
    )
}

/// Whether a validation message says that a unique value is taken (Kong's `409`): a duplicate
/// name, username, custom id, SNI, target or ACL group (`duplicate … \`value\``); a credential
/// key or username another credential has; a plugin twice on one scope. (`duplicate header
/// name` and the like are plain schema violations.)
pub(super) fn is_unique_violation(message: &str) -> bool {
    (message.starts_with("duplicate ") && message.contains('`'))
        || (message.starts_with("another ") && message.contains(" credential has "))
        || message.contains("is configured twice on the same scope")
}

pub(super) fn found(entity: Option<Value>) -> Reply {
    match entity {
        Some(e) => ok(e),
        None => not_found(),
    }
}

pub(super) fn no_content() -> Reply {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp
}

pub(super) fn ok(body: Value) -> Reply {
    json_response(StatusCode::OK, &body)
}

pub(super) fn not_found() -> Reply {
    error(StatusCode::NOT_FOUND, "Not found")
}

/// A 405 names the methods the path answers (`Allow`, required by RFC 9110).
pub(super) fn method_not_allowed(allow: &str) -> Reply {
    let mut resp = error(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed");
    if let Ok(value) = header::HeaderValue::from_str(allow) {
        resp.headers_mut().insert(header::ALLOW, value);
    }
    resp
}

pub(super) fn error(status: StatusCode, message: &str) -> Reply {
    json_response(status, &json!({ "message": message }))
}

pub(super) fn json_response(status: StatusCode, body: &Value) -> Reply {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::from(bytes)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigError;
    use http_body_util::BodyExt;

    fn errors(list: &[(&str, &str)]) -> ConfigErrors {
        ConfigErrors(
            list.iter()
                .map(|(path, message)| ConfigError {
                    source: "<admin>".into(),
                    line: None,
                    column: None,
                    path: path.to_string(),
                    message: message.to_string(),
                })
                .collect(),
        )
    }

    async fn answer(reply: Reply) -> (StatusCode, Value) {
        let status = reply.status();
        let body = reply.into_body().collect().await.expect("body").to_bytes();
        (status, serde_json::from_slice(&body).expect("JSON"))
    }

    #[tokio::test]
    async fn violations_name_the_field_as_kong_does() {
        let (status, body) = answer(schema_violation(
            &errors(&[
                ("upstreams[3]", "required field missing: `name`"),
                (
                    "upstreams[3].slots",
                    "invalid type: string \"x\", expected u32",
                ),
            ]),
            "upstreams[3]",
        ))
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["code"], 2);
        assert_eq!(body["fields"]["name"], "required field missing");
        assert!(body["fields"]["slots"].is_string(), "{body}");
        // A field with a bad value and reported missing keeps the message about its value.
        let (_, body) = answer(schema_violation(
            &errors(&[
                ("acls[0]", "required field missing: `group`"),
                (
                    "acls[0].group",
                    "invalid type: integer `5`, expected a string",
                ),
            ]),
            "acls[0]",
        ))
        .await;
        assert_eq!(
            body["fields"],
            json!({"group": "invalid type: integer `5`, expected a string"})
        );
        // Entity checks go under `@entity`.
        let (_, body) = answer(schema_violation(
            &errors(&[(
                "consumers[1]",
                "at least one of these fields must be non-empty",
            )]),
            "consumers[1]",
        ))
        .await;
        assert_eq!(
            body["fields"]["@entity"],
            json!(["at least one of these fields must be non-empty"])
        );
    }

    #[tokio::test]
    async fn taken_values_are_conflicts() {
        for message in [
            "duplicate name `a`: already declared",
            "duplicate group `g` for this consumer: already declared",
            "another key-auth credential has the same key",
            "another basic-auth credential has the username `u`",
            "another jwt credential has the key `k`",
            "plugin `cors` is configured twice on the same scope",
        ] {
            let (status, body) =
                answer(schema_violation(&errors(&[("x[0].f", message)]), "x[0]")).await;
            assert_eq!(status, StatusCode::CONFLICT, "{message}");
            assert_eq!(body["code"], 5, "{message}");
            assert!(body["fields"].get("f").is_some(), "{body}");
        }
        // Kong's wording, with the taken value (not repeated for a secret).
        let (_, body) = answer(schema_violation(
            &errors(&[(
                "services[2].name",
                "duplicate name `example`: already declared",
            )]),
            "services[2]",
        ))
        .await;
        assert_eq!(
            body["message"],
            "UNIQUE violation detected on '{name=\"example\"}'"
        );
        assert_eq!(body["fields"], json!({"name": "example"}));
        let (_, body) = answer(schema_violation(
            &errors(&[(
                "keyauth_credentials[0].key",
                "another key-auth credential has the same key",
            )]),
            "keyauth_credentials[0]",
        ))
        .await;
        assert_eq!(body["message"], "UNIQUE violation detected on '{key}'");
        // Taken and otherwise invalid: a schema violation naming both.
        let (status, body) = answer(schema_violation(
            &errors(&[
                (
                    "services[2].name",
                    "duplicate name `example`: already declared",
                ),
                ("services[2].port", "invalid value"),
            ]),
            "services[2]",
        ))
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            body["message"],
            "2 schema violations (name: duplicate name `example`: already declared; port: invalid value)"
        );
        let (status, _) = answer(schema_violation(
            &errors(&[(
                "routes[0].headers",
                "duplicate header name (names are case-insensitive)",
            )]),
            "routes[0]",
        ))
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
}

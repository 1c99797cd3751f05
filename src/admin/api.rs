//! Admin API requests: Kong's endpoints over the configuration serving now.
//!
//! Without a database (the declarative file is the source of truth) the entity endpoints are
//! read-only, as in Kong's DB-less mode: writes answer 405, and the whole configuration is
//! replaced with `POST /config`.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{Value, json};

use super::access::{Access, Refusal};
use super::form;
use super::paging::{ListQuery, form_urlencoded_pairs};
use super::views::{self, Kind, id_of, refers_to};
use super::{Control, ReplaceError};
use crate::config::{ConfigErrors, export};
use crate::plugins::{KNOWN_PLUGINS, PLUGIN_PRIORITIES};
use crate::snapshot::Snapshot;

/// Largest request body accepted (a whole declarative configuration for `POST /config`).
pub const MAX_BODY: usize = 64 << 20;

/// The node facts `GET /` reports.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub node_id: String,
    pub hostname: String,
    /// Listen addresses, as configured.
    pub proxy_listen: Vec<String>,
    pub admin_listen: Vec<String>,
    /// The declarative file, when the node runs on one.
    pub declarative_config: Option<String>,
}

/// The Admin API of one node.
pub struct Admin {
    control: Arc<dyn Control>,
    node: NodeInfo,
    access: Access,
}

type Reply = Response<Full<Bytes>>;

impl Admin {
    pub fn new(control: Arc<dyn Control>, node: NodeInfo, access: Access) -> Admin {
        Admin {
            control,
            node,
            access,
        }
    }

    /// Answer one request from a client at `peer`. Never fails: every problem is a JSON
    /// error response.
    pub async fn handle<B>(&self, req: Request<B>, peer: std::net::IpAddr) -> Reply
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let (parts, body) = req.into_parts();
        if !self.access.admits(peer) {
            return error(StatusCode::FORBIDDEN, "Your IP address is not allowed");
        }
        if self.access.check(&parts.headers) == Err(Refusal::Token) {
            return error(
                StatusCode::UNAUTHORIZED,
                "Invalid credentials. Token or User credentials required",
            );
        }
        let body = match Limited::new(body, MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("request body larger than {MAX_BODY} bytes"),
                );
            }
            Err(_) => return error(StatusCode::BAD_REQUEST, "cannot read the request body"),
        };
        let segments: Vec<String> = parts
            .uri
            .path()
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| crate::plugins::query::decode(s).into_owned())
            .collect();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let request = AdminRequest {
            method: &parts.method,
            path: parts.uri.path(),
            query: parts.uri.query(),
            content_type: parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or(""),
            body: &body,
        };
        self.dispatch(&request, &segments).await
    }

    async fn dispatch(&self, req: &AdminRequest<'_>, segments: &[&str]) -> Reply {
        let snap = self.control.current();
        let get = req.method == Method::GET || req.method == Method::HEAD;
        match segments {
            [] if get => ok(self.node_info(&snap)),
            ["status"] if get => ok(self.status(&snap).await),
            ["config"] if get => ok(json!({ "config": export_text(&snap) })),
            ["config"] if req.method == Method::POST => self.replace_config(req),
            ["plugins", "enabled"] if get => ok(json!({ "enabled_plugins": KNOWN_PLUGINS })),
            ["upstreams", upstream, "health"] if get => upstream_health(&snap, upstream, req),
            [endpoint] => match Kind::by_endpoint(endpoint) {
                Some(kind) if get => list(req, kind.list(&snap)),
                Some(kind) if req.method == Method::POST && self.control.store().is_some() => {
                    self.create(&snap, kind, None, req)
                }
                Some(kind) if req.method == Method::POST => self.read_only(kind, "create"),
                Some(_) => method_not_allowed(),
                None => not_found(),
            },
            [endpoint, key] => match Kind::by_endpoint(endpoint) {
                Some(kind) if get => found(kind.find(&snap, key)),
                Some(kind) if req.method == Method::PUT && self.control.store().is_some() => {
                    self.upsert(&snap, kind, key, None, req)
                }
                Some(kind) if self.writable(req.method) => match kind.find(&snap, key) {
                    Some(entity) => self.change(&snap, kind, &entity, req),
                    None => not_found(),
                },
                Some(kind) if is_write(req.method) => self.read_only(kind, write_verb(req.method)),
                Some(_) => method_not_allowed(),
                None => not_found(),
            },
            [endpoint, key, nested] => {
                let Some((parent, children)) = nested_kinds(endpoint, nested) else {
                    return not_found();
                };
                let Some(owner) = parent.find(&snap, key) else {
                    return not_found();
                };
                let owner_id = id_of(&owner).unwrap_or_default();
                if *nested == "service" && *endpoint == "routes" {
                    // A route's service.
                    let service = owner
                        .get("service")
                        .and_then(|s| s.get("id"))
                        .and_then(Value::as_str)
                        .and_then(|id| children.find(&snap, id));
                    return match service {
                        Some(s) if get => ok(s),
                        Some(_) if is_write(req.method) => {
                            self.read_only(children, write_verb(req.method))
                        }
                        Some(_) => method_not_allowed(),
                        None => not_found(),
                    };
                }
                let field = reference_field(endpoint);
                match req.method {
                    m if *m == Method::GET || *m == Method::HEAD => list(
                        req,
                        children
                            .list(&snap)
                            .into_iter()
                            .filter(|e| refers_to(e, field, owner_id))
                            .collect(),
                    ),
                    m if *m == Method::POST && self.control.store().is_some() => {
                        self.create(&snap, children, Some((field, owner_id)), req)
                    }
                    m if *m == Method::POST => self.read_only(children, "create"),
                    _ => method_not_allowed(),
                }
            }
            [endpoint, key, nested, child_key] => {
                let Some((parent, children)) = nested_kinds(endpoint, nested) else {
                    return not_found();
                };
                let Some(owner) = parent.find(&snap, key) else {
                    return not_found();
                };
                let owner_id = id_of(&owner).unwrap_or_default();
                let field = reference_field(endpoint);
                let child = children
                    .list(&snap)
                    .into_iter()
                    .filter(|e| refers_to(e, field, owner_id))
                    .find(|e| {
                        id_of(e) == Some(*child_key)
                            || children
                                .natural_keys
                                .iter()
                                .any(|f| e.get(*f).and_then(Value::as_str) == Some(*child_key))
                    });
                match child {
                    Some(c) if get => ok(c),
                    Some(c) if self.writable(req.method) => self.change(&snap, children, &c, req),
                    _ if *req.method == Method::PUT && self.control.store().is_some() => {
                        self.upsert(&snap, children, child_key, Some((field, owner_id)), req)
                    }
                    Some(_) if is_write(req.method) => {
                        self.read_only(children, write_verb(req.method))
                    }
                    Some(_) => method_not_allowed(),
                    None => not_found(),
                }
            }
            _ => not_found(),
        }
    }

    /// `POST` of one entity (database mode): the configuration serving now plus the entity,
    /// validated and stored as a whole like `POST /config`, then the entity as Kong shows it.
    /// `parent` is the reference a nested endpoint implies (`service` of
    /// `/services/{s}/routes`, say).
    fn create(
        &self,
        snap: &Snapshot,
        kind: Kind,
        parent: Option<(&str, &str)>,
        req: &AdminRequest<'_>,
    ) -> Reply {
        let mut entity = match form::body_object(req.content_type, req.body) {
            Ok(e) => e,
            Err(message) => return error(StatusCode::BAD_REQUEST, &message),
        };
        if let Some((field, id)) = parent {
            entity.insert(field.into(), json!({ "id": id }));
        }
        if kind.collection == "jwt_secrets" {
            // Kong generates what is not given: the key is what tokens name in `iss`.
            for field in ["key", "secret"] {
                if entity.get(field).is_none_or(Value::is_null) {
                    let generated = uuid::Uuid::new_v4().simple().to_string();
                    entity.insert(field.into(), json!(generated));
                }
            }
        }
        let id = match entity.get("id") {
            Some(Value::String(id)) => id.clone(),
            Some(_) => return error(StatusCode::BAD_REQUEST, "`id` must be a string"),
            None => uuid::Uuid::new_v4().to_string(),
        };
        entity.insert("id".into(), json!(id));
        if entity.get("created_at").is_none_or(Value::is_null) {
            entity.insert("created_at".into(), json!(now()));
        }
        let (document, index) = with_entity(snap, kind, &id, entity);
        self.commit(snap, &document, kind, index, &id, StatusCode::CREATED)
    }

    /// Store and serve `document` (computed from `base`), in which entity `id` of `kind` (at
    /// `index` of its collection) was created or changed; answer `status` with the entity as
    /// it is now served (`204` without a body for `NO_CONTENT`), or the error.
    fn commit(
        &self,
        base: &Snapshot,
        document: &Value,
        kind: Kind,
        index: usize,
        id: &str,
        status: StatusCode,
    ) -> Reply {
        match self.control.replace(Some(base), &document.to_string()) {
            Ok(_) if status == StatusCode::NO_CONTENT => {
                let mut resp = Response::new(Full::new(Bytes::new()));
                *resp.status_mut() = status;
                resp
            }
            Ok(now_serving) => match kind.find(&now_serving, id) {
                Some(entity) => json_response(status, &entity),
                None => not_found(),
            },
            Err(ReplaceError::Invalid(errors)) => {
                schema_violation(&errors, &format!("{}[{index}]", kind.collection))
            }
            Err(ReplaceError::Conflict(message)) => error(StatusCode::CONFLICT, &message),
            Err(ReplaceError::Unavailable(message)) => {
                error(StatusCode::SERVICE_UNAVAILABLE, &message)
            }
        }
    }

    /// `PUT`: the entity named by `key` (id or natural key) replaced as a whole by the body, or
    /// created with that id or name (Kong's upsert). `parent` as for `POST`.
    fn upsert(
        &self,
        snap: &Snapshot,
        kind: Kind,
        key: &str,
        parent: Option<(&str, &str)>,
        req: &AdminRequest<'_>,
    ) -> Reply {
        let mut entity = match form::body_object(req.content_type, req.body) {
            Ok(e) => e,
            Err(message) => return error(StatusCode::BAD_REQUEST, &message),
        };
        let existing = kind.find(snap, key);
        let by_id = uuid::Uuid::parse_str(key).is_ok();
        if !by_id && let Some(field) = kind.natural_keys.first() {
            // Addressed by name: the name stays (Kong's upsert by endpoint key).
            entity
                .entry(field.to_string())
                .or_insert_with(|| json!(key));
        }
        let id = match &existing {
            Some(e) => id_of(e).unwrap_or_default().to_string(),
            None if by_id => key.to_string(),
            None => uuid::Uuid::new_v4().to_string(),
        };
        if entity
            .get("id")
            .is_some_and(|v| v.as_str() != Some(id.as_str()))
        {
            return error(StatusCode::BAD_REQUEST, "`id` does not match the URL");
        }
        entity.insert("id".into(), json!(id));
        if let Some((field, parent_id)) = parent {
            entity.insert(field.into(), json!({ "id": parent_id }));
        }
        let created_at = existing
            .as_ref()
            .and_then(|e| e.get("created_at").cloned())
            .unwrap_or_else(|| json!(now()));
        entity.insert("created_at".into(), created_at);
        let (document, index) = with_entity(snap, kind, &id, entity);
        self.commit(snap, &document, kind, index, &id, StatusCode::OK)
    }

    /// Whether `method` changes single entities here (`PATCH` and `DELETE`, database mode).
    fn writable(&self, method: &Method) -> bool {
        self.control.store().is_some() && (*method == Method::PATCH || *method == Method::DELETE)
    }

    /// `PATCH` (fields merged in; a plugin's `config` merged key by key) or `DELETE` (with
    /// Kong's cascade: a consumer's credentials and plugins, a route's or service's plugins, an
    /// upstream's targets, a certificate's SNIs; a service that routes still use is refused)
    /// of `entity`, stored and served like `POST`.
    fn change(&self, snap: &Snapshot, kind: Kind, entity: &Value, req: &AdminRequest<'_>) -> Reply {
        let id = id_of(entity).unwrap_or_default().to_string();
        let mut document = export::declarative(&snap.doc);
        let deleting = *req.method == Method::DELETE;
        let index;
        if deleting {
            let referenced_by = |collection: &str, field: &str| {
                document
                    .get(collection)
                    .and_then(Value::as_array)
                    .is_some_and(|l| l.iter().any(|e| refers_to(e, field, &id)))
            };
            if kind.collection == "services" && referenced_by("routes", "service") {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    &json!({
                        "code": 3,
                        "name": "foreign key violation",
                        "message": "an existing 'routes' entity references this 'services' entity",
                    }),
                );
            }
            let field = kind.collection.trim_end_matches('s');
            for (collection, reference) in cascade(kind.collection, field) {
                if let Some(Value::Array(list)) = document.get_mut(collection) {
                    list.retain(|e| !refers_to(e, reference, &id));
                }
            }
            let Some(Value::Array(list)) = document.get_mut(kind.collection) else {
                return not_found();
            };
            list.retain(|e| id_of(e) != Some(id.as_str()));
            index = 0;
        } else {
            let patch = match form::body_object(req.content_type, req.body) {
                Ok(p) => p,
                Err(message) => return error(StatusCode::BAD_REQUEST, &message),
            };
            if patch
                .get("id")
                .is_some_and(|v| v.as_str() != Some(id.as_str()))
            {
                return error(StatusCode::BAD_REQUEST, "`id` cannot be changed");
            }
            let Some(Value::Array(list)) = document.get_mut(kind.collection) else {
                return not_found();
            };
            let Some(i) = list.iter().position(|e| id_of(e) == Some(id.as_str())) else {
                return not_found();
            };
            index = i;
            if let Value::Object(stored) = &mut list[i] {
                if kind.collection == "services" {
                    if patch.contains_key("url") {
                        // A new URL replaces every part of the old one.
                        for part in URL_PARTS {
                            stored.remove(*part);
                        }
                    } else if patch.keys().any(|k| URL_PARTS.contains(&k.as_str())) {
                        // The shorthand and its parts cannot both be given: spell it out.
                        views::expand_url(stored);
                    }
                }
                for (k, v) in patch {
                    match (stored.get_mut(&k), v) {
                        (Some(Value::Object(old)), Value::Object(new)) if k == "config" => {
                            old.extend(new);
                        }
                        (_, v) => {
                            stored.insert(k, v);
                        }
                    }
                }
                stored.insert("updated_at".into(), json!(now()));
            }
        }
        let status = if deleting {
            StatusCode::NO_CONTENT
        } else {
            StatusCode::OK
        };
        self.commit(snap, &document, kind, index, &id, status)
    }

    /// A write without a database: Kong's DB-less refusal.
    fn read_only(&self, kind: Kind, verb: &str) -> Reply {
        json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({
                "code": 12,
                "name": "operation unsupported",
                "message": format!("cannot {verb} '{}' entities when not using a database", kind.collection),
            }),
        )
    }

    fn node_info(&self, snap: &Snapshot) -> Value {
        let available: serde_json::Map<String, Value> = PLUGIN_PRIORITIES
            .iter()
            .map(|(name, priority)| {
                (
                    name.to_string(),
                    json!({ "priority": priority, "version": env!("CARGO_PKG_VERSION") }),
                )
            })
            .collect();
        let mut enabled: Vec<&str> = snap
            .doc
            .plugins
            .iter()
            .map(|(p, _)| p.item.name.as_str())
            .collect();
        enabled.sort_unstable();
        enabled.dedup();
        json!({
            "tagline": "Welcome to gatehouse",
            "version": env!("CARGO_PKG_VERSION"),
            "edition": "community",
            "node_id": self.node.node_id,
            "hostname": self.node.hostname,
            "configuration": {
                "database": self.control.store().map_or("off", |s| s.kind()),
                "role": "traditional",
                "proxy_listen": self.node.proxy_listen,
                "admin_listen": self.node.admin_listen,
                "declarative_config": self.node.declarative_config,
            },
            "plugins": {
                "available_on_server": available,
                "enabled_in_cluster": enabled,
            },
        })
    }

    async fn status(&self, snap: &Snapshot) -> Value {
        let reachable = match self.control.store() {
            Some(store) => store.reachable().await,
            None => true,
        };
        json!({
            "database": { "reachable": reachable },
            "configuration_hash": configuration_hash(snap),
            "server": {
                "connections_accepted": self.control.connections_accepted(),
            },
        })
    }

    /// Kong's `POST /config`: a whole declarative configuration (the body itself as JSON or
    /// YAML, or its text in a `config` field of a JSON or form body), validated, then applied.
    fn replace_config(&self, req: &AdminRequest<'_>) -> Reply {
        let text = match config_text(req) {
            Ok(t) => t,
            Err(message) => return error(StatusCode::BAD_REQUEST, &message),
        };
        match self.control.replace(None, &text) {
            Ok(snap) => {
                let mut out = serde_json::Map::new();
                for &name in export::COLLECTIONS {
                    let list = export::collection(&snap.doc, name);
                    if list.is_empty() {
                        continue;
                    }
                    let by_id: serde_json::Map<String, Value> = list
                        .into_iter()
                        .map(|e| (id_of(&e).unwrap_or_default().to_string(), e))
                        .collect();
                    out.insert(name.into(), Value::Object(by_id));
                }
                json_response(StatusCode::CREATED, &Value::Object(out))
            }
            Err(ReplaceError::Invalid(errors)) => invalid_config(&errors),
            Err(ReplaceError::Conflict(message)) => error(StatusCode::CONFLICT, &message),
            Err(ReplaceError::Unavailable(message)) => {
                error(StatusCode::SERVICE_UNAVAILABLE, &message)
            }
        }
    }
}

/// What a handler needs of a request.
struct AdminRequest<'a> {
    method: &'a Method,
    path: &'a str,
    query: Option<&'a str>,
    content_type: &'a str,
    body: &'a Bytes,
}

fn is_write(method: &Method) -> bool {
    *method == Method::PATCH || *method == Method::PUT || *method == Method::DELETE
}

fn write_verb(method: &Method) -> &'static str {
    if *method == Method::DELETE {
        "delete"
    } else {
        "update"
    }
}

/// The parent and child kinds of `/{endpoint}/{key}/{nested}`.
fn nested_kinds(endpoint: &str, nested: &str) -> Option<(Kind, Kind)> {
    let parent = Kind::by_endpoint(endpoint)?;
    let child = match (endpoint, nested) {
        ("services" | "routes" | "consumers", "plugins") => Kind::by_endpoint("plugins"),
        ("services", "routes") => Kind::by_endpoint("routes"),
        ("routes", "service") => Kind::by_endpoint("services"),
        ("upstreams", "targets") => Kind::by_endpoint("targets"),
        ("certificates", "snis") => Kind::by_endpoint("snis"),
        ("consumers", credential) => Kind::by_consumer_endpoint(credential),
        _ => None,
    }?;
    Some((parent, child))
}

/// The reference a child entity holds to a parent of `endpoint`.
fn reference_field(endpoint: &str) -> &'static str {
    match endpoint {
        "services" => "service",
        "routes" => "route",
        "consumers" => "consumer",
        "upstreams" => "upstream",
        "certificates" => "certificate",
        _ => "",
    }
}

fn list(req: &AdminRequest<'_>, entities: Vec<Value>) -> Reply {
    match ListQuery::parse(req.query) {
        Ok(q) => ok(q.page(entities, req.path)),
        Err(e) => json_response(
            StatusCode::BAD_REQUEST,
            &json!({ "code": 9, "name": e.name, "message": e.message }),
        ),
    }
}

fn upstream_health(snap: &Snapshot, key: &str, req: &AdminRequest<'_>) -> Reply {
    let Some(upstream) = Kind::by_endpoint("upstreams").and_then(|k| k.find(snap, key)) else {
        return not_found();
    };
    let name = upstream.get("name").and_then(Value::as_str).unwrap_or("");
    let Some(rt) = snap.upstreams.iter().find(|u| u.name == name) else {
        return not_found();
    };
    let targets = Kind::by_endpoint("targets")
        .map(|k| k.list(snap))
        .unwrap_or_default();
    let upstream_id = id_of(&upstream).unwrap_or_default();
    let report = rt.health.report();
    let data: Vec<Value> = report
        .data
        .iter()
        .map(|t| {
            // The target entity it came from (a host name target gives one entry per address).
            let entity = targets.iter().find(|e| {
                refers_to(e, "upstream", upstream_id)
                    && e.get("target").and_then(Value::as_str) == Some(t.target.as_str())
            });
            let mut v = entity.cloned().unwrap_or_else(|| json!({}));
            if let Value::Object(m) = &mut v {
                m.insert("target".into(), json!(t.target));
                m.insert("weight".into(), json!(t.weight));
                m.insert("health".into(), json!(t.health));
                m.insert("upstream".into(), json!({ "id": upstream_id }));
            }
            v
        })
        .collect();
    match ListQuery::parse(req.query) {
        Ok(q) => {
            let mut page = q.page(data, req.path);
            if let Value::Object(m) = &mut page {
                m.insert("total".into(), json!(report.total));
                m.insert("node_id".into(), Value::Null);
            }
            ok(page)
        }
        Err(e) => error(StatusCode::BAD_REQUEST, &e.message),
    }
}

/// The declarative text of the configuration serving now (JSON, which is also YAML).
fn export_text(snap: &Snapshot) -> String {
    serde_json::to_string_pretty(&export::declarative(&snap.doc)).unwrap_or_default()
}

/// A short digest of the configuration serving now (Kong's `configuration_hash`: 32 hex).
fn configuration_hash(snap: &Snapshot) -> String {
    let digest =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, export_text(snap).as_bytes());
    digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The declarative text of a `POST /config` body.
fn config_text(req: &AdminRequest<'_>) -> Result<String, String> {
    let body = std::str::from_utf8(req.body).map_err(|_| "the body is not UTF-8".to_string())?;
    let media = req
        .content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if media == "application/x-www-form-urlencoded" {
        return form_urlencoded_pairs(body)
            .into_iter()
            .find(|(k, _)| k == "config")
            .map(|(_, v)| v)
            .ok_or_else(|| "expected a `config` field with the declarative configuration".into());
    }
    if media == "application/json"
        && let Ok(Value::Object(m)) = serde_json::from_str::<Value>(body)
        && let Some(Value::String(text)) = m.get("config")
        && !m.contains_key("_format_version")
    {
        return Ok(text.clone());
    }
    if body.trim().is_empty() {
        return Err("expected a declarative configuration in the body".into());
    }
    Ok(body.to_string())
}

fn invalid_config(errors: &ConfigErrors) -> Reply {
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
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({
            "code": 14,
            "name": "invalid declarative configuration",
            "message": format!("declarative config is invalid: {}", errors.0.len()),
            "fields": fields,
        }),
    )
}

/// The configuration serving now as a declarative document, with `entity` (of `kind`, id
/// `id`) in place of the stored one, or added at the end; and its index in its collection.
fn with_entity(
    snap: &Snapshot,
    kind: Kind,
    id: &str,
    entity: serde_json::Map<String, Value>,
) -> (Value, usize) {
    let mut document = export::declarative(&snap.doc);
    let mut index = 0;
    if let Value::Object(d) = &mut document {
        let slot = d.entry(kind.collection).or_insert_with(|| json!([]));
        if let Value::Array(list) = slot {
            index = match list.iter().position(|e| id_of(e) == Some(id)) {
                Some(i) => {
                    list[i] = Value::Object(entity);
                    i
                }
                None => {
                    list.push(Value::Object(entity));
                    list.len() - 1
                }
            };
        }
    }
    (document, index)
}

/// The parts of a service's `url` shorthand.
const URL_PARTS: &[&str] = &["url", "protocol", "host", "port", "path"];

/// What goes with a deleted entity of `collection` (as Kong cascades): `(collection, the
/// reference to the deleted entity)`. `field` is the singular of `collection`.
fn cascade<'a>(collection: &str, field: &'a str) -> Vec<(&'static str, &'a str)> {
    match collection {
        "consumers" => vec![
            ("keyauth_credentials", field),
            ("jwt_secrets", field),
            ("basicauth_credentials", field),
            ("hmacauth_credentials", field),
            ("acls", field),
            ("plugins", field),
        ],
        "routes" | "services" => vec![("plugins", field)],
        "upstreams" => vec![("targets", field)],
        "certificates" => vec![("snis", field)],
        _ => Vec::new(),
    }
}

/// Kong's answer to an invalid entity: `400` schema violation with `fields` (paths relative
/// to the entity at `at`), or `409` when a unique field is taken.
fn schema_violation(errors: &ConfigErrors, at: &str) -> Reply {
    let prefix = format!("{at}.");
    let mut fields = serde_json::Map::new();
    let mut unique = false;
    for e in &errors.0 {
        let field = e.path.strip_prefix(&prefix).unwrap_or(&e.path);
        unique |= e.message.starts_with("duplicate ");
        fields.insert(field.to_string(), json!(e.message));
    }
    let summary: Vec<String> = fields
        .iter()
        .map(|(f, m)| format!("{f}: {}", m.as_str().unwrap_or_default()))
        .collect();
    if unique {
        return json_response(
            StatusCode::CONFLICT,
            &json!({
                "code": 5,
                "name": "unique constraint violation",
                "message": format!("UNIQUE violation detected ({})", summary.join(", ")),
                "fields": fields,
            }),
        );
    }
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({
            "code": 2,
            "name": "schema violation",
            "message": format!("schema violation ({})", summary.join(", ")),
            "fields": fields,
        }),
    )
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn found(entity: Option<Value>) -> Reply {
    match entity {
        Some(e) => ok(e),
        None => not_found(),
    }
}

fn ok(body: Value) -> Reply {
    json_response(StatusCode::OK, &body)
}

fn not_found() -> Reply {
    error(StatusCode::NOT_FOUND, "Not found")
}

fn method_not_allowed() -> Reply {
    error(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed")
}

fn error(status: StatusCode, message: &str) -> Reply {
    json_response(status, &json!({ "message": message }))
}

fn json_response(status: StatusCode, body: &Value) -> Reply {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::from(bytes)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}

//! Admin API requests: Kong's endpoints over the configuration serving now.
//!
//! Without a database (the declarative file is the source of truth) the entity endpoints are
//! read-only, as in Kong's DB-less mode: writes answer 405, and the whole configuration is
//! replaced with `POST /config`.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use serde_json::{Value, json};

use super::access::{Access, Refusal};
use super::paging::{ListQuery, form_urlencoded_pairs};
use super::replies::{
    Reply, Unacceptable, error, found, invalid_config, json_response, method_not_allowed,
    no_content, not_found, ok, read_only, schema_violation,
};
use super::routes::{self, Op};
use super::views::{self, Kind, id_of, refers_to};
use super::{Control, ReplaceError};
use super::{form, multipart};
use super::{openapi, schemas};
use crate::config::export;
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
    /// Held by a write from the snapshot it starts from to its answer: writes to one node
    /// follow each other (each sees the last), while reads go on.
    writes: tokio::sync::Mutex<()>,
}

impl Admin {
    pub fn new(control: Arc<dyn Control>, node: NodeInfo, access: Access) -> Admin {
        Admin {
            control,
            node,
            access,
            writes: tokio::sync::Mutex::new(()),
        }
    }

    /// Answer one request from a client at `peer`. Never fails: every problem is a JSON
    /// error response.
    pub async fn handle<B>(self: Arc<Self>, req: Request<B>, peer: std::net::IpAddr) -> Reply
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
        let mut content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = if multipart::is_multipart(&content_type) {
            match multipart::to_form(&content_type, body).await {
                Ok(form) => {
                    content_type = "application/x-www-form-urlencoded".into();
                    form
                }
                Err(message) => return error(StatusCode::BAD_REQUEST, &message),
            }
        } else {
            body
        };
        let incoming = Incoming {
            method: parts.method,
            uri: parts.uri,
            content_type,
            body,
        };
        if incoming.method == Method::GET || incoming.method == Method::HEAD {
            return self.serve(&incoming).await;
        }
        // A write runs to its end on a task of its own, even if the client leaves first: it
        // holds the node's write turn until the database has answered.
        let admin = self.clone();
        tokio::spawn(async move { admin.serve(&incoming).await })
            .await
            .unwrap_or_else(|_| error(StatusCode::SERVICE_UNAVAILABLE, "the write was interrupted"))
    }

    async fn serve(&self, incoming: &Incoming) -> Reply {
        let segments: Vec<String> = incoming
            .uri
            .path()
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| crate::plugins::query::decode(s).into_owned())
            .collect();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let request = AdminRequest {
            method: &incoming.method,
            path: incoming.uri.path(),
            query: incoming.uri.query(),
            content_type: &incoming.content_type,
            body: &incoming.body,
        };
        self.dispatch(&request, &segments).await
    }

    async fn dispatch(&self, req: &AdminRequest<'_>, segments: &[&str]) -> Reply {
        let Some((route, params)) = routes::resolve(segments) else {
            return not_found();
        };
        let method = if *req.method == Method::HEAD {
            &Method::GET
        } else {
            req.method
        };
        if !route.methods.contains(method) {
            return method_not_allowed(&route.allow());
        }
        let get = *method == Method::GET;
        if !get && route.writes_need_database && self.control.store().is_none() {
            return read_only(route.op, method);
        }
        // Writes take turns (each computes from the last); reads do not wait.
        let _turn = if get {
            None
        } else {
            Some(self.writes.lock().await)
        };
        let snap = self.control.current();
        let key = params.first().copied().unwrap_or_default();
        match route.op {
            Op::Root => ok(self.node_info(&snap)),
            Op::Status => ok(self.status(&snap).await),
            Op::Endpoints => ok(json!({
                "data": routes::table().iter().map(routes::Route::template).collect::<Vec<_>>(),
            })),
            Op::OpenApi => ok(openapi::document().clone()),
            Op::Config if get => ok(json!({ "config": export_text(&snap) })),
            Op::Config => self.replace_config(req).await,
            Op::PluginsEnabled => ok(json!({ "enabled_plugins": KNOWN_PLUGINS })),
            Op::Tags => list_unfiltered(req, tagged(&snap, None)),
            Op::Tag => list_unfiltered(req, tagged(&snap, Some(key))),
            Op::PluginSchema => found(schemas::plugin(key)),
            Op::EntitySchema(kind) => found(schemas::entity(kind)),
            Op::EntityValidate(kind) => self.validate(&snap, kind, req).await,
            Op::UpstreamHealth => upstream_health(&snap, key, req),
            Op::TargetHealth {
                healthy,
                by_address,
            } => set_target_health(
                &snap,
                key,
                params.get(1).copied().unwrap_or_default(),
                by_address.then(|| params.get(2).copied().unwrap_or_default()),
                healthy,
            ),
            Op::Collection(kind) if get => list(req, kind.list(&snap)),
            Op::Collection(kind) => self.create(&snap, kind, None, req).await,
            Op::Entity(kind) => {
                self.entity(&snap, kind, kind.find(&snap, key), key, None, req)
                    .await
            }
            Op::Children {
                parent,
                child,
                field,
            } => {
                let Some(owner_id) = parent.id_of(&snap, key) else {
                    return not_found();
                };
                let owner_id = owner_id.as_str();
                if get {
                    let children = child.list(&snap);
                    list(
                        req,
                        children
                            .into_iter()
                            .filter(|e| refers_to(e, field, owner_id))
                            .collect(),
                    )
                } else {
                    self.create(&snap, child, Some((field, owner_id)), req)
                        .await
                }
            }
            Op::Child {
                parent,
                child,
                field,
            } => {
                let Some(owner_id) = parent.id_of(&snap, key) else {
                    return not_found();
                };
                let owner_id = owner_id.as_str();
                let child_key = params.get(1).copied().unwrap_or_default();
                let found = child
                    .list(&snap)
                    .into_iter()
                    .filter(|e| refers_to(e, field, owner_id))
                    .find(|e| child.is_named(e, child_key));
                // Kong: a child that is not this parent's is not found, even to delete; and a
                // `PUT` cannot take another parent's child over.
                let elsewhere = || child.find(&snap, child_key).is_some();
                if found.is_none()
                    && (*method == Method::DELETE || (*method == Method::PUT && elsewhere()))
                {
                    return not_found();
                }
                self.entity(&snap, child, found, child_key, Some((field, owner_id)), req)
                    .await
            }
            Op::Parent {
                child,
                parent,
                field,
            } => {
                let parent_id = child
                    .find(&snap, key)
                    .and_then(|c| c.get(field)?.get("id")?.as_str().map(String::from));
                let Some(parent_id) = parent_id else {
                    return not_found();
                };
                let found = parent.find(&snap, &parent_id);
                self.entity(&snap, parent, found, &parent_id, None, req)
                    .await
            }
        }
    }

    /// One entity of `kind` addressed by `key` (`found` is what it names now): `GET`, `PUT`
    /// (upsert), `PATCH` or `DELETE`. `parent` is the reference a nested path implies.
    async fn entity(
        &self,
        snap: &Arc<Snapshot>,
        kind: Kind,
        found: Option<Value>,
        key: &str,
        parent: Option<(&str, &str)>,
        req: &AdminRequest<'_>,
    ) -> Reply {
        match (req.method, found) {
            (m, found) if *m == Method::GET || *m == Method::HEAD => self::found(found),
            (m, _) if *m == Method::PUT => self.upsert(snap, kind, key, parent, req).await,
            (m, Some(entity)) if *m == Method::PATCH || *m == Method::DELETE => {
                self.change(snap, kind, &entity, req).await
            }
            // Kong answers the deletion of an entity that is not there with 204 too.
            (m, None) if *m == Method::DELETE => no_content(),
            _ => not_found(),
        }
    }

    /// `POST /schemas/{entity}/validate`: the body checked as `POST /{entity}` would check it
    /// (against the configuration serving now), nothing stored.
    async fn validate(&self, snap: &Snapshot, kind: Kind, req: &AdminRequest<'_>) -> Reply {
        let (document, index, _) = match new_entity(snap, kind, None, req) {
            Ok(prepared) => prepared,
            Err(refusal) => return refusal.reply(),
        };
        match off_thread(move || crate::snapshot::load_str("validate", &document.to_string())).await
        {
            Some(Ok(_)) => ok(json!({ "message": "schema validation successful" })),
            Some(Err(errors)) => {
                schema_violation(&errors, &format!("{}[{index}]", kind.collection))
            }
            None => error(StatusCode::SERVICE_UNAVAILABLE, "the check was interrupted"),
        }
    }

    /// `POST` of one entity (database mode): the configuration serving now plus the entity,
    /// validated and stored as a whole like `POST /config`, then the entity as Kong shows it.
    /// `parent` is the reference a nested endpoint implies (`service` of
    /// `/services/{s}/routes`, say).
    async fn create(
        &self,
        snap: &Arc<Snapshot>,
        kind: Kind,
        parent: Option<(&str, &str)>,
        req: &AdminRequest<'_>,
    ) -> Reply {
        match new_entity(snap, kind, parent, req) {
            Ok((document, index, id)) => {
                self.commit(snap, &document, kind, index, &id, StatusCode::CREATED)
                    .await
            }
            Err(refusal) => refusal.reply(),
        }
    }

    /// Store and serve `document` (computed from `base`), in which entity `id` of `kind` (at
    /// `index` of its collection) was created or changed; answer `status` with the entity as
    /// it is now served (`204` without a body for `NO_CONTENT`), or the error.
    async fn commit(
        &self,
        base: &Arc<Snapshot>,
        document: &Value,
        kind: Kind,
        index: usize,
        id: &str,
        status: StatusCode,
    ) -> Reply {
        match self.replace(Some(base.clone()), document.to_string()).await {
            Ok(_) if status == StatusCode::NO_CONTENT => no_content(),
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

    /// [`Control::replace`] on the blocking pool: it waits for the database, and reads must
    /// not wait with it (`/status` answers at once while the database is slow or gone).
    async fn replace(
        &self,
        base: Option<Arc<Snapshot>>,
        text: String,
    ) -> Result<Arc<Snapshot>, ReplaceError> {
        let control = self.control.clone();
        off_thread(move || control.replace(base.as_deref(), &text))
            .await
            .unwrap_or_else(|| {
                Err(ReplaceError::Unavailable(
                    "the write was interrupted".into(),
                ))
            })
    }

    /// `PUT`: the entity named by `key` (id or natural key) replaced as a whole by the body, or
    /// created with that id or name (Kong's upsert). `parent` as for `POST`.
    async fn upsert(
        &self,
        snap: &Arc<Snapshot>,
        kind: Kind,
        key: &str,
        parent: Option<(&str, &str)>,
        req: &AdminRequest<'_>,
    ) -> Reply {
        let existing = kind.find(snap, key);
        let stored_name = existing
            .as_ref()
            .and_then(|e| e.get("name"))
            .and_then(Value::as_str);
        let mut entity = match entity_body(req, kind, stored_name) {
            Ok(e) => e,
            Err(message) => return error(StatusCode::BAD_REQUEST, &message),
        };
        let by_id = uuid::Uuid::parse_str(key).is_ok();
        if !by_id && kind.natural_keys.is_empty() {
            // Only an id names an entity of this kind: a new one needs a UUID.
            return json_response(
                StatusCode::BAD_REQUEST,
                &json!({
                    "code": 1,
                    "name": "invalid primary key",
                    "message": format!("invalid primary key: '{{id=\"{key}\"}}'"),
                    "fields": { "id": "expected a valid UUID" },
                }),
            );
        }
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
        if kind.has_updated_at() {
            entity.insert("updated_at".into(), json!(now()));
        }
        generate(kind, &mut entity);
        let (document, index) = with_entity(snap, kind, &id, entity);
        self.commit(snap, &document, kind, index, &id, StatusCode::OK)
            .await
    }

    /// `PATCH` (fields merged in; a plugin's `config` merged key by key) or `DELETE` (with
    /// Kong's cascade: a consumer's credentials and plugins, a route's or service's plugins, an
    /// upstream's targets, a certificate's SNIs; a service that routes still use is refused)
    /// of `entity`, stored and served like `POST`.
    async fn change(
        &self,
        snap: &Arc<Snapshot>,
        kind: Kind,
        entity: &Value,
        req: &AdminRequest<'_>,
    ) -> Reply {
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
                        "code": 4,
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
            let stored_name = entity.get("name").and_then(Value::as_str);
            let patch = match entity_body(req, kind, stored_name) {
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
                if kind.has_updated_at() {
                    stored.insert("updated_at".into(), json!(now()));
                }
            }
        }
        let status = if deleting {
            StatusCode::NO_CONTENT
        } else {
            StatusCode::OK
        };
        self.commit(snap, &document, kind, index, &id, status).await
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
    async fn replace_config(&self, req: &AdminRequest<'_>) -> Reply {
        let text = match config_text(req) {
            Ok(t) => t,
            Err(message) => return error(StatusCode::BAD_REQUEST, &message),
        };
        let asked = |name: &str| {
            form_urlencoded_pairs(req.query.unwrap_or(""))
                .iter()
                .any(|(k, v)| k == name && matches!(v.as_str(), "1" | "true"))
        };
        let current = self.control.current();
        let candidate = text.clone();
        if asked("check_hash")
            && off_thread(move || {
                crate::snapshot::load_str("POST /config", &candidate)
                    .is_ok_and(|c| configuration_hash(&c) == configuration_hash(&current))
            })
            .await
                == Some(true)
        {
            // Kong: the configuration serving now already is this one.
            let mut resp = no_content();
            *resp.status_mut() = StatusCode::NOT_MODIFIED;
            return resp;
        }
        let flatten = asked("flatten_errors");
        let posted = flatten
            .then(|| crate::config::source::parse("POST /config", &text).ok())
            .flatten()
            .map(|doc| doc.value);
        match self.replace(None, text).await {
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
            Err(ReplaceError::Invalid(errors)) => {
                invalid_config(&errors, flatten.then_some(posted.as_ref()))
            }
            Err(ReplaceError::Conflict(message)) => error(StatusCode::CONFLICT, &message),
            Err(ReplaceError::Unavailable(message)) => {
                error(StatusCode::SERVICE_UNAVAILABLE, &message)
            }
        }
    }
}

/// A request as received: its body read whole (and a multipart body turned into a form).
struct Incoming {
    method: Method,
    uri: http::Uri,
    content_type: String,
    body: Bytes,
}

/// What a handler needs of a request.
struct AdminRequest<'a> {
    method: &'a Method,
    path: &'a str,
    query: Option<&'a str>,
    content_type: &'a str,
    body: &'a Bytes,
}

/// `work` on the blocking pool: compiling a whole configuration must not stall the Admin
/// API's thread, where reads (`/status`) are answered. `None` if it did not finish.
async fn off_thread<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(work).await.ok()
}

/// The body of a write to an entity of `kind`: JSON as it is, a form with its values typed by
/// the entity's schema (and a plugin's `config` by the schema of the plugin the body names, or
/// of `plugin`, the one being changed).
fn entity_body(
    req: &AdminRequest<'_>,
    kind: Kind,
    plugin: Option<&str>,
) -> Result<serde_json::Map<String, Value>, String> {
    let mut entity = form::body_object(req.content_type, req.body)?;
    if !form::is_json(req.content_type) {
        let named = entity.get("name").and_then(Value::as_str).map(String::from);
        schemas::type_form_values(kind.collection, named.as_deref().or(plugin), &mut entity);
    }
    Ok(entity)
}

/// A new entity of `kind` from a `POST` body (`parent`: the reference a nested path implies,
/// as `service` of `/services/{s}/routes`): the configuration serving now with the entity
/// added, its index in its collection, and its id; or why the body is not one (a 400).
fn new_entity(
    snap: &Snapshot,
    kind: Kind,
    parent: Option<(&str, &str)>,
    req: &AdminRequest<'_>,
) -> Result<(Value, usize, String), Unacceptable> {
    let mut entity = entity_body(req, kind, None).map_err(Unacceptable::Body)?;
    if let Some((field, id)) = parent {
        entity.insert(field.into(), json!({ "id": id }));
    }
    generate(kind, &mut entity);
    let id = match entity.get("id") {
        Some(Value::String(id)) => id.clone(),
        Some(_) => return Err(Unacceptable::Body("`id` must be a string".into())),
        None => uuid::Uuid::new_v4().to_string(),
    };
    if kind
        .list(snap)
        .iter()
        .any(|e| id_of(e) == Some(id.as_str()))
    {
        // Creating is not replacing: that is `PUT`'s.
        return Err(Unacceptable::TakenId(id));
    }
    entity.insert("id".into(), json!(id));
    if entity.get("created_at").is_none_or(Value::is_null) {
        entity.insert("created_at".into(), json!(now()));
    }
    if kind.has_updated_at() && entity.get("updated_at").is_none_or(Value::is_null) {
        // Stored, so that it does not follow the time of the next reload.
        let created_at = entity.get("created_at").cloned().unwrap_or(Value::Null);
        entity.insert("updated_at".into(), created_at);
    }
    let (document, index) = with_entity(snap, kind, &id, entity);
    Ok((document, index, id))
}

fn list(req: &AdminRequest<'_>, entities: Vec<Value>) -> Reply {
    match ListQuery::parse(req.query) {
        Ok(q) => ok(q.page(entities, req.path)),
        Err(e) => json_response(StatusCode::BAD_REQUEST, &e.body()),
    }
}

/// Kong's `/tags` entries: `{entity_name, entity_id, tag}` for every tag of every entity (of
/// `only` that tag), by collection in the order of the declarative file.
fn tagged(snap: &Snapshot, only: Option<&str>) -> Vec<Value> {
    let mut out = Vec::new();
    for kind in views::KINDS {
        for entity in kind.list(snap) {
            let Some(tags) = entity.get("tags").and_then(Value::as_array) else {
                continue;
            };
            for tag in tags.iter().filter_map(Value::as_str) {
                if only.is_none_or(|t| t == tag) {
                    out.push(json!({
                        "entity_name": kind.collection,
                        "entity_id": id_of(&entity),
                        "tag": tag,
                    }));
                }
            }
        }
    }
    out
}

/// A page of `entries` that are not entities (`tags` does not filter them).
fn list_unfiltered(req: &AdminRequest<'_>, entries: Vec<Value>) -> Reply {
    match ListQuery::parse(req.query) {
        Ok(q) if q.tags.is_some() => {
            error(StatusCode::BAD_REQUEST, "`tags` cannot filter this list")
        }
        Ok(q) => ok(q.page(entries, req.path)),
        Err(e) => json_response(StatusCode::BAD_REQUEST, &e.body()),
    }
}

/// The upstream entity `key` names, and what serves it (its targets, balancer and health).
fn upstream_served<'s>(
    snap: &'s Snapshot,
    key: &str,
) -> Option<(Value, &'s crate::snapshot::UpstreamRt)> {
    let upstream = Kind::by_endpoint("upstreams")?.find(snap, key)?;
    let name = upstream.get("name").and_then(Value::as_str)?;
    let rt = snap.upstreams.iter().find(|u| u.name == name)?;
    Some((upstream, rt))
}

fn upstream_health(snap: &Snapshot, key: &str, req: &AdminRequest<'_>) -> Reply {
    let Some((upstream, rt)) = upstream_served(snap, key) else {
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
        .enumerate()
        .map(|(i, t)| {
            // The target entity it came from (a host name target gives one entry per address).
            let origin = rt.origins.get(i).map_or(t.target.as_str(), |o| &**o);
            let entity = targets.iter().find(|e| {
                refers_to(e, "upstream", upstream_id)
                    && e.get("target").and_then(Value::as_str) == Some(origin)
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
        Err(e) => json_response(StatusCode::BAD_REQUEST, &e.body()),
    }
}

/// Kong's manual target health: every address of the target entity `target` of upstream
/// `upstream` (or only `address`) set healthy or unhealthy on this node; `204`, or `404`
/// when the upstream, the target or the address is not there.
fn set_target_health(
    snap: &Snapshot,
    upstream: &str,
    target: &str,
    address: Option<&str>,
    healthy: bool,
) -> Reply {
    let Some((upstream, rt)) = upstream_served(snap, upstream) else {
        return not_found();
    };
    let upstream_id = id_of(&upstream).unwrap_or_default();
    let entity = Kind::by_endpoint("targets").and_then(|k| {
        k.list(snap)
            .into_iter()
            .find(|e| refers_to(e, "upstream", upstream_id) && k.is_named(e, target))
    });
    let Some(entity) = entity else {
        return not_found();
    };
    let configured = entity.get("target").and_then(Value::as_str).unwrap_or("");
    let mut found = false;
    for (i, origin) in rt.origins.iter().enumerate() {
        let matches_address =
            address.is_none_or(|a| rt.targets.get(i).is_some_and(|t| &*t.key == a));
        if &**origin == configured
            && matches_address
            && let Some(t) = rt.health.target(i)
        {
            t.state.set_health(healthy);
            found = true;
        }
    }
    if found { no_content() } else { not_found() }
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
    if form::media_is(req.content_type, "application/x-www-form-urlencoded") {
        return form_urlencoded_pairs(body)
            .into_iter()
            .find(|(k, _)| k == "config")
            .map(|(_, v)| v)
            .ok_or_else(|| "expected a `config` field with the declarative configuration".into());
    }
    if form::is_json(req.content_type)
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

/// Fill in the fields Kong generates (`key`, `secret`) that `entity` does not give.
fn generate(kind: Kind, entity: &mut serde_json::Map<String, Value>) {
    for field in kind.generated_fields() {
        if entity.get(*field).is_none_or(Value::is_null) {
            let generated = uuid::Uuid::new_v4().simple().to_string();
            entity.insert(field.to_string(), json!(generated));
        }
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

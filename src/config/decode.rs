//! Decoding a parsed document into the flat [`ConfigDoc`]: walks Kong's top-level collections and
//! their nesting (services → routes → plugins, upstreams → targets, consumers → plugins),
//! deserialises each entity with its typed schema and resolves references by name or id.
//!
//! Every problem is collected: when an entity has several bad fields, the offending field is set
//! aside and the entity is decoded again, so one run reports them all.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::error::ConfigError;
use super::model::*;
use super::source::SourceDoc;
use super::vault;

/// Most errors reported for a single entity before giving up on it.
const MAX_ERRORS_PER_ENTITY: usize = 32;

/// Top-level keys that are metadata in Kong's format.
const META_KEYS: &[&str] = &[
    "_format_version",
    "_transform",
    "_comment",
    "_info",
    "_workspace",
];
/// Top-level collections Kong has that this version does not support yet.
const UNSUPPORTED_COLLECTIONS: &[&str] = &["vaults", "oauth2_credentials"];
/// Credential collections, nested in consumers or at the top level.
const CONSUMER_CREDENTIALS: &[&str] = &[
    JwtSecret::COLLECTION,
    KeyauthCredential::COLLECTION,
    BasicauthCredential::COLLECTION,
    HmacauthCredential::COLLECTION,
    Acl::COLLECTION,
];

/// Sets the consumer of the credential at an index of one credential list.
type SetParent = fn(&mut ConfigDoc, usize, Option<usize>);

fn set_credential_parent<T: ConsumerCredential>(
    doc: &mut ConfigDoc,
    idx: usize,
    parent: Option<usize>,
) {
    if let Some(c) = T::list(doc).get_mut(idx) {
        c.parent = parent;
    }
}

/// An entity's id and name (or username), for resolving references.
type EntityKeys = (Option<String>, Option<String>);

/// A plugin index with its unresolved `service`, `route` and `consumer` references.
type PluginRefs = (
    usize,
    Option<EntityRef>,
    Option<EntityRef>,
    Option<EntityRef>,
);

struct Decoder<'a> {
    src: &'a SourceDoc,
    errors: Vec<ConfigError>,
    doc: ConfigDoc,
    /// Unresolved references, resolved once every entity is known.
    route_service_refs: Vec<(usize, EntityRef)>,
    target_upstream_refs: Vec<(usize, EntityRef)>,
    sni_certificate_refs: Vec<(usize, EntityRef)>,
    plugin_refs: Vec<PluginRefs>,
    /// Top-level credentials' consumers: (path, index in its list, reference, parent setter).
    credential_consumer_refs: Vec<(String, usize, EntityRef, SetParent)>,
    /// Names and ids of entities that failed to decode: references to them are not reported
    /// again as unknown.
    failed: std::collections::HashSet<String>,
}

/// Decode a parsed document. Vault references are resolved first.
///
/// Returns the document together with every error found. When there are errors the document
/// is partial (entities that failed to decode are left out) and must not be served; it is still
/// worth compiling, so that semantic errors are reported in the same run.
pub fn decode(mut src: SourceDoc) -> (ConfigDoc, Vec<ConfigError>) {
    let mut vault_errors = Vec::new();
    let mut value = std::mem::take(&mut src.value);
    vault::resolve_references(&mut value, &mut String::new(), &mut |p, m| {
        vault_errors.push((p.to_string(), m))
    });
    super::files::inline_pem_files(&mut value, &src.locator.name, &mut |p, m| {
        vault_errors.push((p, m))
    });
    src.value = value;
    let mut d = Decoder {
        src: &src,
        errors: vault_errors
            .into_iter()
            .map(|(p, m)| src.locator.error(p, m))
            .collect(),
        doc: ConfigDoc::default(),
        route_service_refs: Vec::new(),
        target_upstream_refs: Vec::new(),
        sni_certificate_refs: Vec::new(),
        plugin_refs: Vec::new(),
        credential_consumer_refs: Vec::new(),
        failed: Default::default(),
    };
    d.top_level();
    d.resolve_refs();
    let mut errors = d.errors;
    let mut doc = d.doc;
    doc.locator = src.locator;
    super::ids::assign(&mut doc);
    errors.sort_by_key(|e| (e.line.unwrap_or(0), e.column.unwrap_or(0)));
    (doc, errors)
}

impl<'a> Decoder<'a> {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let e = self.src.locator.error(path, message);
        self.errors.push(e);
    }

    fn top_level(&mut self) {
        let Value::Object(root) = &self.src.value else {
            self.err(
                "",
                "expected a mapping at the top level with `_format_version`",
            );
            return;
        };
        match root.get("_format_version") {
            Some(Value::String(v)) if ["1.1", "2.1", "3.0"].contains(&v.as_str()) => {
                self.doc.format_version = v.clone()
            }
            Some(other) => self.err(
                "_format_version",
                format!(
                    "unsupported format version {other}; expected \"3.0\" (or \"2.1\", \"1.1\")"
                ),
            ),
            None => self.err("_format_version", "required field missing (use \"3.0\")"),
        }
        for (key, value) in root {
            match key.as_str() {
                k if META_KEYS.contains(&k) => {}
                "services" => self.each(key, value, |d, p, v| d.service(p, v)),
                "routes" => self.each(key, value, |d, p, v| {
                    d.route(p, v, None);
                }),
                "upstreams" => self.each(key, value, |d, p, v| d.upstream(p, v)),
                "targets" => self.each(key, value, |d, p, v| d.target(p, v, None)),
                "consumers" => self.each(key, value, |d, p, v| d.consumer(p, v)),
                "plugins" => self.each(key, value, |d, p, v| d.plugin(p, v, PluginScope::default())),
                "certificates" => self.each(key, value, |d, p, v| d.certificate(p, v)),
                "snis" => self.each(key, value, |d, p, v| d.sni(p, v, None)),
                "ca_certificates" => self.each(key, value, |d, p, v| d.ca_certificate(p, v)),
                k if CONSUMER_CREDENTIALS.contains(&k) => self.credentials(k, value, key, None),
                k if UNSUPPORTED_COLLECTIONS.contains(&k) => self.unsupported(key, k, value),
                k => self.err(
                    k.to_string(),
                    format!("unknown top-level field `{k}`; expected one of _format_version, services, routes, upstreams, targets, consumers, plugins, certificates, snis, ca_certificates, {}", CONSUMER_CREDENTIALS.join(", ")),
                ),
            }
        }
    }

    /// A collection this version does not support: an error unless it is empty.
    fn unsupported(&mut self, path: &str, collection: &str, value: &Value) {
        if !matches!(value, Value::Array(a) if a.is_empty()) && !value.is_null() {
            self.err(
                path.to_string(),
                format!("`{collection}` are not supported by this version of Gatehouse"),
            );
        }
    }

    fn each(&mut self, path: &str, value: &Value, mut f: impl FnMut(&mut Self, String, &Value)) {
        match value {
            Value::Null => {}
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    f(self, format!("{path}[{i}]"), item);
                }
            }
            _ => self.err(path.to_string(), "expected a list"),
        }
    }

    /// Split off nested collections, then deserialise the entity itself.
    fn entity<T: DeserializeOwned>(
        &mut self,
        path: &str,
        value: &Value,
        nested: &[&str],
    ) -> (Option<T>, Map<String, Value>) {
        let Value::Object(obj) = value else {
            self.err(path.to_string(), "expected a mapping");
            return (None, Map::new());
        };

        let mut own = obj.clone();
        let mut children = Map::new();
        for n in nested {
            if let Some(v) = own.remove(*n) {
                children.insert((*n).to_string(), v);
            }
        }
        let decoded = self.deserialize(path, own);
        if decoded.is_none() {
            for key in ["id", "name", "username", "custom_id"] {
                if let Some(Value::String(v)) = obj.get(key) {
                    self.failed.insert(v.clone());
                }
            }
        }
        (decoded, children)
    }

    fn deserialize<T: DeserializeOwned>(
        &mut self,
        path: &str,
        mut obj: Map<String, Value>,
    ) -> Option<T> {
        let mut failed = false;
        for _ in 0..MAX_ERRORS_PER_ENTITY {
            match serde_path_to_error::deserialize::<_, T>(Value::Object(obj.clone())) {
                Ok(t) => return (!failed).then_some(t),
                Err(e) => {
                    failed = true;
                    let inner = e.path().to_string();
                    let message = e.into_inner().to_string();
                    let (field_path, top_key) =
                        if let Some(name) = backticked(&message, "unknown field `") {
                            let p = if inner == "." {
                                name.to_string()
                            } else if inner == name || inner.ends_with(&format!(".{name}")) {
                                inner.clone()
                            } else {
                                format!("{inner}.{name}")
                            };
                            let top = p.split(['.', '[']).next().unwrap_or(name).to_string();
                            (p, Some(top))
                        } else if message.starts_with("missing field `") {
                            let name = backticked(&message, "missing field `").unwrap_or("");
                            let p = if inner == "." {
                                String::new()
                            } else {
                                inner.clone()
                            };
                            let full = join(path, &p);
                            self.err(full, format!("required field missing: `{name}`"));
                            return None;
                        } else {
                            let top = inner.split(['.', '[']).next().map(str::to_string);
                            (if inner == "." { String::new() } else { inner }, top)
                        };
                    self.err(join(path, &field_path), clean_message(&message));
                    match top_key {
                        Some(k) if obj.remove(&k).is_some() => continue,
                        _ => return None,
                    }
                }
            }
        }
        None
    }

    fn service(&mut self, path: String, value: &Value) {
        let (svc, children) = self.entity::<Service>(&path, value, &["routes", "plugins"]);
        let idx = self.doc.services.len();
        if let Some(item) = svc {
            self.doc.services.push(Located {
                path: path.clone(),
                item,
                parent: None,
            });
        } else {
            // keep indices stable for children: push nothing, children are still checked
            self.check_children_only(&path, &children);
            return;
        }
        if let Some(routes) = children.get("routes") {
            let p = format!("{path}.routes");
            self.each(&p, routes, |d, p, v| {
                if v.get("service").is_some() {
                    d.err(
                        format!("{p}.service"),
                        "must not be set on a route nested in a service",
                    );
                }
                d.route(p, v, Some(idx));
            });
        }
        self.nested_plugins(
            &path,
            &children,
            PluginScope {
                service: Some(idx),
                ..Default::default()
            },
        );
    }

    /// The `plugins` nested in an entity, scoped to it.
    fn nested_plugins(&mut self, path: &str, children: &Map<String, Value>, scope: PluginScope) {
        if let Some(plugins) = children.get("plugins") {
            let p = format!("{path}.plugins");
            self.each(&p, plugins, |d, p, v| d.plugin(p, v, scope.clone()));
        }
    }

    /// Report errors inside the nested entities of an entity that itself failed to decode.
    fn check_children_only(&mut self, path: &str, children: &Map<String, Value>) {
        for (k, v) in children {
            let p = format!("{path}.{k}");
            match k.as_str() {
                "routes" => self.each(&p, v, |d, p, v| {
                    d.route(p, v, None);
                }),
                "plugins" => self.each(&p, v, |d, p, v| d.plugin(p, v, PluginScope::default())),
                "targets" => self.each(&p, v, |d, p, v| d.target(p, v, Some(usize::MAX))),
                _ => {}
            }
        }
    }

    fn route(&mut self, path: String, value: &Value, service: Option<usize>) -> Option<usize> {
        let (route, children) = self.entity::<Route>(&path, value, &["plugins"]);
        let route: Route = route?;
        let idx = self.doc.routes.len();
        if let (None, Some(r)) = (service, &route.service) {
            self.route_service_refs.push((idx, r.clone()));
        }
        self.doc.routes.push(Located {
            path: path.clone(),
            item: route,
            parent: service,
        });
        self.nested_plugins(
            &path,
            &children,
            PluginScope {
                route: Some(idx),
                ..Default::default()
            },
        );
        Some(idx)
    }

    fn upstream(&mut self, path: String, value: &Value) {
        let (up, children) = self.entity::<Upstream>(&path, value, &["targets"]);
        let Some(item) = up else {
            self.check_children_only(&path, &children);
            return;
        };
        let idx = self.doc.upstreams.len();
        self.doc.upstreams.push(Located {
            path: path.clone(),
            item,
            parent: None,
        });
        if let Some(targets) = children.get("targets") {
            let p = format!("{path}.targets");
            self.each(&p, targets, |d, p, v| d.target(p, v, Some(idx)));
        }
    }

    fn target(&mut self, path: String, value: &Value, upstream: Option<usize>) {
        let (t, _) = self.entity::<Target>(&path, value, &[]);
        let Some(item) = t else { return };
        let idx = self.doc.targets.len();
        match (upstream, &item.upstream) {
            (Some(_), Some(_)) => self.err(
                format!("{path}.upstream"),
                "must not be set on a target nested in an upstream",
            ),
            (None, Some(r)) => self.target_upstream_refs.push((idx, r.clone())),
            (None, None) => self.err(path.clone(), "a top-level target must name its `upstream`"),
            (Some(_), None) => {}
        }
        self.doc.targets.push(Located {
            path,
            item,
            parent: upstream,
        });
    }

    fn certificate(&mut self, path: String, value: &Value) {
        let (c, children) = self.entity::<Certificate>(&path, value, &["snis"]);
        let Some(item) = c else { return };
        let idx = self.doc.certificates.len();
        self.doc.certificates.push(Located {
            path: path.clone(),
            item,
            parent: None,
        });
        if let Some(snis) = children.get("snis") {
            let p = format!("{path}.snis");
            self.each(&p, snis, |d, p, v| d.sni(p, v, Some(idx)));
        }
    }

    fn ca_certificate(&mut self, path: String, value: &Value) {
        let (c, _) = self.entity::<CaCertificate>(&path, value, &[]);
        if let Some(item) = c {
            self.doc.ca_certificates.push(Located {
                path,
                item,
                parent: None,
            });
        }
    }

    /// An SNI: nested in the certificate with index `certificate` (a bare name or an entity),
    /// or at the top level naming its certificate.
    fn sni(&mut self, path: String, value: &Value, certificate: Option<usize>) {
        let item = match (value, certificate) {
            (Value::String(name), Some(_)) => Sni {
                id: None,
                name: name.clone(),
                bare: true,
                certificate: None,
                tags: Vec::new(),
                created_at: None,
                updated_at: None,
            },
            _ => {
                let (s, _) = self.entity::<Sni>(&path, value, &[]);
                let Some(item) = s else { return };
                item
            }
        };
        let idx = self.doc.snis.len();
        match (certificate, &item.certificate) {
            (Some(_), Some(_)) => self.err(
                format!("{path}.certificate"),
                "must not be set on an SNI nested in a certificate",
            ),
            (None, Some(r)) => self.sni_certificate_refs.push((idx, r.clone())),
            (None, None) => self.err(path.clone(), "a top-level SNI must name its `certificate`"),
            (Some(_), None) => {}
        }
        self.doc.snis.push(Located {
            path,
            item,
            parent: certificate,
        });
    }

    fn consumer(&mut self, path: String, value: &Value) {
        let mut nested = vec!["plugins", "oauth2_credentials"];
        nested.extend_from_slice(CONSUMER_CREDENTIALS);
        let (c, children) = self.entity::<Consumer>(&path, value, &nested);
        let Some(item) = c else { return };
        if item.username.is_none() && item.custom_id.is_none() {
            self.err(
                path.clone(),
                "at least one of these fields must be non-empty: 'custom_id', 'username'",
            );
        }
        let idx = self.doc.consumers.len();
        self.doc.consumers.push(Located {
            path: path.clone(),
            item,
            parent: None,
        });
        for (key, value) in &children {
            let at = format!("{path}.{key}");
            match key.as_str() {
                "plugins" => {}
                "oauth2_credentials" => self.unsupported(&at, key, value),
                _ => self.credentials(key, value, &at, Some(idx)),
            }
        }
        self.nested_plugins(
            &path,
            &children,
            PluginScope {
                consumer: Some(idx),
                ..Default::default()
            },
        );
    }

    /// A credential collection (`collection` is one of [`CONSUMER_CREDENTIALS`]) at `path`,
    /// nested in the consumer with index `consumer` or at the top level.
    fn credentials(
        &mut self,
        collection: &str,
        value: &Value,
        path: &str,
        consumer: Option<usize>,
    ) {
        match collection {
            JwtSecret::COLLECTION => self.each(path, value, |d, p, v| {
                d.credential::<JwtSecret>(p, v, consumer)
            }),
            KeyauthCredential::COLLECTION => self.each(path, value, |d, p, v| {
                d.credential::<KeyauthCredential>(p, v, consumer)
            }),
            BasicauthCredential::COLLECTION => self.each(path, value, |d, p, v| {
                d.credential::<BasicauthCredential>(p, v, consumer)
            }),
            HmacauthCredential::COLLECTION => self.each(path, value, |d, p, v| {
                d.credential::<HmacauthCredential>(p, v, consumer)
            }),
            Acl::COLLECTION => {
                self.each(path, value, |d, p, v| d.credential::<Acl>(p, v, consumer))
            }
            _ => {}
        }
    }

    fn credential<T: ConsumerCredential>(
        &mut self,
        path: String,
        value: &Value,
        consumer: Option<usize>,
    ) {
        let (c, _) = self.entity::<T>(&path, value, &[]);
        let Some(item) = c else { return };
        let idx = T::list(&mut self.doc).len();
        match (consumer, item.consumer()) {
            (Some(_), Some(_)) => self.err(
                format!("{path}.consumer"),
                "must not be set on a credential nested in a consumer",
            ),
            (None, Some(r)) => self.credential_consumer_refs.push((
                path.clone(),
                idx,
                r.clone(),
                set_credential_parent::<T>,
            )),
            (None, None) => self.err(
                path.clone(),
                format!(
                    "a top-level entry of `{}` must name its `consumer`",
                    T::COLLECTION
                ),
            ),
            (Some(_), None) => {}
        }
        T::list(&mut self.doc).push(Located {
            path,
            item,
            parent: consumer,
        });
    }

    fn plugin(&mut self, path: String, value: &Value, scope: PluginScope) {
        let (p, _) = self.entity::<Plugin>(&path, value, &[]);
        let Some(item) = p else { return };
        let idx = self.doc.plugins.len();
        for (field, nested_here, r) in [
            ("service", scope.service.is_some(), &item.service),
            ("route", scope.route.is_some(), &item.route),
            ("consumer", scope.consumer.is_some(), &item.consumer),
        ] {
            if nested_here && r.is_some() {
                self.err(
                    format!("{path}.{field}"),
                    format!("must not be set on a plugin nested in a {field}"),
                );
            }
        }
        self.plugin_refs.push((
            idx,
            item.service.clone(),
            item.route.clone(),
            item.consumer.clone(),
        ));
        self.doc.plugins.push((
            Located {
                path,
                item,
                parent: None,
            },
            scope,
        ));
    }

    fn resolve_refs(&mut self) {
        fn keys<T>(
            list: &[Located<T>],
            f: impl Fn(&T) -> (Option<String>, Option<String>),
        ) -> Vec<EntityKeys> {
            list.iter().map(|l| f(&l.item)).collect()
        }
        let services = keys(&self.doc.services, |s| (s.id.clone(), s.name.clone()));
        let routes = keys(&self.doc.routes, |r| (r.id.clone(), r.name.clone()));
        let upstreams = keys(&self.doc.upstreams, |u| {
            (u.id.clone(), Some(u.name.clone()))
        });
        let consumers = keys(&self.doc.consumers, |c| {
            (c.id.clone(), c.username.clone().or(c.custom_id.clone()))
        });
        for (idx, r) in std::mem::take(&mut self.route_service_refs) {
            let path = format!("{}.service", self.doc.routes[idx].path);
            if let Some(s) = self.resolve(&services, &r, path, "service") {
                self.doc.routes[idx].parent = Some(s);
            }
        }
        for (idx, r) in std::mem::take(&mut self.target_upstream_refs) {
            let path = format!("{}.upstream", self.doc.targets[idx].path);
            if let Some(u) = self.resolve(&upstreams, &r, path, "upstream") {
                self.doc.targets[idx].parent = Some(u);
            }
        }
        let certificates = keys(&self.doc.certificates, |c| (c.id.clone(), None));
        for (idx, r) in std::mem::take(&mut self.sni_certificate_refs) {
            let path = format!("{}.certificate", self.doc.snis[idx].path);
            if let Some(c) = self.resolve(&certificates, &r, path, "certificate") {
                self.doc.snis[idx].parent = Some(c);
            }
        }
        for (path, idx, r, set_parent) in std::mem::take(&mut self.credential_consumer_refs) {
            let found = self.resolve(&consumers, &r, format!("{path}.consumer"), "consumer");
            set_parent(&mut self.doc, idx, found);
        }
        for (idx, s, r, c) in std::mem::take(&mut self.plugin_refs) {
            let base = self.doc.plugins[idx].0.path.clone();
            if let Some(s) = s {
                self.doc.plugins[idx].1.service =
                    self.resolve(&services, &s, format!("{base}.service"), "service");
            }
            if let Some(r) = r {
                self.doc.plugins[idx].1.route =
                    self.resolve(&routes, &r, format!("{base}.route"), "route");
            }
            if let Some(c) = c {
                self.doc.plugins[idx].1.consumer =
                    self.resolve(&consumers, &c, format!("{base}.consumer"), "consumer");
            }
        }
    }

    /// The index of the entity `r` names in `list`; reports an error at `path` when there is
    /// none (unless that entity failed to decode, which was reported already).
    fn resolve(
        &mut self,
        list: &[EntityKeys],
        r: &EntityRef,
        path: String,
        kind: &str,
    ) -> Option<usize> {
        let key = r.key().unwrap_or("");
        let found = list
            .iter()
            .position(|(id, name)| id.as_deref() == Some(key) || name.as_deref() == Some(key));
        if found.is_none() && !self.failed.contains(key) {
            self.err(path, format!("no {kind} named `{key}`"));
        }
        found
    }
}

fn backticked<'m>(message: &'m str, prefix: &str) -> Option<&'m str> {
    let rest = message.strip_prefix(prefix)?;
    rest.split('`').next()
}

fn join(base: &str, rel: &str) -> String {
    match (base.is_empty(), rel.is_empty()) {
        (_, true) => base.to_string(),
        (true, false) => rel.to_string(),
        (false, false) if rel.starts_with('[') => format!("{base}{rel}"),
        _ => format!("{base}.{rel}"),
    }
}

fn clean_message(m: &str) -> String {
    m.replace(
        "data did not match any variant of untagged enum EntityRef",
        "expected a name, an id, or {id: ..} / {name: ..}",
    )
    .replace(
        "data did not match any variant of untagged enum OneOrMany",
        "expected a string or a list of strings",
    )
}

#[cfg(test)]
mod tests {
    use crate::config::load_str;

    #[test]
    fn decodes_nested_and_top_level_entities() {
        let doc = load_str(
            "kong.yml",
            r#"
_format_version: "3.0"
services:
- name: users
  url: http://users:8080
  routes:
  - name: r1
    paths: [/api/users]
    plugins:
    - name: correlation-id
  plugins:
  - name: request-transformer
routes:
- name: r2
  service: users
  paths: [/b]
upstreams:
- name: users
  targets:
  - target: 127.0.0.1:1
targets:
- target: 127.0.0.1:2
  upstream: users
plugins:
- name: correlation-id
  route: r2
"#,
        )
        .unwrap();
        assert_eq!(doc.services.len(), 1);
        assert_eq!(doc.routes.len(), 2);
        assert_eq!(doc.routes[1].parent, Some(0));
        assert_eq!(doc.targets.len(), 2);
        assert_eq!(doc.targets[1].parent, Some(0));
        assert_eq!(doc.plugins.len(), 3);
        assert_eq!(doc.plugins[2].1.route, Some(1));
        assert_eq!(doc.plugins[0].1.route, Some(0));
        assert_eq!(doc.plugins[1].1.service, Some(0));
    }

    #[test]
    fn collects_every_error_with_positions() {
        let errs = load_str(
            "kong.yml",
            "_format_version: \"3.0\"\nservices:\n- name: a\n  retries: many\n  colour: blue\n  routes:\n  - paths: [/x]\n    bogus: 1\nextra: 1\n",
        )
        .unwrap_err();
        let text = errs.to_string();
        assert_eq!(errs.0.len(), 4, "{text}");
        let e = &errs.0[0];
        assert_eq!(e.path, "services[0].retries", "{text}");
        assert_eq!(e.line, Some(4));
        assert!(
            errs.0
                .iter()
                .any(|e| e.path == "services[0].colour" && e.line == Some(5)),
            "{text}"
        );
        assert!(
            errs.0
                .iter()
                .any(|e| e.path == "services[0].routes[0].bogus" && e.line == Some(8)),
            "{text}"
        );
        assert!(
            errs.0
                .iter()
                .any(|e| e.path == "extra" && e.line == Some(9)),
            "{text}"
        );
    }

    #[test]
    fn unresolved_references_are_errors() {
        let errs = load_str(
            "k.yml",
            "_format_version: \"3.0\"\nroutes:\n- paths: [/a]\n  service: nope\n",
        )
        .unwrap_err();
        assert_eq!(errs.0[0].path, "routes[0].service");
        assert!(errs.0[0].message.contains("nope"));
    }
}

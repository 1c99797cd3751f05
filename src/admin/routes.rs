//! The Admin API's routes: one table from which requests are dispatched and the OpenAPI
//! description is written ([`super::openapi`]), so that the two cannot disagree.
//!
//! Entity routes are generated from the entity kinds ([`super::views::KINDS`]) as Kong
//! generates them from its DAOs: a collection and an entity path per kind, nested paths for
//! every foreign key (`/services/{service}/routes`), and the parent of a child
//! (`/routes/{route}/service`).

use std::sync::LazyLock;

use http::Method;

use super::views::{KINDS, Kind};

/// What a route does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `GET /`: node information.
    Root,
    /// `GET /status`.
    Status,
    /// `GET /endpoints`: every route template.
    Endpoints,
    /// `GET /openapi.json`.
    OpenApi,
    /// `GET|POST /config`: the whole declarative configuration.
    Config,
    /// `GET /plugins/enabled`.
    PluginsEnabled,
    /// `GET /tags`: every tag of every entity (Kong's `{entity_name, entity_id, tag}`).
    Tags,
    /// `GET /tags/{tag}`: the entities with one tag.
    Tag,
    /// `GET /schemas/plugins/{name}`: a plugin's schema in Kong's form.
    PluginSchema,
    /// `GET /schemas/{entity}`: an entity's schema in Kong's form.
    EntitySchema(Kind),
    /// `POST /schemas/{entity}/validate`: check an entity without storing it (for plugins,
    /// `/schemas/plugins/validate`).
    EntityValidate(Kind),
    /// `GET /upstreams/{upstream}/health`.
    UpstreamHealth,
    /// `PUT /upstreams/{upstream}/targets/{target}[/{address}]/healthy` (or `unhealthy`): set
    /// a target's health by hand (every address of a host name target, or one).
    TargetHealth { healthy: bool, by_address: bool },
    /// `/{collection}`: list, create.
    Collection(Kind),
    /// `/{collection}/{key}`: read, upsert, update, delete.
    Entity(Kind),
    /// `/{parent}/{key}/{children}`: the children of one parent; list, create. `field` is the
    /// children's reference to the parent (`service`).
    Children {
        parent: Kind,
        child: Kind,
        field: &'static str,
    },
    /// `/{parent}/{key}/{children}/{key}`: one child of one parent.
    Child {
        parent: Kind,
        child: Kind,
        field: &'static str,
    },
    /// `/{child}/{key}/{field}`: the entity a child refers to (`/routes/{route}/service`).
    Parent {
        child: Kind,
        parent: Kind,
        field: &'static str,
    },
}

impl Op {
    /// The entity kind the route is about (the children for a nested list, the parent for a
    /// child's parent path), if it is about one.
    pub fn subject(self) -> Option<Kind> {
        match self {
            Op::Collection(k) | Op::Entity(k) | Op::EntitySchema(k) | Op::EntityValidate(k) => {
                Some(k)
            }
            Op::Children { child, .. } | Op::Child { child, .. } => Some(child),
            Op::Parent { parent, .. } => Some(parent),
            Op::UpstreamHealth | Op::TargetHealth { .. } => Kind::by_endpoint("upstreams"),
            _ => None,
        }
    }
}

/// One segment of a route template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(&'static str),
    /// A path parameter, named as in the OpenAPI description.
    Param(String),
}

/// One route: a path template, the methods it answers and what it does.
#[derive(Debug, Clone)]
pub struct Route {
    pub segments: Vec<Segment>,
    pub methods: &'static [Method],
    pub op: Op,
    /// Whether the writes among `methods` need a database (DB-less nodes answer Kong's 405
    /// `operation unsupported`).
    pub writes_need_database: bool,
}

const GET: &[Method] = &[Method::GET];
const GET_POST: &[Method] = &[Method::GET, Method::POST];
const POST: &[Method] = &[Method::POST];
const ENTITY: &[Method] = &[Method::GET, Method::PUT, Method::PATCH, Method::DELETE];
const PARENT: &[Method] = &[Method::GET, Method::PUT, Method::PATCH];
const PUT_POST: &[Method] = &[Method::PUT, Method::POST];

impl Route {
    /// The OpenAPI path template: `/services/{service}/routes`.
    pub fn template(&self) -> String {
        if self.segments.is_empty() {
            return "/".into();
        }
        self.segments
            .iter()
            .map(|s| match s {
                Segment::Literal(l) => format!("/{l}"),
                Segment::Param(p) => format!("/{{{p}}}"),
            })
            .collect()
    }

    /// The path parameters' names, in order.
    pub fn params(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Param(p) => Some(p.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// The `Allow` header of a 405 on this route: its methods, and `HEAD` wherever `GET` is
    /// (a `HEAD` is answered as the `GET`).
    pub fn allow(&self) -> String {
        let mut methods: Vec<&str> = self.methods.iter().map(Method::as_str).collect();
        if self.methods.contains(&Method::GET) {
            methods.push("HEAD");
        }
        methods.join(", ")
    }

    /// The parameters of `path` (its segments, decoded) if it is this route's.
    fn matches<'p>(&self, path: &[&'p str]) -> Option<Vec<&'p str>> {
        if path.len() != self.segments.len() {
            return None;
        }
        let mut params = Vec::new();
        for (segment, part) in self.segments.iter().zip(path) {
            match segment {
                Segment::Literal(l) if l == part => {}
                Segment::Literal(_) => return None,
                Segment::Param(_) => params.push(*part),
            }
        }
        Some(params)
    }

    fn literals(&self) -> usize {
        self.segments
            .iter()
            .filter(|s| matches!(s, Segment::Literal(_)))
            .count()
    }
}

/// Every route of the Admin API, fixed ones first.
pub fn table() -> &'static [Route] {
    static TABLE: LazyLock<Vec<Route>> = LazyLock::new(build);
    &TABLE
}

/// The route `path` (decoded segments) names, and its parameters. When several templates
/// match, the one with the most literal segments wins (`/plugins/enabled` over
/// `/plugins/{plugin}`).
pub fn resolve<'p>(path: &[&'p str]) -> Option<(&'static Route, Vec<&'p str>)> {
    table()
        .iter()
        .filter_map(|r| r.matches(path).map(|params| (r, params)))
        .max_by_key(|(r, _)| r.literals())
}

/// The singular of an endpoint, used for parameter names: `services` → `service`.
pub fn singular(kind: Kind) -> &'static str {
    match kind.endpoint {
        "key-auths" => "key_auth",
        "basic-auths" => "basic_auth",
        "hmac-auths" => "hmac_auth",
        "jwts" => "jwt",
        "acls" => "acl",
        "snis" => "sni",
        "services" => "service",
        "routes" => "route",
        "upstreams" => "upstream",
        "targets" => "target",
        "consumers" => "consumer",
        "plugins" => "plugin",
        "certificates" => "certificate",
        "ca_certificates" => "ca_certificate",
        other => other,
    }
}

/// The foreign keys: `(child, its reference field, parent)`.
pub fn foreign_keys() -> Vec<(Kind, &'static str, Kind)> {
    let by = |e: &str| Kind::by_endpoint(e);
    let mut out = Vec::new();
    let mut add = |child: &str, field: &'static str, parent: &str| {
        if let (Some(c), Some(p)) = (by(child), by(parent)) {
            out.push((c, field, p));
        }
    };
    add("routes", "service", "services");
    add("plugins", "service", "services");
    add("plugins", "route", "routes");
    add("plugins", "consumer", "consumers");
    add("targets", "upstream", "upstreams");
    add("snis", "certificate", "certificates");
    for credential in KINDS.iter().filter(|k| k.consumer_endpoint.is_some()) {
        add(credential.endpoint, "consumer", "consumers");
    }
    out
}

/// The segment under which `child` is listed below a parent: `routes`, or `key-auth` for the
/// credentials under `/consumers/{consumer}/`.
pub fn nested_name(child: Kind) -> &'static str {
    child.consumer_endpoint.unwrap_or(child.endpoint)
}

fn build() -> Vec<Route> {
    let fixed = |segments: &[&'static str], methods: &'static [Method], op: Op| Route {
        segments: segments.iter().map(|s| Segment::Literal(s)).collect(),
        methods,
        op,
        writes_need_database: false,
    };
    let mut routes = vec![
        fixed(&[], GET, Op::Root),
        fixed(&["status"], GET, Op::Status),
        fixed(&["endpoints"], GET, Op::Endpoints),
        fixed(&["openapi.json"], GET, Op::OpenApi),
        fixed(&["config"], GET_POST, Op::Config),
        fixed(&["plugins", "enabled"], GET, Op::PluginsEnabled),
        fixed(&["tags"], GET, Op::Tags),
    ];
    routes.push(Route {
        segments: vec![Segment::Literal("tags"), Segment::Param("tag".into())],
        methods: GET,
        op: Op::Tag,
        writes_need_database: false,
    });
    routes.push(Route {
        segments: vec![
            Segment::Literal("schemas"),
            Segment::Literal("plugins"),
            Segment::Param("name".into()),
        ],
        methods: GET,
        op: Op::PluginSchema,
        writes_need_database: false,
    });
    if let Some(upstreams) = Kind::by_endpoint("upstreams") {
        routes.push(Route {
            segments: vec![
                Segment::Literal(upstreams.endpoint),
                Segment::Param(singular(upstreams).into()),
                Segment::Literal("health"),
            ],
            methods: GET,
            op: Op::UpstreamHealth,
            writes_need_database: false,
        });
        if let Some(targets) = Kind::by_endpoint("targets") {
            for healthy in [true, false] {
                for by_address in [false, true] {
                    let mut segments = vec![
                        Segment::Literal(upstreams.endpoint),
                        Segment::Param(singular(upstreams).into()),
                        Segment::Literal(targets.endpoint),
                        Segment::Param(singular(targets).into()),
                    ];
                    if by_address {
                        segments.push(Segment::Param("address".into()));
                    }
                    segments.push(Segment::Literal(if healthy {
                        "healthy"
                    } else {
                        "unhealthy"
                    }));
                    routes.push(Route {
                        segments,
                        // Kong 3 takes `PUT`; `POST` as Kong 2 did.
                        methods: PUT_POST,
                        op: Op::TargetHealth {
                            healthy,
                            by_address,
                        },
                        writes_need_database: false,
                    });
                }
            }
        }
    }
    for &kind in KINDS {
        let key = || Segment::Param(singular(kind).into());
        routes.push(Route {
            segments: vec![Segment::Literal("schemas"), Segment::Literal(kind.endpoint)],
            methods: GET,
            op: Op::EntitySchema(kind),
            writes_need_database: false,
        });
        routes.push(Route {
            segments: vec![
                Segment::Literal("schemas"),
                Segment::Literal(kind.endpoint),
                Segment::Literal("validate"),
            ],
            methods: POST,
            op: Op::EntityValidate(kind),
            writes_need_database: false,
        });
        routes.push(Route {
            segments: vec![Segment::Literal(kind.endpoint)],
            methods: GET_POST,
            op: Op::Collection(kind),
            writes_need_database: true,
        });
        routes.push(Route {
            segments: vec![Segment::Literal(kind.endpoint), key()],
            methods: ENTITY,
            op: Op::Entity(kind),
            writes_need_database: true,
        });
    }
    for (child, field, parent) in foreign_keys() {
        let parent_key = || Segment::Param(singular(parent).into());
        let children = vec![
            Segment::Literal(parent.endpoint),
            parent_key(),
            Segment::Literal(nested_name(child)),
        ];
        let mut one_child = children.clone();
        one_child.push(Segment::Param(singular(child).into()));
        routes.push(Route {
            segments: children,
            methods: GET_POST,
            op: Op::Children {
                parent,
                child,
                field,
            },
            writes_need_database: true,
        });
        routes.push(Route {
            segments: one_child,
            methods: ENTITY,
            op: Op::Child {
                parent,
                child,
                field,
            },
            writes_need_database: true,
        });
        routes.push(Route {
            segments: vec![
                Segment::Literal(child.endpoint),
                Segment::Param(singular(child).into()),
                Segment::Literal(field),
            ],
            methods: PARENT,
            op: Op::Parent {
                child,
                parent,
                field,
            },
            writes_need_database: true,
        });
    }
    routes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(path: &str) -> Option<(Op, Vec<String>)> {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        resolve(&segments).map(|(r, p)| (r.op, p.into_iter().map(String::from).collect()))
    }

    #[test]
    fn fixed_routes_win_over_entity_keys() {
        assert_eq!(
            op("/plugins/enabled").map(|o| o.0),
            Some(Op::PluginsEnabled)
        );
        let plugins = Kind::by_endpoint("plugins").expect("kind");
        assert_eq!(
            op("/plugins/0b0a7a4e-7e45-4b43-9f0f-3b6a2c1f9a10"),
            Some((
                Op::Entity(plugins),
                vec!["0b0a7a4e-7e45-4b43-9f0f-3b6a2c1f9a10".into()]
            ))
        );
        assert_eq!(
            op("/schemas/plugins/validate").map(|o| o.0),
            Some(Op::EntityValidate(plugins))
        );
        assert_eq!(
            op("/schemas/plugins/jwt").map(|o| o.0),
            Some(Op::PluginSchema)
        );
        assert_eq!(op("/nothing/here"), None);
    }

    #[test]
    fn every_foreign_key_has_its_nested_and_parent_routes() {
        let consumers = Kind::by_endpoint("consumers").expect("kind");
        let jwts = Kind::by_endpoint("jwts").expect("kind");
        assert_eq!(
            op("/consumers/alice/jwt/k1"),
            Some((
                Op::Child {
                    parent: consumers,
                    child: jwts,
                    field: "consumer",
                },
                vec!["alice".into(), "k1".into()]
            ))
        );
        assert_eq!(
            op("/jwts/k1/consumer").map(|o| o.0),
            Some(Op::Parent {
                child: jwts,
                parent: consumers,
                field: "consumer",
            })
        );
        let templates: Vec<String> = table().iter().map(Route::template).collect();
        for expected in [
            "/services/{service}/routes",
            "/services/{service}/plugins",
            "/routes/{route}/plugins",
            "/consumers/{consumer}/plugins",
            "/upstreams/{upstream}/targets/{target}",
            "/consumers/{consumer}/key-auth",
            "/consumers/{consumer}/acls/{acl}",
            "/routes/{route}/service",
            "/certificates/{certificate}/snis",
        ] {
            assert!(templates.iter().any(|t| t == expected), "{expected}");
        }
        let config = table()
            .iter()
            .find(|r| r.op == Op::Config)
            .expect("/config");
        assert_eq!(config.allow(), "GET, POST, HEAD");
        let mut unique = templates.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), templates.len(), "a template appears twice");
    }
}

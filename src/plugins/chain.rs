//! Plugin chains: which plugin instances run for a request, in which order.
//!
//! Kong's precedence decides which instance of a plugin runs when the same plugin is configured
//! at several scopes: the most specific wins, one instance per plugin name:
//! consumer+route+service > consumer+route > consumer+service > route+service > consumer >
//! route > service > global. Chains are resolved when a configuration is compiled, never per
//! request, and ordered by descending priority (ties by name) as Kong does.

use std::sync::Arc;

use super::{Configured, Protocol};

/// The scope a plugin instance was configured at (indices into the snapshot's entity lists).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PluginScopeKey {
    pub route: Option<usize>,
    pub service: Option<usize>,
    pub consumer: Option<usize>,
}

/// An ordered, immutable list of plugin instances (shared between routes when identical).
#[derive(Clone, Default)]
pub struct Chain(pub Arc<[Arc<Configured>]>);

impl Chain {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Every instance of the chain, whatever the protocols it runs on.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Configured> {
        self.0.iter().map(|p| &**p)
    }
    /// The instances that run on a request by `protocol` (plugins' `protocols`).
    pub fn iter_for(&self, protocol: Protocol) -> impl DoubleEndedIterator<Item = &Configured> {
        self.iter().filter(move |p| p.protocols.contains(protocol))
    }
    pub fn names(&self) -> Vec<&'static str> {
        self.iter().map(|p| p.name()).collect()
    }
}

/// Rank of a scope for a request on (`route`, `service`, `consumer`): `None` when the instance
/// does not apply, otherwise higher is more specific.
fn rank(
    scope: &PluginScopeKey,
    route: Option<usize>,
    service: Option<usize>,
    consumer: Option<usize>,
) -> Option<u8> {
    let applies = |configured: Option<usize>, actual: Option<usize>| {
        configured.is_none() || configured == actual
    };
    if !(applies(scope.route, route)
        && applies(scope.service, service)
        && applies(scope.consumer, consumer))
    {
        return None;
    }
    Some(
        match (
            scope.consumer.is_some(),
            scope.route.is_some(),
            scope.service.is_some(),
        ) {
            (true, true, true) => 7,
            (true, true, false) => 6,
            (true, false, true) => 5,
            (false, true, true) => 4,
            (true, false, false) => 3,
            (false, true, false) => 2,
            (false, false, true) => 1,
            (false, false, false) => 0,
        },
    )
}

/// The chain for a request on (`route`, `service`, `consumer`) among every enabled instance.
pub fn resolve_chain(
    instances: &[(PluginScopeKey, Arc<Configured>)],
    route: Option<usize>,
    service: Option<usize>,
    consumer: Option<usize>,
) -> Chain {
    let mut best: Vec<(u8, &Arc<Configured>)> = Vec::new();
    for (scope, inst) in instances {
        let Some(r) = rank(scope, route, service, consumer) else {
            continue;
        };
        match best.iter_mut().find(|(_, b)| b.name() == inst.name()) {
            Some(slot) if slot.0 < r => *slot = (r, inst),
            Some(_) => {}
            None => best.push((r, inst)),
        }
    }
    let mut list: Vec<Arc<Configured>> = best.into_iter().map(|(_, i)| i.clone()).collect();
    list.sort_by(|a, b| b.priority().cmp(&a.priority()).then(a.name().cmp(b.name())));
    Chain(list.into())
}

/// Chains for (configuration, route, consumer) resolved by this worker thread. A consumer with
/// plugins of its own needs a chain that depends on the consumer, known only once an
/// authentication plugin ran; resolving it scans every plugin instance, so each worker keeps
/// the chains it resolved. Bounded: a full cache is emptied and refilled by the pairs in use.
pub fn consumer_chain(
    snapshot_id: u64,
    instances: &[(PluginScopeKey, Arc<Configured>)],
    route: usize,
    service: Option<usize>,
    consumer: usize,
) -> Chain {
    const CAPACITY: usize = 4096;
    type Key = (u64, usize, usize);
    thread_local! {
        static RESOLVED: std::cell::RefCell<std::collections::HashMap<Key, Chain>> =
            std::cell::RefCell::new(std::collections::HashMap::new());
    }
    let key = (snapshot_id, route, consumer);
    if let Some(chain) = RESOLVED.with(|c| c.borrow().get(&key).cloned()) {
        return chain;
    }
    let chain = resolve_chain(instances, Some(route), service, Some(consumer));
    RESOLVED.with(|c| {
        let mut c = c.borrow_mut();
        // Entries of another configuration (a reload) are dropped at once: they hold its plugin
        // instances and, through them, its credential tables.
        if c.len() >= CAPACITY || c.keys().next().is_some_and(|k| k.0 != snapshot_id) {
            c.clear();
        }
        c.insert(key, chain.clone());
    });
    chain
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::PluginInstance;
    use serde_json::json;

    fn inst(name: &str, config: serde_json::Value) -> Arc<Configured> {
        let consumers = Arc::new(crate::consumers::Consumers::default());
        let ctx = crate::plugins::BuildContext {
            consumers: &consumers,
        };
        Arc::new(Configured {
            instance: PluginInstance::build(name, &config, &ctx)
                .unwrap_or_else(|e| panic!("{e:?}")),
            protocols: crate::plugins::Protocols::ALL,
        })
    }

    fn status_of(chain: &Chain) -> Vec<u16> {
        chain
            .iter()
            .filter_map(|p| match &p.instance {
                PluginInstance::RequestTermination(t) => Some(t.status_code()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn most_specific_scope_wins_once_per_name() {
        let scoped = |route, service, consumer, code: u16| {
            (
                PluginScopeKey {
                    route,
                    service,
                    consumer,
                },
                inst("request-termination", json!({ "status_code": code })),
            )
        };
        let instances = vec![
            scoped(None, None, None, 500),
            scoped(None, Some(0), None, 501),
            scoped(Some(0), None, None, 502),
            scoped(Some(0), Some(0), None, 503),
            scoped(None, None, Some(0), 504),
            scoped(Some(0), None, Some(0), 506),
        ];
        assert_eq!(
            status_of(&resolve_chain(&instances, Some(0), Some(0), None)),
            [503]
        );
        assert_eq!(
            status_of(&resolve_chain(&instances, Some(1), Some(0), None)),
            [501]
        );
        assert_eq!(
            status_of(&resolve_chain(&instances, Some(1), Some(1), None)),
            [500]
        );
        assert_eq!(
            status_of(&resolve_chain(&instances, Some(0), Some(1), None)),
            [502]
        );
        assert_eq!(
            status_of(&resolve_chain(&instances, Some(0), Some(0), Some(0))),
            [506]
        );
        assert_eq!(
            status_of(&resolve_chain(&instances, Some(1), Some(1), Some(0))),
            [504]
        );
        assert_eq!(
            status_of(&resolve_chain(&instances, None, None, None)),
            [500]
        );
    }

    #[test]
    fn chain_is_ordered_by_priority() {
        let g = PluginScopeKey::default();
        let instances = vec![
            (g, inst("request-termination", json!({}))),
            (g, inst("request-transformer", json!({}))),
            (g, inst("correlation-id", json!({}))),
        ];
        let chain = resolve_chain(&instances, None, None, None);
        assert_eq!(
            chain.names(),
            [
                "correlation-id",
                "request-transformer",
                "request-termination"
            ]
        );
    }
}

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::addresses::FirstAttempt;
use super::{Addresses, Backoff, Resolver, ip_literal};

/// Keeps a set of host names resolved, each on its own task: a name is resolved again when
/// its answer expires, a failure keeps the name's last good addresses and is retried with
/// backoff, and every change is published through [`Addresses`]. IP literals are published
/// as themselves, with no task and no query.
///
/// Dropping the watcher stops its tasks; its [`Addresses`] keep the last published sets.
pub struct Watcher {
    resolver: Arc<Resolver>,
    handle: Handle,
    addresses: Addresses,
    tasks: HashMap<Arc<str>, Option<JoinHandle<()>>>,
}

impl Watcher {
    /// A watcher of no name yet, whose tasks will run on `handle`.
    pub fn new(resolver: Arc<Resolver>, handle: Handle) -> Watcher {
        Watcher {
            resolver,
            handle,
            addresses: Addresses::new(),
            tasks: HashMap::new(),
        }
    }

    /// A watcher of `names`.
    pub fn start<S: AsRef<str>>(
        resolver: Arc<Resolver>,
        handle: Handle,
        names: impl IntoIterator<Item = S>,
    ) -> Watcher {
        let mut watcher = Watcher::new(resolver, handle);
        watcher.set_names(names);
        watcher
    }

    /// The read side: current addresses, change notifications, readiness.
    pub fn addresses(&self) -> &Addresses {
        &self.addresses
    }

    /// The watched names, in no particular order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tasks.keys().map(|n| &**n)
    }

    /// Watch exactly `names` (on a configuration reload): names already watched keep their
    /// task and their current addresses, new ones start resolving, names no longer listed
    /// stop and leave the address map.
    pub fn set_names<S: AsRef<str>>(&mut self, names: impl IntoIterator<Item = S>) {
        let wanted: HashMap<Arc<str>, ()> = names
            .into_iter()
            .map(|n| (Arc::from(n.as_ref()), ()))
            .collect();
        let removed: Vec<Arc<str>> = self
            .tasks
            .keys()
            .filter(|n| !wanted.contains_key(*n))
            .cloned()
            .collect();
        for name in removed {
            if let Some(Some(task)) = self.tasks.remove(&name) {
                task.abort();
            }
            self.addresses.publish(&name, None);
            info!(host = %name, "dns: no longer watching");
        }
        for (name, ()) in wanted {
            if self.tasks.contains_key(&name) {
                continue;
            }
            let task = match ip_literal(&name) {
                Some(ip) => {
                    self.addresses.publish(&name, Some(Arc::from([ip])));
                    None
                }
                None => {
                    let first = self.addresses.first_attempt();
                    let run = watch_name(
                        self.resolver.clone(),
                        self.addresses.clone(),
                        name.clone(),
                        first,
                    );
                    Some(self.handle.spawn(run))
                }
            };
            self.tasks.insert(name, task);
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        for task in self.tasks.values().flatten() {
            task.abort();
        }
    }
}

/// Resolve `name` now and again each time its answer expires, forever.
async fn watch_name(
    resolver: Arc<Resolver>,
    addresses: Addresses,
    name: Arc<str>,
    first: FirstAttempt,
) {
    let config = resolver.config();
    let mut backoff = Backoff::new(config.error_retry, config.max_error_retry);
    let mut first = Some(first);
    let mut failing = false;
    loop {
        let wake = match resolver.resolve(&name).await {
            Ok(resolved) => {
                backoff.reset();
                let ttl = resolved
                    .valid_until
                    .saturating_duration_since(Instant::now());
                let addrs: Arc<[IpAddr]> = resolved.addrs.into();
                let previous = addresses.publish(&name, Some(addrs.clone()));
                match previous {
                    None => info!(host = %name, addresses = ?addrs, ?ttl, "dns: resolved"),
                    Some(prev) if prev != addrs => {
                        info!(host = %name, from = ?prev, to = ?addrs, ?ttl, "dns: addresses changed");
                    }
                    Some(_) if failing => {
                        info!(host = %name, addresses = ?addrs, ?ttl, "dns: resolving again");
                    }
                    Some(_) => debug!(host = %name, ?ttl, "dns: addresses unchanged"),
                }
                failing = false;
                resolved.valid_until
            }
            Err(error) => {
                let retry_in = backoff.next_delay();
                let kept = addresses.get(&name);
                if failing {
                    debug!(host = %name, %error, ?retry_in, "dns: still failing");
                } else {
                    match kept {
                        Some(kept) => warn!(
                            host = %name, %error, ?retry_in, addresses = ?kept,
                            "dns: resolution failed; keeping the last good addresses"
                        ),
                        None => warn!(
                            host = %name, %error, ?retry_in,
                            "dns: resolution failed; no address yet"
                        ),
                    }
                }
                failing = true;
                Instant::now() + retry_in
            }
        };
        drop(first.take());
        tokio::time::sleep_until(tokio::time::Instant::from_std(wake)).await;
    }
}

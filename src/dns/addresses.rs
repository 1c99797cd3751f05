use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::watch;

/// The current addresses of every watched name that has resolved at least once.
pub type AddressMap = HashMap<Arc<str>, Arc<[IpAddr]>>;

/// The read side of a [`Watcher`](super::Watcher): the current address set per name, and a
/// generation number that moves on each change. Cheap to clone and to read (one atomic load,
/// no lock), so a request path may use it, though it is meant for whoever rebuilds the
/// balancers on a change.
#[derive(Clone)]
pub struct Addresses {
    pub(super) shared: Arc<Published>,
}

pub(super) struct Published {
    map: ArcSwap<AddressMap>,
    generation: watch::Sender<u64>,
    /// Names whose first resolution has not finished yet.
    pending: watch::Sender<usize>,
}

impl Addresses {
    pub(super) fn new() -> Addresses {
        Addresses {
            shared: Arc::new(Published {
                map: ArcSwap::from_pointee(AddressMap::new()),
                generation: watch::Sender::new(0),
                pending: watch::Sender::new(0),
            }),
        }
    }

    /// Every name's current addresses (names never resolved are absent).
    pub fn load(&self) -> Arc<AddressMap> {
        self.shared.map.load_full()
    }

    /// `name`'s current addresses: the last good answer, `None` if it never resolved.
    pub fn get(&self, name: &str) -> Option<Arc<[IpAddr]>> {
        self.shared.map.load().get(name).cloned()
    }

    /// The generation of the address sets: 0 at first, one more on each change of any name's
    /// set. Wait on `changed()` to rebuild after a change; several changes in a row may be
    /// seen as one.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.generation.subscribe()
    }

    /// The current generation (see [`subscribe`](Self::subscribe)).
    pub fn generation(&self) -> u64 {
        *self.shared.generation.borrow()
    }

    /// Wait until every watched name has had its first resolution, good or not, so that a
    /// caller starting up can build its balancers from every answer there is.
    pub async fn ready(&self) {
        let mut rx = self.shared.pending.subscribe();
        // The sender lives in `self.shared`, so waiting cannot fail.
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// Set (`Some`) or remove (`None`) `name`'s addresses; moves the generation on if that
    /// changed anything. Returns the previous set.
    pub(super) fn publish(
        &self,
        name: &Arc<str>,
        addrs: Option<Arc<[IpAddr]>>,
    ) -> Option<Arc<[IpAddr]>> {
        let mut previous = None;
        let mut changed = false;
        self.shared.map.rcu(|map| {
            previous = map.get(name).cloned();
            changed = previous.as_deref() != addrs.as_deref();
            if !changed {
                return Arc::clone(map);
            }
            let mut next = AddressMap::clone(map);
            match &addrs {
                Some(a) => next.insert(name.clone(), a.clone()),
                None => next.remove(name),
            };
            Arc::new(next)
        });
        if changed {
            self.shared.generation.send_modify(|g| *g += 1);
        }
        previous
    }

    pub(super) fn first_attempt(&self) -> FirstAttempt {
        self.shared.pending.send_modify(|n| *n += 1);
        FirstAttempt(Some(self.shared.clone()))
    }
}

/// Counts a name as pending until its first resolution ends (or its task is aborted).
pub(super) struct FirstAttempt(Option<Arc<Published>>);

impl Drop for FirstAttempt {
    fn drop(&mut self) {
        if let Some(shared) = self.0.take() {
            shared.pending.send_modify(|n| *n = n.saturating_sub(1));
        }
    }
}

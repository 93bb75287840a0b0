//! Every node follows the shared store: one read of everything under the prefix, then a
//! watch from the revision after it; each change goes to the controller as a message. A
//! watch that breaks (etcd down, the link cut, a compacted revision) is set up again after
//! a backoff, with a fresh full read, so nothing missed in between is lost.
use std::time::Duration;

use etcd_client::{EventType, KeyValue, WatchOptions};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::store::{Store, DEADLINE};
use super::store_keys::{EjectionValue, Entry, Keys, RegistrationValue, StateValue, WeightValue};
use crate::registry::BackendKey;
use lb_config::AdminState;

const BACKOFF_FIRST: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// A change of the shared state, as the controller applies it.
#[derive(Clone, Debug, PartialEq)]
pub enum StoreChange {
    /// Everything the store holds: it replaces what the node had (from its state file or
    /// from before the watch broke).
    Snapshot {
        registrations: Vec<(BackendKey, RegistrationValue)>,
        states: Vec<(BackendKey, AdminState)>,
        weights: Vec<(BackendKey, u32)>,
        ejections: Vec<(BackendKey, EjectionValue)>,
    },
    Registered(BackendKey, RegistrationValue),
    /// Deregistered, or its lease ran out.
    Unregistered(BackendKey),
    StateSet(BackendKey, AdminState),
    StateCleared(BackendKey),
    WeightSet(BackendKey, u32),
    WeightCleared(BackendKey),
    /// A node's circuit breaker ejected the backend (its end, when the key goes, needs no
    /// message: every node's breaker runs its own clock to the same end).
    Ejected(BackendKey, EjectionValue),
}

/// Who the store's changes go to (the controller, through its handle).
pub trait Follower: Send + Sync + 'static {
    /// Deliver one change; false when nobody follows any more (the daemon is stopping).
    fn change(&self, change: StoreChange) -> impl std::future::Future<Output = bool> + Send;
}

/// Follow the store until `stop` (or until the follower is gone).
pub async fn run(store: Store, control: impl Follower, mut stop: watch::Receiver<bool>) {
    let mut backoff = BACKOFF_FIRST;
    loop {
        let why = tokio::select! {
            why = follow(&store, &control, &mut backoff) => why,
            _ = stop.changed() => return,
        };
        let Some(why) = why else { return };
        store.set_up(false);
        // Said once when following stops; the retries of an outage are debug.
        if backoff == BACKOFF_FIRST {
            warn!("etcd: {why}; serving the last known state and retrying with backoff");
        } else {
            debug!(retry_in = ?backoff, "etcd: {why}");
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Read everything, then watch; returns why it stopped (None: the controller is gone).
async fn follow(store: &Store, control: &impl Follower, backoff: &mut Duration) -> Option<String> {
    let (kvs, revision) = match store.read_all().await {
        Ok(read) => read,
        Err(e) => return Some(e.to_string()),
    };
    if !control.change(snapshot(store.keys(), kvs)).await {
        return None;
    }
    let mut client = store.client();
    let options = WatchOptions::new().with_prefix().with_start_revision(revision + 1);
    let mut stream = match tokio::time::timeout(DEADLINE, client.watch(store.keys().all(), Some(options))).await {
        Ok(Ok(w)) => w,
        Ok(Err(e)) => return Some(format!("watching failed: {e}")),
        Err(_) => return Some(format!("watching: no answer within {DEADLINE:?}")),
    };
    store.set_up(true);
    *backoff = BACKOFF_FIRST;
    info!(revision, "etcd: shared state read; following its changes");
    loop {
        let response = match stream.message().await {
            Ok(Some(r)) => r,
            Ok(None) => return Some("the watch ended".into()),
            Err(e) => return Some(format!("the watch broke: {e}")),
        };
        if response.canceled() {
            return Some(format!("the watch was cancelled: {}", response.cancel_reason()));
        }
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            let change = match event.event_type() {
                EventType::Put => put(store.keys(), kv),
                EventType::Delete => deleted(store.keys(), kv),
            };
            if let Some(change) = change {
                if !control.change(change).await {
                    return None;
                }
            }
        }
    }
}

fn snapshot(keys: &Keys, kvs: Vec<KeyValue>) -> StoreChange {
    let (mut registrations, mut states, mut weights, mut ejections) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for kv in &kvs {
        match put(keys, kv) {
            Some(StoreChange::Registered(k, v)) => registrations.push((k, v)),
            Some(StoreChange::StateSet(k, s)) => states.push((k, s)),
            Some(StoreChange::Ejected(k, e)) => ejections.push((k, e)),
            Some(StoreChange::WeightSet(k, w)) => weights.push((k, w)),
            _ => {}
        }
    }
    StoreChange::Snapshot { registrations, states, weights, ejections }
}

/// A key written: what it now says, or None (logged) when it says nothing usable.
fn put(keys: &Keys, kv: &KeyValue) -> Option<StoreChange> {
    let entry = keys.parse(kv.key()).map_err(|e| warn!("etcd: ignoring {e}")).ok()?;
    let decoded = match &entry {
        Entry::Registration(k) => {
            serde_json::from_slice::<RegistrationValue>(kv.value()).map(|v| StoreChange::Registered(k.clone(), v))
        }
        Entry::State(k) => {
            serde_json::from_slice::<StateValue>(kv.value()).map(|v| StoreChange::StateSet(k.clone(), v.state))
        }
        Entry::Weight(k) => {
            serde_json::from_slice::<WeightValue>(kv.value()).map(|v| StoreChange::WeightSet(k.clone(), v.weight))
        }
        Entry::Ejection(k) => {
            serde_json::from_slice::<EjectionValue>(kv.value()).map(|v| StoreChange::Ejected(k.clone(), v))
        }
    };
    decoded
        .map_err(|e| warn!(key = %String::from_utf8_lossy(kv.key()), "etcd: ignoring a value that does not parse: {e}"))
        .ok()
}

fn deleted(keys: &Keys, kv: &KeyValue) -> Option<StoreChange> {
    match keys.parse(kv.key()) {
        Ok(Entry::Registration(k)) => Some(StoreChange::Unregistered(k)),
        Ok(Entry::State(k)) => Some(StoreChange::StateCleared(k)),
        Ok(Entry::Weight(k)) => Some(StoreChange::WeightCleared(k)),
        Ok(Entry::Ejection(_)) => None,
        Err(e) => {
            warn!("etcd: ignoring {e}");
            None
        }
    }
}

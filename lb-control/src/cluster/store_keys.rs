//! Where the fleet's shared state lives in etcd, and what each key holds:
//! `{prefix}/registrations/{service}/{address}` → `{"weight": N, "ttl_ms": N}` (on a lease
//! of the agent's TTL), `{prefix}/states/{service}/{address}` → `{"state": "drain"}`,
//! `{prefix}/weights/{service}/{address}` → `{"weight": N}` (set through the API), and
//! `{prefix}/ejections/{service}/{address}` → `{"until_unix_ms": N, "in_row": N, "node":
//! "lb1"}` (on a lease as long as the ejection: a circuit breaker that opened on one node).
//! Service names cannot hold a `/` (see the config's name rule), addresses never do.
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::registry::BackendKey;
use lb_config::AdminState;

const REGISTRATIONS: &str = "registrations";
const STATES: &str = "states";
const EJECTIONS: &str = "ejections";
const WEIGHTS: &str = "weights";

/// The value of a registration key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationValue {
    pub weight: u32,
    pub ttl_ms: u64,
}

impl RegistrationValue {
    pub fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl_ms)
    }
}

/// The value of a state key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateValue {
    pub state: AdminState,
}

/// The value of a weight key: a weight set through the API, which wins over the config's
/// and the registration's until cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightValue {
    pub weight: u32,
}

/// The value of an ejection key: a node's circuit breaker opened for the backend; every
/// node takes it out of rotation until the wall-clock end (nodes' clocks are assumed in
/// step, as NTP keeps them; a skew only lengthens or shortens the ejection elsewhere).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EjectionValue {
    pub until_unix_ms: u64,
    /// Ejections in a row on the node that ejected, so that the next one keeps doubling.
    pub in_row: u32,
    /// The node whose breaker opened (for the logs).
    pub node: String,
}

/// What a key under the prefix names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    Registration(BackendKey),
    State(BackendKey),
    Ejection(BackendKey),
    Weight(BackendKey),
}

/// The key layout under one prefix (`/lb` by default, without a trailing `/`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Keys { prefix: prefix.trim_end_matches('/').to_string() }
    }

    /// Everything the fleet keeps: one range read and one watch cover it.
    pub fn all(&self) -> String {
        format!("{}/", self.prefix)
    }

    pub fn registration(&self, key: &BackendKey) -> String {
        format!("{}/{REGISTRATIONS}/{}/{}", self.prefix, key.service, key.address)
    }

    pub fn state(&self, key: &BackendKey) -> String {
        format!("{}/{STATES}/{}/{}", self.prefix, key.service, key.address)
    }

    pub fn weight(&self, key: &BackendKey) -> String {
        format!("{}/{WEIGHTS}/{}/{}", self.prefix, key.service, key.address)
    }

    pub fn ejection(&self, key: &BackendKey) -> String {
        format!("{}/{EJECTIONS}/{}/{}", self.prefix, key.service, key.address)
    }

    /// What `key` names, or why it names nothing this version knows (a key written by
    /// hand, or by a later version): such keys are logged and left alone.
    pub fn parse(&self, key: &[u8]) -> Result<Entry, String> {
        let text = std::str::from_utf8(key).map_err(|_| format!("key {key:?} is not UTF-8"))?;
        let rest = text.strip_prefix(&self.all()).ok_or_else(|| format!("key {text:?} is not under {}", self.all()))?;
        let (kind, backend) = rest.split_once('/').ok_or_else(|| format!("key {text:?} names no backend"))?;
        let (service, address) =
            backend.split_once('/').ok_or_else(|| format!("key {text:?}: expected .../SERVICE/ADDRESS"))?;
        let address =
            address.parse().map_err(|_| format!("key {text:?}: {address:?} is not an IP:PORT backend address"))?;
        if service.is_empty() {
            return Err(format!("key {text:?} names no service"));
        }
        let backend = BackendKey::new(service, address);
        match kind {
            REGISTRATIONS => Ok(Entry::Registration(backend)),
            STATES => Ok(Entry::State(backend)),
            EJECTIONS => Ok(Entry::Ejection(backend)),
            WEIGHTS => Ok(Entry::Weight(backend)),
            other => Err(format!("key {text:?}: unknown kind {other:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_their_backend_and_back() {
        let keys = Keys::new("/lb/");
        let v4 = BackendKey::new("web", "10.0.0.1:80".parse().unwrap());
        let v6 = BackendKey::new("v6.api", "[fd00::1]:8080".parse().unwrap());
        assert_eq!(keys.registration(&v4), "/lb/registrations/web/10.0.0.1:80");
        assert_eq!(keys.state(&v6), "/lb/states/v6.api/[fd00::1]:8080");
        assert_eq!(keys.parse(keys.registration(&v6).as_bytes()), Ok(Entry::Registration(v6.clone())));
        assert_eq!(keys.parse(keys.ejection(&v6).as_bytes()), Ok(Entry::Ejection(v6.clone())));
        assert_eq!(keys.ejection(&v6), "/lb/ejections/v6.api/[fd00::1]:8080");
        assert_eq!(keys.weight(&v6), "/lb/weights/v6.api/[fd00::1]:8080");
        assert_eq!(keys.parse(keys.weight(&v6).as_bytes()), Ok(Entry::Weight(v6.clone())));
        assert_eq!(keys.parse(keys.state(&v4).as_bytes()), Ok(Entry::State(v4)));
    }

    #[test]
    fn foreign_keys_are_refused_with_a_reason() {
        let keys = Keys::new("/lb");
        for (key, why) in [
            ("/other/registrations/web/10.0.0.1:80", "not under"),
            ("/lb/registrations/web", "SERVICE/ADDRESS"),
            ("/lb/registrations/web/nowhere", "not an IP:PORT"),
            ("/lb/scores/web/10.0.0.1:80", "unknown kind"),
            ("/lb/states//10.0.0.1:80", "no service"),
        ] {
            let e = keys.parse(key.as_bytes()).unwrap_err();
            assert!(e.contains(why), "{key}: {e}");
        }
    }

    #[test]
    fn values_are_the_documented_json() {
        let r: RegistrationValue = serde_json::from_str(r#"{"weight":3,"ttl_ms":10000}"#).unwrap();
        assert_eq!(r.ttl(), Duration::from_secs(10));
        assert_eq!(serde_json::to_string(&StateValue { state: AdminState::Drain }).unwrap(), r#"{"state":"drain"}"#);
        assert!(serde_json::from_str::<StateValue>(r#"{"state":"sleepy"}"#).is_err());
        assert_eq!(serde_json::to_string(&WeightValue { weight: 7 }).unwrap(), r#"{"weight":7}"#);
        assert!(serde_json::from_str::<WeightValue>(r#"{"weight":-1}"#).is_err());
    }
}

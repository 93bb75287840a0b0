//! A node of a fleet. Announcing its VIPs by BGP: `announce` decides what, `bird` writes
//! and reads BIRD's files and answers, `speaker` runs BIRD and feeds it. What the nodes
//! share: `store` keeps registrations and admin states in etcd, `store_keys` names them
//! there, and `store_watch` brings every change to a `Follower` (the controller's handle); circuit
//! breakers' ejections are shared the same way (`SharedEjection`).
//! The API's writes through the store are the handle's (`handle::store_writes`).
pub mod announce;
pub mod bird;
pub mod speaker;
pub mod store;
pub mod store_keys;
pub mod store_watch;

pub use announce::{announcement, Announcement};
pub use speaker::SpeakerThread;
pub use store_keys::EjectionValue;

/// A circuit breaker's ejection on this node, for the shared store: the backend, how long
/// it lasts, and the value every node reads.
#[derive(Clone, Debug, PartialEq)]
pub struct SharedEjection {
    pub key: crate::registry::BackendKey,
    pub length: std::time::Duration,
    pub value: EjectionValue,
}

//! A node of a fleet. Announcing its VIPs by BGP: `announce` decides what, `bird` writes
//! and reads BIRD's files and answers, `speaker` runs BIRD and feeds it. What the nodes
//! share: `store` keeps registrations and admin states in etcd, `store_keys` names them
//! there, and `store_watch` brings every change to a `Follower` (the controller's handle).
//! The API's writes through the store are the handle's (`handle::store_writes`).
pub mod announce;
pub mod bird;
pub mod speaker;
pub mod store;
pub mod store_keys;
pub mod store_watch;

pub use announce::{announcement, Announcement};
pub use speaker::SpeakerThread;

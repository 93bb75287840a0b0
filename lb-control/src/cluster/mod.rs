//! A fleet of balancers: what the nodes share. `store` keeps registrations and admin states
//! in etcd, `store_keys` names them there, and `store_watch` brings every change to a
//! `Follower` (the controller's handle). The API's writes through the store are the
//! handle's (`handle::store_writes`).
pub mod store;
pub mod store_keys;
pub mod store_watch;

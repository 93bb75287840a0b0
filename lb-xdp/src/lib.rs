//! The XDP data path from userspace: load and attach the program, pin its maps, turn the
//! desired state into per-service tables (`plan`), write them as one transaction
//! (`reconcile`, `writer`, through the `store` seam), and read the
//! pinned maps back for `lb list` / `lb explain` (`maps`).
pub mod acl;
pub mod adopt;
mod batch;
pub mod explain;
pub mod global;
mod host;
pub mod ids;
pub mod inspect;
pub mod layout;
mod lifecycle;
pub mod load;
pub mod lock;
pub mod maps;
pub mod neighbour;
mod outcomes;
pub mod pinned_link;
pub mod plan;
pub mod ports;
pub mod reconcile;
pub mod store;
pub mod sweep;
pub mod testkit;
pub mod tunnel;
pub mod unresolved;
pub mod writer;
pub mod xdp;

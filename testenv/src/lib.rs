//! The test network of `lb`: the seed's Docker set-up rebuilt with network
//! namespaces and veth pairs (see docs/testing.md, "The test network").
//!
//! - a client (`lbt-client`, 172.20.0.2 / fd00:20::2) that routes the VIPs
//!   (172.20.0.100, fd00:20::100) via the LB,
//! - the LB (`lbt-lb`, 172.20.0.10 / fd00:20::10), where the daemon and its
//!   XDP program run on `eth0`,
//! - servers `lbt-server1..3` (172.20.0.11..13 / fd00:20::11..13), each running
//!   the seed's backend (`server/backend.py`) on port 80,
//! - all joined by a bridge in `lbt-switch`, whose ports run a pass-through
//!   XDP program so that XDP_TX frames from the LB are delivered.
//!
//! Nothing is added to the root namespace. Everything needs root.
//!
//! [`cluster`] is another network beside it: three balancers behind a router with ECMP
//! learnt by BGP, for the fleet (`lbc-*` namespaces).
//!
//! [`docker`] runs the seed's Docker environment itself (`testenv/docker/`), with a real
//! Docker engine, for `cargo xtask docker-demo` and the Docker test layer.
//!
//! ```no_run
//! testenv::require_root();
//! let _lock = testenv::lock_network()?;
//! testenv::up(&testenv::UpOptions::default())?;
//! let body = testenv::curl(testenv::CLIENT_NS, "http://172.20.0.11/", std::time::Duration::from_secs(2))?;
//! assert!(body.contains("Server1"));
//! testenv::down()?;
//! # anyhow::Ok(())
//! ```

pub mod cluster;
pub mod docker;
mod down;
mod hosts;
pub mod l3;
mod lb;
mod lock;
mod netns;
pub mod peers;
mod process;
mod servers;
pub mod tools;
mod topology;
mod up;
mod xdp_pass;

pub use down::down;
pub use lb::{lb_binary, LbDaemon, LB_CONFIG, LB_LOG, LB_PIN_PATH};
pub use lock::{lock_network, NetworkLock};
pub use netns::{curl, exec, exec_ok, is_root, require_root, spawn, spawn_logged};
pub use servers::{add_server, backend_script, python, start_server, stop_server};
pub use topology::*;
pub use up::{add_client, is_up, up, UpOptions};
pub use xdp_pass::{pin_pass_program, xdp_attached};

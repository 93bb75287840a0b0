//! The fleet network (`up --cluster`): three balancers behind a router that spreads flows
//! over them by ECMP, learnt by BGP, with backends, etcd and a client (docs/testing.md, "The
//! fleet network").
//!
//! ```text
//!   lbc-client eth0 10.60.0.2 ── eth1 10.60.0.1 lbc-router (BIRD, AS 65000, ECMP)
//!                                      eth0 10.61.0.1
//!                                        │
//!   ─┬──────────┬──────────┬──────────┬──┴───────┬──────────┬──────────┬──── br0 in lbc-lan
//!   lbc-lb1    lbc-lb2    lbc-lb3    lbc-b1     lbc-b2     lbc-b3     lbc-etcd
//!   .11        .12        .13        .21        .22        .23        .5      (10.61.0.0/24)
//! ```
//!
//! - The router runs BIRD 2: an eBGP session (AS 65000 to AS 65010, hold time 3 s) per
//!   balancer, importing the VIPs they announce; the kernel protocol merges equal routes into
//!   one multipath route, and `fib_multipath_hash_policy=1` hashes flows by their 5-tuple.
//! - The balancers' namespaces get addresses, a default route via the router, forwarding
//!   and a BPF filesystem each, but no daemon: a test starts `lb run` in each with
//!   [`node_config`] ([`Node`]), whose BGP speaker peers with the router.
//! - The backends hold the direct-return VIPs on `lo`, run the seed's HTTP backend on 80,
//!   a line echo on 9000 and `lb decap` on eth0; their default route is the router, so
//!   replies of dsr/ipip/gue flows go straight back to the client.
//! - etcd: one member in `lbc-etcd`.
//!
//! Nothing is added to the root namespace; everything needs root. `crate::down` removes it
//! with the rest of the test network.

mod announce;
mod backends;
mod daemons;
mod etcd;
mod held;
mod network;
mod node;
mod router;
mod topology;

pub use announce::{announce_by_hand, balancer_bird_config, stop_announcing_by_hand};
pub use backends::echo_script;
pub use etcd::{etcd_healthy, start_etcd, start_etcd_members, stop_etcd};
pub use held::{nodes_of_connections, Held, Hold, Outcome};
pub use network::{cut_link, restore_link};
pub use node::{metric_sum, node_config, node_config_for, node_config_without_bgp, service_name, Node};
pub use router::{bird_config as router_bird_config, birdc as router_birdc, next_hops};
pub use topology::*;

use anyhow::{Context, Result};
use std::time::{Duration, Instant};

/// Builds the fleet network and starts its processes (the router's BIRD, etcd, the
/// backends' servers and decapsulation), after clearing whatever an earlier run of any test
/// network left. `lb` is the binary whose `lb decap` the backends run. On error the partial
/// network stays for inspection; the next `up` or `down` clears it.
pub fn up(lb: &std::path::Path) -> Result<()> {
    up_with_etcd(lb, 1)
}

/// [`up`] with an etcd cluster of `members` members (the demo runs three; the nodes'
/// configs then name them all: [`node_config_for`]).
pub fn up_with_etcd(lb: &std::path::Path, members: u8) -> Result<()> {
    crate::down()?;
    network::build()?;
    std::fs::write(TOKEN_FILE, format!("{TOKEN}\n")).with_context(|| format!("writing {TOKEN_FILE}"))?;
    router::start()?;
    etcd::start_etcd_members(members)?;
    for i in 1..=BACKENDS {
        backends::hold_vips(i)?;
    }
    backends::start_all(lb)
}

/// Whether the fleet network is (at least partly) up.
pub fn is_up() -> Result<bool> {
    crate::netns::namespace_exists(LAN_NS)
}

/// Waits until the router's ECMP set for `vip` is exactly `want` next hops; returns how
/// long that took, or an error naming the last set seen at `limit`.
pub fn wait_next_hops(vip: &str, want: usize, limit: Duration) -> Result<Duration> {
    let start = Instant::now();
    loop {
        let hops = next_hops(vip)?;
        if hops.len() == want {
            return Ok(start.elapsed());
        }
        if start.elapsed() >= limit {
            anyhow::bail!("the router's route to {vip} has next hops {hops:?}, not {want}, after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

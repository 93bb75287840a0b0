//! Sweeping the flow and NAT tables. Both are LRU maps: an entry whose flow has ended stays
//! until the LRU needs its slot, so a busy table fills up to `flow_table_size` with the dead,
//! which every walk (`lb list flows`, `/metrics`, the live-flow recount) then reads. The
//! daemon deletes what the data path itself would no longer use: a flow idle past its
//! timeout by the data path's own rule (`FlowState::is_live`) and a grace after that, and a
//! NAT entry whose flow is gone or no longer holds the entry's port.
//!
//! A delete can race a packet: between the read that judged an entry dead and the delete,
//! the data path may revive its key (a new flow on the same 5-tuple, a NAT entry taken
//! anew for a new flow). Each entry is read again right before its delete and kept if it
//! changed, so what remains is the few microseconds between that read and the delete, for
//! a key that had been dead for `grace` already.
use std::time::Duration;

use anyhow::{Context, Result};
use aya::maps::MapError;

use crate::inspect::monotonic_ns;
use crate::maps::Maps;
use lb_common::consts::CONFIG_KEY;
use lb_common::maps::{FlowKey, FlowState, GlobalConfig, NatKey, NatValue};

/// How long past its timeout a flow stays before the daemon deletes it: long enough that
/// no packet of it can still be on its way, short enough that dead entries do not pile up.
pub const SWEEP_GRACE: Duration = Duration::from_secs(30);

/// What one sweep deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub flows: usize,
    pub nat: usize,
}

/// Deletes the flows dead for longer than `grace` and the NAT entries no live flow holds.
pub fn sweep(maps: &mut Maps, grace: Duration) -> Result<Swept> {
    let cfg = maps.config.get(&CONFIG_KEY, 0).context("reading LB_CONFIG")?;
    let now = monotonic_ns();
    let grace_ns = grace.as_nanos() as u64;
    let dead: Vec<(FlowKey, FlowState)> =
        maps.flows.iter().flatten().filter(|(k, s)| long_dead(s, k.proto, now, grace_ns, &cfg)).collect();
    let stale: Vec<(NatKey, NatValue)> =
        maps.nat.iter().flatten().filter(|(k, v)| !held(maps, k, v, now, grace_ns, &cfg)).collect();
    let mut swept = Swept::default();
    for (key, seen) in stale {
        if maps.nat.get(&key, 0).ok() == Some(seen) && gone(maps.nat.remove(&key))? {
            swept.nat += 1;
        }
    }
    for (key, seen) in dead {
        if maps.flows.get(&key, 0).ok() == Some(seen) && gone(maps.flows.remove(&key))? {
            swept.flows += 1;
        }
    }
    Ok(swept)
}

/// Idle past the data path's own limit for this flow, and `grace` beyond.
fn long_dead(s: &FlowState, proto: u8, now: u64, grace_ns: u64, cfg: &GlobalConfig) -> bool {
    now.saturating_sub(s.last_seen_ns) > cfg.idle_limit_ns(proto, s.flags).saturating_add(grace_ns)
}

/// Does a flow still hold this NAT entry: the flow it was made for exists, is not long dead
/// and still uses this port on this backend (the data path's `live_owner`, with the grace:
/// a NAT entry goes with its flow).
fn held(maps: &Maps, k: &NatKey, v: &NatValue, now: u64, grace_ns: u64, cfg: &GlobalConfig) -> bool {
    match maps.flows.get(&v.owner(k.proto, k.family), 0) {
        Ok(s) => {
            s.snat_port == k.snat_port && s.backend_id == v.backend_id && !long_dead(&s, k.proto, now, grace_ns, cfg)
        }
        Err(_) => false,
    }
}

/// A delete that found nothing is fine: the LRU or the data path got there first.
fn gone(r: Result<(), MapError>) -> Result<bool> {
    match r {
        Ok(()) => Ok(true),
        Err(MapError::KeyNotFound) => Ok(false),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e).context("deleting a swept entry"),
    }
}

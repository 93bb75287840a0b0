//! Next hops the data path met without a neighbour entry (`LB_UNRESOLVED`, written by
//! lb-ebpf `egress.rs`, which drops the frame as `no_neighbor`): a thread polls the pinned
//! map every `POLL_EVERY`, makes the kernel resolve each next hop (a one-byte UDP datagram
//! to its discard port sets off the ARP or neighbour-discovery exchange, as the backends'
//! refresh in `neighbour.rs` does) and deletes the entry. The client's retransmission then
//! finds the neighbour. A next hop is solicited at most once per `SOLICIT_EVERY`; an entry
//! the data path writes again meanwhile is just deleted.
use std::collections::{hash_map::Entry, HashMap as StdHashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use aya::maps::{HashMap, Map, MapData};
use lb_common::abi::map_names;
use lb_common::maps::NextHop;
use tracing::debug;

/// How often the map is read: a client's first retransmission (1 s for TCP) must find the
/// neighbour resolved.
pub const POLL_EVERY: Duration = Duration::from_millis(100);
/// A next hop is solicited at most this often.
pub const SOLICIT_EVERY: Duration = Duration::from_secs(1);

/// Makes the kernel resolve a next hop (a trait so tests can see the asking).
pub trait Solicit {
    fn solicit(&mut self, hop: &NextHop);
}

/// The real host: a one-byte UDP datagram to the next hop's discard port, out of the NIC
/// the FIB named (an IPv6 link-local next hop needs it as its scope).
pub struct Datagram;

impl Solicit for Datagram {
    fn solicit(&mut self, hop: &NextHop) {
        let to = address(hop);
        let (bind, to): (SocketAddr, SocketAddr) = match to {
            IpAddr::V4(_) => ((Ipv4Addr::UNSPECIFIED, 0).into(), SocketAddr::new(to, 9)),
            IpAddr::V6(v6) => ((Ipv6Addr::UNSPECIFIED, 0).into(), SocketAddrV6::new(v6, 9, 0, hop.ifindex).into()),
        };
        if let Ok(sock) = UdpSocket::bind(bind) {
            let _ = sock.send_to(&[0], to);
        }
    }
}

/// The next hop's address.
pub fn address(hop: &NextHop) -> IpAddr {
    lb_common::addr::words_ip(&hop.addr, hop.family)
}

/// One poll: solicit the next hops in `map` (each at most once per `SOLICIT_EVERY`, as
/// `recent` remembers) and delete their entries. Returns how many were solicited.
pub fn drain(
    map: &mut HashMap<MapData, NextHop, u64>,
    host: &mut impl Solicit,
    recent: &mut StdHashMap<NextHop, Instant>,
    now: Instant,
) -> usize {
    recent.retain(|_, at| now.duration_since(*at) < SOLICIT_EVERY);
    let hops: Vec<NextHop> = map.keys().filter_map(|k| k.ok()).collect();
    let mut solicited = 0;
    for hop in hops {
        if let Entry::Vacant(slot) = recent.entry(hop) {
            host.solicit(&hop);
            slot.insert(now);
            solicited += 1;
            debug!(next_hop = %address(&hop), ifindex = hop.ifindex, "asked the kernel to resolve a next hop");
        }
        let _ = map.remove(&hop);
    }
    solicited
}

/// The polling thread; stopped (and joined) on drop.
pub struct UnresolvedWatch {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UnresolvedWatch {
    /// Watch the `LB_UNRESOLVED` pinned under `pin_path`.
    pub fn start(pin_path: &Path) -> Result<Self> {
        let path = pin_path.join(map_names::UNRESOLVED);
        let data = MapData::from_pin(&path).with_context(|| format!("opening {}", path.display()))?;
        let mut map: HashMap<MapData, NextHop, u64> =
            Map::from_map_data(data)?.try_into().context("LB_UNRESOLVED has an unexpected type")?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("lb-unresolved".into())
            .spawn(move || {
                let mut recent = StdHashMap::new();
                while !flag.load(Ordering::Relaxed) {
                    drain(&mut map, &mut Datagram, &mut recent, Instant::now());
                    std::thread::sleep(POLL_EVERY);
                }
            })
            .context("starting the unresolved next-hop thread")?;
        Ok(Self { stop, thread: Some(thread) })
    }
}

impl Drop for UnresolvedWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_hop_addresses_read_back_in_both_families() {
        for text in ["10.77.2.9", "fe80::1", "fd77:2::9"] {
            let ip: IpAddr = text.parse().unwrap();
            let (addr, family) = lb_common::addr::ip_words(ip);
            assert_eq!(address(&NextHop { addr, family, ..Default::default() }), ip);
        }
    }
}

//! The XDP data path as the daemon runs it: load the program with its maps pinned, adopt
//! a data path a previous daemon left running (hitless restart) or attach afresh, write
//! tables for each desired state, keep next-hop MACs fresh. Tables are written before the
//! program is attached or replaced, so no packet meets an unconfigured program.
//!
//! Here: the data path's state, reconcile and what feeds it. Starting, adopting and
//! stopping are in `lifecycle`; the settings in `global`; the host in `host`; passive
//! outcomes in `outcomes`.
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use aya::programs::links::FdLink;
use aya::Ebpf;
use lb_common::maps::GlobalConfig;
use tracing::{info, info_span, warn};

use crate::global::{global_config, keep_daemon_seed, keep_live_snat_ports};
use crate::host::reserve_snat_ports;
use crate::maps::Maps;
use crate::neighbour;
use crate::outcomes::OutcomeWatch;
use crate::plan::{HostFacts, Ids};
use crate::reconcile::reconcile;
use crate::writer::Writer;
use lb_config::desired::Desired;
use lb_config::Config;
use lb_control::datapath::{DataPath, Outcome, Shutdown};

pub use crate::load::LINK_PIN;

pub struct XdpDataplane {
    // Field order matters for drop: map handles and the link before the program.
    pub(crate) writer: Writer,
    pub(crate) link: Option<FdLink>,
    /// The links on the NICs after the first (`ports.rs`), in the config's order.
    pub(crate) extra_links: Vec<FdLink>,
    pub(crate) ebpf: Ebpf,
    pub(crate) ids: Ids,
    pub(crate) global: GlobalConfig,
    pub(crate) facts: HostFacts,
    /// The first configured NIC: its addresses give the SNAT defaults, its MAC `if_mac`.
    pub(crate) interface: String,
    /// Every configured NIC, the first included.
    pub(crate) interfaces: Vec<String>,
    pub(crate) pin_path: PathBuf,
    /// Backend ids of services whose algorithm compares live flows (least_conn, p2c), as of
    /// the last reconcile: the ones `recount_active_flows` keeps right.
    pub(crate) counted: Vec<u32>,
    /// Passive outcomes per backend, for the circuit breakers.
    pub(crate) outcomes: OutcomeWatch,
    /// Backends' next hops and solicitations, kept between refreshes.
    pub(crate) neighbours: neighbour::Resolver,
    /// The tunnelled health checks' tc program and what its outer headers are made of
    /// (None: it could not be attached, and checks go to the backends directly).
    pub(crate) tunnel: Option<crate::tunnel::check::TunnelChecks>,
    pub(crate) outer: crate::tunnel::check::Outer,
    /// Makes the kernel resolve the next hops the data path found unresolved.
    pub(crate) unresolved: Option<crate::unresolved::UnresolvedWatch>,
    /// One daemon per pin_path, for as long as this one runs (last: dropped last).
    pub(crate) lock: crate::lock::PinLock,
}

impl XdpDataplane {
    /// Desired state → tables → maps.
    pub fn reconcile(&mut self, desired: &Desired) -> Result<()> {
        let _span = info_span!("reconcile").entered();
        let p = reconcile(&mut self.writer, &mut self.ids, desired, self.global, &self.facts)?;
        let counting: HashSet<u32> = p
            .services
            .iter()
            .filter(|s| matches!(s.info.algorithm, lb_common::consts::ALG_LEAST_CONN | lb_common::consts::ALG_P2C))
            .map(|s| s.id)
            .collect();
        self.counted = p.backends.iter().filter(|b| counting.contains(&b.info.service_id)).map(|b| b.id).collect();
        self.outcomes.track(&self.writer.maps, &p.backends);
        let missing: Vec<String> = p
            .backends
            .iter()
            .filter(|b| b.info.flags & lb_common::consts::BACKEND_HAS_MAC == 0)
            .map(|b| b.address.to_string())
            .collect();
        let in_rotation: usize =
            desired.services.iter().map(|s| s.backends.iter().filter(|b| b.in_rotation()).count()).sum();
        info!(services = p.services.len(), backends = p.backends.len(), in_rotation, ?missing, "tables written");
        Ok(())
    }

    /// New settings from a reloaded config (SNAT addresses, ports, timeouts). A changed
    /// `snat_ports` is kept from the host's own connections, and the range it replaces stays
    /// valid for the replies of the flows that hold its ports.
    pub fn set_global(&mut self, cfg: &Config) -> Result<()> {
        let next = global_config(cfg, &self.interface)?;
        self.outer = crate::tunnel::check::outer_from(cfg, &self.interface)?;
        reserve_snat_ports(next.snat_port_min, next.snat_port_max);
        self.global = keep_daemon_seed(&self.global, keep_live_snat_ports(&self.global, next));
        Ok(())
    }

    pub fn maps(&self) -> &Maps {
        &self.writer.maps
    }

    /// Rewrite `LB_ACTIVE` from the flow table (for least_conn and p2c): the data path's
    /// own +1/-1 misses flows that simply expire. A count the data path changes between
    /// the walk and the write is overwritten: an approximation, corrected next time.
    pub fn recount_active_flows(&mut self) -> Result<()> {
        if self.counted.is_empty() {
            return Ok(());
        }
        let counts = super::inspect::live_flows_per_backend(&self.writer.maps)?;
        for &id in &self.counted {
            self.writer.maps.active.set(id, counts.get(&id).copied().unwrap_or(0) as u64, 0)?;
        }
        Ok(())
    }

    /// At start, give neighbour resolution a moment (bounded), so the first tables already
    /// reach every backend; whatever is still missing is picked up by `refresh_neighbours`.
    pub fn await_neighbours(&mut self, desired: &Desired) {
        let wanted = backend_ips(desired).len();
        for _ in 0..20 {
            match self.refresh_neighbours(desired) {
                Ok(_) if self.facts.neighbours.len() >= wanted => return,
                Ok(_) => {}
                Err(e) => warn!("neighbour lookup failed: {e:#}"),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Re-read next-hop MACs; true when one appeared or changed (then reconcile).
    pub fn refresh_neighbours(&mut self, desired: &Desired) -> Result<bool> {
        let macs: HashMap<IpAddr, [u8; 6]> = self.neighbours.resolve(
            &mut neighbour::Kernel,
            &self.interfaces,
            backend_ips(desired),
            std::time::Instant::now(),
        )?;
        if macs == self.facts.neighbours {
            return Ok(false);
        }
        info!(resolved = macs.len(), "next-hop MACs changed");
        self.facts.neighbours = macs;
        Ok(true)
    }
}

fn backend_ips(desired: &Desired) -> HashSet<IpAddr> {
    desired.services.iter().flat_map(|s| s.backends.iter().map(|b| b.address.ip())).collect()
}

impl DataPath for XdpDataplane {
    fn name(&self) -> &'static str {
        "xdp"
    }

    fn reconcile(&mut self, desired: &Desired) -> Result<()> {
        XdpDataplane::reconcile(self, desired)
    }

    fn set_global(&mut self, cfg: &Config) -> Result<()> {
        XdpDataplane::set_global(self, cfg)
    }

    fn refresh_neighbours(&mut self, desired: &Desired) -> Result<bool> {
        XdpDataplane::refresh_neighbours(self, desired)
    }

    fn recount_active_flows(&mut self) -> Result<()> {
        XdpDataplane::recount_active_flows(self)
    }

    fn sweep_flows(&mut self) -> Result<usize> {
        let swept = crate::sweep::sweep(&mut self.writer.maps, crate::sweep::SWEEP_GRACE)?;
        if swept != crate::sweep::Swept::default() {
            tracing::debug!(flows = swept.flows, nat = swept.nat, "swept ended flows");
        }
        Ok(swept.flows + swept.nat)
    }

    fn outcomes(&mut self) -> Vec<Outcome> {
        self.outcomes.deltas(&self.writer.maps)
    }

    fn tunnel_check_device(&self, vip: Option<std::net::IpAddr>) -> Option<String> {
        let tunnel = self.tunnel.as_ref()?;
        let routed = vip.and_then(crate::host::route_device);
        match routed {
            Some(dev) if tunnel.interfaces().any(|i| i == dev) => Some(dev),
            _ => tunnel.interfaces().next().map(str::to_string),
        }
    }

    fn set_tunnel_checks(&mut self, routes: &[lb_control::tunnel_check::TunnelRoute]) -> Result<()> {
        match &mut self.tunnel {
            Some(t) => t.set(routes, &self.outer),
            None => Ok(()),
        }
    }

    /// Done at once, before the future is returned: a few syscalls, and by then the
    /// daemon has stopped every other task that could wait on this thread.
    fn shutdown(self: Box<Self>, detach: bool, _drain: Duration) -> Shutdown {
        (*self).shutdown(detach);
        Box::pin(std::future::ready(()))
    }
}

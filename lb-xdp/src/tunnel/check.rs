//! The balancer's side of tunnelled health checks: the tc egress program on each XDP
//! interface, and its mark table kept equal to the checks the controller runs (written
//! as a difference: entries that did not change are not touched, so a check in flight
//! keeps its route across a reload). Detached when dropped (the tc links are the process's;
//! checks only run while the daemon does).
use std::collections::HashMap as StdHashMap;
use std::net::IpAddr;

use anyhow::{Context, Result};
use aya::maps::{HashMap, MapData};
use aya::programs::tc::{self, SchedClassifierLinkId, TcAttachType};
use aya::programs::SchedClassifier;
use aya::Ebpf;
use lb_common::addr::ip_words;
use lb_common::consts::{FWD_GUE, FWD_IPIP};
use lb_common::tunnel::{TunnelCheck, CHECK_PROGRAM, CHECK_TARGETS, CHECK_TARGETS_MAX};
use lb_config::Forwarding;
use lb_control::tunnel_check::TunnelRoute;

pub struct TunnelChecks {
    ebpf: Ebpf,
    links: Vec<(String, SchedClassifierLinkId)>,
    written: StdHashMap<u32, TunnelCheck>,
}

/// What the outer header is made of besides the backend: the sources per family and the
/// GUE port, from the daemon's settings (see `sources`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outer {
    pub source_v4: Option<std::net::Ipv4Addr>,
    pub source_v6: Option<std::net::Ipv6Addr>,
    pub gue_port: u16,
}

impl TunnelChecks {
    /// Load and verify the tc program (not attached yet).
    pub fn load() -> Result<Self> {
        let ebpf = super::load_object()?;
        let mut t = TunnelChecks { ebpf, links: Vec::new(), written: StdHashMap::new() };
        t.program()?.load().context("the kernel verifier rejected the tunnel health-check program")?;
        Ok(t)
    }

    pub fn program(&mut self) -> Result<&mut SchedClassifier> {
        let p = self.ebpf.program_mut(CHECK_PROGRAM).context("the tunnel object has no program lb_tunnel_check")?;
        Ok(p.try_into()?)
    }

    /// Attach on `interface`'s egress (tcx on Linux 6.6+, else a clsact qdisc, added if
    /// missing).
    pub fn attach(&mut self, interface: &str) -> Result<()> {
        // Only the netlink attach of older kernels needs the qdisc; "exists" is fine.
        let _ = tc::qdisc_add_clsact(interface);
        let id = self
            .program()?
            .attach(interface, TcAttachType::Egress)
            .with_context(|| format!("attaching the tunnel health-check program to {interface}'s egress"))?;
        self.links.push((interface.to_string(), id));
        Ok(())
    }

    /// The interfaces it is attached to.
    pub fn interfaces(&self) -> impl Iterator<Item = &str> {
        self.links.iter().map(|(i, _)| i.as_str())
    }

    /// Make the mark table hold exactly `routes`. A route the outer header cannot be built
    /// for (no source address of the backend's family) is left out and named in the error,
    /// after the others are written: its check then finds no entry and fails (the tc
    /// program drops marks it does not know).
    pub fn set(&mut self, routes: &[TunnelRoute], outer: &Outer) -> Result<()> {
        let mut next = StdHashMap::new();
        let mut missing = Vec::new();
        for r in routes {
            match entry(r, outer) {
                Some(e) => {
                    next.insert(r.mark, e);
                }
                None => missing.push(r.backend.to_string()),
            }
        }
        let mut map: HashMap<&mut MapData, u32, TunnelCheck> =
            HashMap::try_from(self.ebpf.map_mut(CHECK_TARGETS).context("the tunnel object has no check map")?)?;
        for mark in self.written.keys().filter(|m| !next.contains_key(m)) {
            let _ = map.remove(mark);
        }
        for (mark, e) in &next {
            if self.written.get(mark) != Some(e) {
                map.insert(mark, e, 0).with_context(|| format!("writing tunnel check mark {mark:#x}"))?;
            }
        }
        self.written = next;
        if !missing.is_empty() {
            anyhow::bail!(
                "no outer source address for the tunnelled health checks of {}: the interface has no address of that family",
                missing.join(", ")
            );
        }
        Ok(())
    }
}

/// The map entry for one route; None without a source of the backend's family.
pub fn entry(r: &TunnelRoute, outer: &Outer) -> Option<TunnelCheck> {
    let (backend, family) = ip_words(r.backend);
    let source = match r.backend {
        IpAddr::V4(_) => IpAddr::V4(outer.source_v4?),
        IpAddr::V6(_) => IpAddr::V6(outer.source_v6?),
    };
    let kind = if r.forwarding == Forwarding::Gue { FWD_GUE } else { FWD_IPIP };
    Some(TunnelCheck { family, kind, gue_port: outer.gue_port, backend, source: ip_words(source).0 })
}

/// The outer header's parts from the daemon's settings, as the data path's: the source of
/// each family is the first address of `daemon.encap_source_ipv4/6`, else the SNAT address
/// (`daemon.snat_ipv4/6`, else the interface's), and GUE goes to `daemon.gue_port`. (A
/// check's answer goes to its inner source, so one outer source per family is enough.)
pub fn outer_from(cfg: &lb_config::Config, interface: &str) -> Result<Outer> {
    let (if_v4, if_v6) = crate::host::interface_addresses(interface)?;
    let d = &cfg.daemon;
    let prefix_v4 = d.encap_source_ipv4.as_ref().and_then(|c| match c.network() {
        std::net::IpAddr::V4(a) => Some(a),
        std::net::IpAddr::V6(_) => None,
    });
    let prefix_v6 = d.encap_source_ipv6.as_ref().and_then(|c| match c.network() {
        std::net::IpAddr::V6(a) => Some(a),
        std::net::IpAddr::V4(_) => None,
    });
    Ok(Outer {
        source_v4: prefix_v4.or(d.snat_ipv4).or(if_v4),
        source_v6: prefix_v6.or(d.snat_ipv6).or(if_v6),
        gue_port: d.gue_port,
    })
}

/// At most this many backends have tunnelled checks at once (the map's capacity).
pub const CAPACITY: u32 = CHECK_TARGETS_MAX;

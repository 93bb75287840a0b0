//! `lb decap` on a backend: load the decapsulating XDP program, tell it this host's decap
//! addresses and the GUE port, attach it, read its counters. Detached when dropped.
use std::net::IpAddr;

use anyhow::{Context, Result};
use aya::maps::{Array, HashMap, MapData, PerCpuArray};
use aya::programs::xdp::XdpLinkId;
use aya::programs::{Xdp, XdpMode};
use aya::Ebpf;
use lb_common::addr::ip_words;
use lb_common::tunnel::{
    DecapAddr, DecapConfig, DecapOutcome, DECAP_ADDRS, DECAP_ADDRS_MAX, DECAP_CONFIG, DECAP_OUTCOMES, DECAP_PROGRAM,
    DECAP_STATS,
};

use crate::host::own_addresses;

pub struct Decap {
    ebpf: Ebpf,
    link: Option<XdpLinkId>,
}

/// Packets per outcome, summed over CPUs, in `DecapOutcome::ALL` order.
pub type DecapCounts = [u64; DECAP_OUTCOMES];

impl Decap {
    /// Load and verify the program, with `addresses` as the decap set and GUE to
    /// `gue_port` (0: no GUE).
    pub fn load(addresses: &[IpAddr], gue_port: u16) -> Result<Self> {
        if addresses.is_empty() {
            anyhow::bail!("no decap address: this host has none, give --address");
        }
        if addresses.len() > DECAP_ADDRS_MAX as usize {
            anyhow::bail!("{} decap addresses, at most {DECAP_ADDRS_MAX}", addresses.len());
        }
        let mut ebpf = super::load_object()?;
        {
            let mut addrs: HashMap<&mut MapData, DecapAddr, u8> =
                HashMap::try_from(ebpf.map_mut(DECAP_ADDRS).context("the tunnel object has no decap address map")?)?;
            for a in addresses {
                addrs.insert(decap_addr(*a), 1, 0).with_context(|| format!("adding decap address {a}"))?;
            }
        }
        let mut cfg: Array<&mut MapData, DecapConfig> =
            Array::try_from(ebpf.map_mut(DECAP_CONFIG).context("the tunnel object has no decap config map")?)?;
        cfg.set(0, DecapConfig { gue_port, _pad: [0; 2] }, 0)?;
        let mut d = Decap { ebpf, link: None };
        d.program()?.load().context("the kernel verifier rejected the decap program")?;
        Ok(d)
    }

    pub fn program(&mut self) -> Result<&mut Xdp> {
        let p = self.ebpf.program_mut(DECAP_PROGRAM).context("the tunnel object has no program lb_decap")?;
        Ok(p.try_into()?)
    }

    /// Attach to `interface`, native (driver) mode unless `generic`; the kernel's reason
    /// and what to try instead on failure.
    pub fn attach(&mut self, interface: &str, generic: bool) -> Result<()> {
        crate::pinned_link::ifindex_of(interface)?;
        let mode = if generic { XdpMode::Skb } else { XdpMode::Driver };
        let id = self.program()?.attach(interface, mode).map_err(|e| {
            let (what, hint) = if generic {
                ("generic", "check that the interface exists and has no other XDP program")
            } else {
                (
                    "native",
                    "the driver may lack native XDP support (try --xdp-attach skb), or another XDP program is attached",
                )
            };
            anyhow::anyhow!("{what} XDP attach to {interface} failed: {e:#}; {hint}")
        })?;
        self.link = Some(id);
        Ok(())
    }

    /// Detach now (also done on drop).
    pub fn detach(&mut self) -> Result<()> {
        if let Some(id) = self.link.take() {
            self.program()?.detach(id).context("detaching the decap program")?;
        }
        Ok(())
    }

    pub fn counts(&self) -> Result<DecapCounts> {
        let stats: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(self.ebpf.map(DECAP_STATS).context("the tunnel object has no decap counters")?)?;
        let mut out = [0u64; DECAP_OUTCOMES];
        for o in DecapOutcome::ALL {
            out[o as usize] = stats.get(&(o as u32), 0)?.iter().sum();
        }
        Ok(out)
    }
}

pub fn decap_addr(a: IpAddr) -> DecapAddr {
    let (words, family) = ip_words(a);
    DecapAddr { family, _pad: [0; 3], addr: words }
}

/// The default decap set: every address of this host except loopback and link-local ones
/// (a tunnel is sent to a routable address).
pub fn host_addresses() -> Vec<IpAddr> {
    let mut all: Vec<IpAddr> = own_addresses()
        .into_iter()
        .filter(|a| match a {
            IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_link_local(),
            IpAddr::V6(v6) => !v6.is_loopback() && (v6.segments()[0] & 0xffc0) != 0xfe80,
        })
        .collect();
    all.sort();
    all
}

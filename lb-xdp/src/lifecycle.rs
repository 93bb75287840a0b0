//! Starting, adopting and stopping the XDP data path: lock the pin directory (one daemon
//! per data path), load with the maps pinned, check what a pinned link is attached to, write
//! the tables, then attach (a fresh start, or in place of a severed link or one on another
//! interface) or swap the program into the running link (a hitless restart); at the end,
//! leave it forwarding or detach and unpin everything.
use std::path::Path;

use anyhow::{Context, Result};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::xdp::XdpLink;
use tracing::{info, warn};

use crate::adopt::{read_existing, Adopted};
use crate::global::{fresh_seed, global_config, keep_live_snat_ports};
use crate::host::{ensure_bpffs, own_addresses, reserve_snat_ports};
use crate::layout::MapSizes;
use crate::load::{self, LINK_PIN};
use crate::lock::lock_pin_path;
use crate::maps::Maps;
use crate::outcomes::OutcomeWatch;
use crate::pinned_link::{self, Takeover};
use crate::plan::{HostFacts, Ids};
use crate::ports;
use crate::store::MapStore;
use crate::unresolved::UnresolvedWatch;
use crate::writer::Writer;
use crate::xdp::XdpDataplane;
use lb_common::consts::CONFIG_KEY;
use lb_config::desired::Desired;
use lb_config::{Config, XdpAttach};

impl XdpDataplane {
    /// Lock, load, write the tables for `desired`, then attach (or take over the running
    /// link). A second daemon on the same pin_path fails at the lock, having touched nothing.
    pub fn start(cfg: &Config, desired: &Desired) -> Result<Self> {
        let d = &cfg.daemon;
        let interface = d.interface.clone().context("daemon.interface is required to attach XDP")?;
        let interfaces = d.interfaces.clone();
        ensure_bpffs(&d.pin_path)?;
        let lock = lock_pin_path(&d.pin_path)?;
        // Until bring_up: a pin directory this start created goes again on failure (while
        // the lock is still held; only if empty, so never a running data path's).
        let created = lock.created();
        let undo = |e: anyhow::Error| {
            if created {
                let _ = std::fs::remove_dir(&d.pin_path);
            }
            e
        };
        let mut global = global_config(cfg, &interface).map_err(undo)?;
        // One seed per daemon: a restart draws a new one (flows keep the ports they have).
        global.snat_seed = fresh_seed();
        reserve_snat_ports(d.snat_ports.start, d.snat_ports.end);
        let link_pin = d.pin_path.join(LINK_PIN);
        // The pinned maps' layout is checked first, inside `load`, before anything uses them.
        let mut ebpf = load::load(&d.pin_path, &MapSizes::of(d)).map_err(undo)?;
        let takeover = takeover(&link_pin, &interface).map_err(undo)?;
        let maps = Maps::take(&mut ebpf).map_err(undo)?;
        let adopted = if takeover.adopts() { Some(read_existing(&maps)?) } else { None };
        // The running data path's flows may hold ports of its `snat_ports`, whatever ours is.
        let global = if takeover.adopts() {
            keep_live_snat_ports(&maps.config.get(&CONFIG_KEY, 0).context("reading LB_CONFIG")?, global)
        } else {
            global
        };
        let outer = crate::tunnel::check::outer_from(cfg, &interface).map_err(undo)?;
        // What the table arrays hold: `max_services`, or an adopted pin's own size.
        let ring_services = maps.ring_services();
        let mut dp = XdpDataplane {
            writer: Writer::new(maps),
            link: None,
            extra_links: Vec::new(),
            ebpf,
            ids: Ids::new(ring_services),
            global,
            facts: HostFacts { own_addresses: own_addresses(), ..Default::default() },
            interface,
            interfaces,
            pin_path: d.pin_path.clone(),
            counted: Vec::new(),
            outcomes: OutcomeWatch::default(),
            neighbours: crate::neighbour::Resolver::default(),
            tunnel: None,
            outer,
            unresolved: None,
            lock,
        };
        let generic = d.xdp_attach == XdpAttach::Generic;
        dp.bring_up(desired, adopted.as_ref(), &takeover, generic).inspect_err(|_| {
            // A fresh start that failed leaves nothing behind; a failed adoption leaves the
            // running data path as it was.
            if !takeover.adopts() {
                load::unpin_all(&d.pin_path);
            }
        })?;
        dp.tunnel = tunnel_checks(&dp.interfaces);
        dp.unresolved = Some(UnresolvedWatch::start(&d.pin_path)?);
        Ok(dp)
    }

    fn bring_up(
        &mut self,
        desired: &Desired,
        adopted: Option<&Adopted>,
        takeover: &Takeover,
        generic: bool,
    ) -> Result<()> {
        if let Some(a) = adopted {
            self.ids.seed(a);
            self.writer.adopt(a);
            info!(services = a.services.len(), backends = a.backends.len(), "adopting the pinned data path");
        }
        self.await_neighbours(desired);
        self.reconcile(desired)?;
        let ifindexes = self.interfaces.iter().map(|i| pinned_link::ifindex_of(i)).collect::<Result<Vec<_>>>()?;
        ports::write_tx_ports(&mut self.writer.maps, &ifindexes)?;
        // NICs no longer listed (or now first, whose link is `link`) let go first, so a NIC
        // that changed place is free for its new link.
        for stale in ports::stale_link_pins(&self.pin_path, &self.interfaces) {
            warn!(link = %stale.display(), "removing the XDP link of a NIC no longer listed after the first in daemon.interface");
            std::fs::remove_file(&stale).with_context(|| format!("removing {}", stale.display()))?;
        }
        let link_pin = self.pin_path.join(LINK_PIN);
        let mode = if generic { "generic" } else { "native" };
        match takeover {
            Takeover::Replace => {
                self.replace_program(&link_pin)?;
                info!(interface = %self.interface, pin_path = %self.pin_path.display(), "XDP program replaced in the running link; flows kept");
            }
            Takeover::Fresh => {
                self.attach(&link_pin, generic)?;
                info!(interface = %self.interface, mode, pin_path = %self.pin_path.display(), "XDP program attached");
            }
            Takeover::Reattach | Takeover::Move { .. } => {
                self.attach(&link_pin, generic)?;
                info!(interface = %self.interface, mode, pin_path = %self.pin_path.display(), "XDP program attached in place of the old link");
            }
        }
        let extra: Vec<String> = self.interfaces.iter().skip(1).cloned().collect();
        for (i, nic) in extra.iter().enumerate() {
            let pin = ports::link_pin(&self.pin_path, i + 1, nic);
            let link = match takeover_of(&pin, nic)? {
                Takeover::Replace => self.swap_into(&pin)?,
                _ => self.attach_on(nic, &pin, generic)?,
            };
            info!(interface = %nic, mode, link = %pin.display(), "XDP program running on an additional NIC");
            self.extra_links.push(link);
        }
        Ok(())
    }

    /// A new link on the interface, pinned at `link_pin`. An old link pinned there (severed,
    /// or on another interface) goes once the new one runs: its pin was the last reference,
    /// so the program leaves the old interface with it.
    fn attach(&mut self, link_pin: &Path, generic: bool) -> Result<()> {
        let interface = self.interface.clone();
        let pinned = self.attach_on(&interface, link_pin, generic)?;
        self.link = Some(pinned);
        Ok(())
    }

    /// A new link on `interface`, pinned at `link_pin` (replacing what was pinned there).
    fn attach_on(&mut self, interface: &str, link_pin: &Path, generic: bool) -> Result<FdLink> {
        let id = load::attach(&mut self.ebpf, interface, generic)?;
        let link = load::program(&mut self.ebpf)?.take_link(id)?;
        let fd = FdLink::try_from(link)
            .context("the kernel gave no bpf_link for this attach; hitless restart needs one (Linux 5.9+)")?;
        if link_pin.symlink_metadata().is_ok() {
            std::fs::remove_file(link_pin)
                .with_context(|| format!("removing the old XDP link pin {}", link_pin.display()))?;
        }
        let pinned = fd.pin(link_pin).with_context(|| format!("pinning the XDP link at {}", link_pin.display()))?;
        Ok(pinned.into())
    }

    /// bpf_link_update: the new program takes over the interface in one step.
    fn replace_program(&mut self, link_pin: &Path) -> Result<()> {
        let link = self.swap_into(link_pin)?;
        self.link = Some(link);
        Ok(())
    }

    /// Swap this program into the link pinned at `link_pin`.
    fn swap_into(&mut self, link_pin: &Path) -> Result<FdLink> {
        let pinned = PinnedLink::from_pin(link_pin)
            .with_context(|| format!("opening the pinned XDP link {}", link_pin.display()))?;
        let link = XdpLink::try_from(FdLink::from(pinned)).context("the pinned link is not an XDP link")?;
        let program = load::program(&mut self.ebpf)?;
        let id = program.attach_to_link(link).context("replacing the program in the pinned XDP link")?;
        Ok(FdLink::try_from(program.take_link(id)?)?)
    }

    /// Stop managing the data path. By default it keeps forwarding (program attached
    /// through the pinned link, maps pinned) for the next daemon to adopt; `detach` removes
    /// the link and every pin, and the program goes with them.
    pub fn shutdown(mut self, detach: bool) {
        if detach {
            let _ = std::fs::remove_file(self.pin_path.join(LINK_PIN));
            for (i, nic) in self.interfaces.iter().enumerate().skip(1) {
                let _ = std::fs::remove_file(ports::link_pin(&self.pin_path, i, nic));
            }
            self.link.take();
            self.extra_links.clear();
            let XdpDataplane { writer, ebpf, pin_path, lock, unresolved, .. } = self;
            drop(unresolved);
            // Map handles before the program, then the pins. The lock last: a daemon that
            // started meanwhile must not adopt pins that are about to go.
            drop(writer);
            drop(ebpf);
            load::unpin_all(&pin_path);
            drop(lock);
            info!("XDP detached and pinned maps removed");
        } else {
            info!("leaving the XDP program attached and its maps pinned for the next `lb run`");
        }
    }
}

/// The tunnelled health checks' tc program, attached to every NIC's egress. Without it
/// the data path still serves; the checks of ipip/gue services then go to the backends
/// directly (the controller says so).
fn tunnel_checks(interfaces: &[String]) -> Option<crate::tunnel::check::TunnelChecks> {
    let attached = crate::tunnel::check::TunnelChecks::load()
        .and_then(|mut t| interfaces.iter().try_for_each(|i| t.attach(i)).map(|_| t));
    match attached {
        Ok(t) => {
            info!(interfaces = ?interfaces, "tunnel health-check program attached (tc egress)");
            Some(t)
        }
        Err(e) => {
            warn!(interfaces = ?interfaces, "tunnelled health checks unavailable: {e:#}");
            None
        }
    }
}

/// How to take over the link pinned at `pin` for an additional NIC: named by the NIC, it
/// normally runs there (then swapped in place) or is absent; anything else is attached afresh.
fn takeover_of(pin: &Path, interface: &str) -> Result<Takeover> {
    let found = match pin.symlink_metadata() {
        Ok(_) => Some(pinned_link::inspect(pin)?),
        Err(_) => None,
    };
    pinned_link::decide(pin, found.as_ref(), pinned_link::ifindex_of(interface)?, pinned_link::name_of)
}

/// How to take over what is pinned at `link_pin`, for a daemon configured for `interface`;
/// said in the log when the data path cannot simply be swapped in place.
fn takeover(link_pin: &Path, interface: &str) -> Result<Takeover> {
    let found = match link_pin.symlink_metadata() {
        Ok(_) => Some(pinned_link::inspect(link_pin)?),
        Err(_) => None,
    };
    let wanted = pinned_link::ifindex_of(interface)?;
    let takeover = pinned_link::decide(link_pin, found.as_ref(), wanted, pinned_link::name_of)?;
    match &takeover {
        Takeover::Reattach => warn!(
            interface,
            link = %link_pin.display(),
            "the pinned XDP link is severed: the interface it ran on is gone (deleted, or its namespace recreated); attaching afresh on {interface}"
        ),
        Takeover::Move { from } => warn!(
            from = %from,
            to = interface,
            "the pinned XDP link runs on {from}, the config says {interface}: moving the data path to {interface}; flows on {from} cannot be kept"
        ),
        Takeover::Fresh | Takeover::Replace => {}
    }
    Ok(takeover)
}

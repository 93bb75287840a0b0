//! Starting, adopting and stopping the XDP data path: load with the maps pinned, write the
//! tables, then attach (a fresh start) or swap the program into the running link (a
//! hitless restart); at the end, leave it forwarding or detach and unpin everything.
use std::path::Path;

use anyhow::{Context, Result};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::xdp::XdpLink;
use tracing::info;

use crate::adopt::{read_existing, Adopted};
use crate::global::{global_config, keep_live_snat_ports};
use crate::host::{ensure_bpffs, own_addresses, reserve_snat_ports};
use crate::load::{self, LINK_PIN};
use crate::maps::Maps;
use crate::outcomes::OutcomeWatch;
use crate::plan::{HostFacts, Ids};
use crate::writer::Writer;
use crate::xdp::XdpDataplane;
use lb_common::consts::CONFIG_KEY;
use lb_config::desired::Desired;
use lb_config::{Config, XdpAttach};

impl XdpDataplane {
    /// Load, write the tables for `desired`, then attach (or take over the running link).
    pub fn start(cfg: &Config, desired: &Desired) -> Result<Self> {
        let d = &cfg.daemon;
        let interface = d.interface.clone().context("daemon.interface is required to attach XDP")?;
        let global = global_config(cfg, &interface)?;
        reserve_snat_ports(d.snat_ports.start, d.snat_ports.end);
        ensure_bpffs(&d.pin_path)?;
        let link_pin = d.pin_path.join(LINK_PIN);
        let adopting = link_pin.exists();
        let mut ebpf = load::load(&d.pin_path, d.flow_table_size)?;
        let maps = Maps::take(&mut ebpf)?;
        let adopted = if adopting { Some(read_existing(&maps)?) } else { None };
        // The running data path's flows may hold ports of its `snat_ports`, whatever ours is.
        let global = if adopting {
            keep_live_snat_ports(&maps.config.get(&CONFIG_KEY, 0).context("reading LB_CONFIG")?, global)
        } else {
            global
        };
        let mut dp = XdpDataplane {
            writer: Writer::new(maps),
            link: None,
            ebpf,
            ids: Ids::default(),
            global,
            facts: HostFacts { own_addresses: own_addresses(), ..Default::default() },
            interface,
            pin_path: d.pin_path.clone(),
            counted: Vec::new(),
            outcomes: OutcomeWatch::default(),
        };
        let generic = d.xdp_attach == XdpAttach::Generic;
        dp.bring_up(desired, adopted.as_ref(), generic).inspect_err(|_| {
            // A fresh start that failed leaves nothing behind; a failed adoption leaves the
            // running data path as it was.
            if !adopting {
                load::unpin_all(&d.pin_path);
            }
        })?;
        Ok(dp)
    }

    fn bring_up(&mut self, desired: &Desired, adopted: Option<&Adopted>, generic: bool) -> Result<()> {
        if let Some(a) = adopted {
            self.ids.seed(a);
            self.writer.adopt(a);
            info!(services = a.services.len(), backends = a.backends.len(), "adopting the pinned data path");
        }
        self.await_neighbours(desired);
        self.reconcile(desired)?;
        let link_pin = self.pin_path.join(LINK_PIN);
        if adopted.is_some() {
            self.replace_program(&link_pin)?;
            info!(interface = %self.interface, pin_path = %self.pin_path.display(), "XDP program replaced in the running link; flows kept");
        } else {
            self.attach(&link_pin, generic)?;
            let mode = if generic { "generic" } else { "native" };
            info!(interface = %self.interface, mode, pin_path = %self.pin_path.display(), "XDP program attached");
        }
        Ok(())
    }

    fn attach(&mut self, link_pin: &Path, generic: bool) -> Result<()> {
        let id = load::attach(&mut self.ebpf, &self.interface, generic)?;
        let link = load::program(&mut self.ebpf)?.take_link(id)?;
        let fd = FdLink::try_from(link)
            .context("the kernel gave no bpf_link for this attach; hitless restart needs one (Linux 5.9+)")?;
        let pinned = fd.pin(link_pin).with_context(|| format!("pinning the XDP link at {}", link_pin.display()))?;
        self.link = Some(pinned.into());
        Ok(())
    }

    /// bpf_link_update: the new program takes over the interface in one step.
    fn replace_program(&mut self, link_pin: &Path) -> Result<()> {
        let pinned = PinnedLink::from_pin(link_pin)
            .with_context(|| format!("opening the pinned XDP link {}", link_pin.display()))?;
        let link = XdpLink::try_from(FdLink::from(pinned)).context("the pinned link is not an XDP link")?;
        let program = load::program(&mut self.ebpf)?;
        let id = program.attach_to_link(link).context("replacing the program in the pinned XDP link")?;
        self.link = Some(FdLink::try_from(program.take_link(id)?)?);
        Ok(())
    }

    /// Stop managing the data path. By default it keeps forwarding (program attached
    /// through the pinned link, maps pinned) for the next daemon to adopt; `detach` removes
    /// the link and every pin, and the program goes with them.
    pub fn shutdown(mut self, detach: bool) {
        if detach {
            let _ = std::fs::remove_file(self.pin_path.join(LINK_PIN));
            self.link.take();
            let pin_path = self.pin_path.clone();
            drop(self);
            load::unpin_all(&pin_path);
            info!("XDP detached and pinned maps removed");
        } else {
            info!("leaving the XDP program attached and its maps pinned for the next `lb run`");
        }
    }
}

//! The XDP data path as the daemon runs it: load the program with its maps pinned, adopt
//! a data path a previous daemon left running (hitless restart) or attach afresh, write
//! tables for each desired state, keep next-hop MACs fresh. Tables are written before the
//! program is attached or replaced, so no packet meets an unconfigured program.
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::xdp::XdpLink;
use aya::Ebpf;
use lb_common::maps::GlobalConfig;
use network_interface::{Addr, NetworkInterface, NetworkInterfaceConfig};
use tracing::{info, info_span, warn};

use super::adopt::{read_existing, Adopted};
use super::plan::{plan, HostFacts, Ids};
use super::writer::Writer;
use super::{load, maps::Maps, neighbour};
use lb_config::{Config, Forwarding, XdpAttach};
use lb_config::desired::{BackendKey, Desired};
use lb_control::datapath::{DataPath, Outcome, Shutdown};

/// How long a TCP flow lives on after its FIN or RST, for the last ACKs and retransmits.
const TCP_CLOSING: Duration = Duration::from_secs(10);
/// The pinned XDP link: while this file exists the program stays attached, daemon or not.
pub const LINK_PIN: &str = "link";

pub struct XdpDataplane {
    // Field order matters for drop: map handles and the link before the program.
    writer: Writer,
    link: Option<FdLink>,
    ebpf: Ebpf,
    ids: Ids,
    global: GlobalConfig,
    facts: HostFacts,
    interface: String,
    pin_path: PathBuf,
    /// Backend ids of services whose algorithm compares live flows (least_conn, p2c), as of
    /// the last reconcile: the ones `recount_active_flows` keeps right.
    counted: Vec<u32>,
    /// Every backend id of the last reconcile, for the passive outcomes.
    watched: Vec<(u32, BackendKey)>,
    /// `LB_OUTCOMES` totals as last read, per backend id.
    outcome_totals: HashMap<u32, (u64, u64)>,
}

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
            watched: Vec::new(),
            outcome_totals: HashMap::new(),
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
        let fd = FdLink::try_from(link).context("the kernel gave no bpf_link for this attach; hitless restart needs one (Linux 5.9+)")?;
        let pinned = fd.pin(link_pin).with_context(|| format!("pinning the XDP link at {}", link_pin.display()))?;
        self.link = Some(pinned.into());
        Ok(())
    }

    /// bpf_link_update: the new program takes over the interface in one step.
    fn replace_program(&mut self, link_pin: &Path) -> Result<()> {
        let pinned = PinnedLink::from_pin(link_pin).with_context(|| format!("opening the pinned XDP link {}", link_pin.display()))?;
        let link = XdpLink::try_from(FdLink::from(pinned)).context("the pinned link is not an XDP link")?;
        let program = load::program(&mut self.ebpf)?;
        let id = program.attach_to_link(link).context("replacing the program in the pinned XDP link")?;
        self.link = Some(FdLink::try_from(program.take_link(id)?)?);
        Ok(())
    }

    /// Desired state → tables → maps.
    pub fn reconcile(&mut self, desired: &Desired) -> Result<()> {
        let _span = info_span!("reconcile").entered();
        let p = plan(desired, self.global, &self.facts, &mut self.ids)?;
        self.writer.apply(&p)?;
        let counting: HashSet<u32> = p
            .services
            .iter()
            .filter(|s| matches!(s.info.algorithm, lb_common::consts::ALG_LEAST_CONN | lb_common::consts::ALG_P2C))
            .map(|s| s.id)
            .collect();
        self.counted = p.backends.iter().filter(|b| counting.contains(&b.info.service_id)).map(|b| b.id).collect();
        self.watch(&p.backends);
        let missing: Vec<String> = p
            .backends
            .iter()
            .filter(|b| b.info.flags & lb_common::consts::BACKEND_HAS_MAC == 0)
            .map(|b| b.address.to_string())
            .collect();
        let in_rotation: usize = desired.services.iter().map(|s| s.backends.iter().filter(|b| b.in_rotation()).count()).sum();
        info!(services = p.services.len(), backends = p.backends.len(), in_rotation, ?missing, "tables written");
        Ok(())
    }

    /// New settings from a reloaded config (SNAT addresses, ports, timeouts).
    pub fn set_global(&mut self, cfg: &Config) -> Result<()> {
        self.global = global_config(cfg, &self.interface)?;
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

    /// Track the backend ids of a new plan. An id given to another backend starts from the
    /// counters as they are, so the old owner's outcomes are not blamed on the new one.
    fn watch(&mut self, backends: &[super::plan::BackendPlan]) {
        let before: HashMap<u32, BackendKey> = self.watched.drain(..).collect();
        for b in backends {
            let key = BackendKey::new(b.service.clone(), b.address);
            if before.get(&b.id) != Some(&key) {
                let totals = self.read_outcomes(b.id).unwrap_or_default();
                self.outcome_totals.insert(b.id, totals);
            }
            self.watched.push((b.id, key));
        }
        let live: HashSet<u32> = self.watched.iter().map(|w| w.0).collect();
        self.outcome_totals.retain(|id, _| live.contains(id));
    }

    fn read_outcomes(&self, id: u32) -> Result<(u64, u64)> {
        let values = self.writer.maps.outcomes.get(&id, 0)?;
        Ok(values.iter().fold((0, 0), |(a, f), o| (a + o.answered, f + o.failed)))
    }

    /// Passive outcomes since the last call, per backend: (answered, failed) new flows.
    pub fn outcomes(&mut self) -> Vec<Outcome> {
        let mut out = Vec::new();
        for (id, key) in &self.watched {
            let Ok(now) = self.read_outcomes(*id) else { continue };
            let last = self.outcome_totals.insert(*id, now).unwrap_or(now);
            let delta = (now.0.saturating_sub(last.0), now.1.saturating_sub(last.1));
            if delta != (0, 0) {
                out.push(Outcome { backend: key.clone(), succeeded: delta.0, failed: delta.1 });
            }
        }
        out
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
        let macs: HashMap<IpAddr, [u8; 6]> = neighbour::resolve(&self.interface, backend_ips(desired))?;
        if macs == self.facts.neighbours {
            return Ok(false);
        }
        info!(resolved = macs.len(), "next-hop MACs changed");
        self.facts.neighbours = macs;
        Ok(true)
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

fn backend_ips(desired: &Desired) -> HashSet<IpAddr> {
    desired.services.iter().flat_map(|s| s.backends.iter().map(|b| b.address.ip())).collect()
}

pub fn global_config(cfg: &Config, interface: &str) -> Result<GlobalConfig> {
    let (if_v4, if_v6) = interface_addresses(interface)?;
    global_config_from(cfg, interface, if_v4, if_v6)
}

/// The data path's settings from the config, with the interface's addresses as the SNAT
/// defaults.
pub fn global_config_from(cfg: &Config, interface: &str, if_v4: Option<Ipv4Addr>, if_v6: Option<Ipv6Addr>) -> Result<GlobalConfig> {
    let d = &cfg.daemon;
    let v4 = d.snat_ipv4.or(if_v4);
    let v6 = d.snat_ipv6.or(if_v6);
    for s in cfg.services.iter().filter(|s| s.forwarding == Forwarding::Nat) {
        if s.vip.is_ipv4() && v4.is_none() {
            bail!("service {}: nat needs an IPv4 SNAT address; {interface} has none, set daemon.snat_ipv4", s.name);
        }
        if s.vip.is_ipv6() && v6.is_none() {
            bail!("service {}: nat needs an IPv6 SNAT address; {interface} has no global one, set daemon.snat_ipv6", s.name);
        }
    }
    let v4_word = v4.map_or(0, |a| u32::from_ne_bytes(a.octets()));
    let v6_words = v6.map_or([0; 4], |a| lb_common::addr::ip_words(IpAddr::V6(a)).0);
    Ok(GlobalConfig {
        tcp_idle_ns: d.tcp_idle_timeout.as_nanos() as u64,
        udp_idle_ns: d.udp_idle_timeout.as_nanos() as u64,
        tcp_closing_ns: TCP_CLOSING.min(d.tcp_idle_timeout).as_nanos() as u64,
        snat_v6: v6_words,
        snat_v4: v4_word,
        snat_port_min: d.snat_ports.start,
        snat_port_max: d.snat_ports.end,
        lb_mac: [0; 6],
        configured: 1,
        _pad: 0,
    })
}

/// The interface's first IPv4 address and first global IPv6 address.
fn interface_addresses(interface: &str) -> Result<(Option<Ipv4Addr>, Option<Ipv6Addr>)> {
    let all = NetworkInterface::show().context("listing network interfaces")?;
    let mine: Vec<&NetworkInterface> = all.iter().filter(|i| i.name == interface).collect();
    if mine.is_empty() {
        bail!("interface {interface} does not exist (see `ip link`)");
    }
    let addrs = mine.iter().flat_map(|i| i.addr.iter());
    let v4 = addrs.clone().find_map(|a| match a {
        Addr::V4(a) => Some(a.ip),
        _ => None,
    });
    let v6 = addrs.clone().find_map(|a| match a {
        Addr::V6(a) if is_global_v6(&a.ip) => Some(a.ip),
        _ => None,
    });
    Ok((v4, v6))
}

fn is_global_v6(ip: &Ipv6Addr) -> bool {
    !(ip.is_loopback() || ip.is_unspecified() || (ip.segments()[0] & 0xffc0) == 0xfe80)
}

fn own_addresses() -> HashSet<IpAddr> {
    NetworkInterface::show()
        .map(|all| {
            all.iter()
                .flat_map(|i| i.addr.iter())
                .map(|a| match a {
                    Addr::V4(a) => IpAddr::V4(a.ip),
                    Addr::V6(a) => IpAddr::V6(a.ip),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Keep the kernel from picking SNAT ports for the host's own connections (health checks,
/// SSH): `ip_local_reserved_ports` is consulted by the ephemeral port allocator.
fn reserve_snat_ports(start: u16, end: u16) {
    let path = "/proc/sys/net/ipv4/ip_local_reserved_ports";
    let current = std::fs::read_to_string(path).unwrap_or_default();
    let range = format!("{start}-{end}");
    if current.split(',').any(|r| r.trim() == range) {
        return;
    }
    let value = if current.trim().is_empty() { range } else { format!("{},{range}", current.trim()) };
    if let Err(e) = std::fs::write(path, value) {
        warn!("could not reserve SNAT ports {start}-{end} in {path}: {e}");
    }
}

/// The standard BPF filesystem location is mounted on demand, as systemd and iproute2 do;
/// any other pin_path must already be on a bpffs.
fn ensure_bpffs(pin_path: &Path) -> Result<()> {
    let standard = Path::new("/sys/fs/bpf");
    if pin_path.starts_with(standard) && !load::is_bpffs(standard) {
        let status = std::process::Command::new("mount")
            .args(["-t", "bpf", "bpf", "/sys/fs/bpf"])
            .status()
            .context("running mount")?;
        if !status.success() {
            bail!("/sys/fs/bpf is not a BPF filesystem and mounting one failed");
        }
    }
    Ok(())
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

    fn outcomes(&mut self) -> Vec<Outcome> {
        XdpDataplane::outcomes(self)
    }

    /// Done at once, before the future is returned: a few syscalls, and by then the
    /// daemon has stopped every other task that could wait on this thread.
    fn shutdown(self: Box<Self>, detach: bool, _drain: Duration) -> Shutdown {
        (*self).shutdown(detach);
        Box::pin(std::future::ready(()))
    }
}

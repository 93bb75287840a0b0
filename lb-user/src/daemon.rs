//! `lb run` in XDP mode: load and verify the program with its maps pinned, write the tables
//! for the config, attach, then keep next-hop MACs fresh until SIGINT/SIGTERM. Tables are
//! written before the attach, so no packet ever meets an unconfigured program.
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use aya::Ebpf;
use lb_common::maps::GlobalConfig;
use network_interface::{Addr, NetworkInterface, NetworkInterfaceConfig};
use tokio::signal::unix::{signal, SignalKind};
use tracing::{info, info_span, warn};

use crate::config::{Config, Forwarding};
use crate::dataplane::plan::{plan, HostFacts, Ids};
use crate::dataplane::writer::Writer;
use crate::dataplane::{load, maps::Maps, neighbour};
use crate::state::Desired;

/// How long a TCP flow lives on after its FIN or RST, for the last ACKs and retransmits.
const TCP_CLOSING: Duration = Duration::from_secs(10);
/// How often next-hop MACs are re-read (and missing ones solicited).
const NEIGHBOUR_REFRESH: Duration = Duration::from_secs(1);

pub struct XdpDaemon {
    // Field order matters for drop: the writer's map handles go before the program.
    writer: Writer,
    ebpf: Ebpf,
    ids: Ids,
    desired: Desired,
    global: GlobalConfig,
    facts: HostFacts,
    interface: String,
}

impl XdpDaemon {
    pub fn start(cfg: &Config) -> Result<Self> {
        let d = &cfg.daemon;
        let interface = d.interface.clone().context("daemon.interface is required to attach XDP")?;
        let global = global_config(cfg, &interface)?;
        reserve_snat_ports(d.snat_ports.start, d.snat_ports.end);
        ensure_bpffs(&d.pin_path)?;
        let mut ebpf = load::load(&d.pin_path, d.flow_table_size)?;
        Maps::take(&mut ebpf)
            .and_then(|maps| Self::finish_start(cfg, Writer::new(maps), ebpf, global, interface))
            // Nothing half-started stays behind: the maps we pinned go with the failure.
            .inspect_err(|_| load::unpin_all(&d.pin_path))
    }

    fn finish_start(cfg: &Config, writer: Writer, ebpf: Ebpf, global: GlobalConfig, interface: String) -> Result<Self> {
        let d = &cfg.daemon;
        let mut daemon = XdpDaemon {
            writer,
            ebpf,
            ids: Ids::default(),
            desired: Desired::from_config(cfg),
            global,
            facts: HostFacts { own_addresses: own_addresses(), ..Default::default() },
            interface: interface.clone(),
        };
        daemon.await_neighbours();
        daemon.reconcile()?;
        load::attach(&mut daemon.ebpf, &interface, d.xdp_attach == crate::config::XdpAttach::Generic)?;
        info!(interface, mode = %d.xdp_attach, pin_path = %d.pin_path.display(), "XDP program attached");
        Ok(daemon)
    }

    /// Desired state → tables → maps.
    pub fn reconcile(&mut self) -> Result<()> {
        let _span = info_span!("reconcile").entered();
        let p = plan(&self.desired, self.global, &self.facts, &mut self.ids)?;
        self.writer.apply(&p)?;
        let missing: Vec<String> = p
            .backends
            .iter()
            .filter(|b| b.info.flags & lb_common::consts::BACKEND_HAS_MAC == 0)
            .map(|b| b.address.to_string())
            .collect();
        info!(services = p.services.len(), backends = p.backends.len(), ?missing, "tables written");
        Ok(())
    }

    /// At start, give neighbour resolution a moment (bounded), so the first tables already
    /// reach every backend; whatever is still missing is picked up by the refresh loop.
    fn await_neighbours(&mut self) {
        let wanted: usize = self.desired.services.iter().flat_map(|s| s.backends.iter().map(|b| b.address.ip())).collect::<HashSet<_>>().len();
        for _ in 0..20 {
            match self.refresh_neighbours() {
                Ok(_) if self.facts.neighbours.len() >= wanted => return,
                Ok(_) => {}
                Err(e) => warn!("neighbour lookup failed: {e:#}"),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Re-read next-hop MACs; reconcile when one appeared or changed.
    pub fn refresh_neighbours(&mut self) -> Result<bool> {
        let ips: HashSet<IpAddr> =
            self.desired.services.iter().flat_map(|s| s.backends.iter().map(|b| b.address.ip())).collect();
        let macs = neighbour::resolve(&self.interface, ips)?;
        if macs == self.facts.neighbours {
            return Ok(false);
        }
        info!(resolved = macs.len(), "next-hop MACs changed");
        self.facts.neighbours = macs;
        Ok(true)
    }

    /// Re-read the config: validate first, keep running the old one on any error; on
    /// success apply the difference (the writer only touches what changed, flows stay).
    /// Daemon-level keys that need a re-attach or a re-load (interface, pin_path,
    /// flow_table_size) take effect at the next start.
    pub fn reload(&mut self, path: &Path) {
        let _span = info_span!("reload", path = %path.display()).entered();
        let cfg = match Config::from_file(path) {
            Ok(cfg) => cfg,
            Err(e) => {
                warn!("config reload failed, the running config stays:\n{e}");
                return;
            }
        };
        let global = match global_config(&cfg, &self.interface) {
            Ok(g) => g,
            Err(e) => {
                warn!("config reload failed, the running config stays: {e:#}");
                return;
            }
        };
        let (old_desired, old_global) = (std::mem::replace(&mut self.desired, Desired::from_config(&cfg)), self.global);
        self.global = global;
        self.await_neighbours();
        match self.reconcile() {
            Ok(()) => info!("config reloaded"),
            Err(e) => {
                warn!("config reload could not be applied, going back: {e:#}");
                self.desired = old_desired;
                self.global = old_global;
                if let Err(e) = self.reconcile() {
                    warn!("restoring the previous tables failed: {e:#}");
                }
            }
        }
    }

    pub async fn serve(mut self, config_path: &Path, pin_path: &Path) -> Result<()> {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        let mut tick = tokio::time::interval(NEIGHBOUR_REFRESH);
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => self.reload(config_path),
                _ = tick.tick() => {
                    match self.refresh_neighbours() {
                        Ok(true) => self.reconcile()?,
                        Ok(false) => {}
                        Err(e) => warn!("neighbour refresh failed: {e:#}"),
                    }
                }
            }
        }
        info!("shutting down: detaching XDP and removing pinned maps");
        drop(self);
        load::unpin_all(pin_path);
        Ok(())
    }
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
    let v6_words = v6.map_or([0; 4], |a| crate::dataplane::addr::ip_words(IpAddr::V6(a)).0);
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

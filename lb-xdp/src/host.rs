//! What the XDP path reads from and changes on the host: the interface's addresses (SNAT
//! defaults), the host's own addresses, the kernel's reserved ports, the BPF filesystem.
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use anyhow::{bail, Context, Result};
use network_interface::{Addr, NetworkInterface, NetworkInterfaceConfig};
use tracing::warn;

use crate::load;

/// The interface's first IPv4 address and first global IPv6 address.
pub fn interface_addresses(interface: &str) -> Result<(Option<Ipv4Addr>, Option<Ipv6Addr>)> {
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

/// Every address of every interface: traffic to them that is not for a VIP is the host's.
pub fn own_addresses() -> HashSet<IpAddr> {
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
pub fn reserve_snat_ports(start: u16, end: u16) {
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
pub fn ensure_bpffs(pin_path: &Path) -> Result<()> {
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

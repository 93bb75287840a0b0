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

/// The interface the kernel routes `ip` out of (`ip route get`), if it routes it at all.
/// Asked rarely (when the health checks change), so a child process is cheap enough and
/// reads the routing table exactly as the kernel will use it (policy rules included).
pub fn route_device(ip: std::net::IpAddr) -> Option<String> {
    let out = std::process::Command::new("ip").args(["route", "get", &ip.to_string()]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    device_of_route(&String::from_utf8_lossy(&out.stdout))
}

/// The word after `dev` in a line of `ip route get`.
fn device_of_route(shown: &str) -> Option<String> {
    let mut words = shown.split_whitespace();
    while let Some(w) = words.next() {
        if w == "dev" {
            return words.next().map(str::to_string);
        }
    }
    None
}

#[cfg(test)]
mod route_tests {
    #[test]
    fn the_device_of_a_route() {
        let shown = "172.20.0.100 via 10.40.0.1 dev eth1 src 10.40.0.10 uid 0 \n    cache \n";
        assert_eq!(super::device_of_route(shown).as_deref(), Some("eth1"));
        assert_eq!(super::device_of_route("local 127.0.0.1 dev lo table local"), Some("lo".into()));
        assert_eq!(super::device_of_route("unreachable"), None);
    }
}

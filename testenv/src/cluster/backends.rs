//! The fleet's backends (`lbc-b1..3`): each holds the direct-return VIPs on `lo`, answers
//! HTTP on port 80 naming itself (the seed's backend.py), echoes lines on port 9000 with its
//! name in front (echo.py), and strips ipip/gue tunnels with `lb decap` on eth0.

use super::daemons;
use super::topology::{backend_name, backend_ns, backend_v4, logfile, BACKENDS, DIRECT_RETURN_VIPS, ECHO_PORT, IFACE};
use crate::netns::{ip_in, sysctl_in};
use crate::servers::{self, Backend};
use crate::xdp_pass::xdp_attached;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;

const READY_WITHIN: Duration = Duration::from_secs(10);

/// The echo server shipped in this crate.
pub fn echo_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("server").join("echo.py")
}

/// The VIPs on `lo`, with ARP for them left to nobody on the LAN (as the single-balancer
/// network's dsr servers: `arp_ignore=1`, `arp_announce=2`), so the backend accepts what a
/// balancer sends it (dsr: only the MAC rewritten; ipip/gue: once decapsulated) and answers
/// the client from the VIP, through the router.
pub(crate) fn hold_vips(i: u8) -> Result<()> {
    let ns = backend_ns(i);
    sysctl_in(
        &ns,
        &[
            "net.ipv4.conf.all.arp_ignore=1",
            "net.ipv4.conf.all.arp_announce=2",
            &format!("net.ipv4.conf.{IFACE}.arp_ignore=1"),
            &format!("net.ipv4.conf.{IFACE}.arp_announce=2"),
            // Decapsulated packets arrive on eth0 for an address on lo, from a client the
            // default route reaches: loose is enough, strict would be too.
            "net.ipv4.conf.all.rp_filter=0",
            &format!("net.ipv4.conf.{IFACE}.rp_filter=0"),
        ],
    )?;
    for vip in DIRECT_RETURN_VIPS {
        ip_in(&ns, &["addr", "add", &format!("{vip}/32"), "dev", "lo"])?;
    }
    Ok(())
}

/// Starts the HTTP and echo servers of every backend and `lb decap` on each one's eth0.
pub(crate) fn start_all(lb: &Path) -> Result<()> {
    let http: Vec<Backend> = (1..=BACKENDS).map(http_backend).collect();
    servers::start_backends(&http)?;
    for i in 1..=BACKENDS {
        start_echo(i)?;
        start_decap(i, lb)?;
    }
    Ok(())
}

fn http_backend(i: u8) -> Backend {
    Backend { ns: backend_ns(i), name: backend_name(i), address: backend_v4(i), key: backend_ns(i) }
}

fn start_echo(i: u8) -> Result<()> {
    let key = format!("b{i}-echo");
    let name = format!("SERVER_NAME={}", backend_name(i));
    let port = format!("ECHO_PORT={ECHO_PORT}");
    let python = servers::python();
    let script = echo_script();
    let script = script.to_str().context("echo.py path is not UTF-8")?;
    let mut child = daemons::start(&backend_ns(i), &key, &["env", &name, &port, &python, script])?;
    let log = logfile(&key);
    daemons::wait_ready(&key, &mut child, READY_WITHIN, || {
        std::fs::read_to_string(&log).unwrap_or_default().contains("listening on")
    })
}

/// `lb decap --interface eth0`: the balancers' ipip and gue services reach the backends
/// encapsulated, and this hands the inner packet (to a VIP on `lo`) to the kernel.
fn start_decap(i: u8, lb: &Path) -> Result<()> {
    if !lb.exists() {
        bail!("{} is missing: build it first (cargo build --bins)", lb.display());
    }
    let key = format!("b{i}-decap");
    let lb = lb.to_str().context("lb path is not UTF-8")?;
    let ns = backend_ns(i);
    let mut child = daemons::start(&ns, &key, &[lb, "decap", "--interface", IFACE])?;
    daemons::wait_ready(&key, &mut child, READY_WITHIN, || xdp_attached(&ns, IFACE).unwrap_or(false))
}

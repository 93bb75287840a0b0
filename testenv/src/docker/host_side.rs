//! What the host does around the containers, from outside them (the images need no `ip` or
//! `ethtool`, and the compose file stays the seed's):
//!
//! - the lb container's host-side veth peer runs a pass-through XDP program: a frame sent
//!   with XDP_TX on a veth reaches the peer only if the peer has an XDP program attached
//!   (see `xdp_pass.rs`); it goes when the container and its veth go, and `down` removes
//!   its pin;
//! - tx checksum offload is off on the eth0 of the client and of every backend: a veth
//!   hands its peer packets whose checksum is not filled in yet, and a frame the lb
//!   container's XDP program rewrites and sends with XDP_TX would leave with a wrong one;
//! - the client routes the VIP via the lb container, as through an upstream router.
//!
//! Each is done with `nsenter` into the container's network namespace.

use super::{docker, server_container, CLIENT_CONTAINER, LB_CONTAINER, NETWORK, RUN_DIR, VIP};
use crate::netns::run;
use crate::process::Pid;
use crate::topology::{LB_V4, SERVERS};
use crate::xdp_pass::{is_mount_point, pin_pass_program};
use anyhow::{bail, Context, Result};
use std::path::Path;

const BPFFS: &str = "/run/lb-docker/bpffs";
const PASS_PIN: &str = "/run/lb-docker/bpffs/xdp_pass";

/// All of the above, once the containers run.
pub(crate) fn prepare() -> Result<()> {
    attach_pass_to_lb_peer()?;
    tx_checksum_off(CLIENT_CONTAINER)?;
    for n in 1..=SERVERS {
        tx_checksum_off(&server_container(n))?;
    }
    route_vip_via_lb()
}

/// The pass-through program on the lb container's host-side veth.
pub(crate) fn attach_pass_to_lb_peer() -> Result<()> {
    let peer = host_peer(LB_CONTAINER)?;
    install_pass_program()?;
    run("ip", &["link", "set", "dev", &peer, "xdpdrv", "pinned", PASS_PIN])?;
    if !run("ip", &["link", "show", "dev", &peer])?.contains("prog/xdp") {
        bail!("the pass-through XDP program is not shown on {peer} after attaching");
    }
    Ok(())
}

/// Detaches the pass-through program if the lb container still runs, then removes its pin
/// and the bpffs holding it. Idempotent.
pub(crate) fn remove_pass_program() -> Result<()> {
    if let Ok(peer) = host_peer(LB_CONTAINER) {
        run("ip", &["link", "set", "dev", &peer, "xdp", "off"])?;
    }
    if is_mount_point(BPFFS)? {
        run("umount", &[BPFFS])?;
    }
    if Path::new(BPFFS).exists() {
        std::fs::remove_dir(BPFFS).with_context(|| format!("removing {BPFFS}"))?;
    }
    Ok(())
}

/// `ethtool -K eth0 tx off` in a container's network namespace.
pub(crate) fn tx_checksum_off(container: &str) -> Result<()> {
    nsenter(container, &["ethtool", "-K", "eth0", "tx", "off"]).map(drop)
}

fn route_vip_via_lb() -> Result<()> {
    nsenter(CLIENT_CONTAINER, &["ip", "route", "replace", &format!("{VIP}/32"), "via", LB_V4, "dev", "eth0"]).map(drop)
}

/// `nsenter -t PID -n args...`: the container's network namespace, the host's tools.
fn nsenter(container: &str, args: &[&str]) -> Result<String> {
    let pid = container_pid(container)?.to_string();
    let mut full = vec!["-t", pid.as_str(), "-n"];
    full.extend_from_slice(args);
    run("nsenter", &full)
}

fn container_pid(container: &str) -> Result<Pid> {
    let pid: Pid = docker(&["inspect", "--format", "{{.State.Pid}}", container])?
        .trim()
        .parse()
        .with_context(|| format!("the pid of container {container}"))?;
    if pid <= 0 {
        bail!("container {container} is not running");
    }
    Ok(pid)
}

/// The host-side peer of a container's eth0, checked to be a veth port of our network's
/// bridge. The index comes from netlink inside the container (`eth0@ifN`): /sys seen
/// through `nsenter -n` is still the host's, and would name the host's own eth0.
fn host_peer(container: &str) -> Result<String> {
    let shown = nsenter(container, &["ip", "-o", "link", "show", "dev", "eth0"])?;
    let index = shown
        .split_whitespace()
        .nth(1)
        .and_then(|name| name.trim_end_matches(':').split_once("@if"))
        .map(|(_, index)| index.to_string())
        .with_context(|| format!("no peer index in {container}'s `ip link show eth0`: {shown}"))?;
    let host = run("ip", &["-o", "link", "show"])?;
    let peer = host
        .lines()
        .find_map(|line| {
            let (at, rest) = line.split_once(": ")?;
            (at == index).then(|| rest.split([':', '@']).next().unwrap_or("").to_string())
        })
        .with_context(|| format!("no host interface with index {index} ({container}'s veth peer)"))?;
    let details = run("ip", &["-d", "link", "show", "dev", &peer])?;
    let bridge = bridge_of_network()?;
    if !details.contains("veth") || !details.contains(&format!("master {bridge} ")) {
        bail!("{peer} (index {index}) is not a veth port of {bridge}, {NETWORK}'s bridge: {details}");
    }
    Ok(peer)
}

/// Docker names a user-defined network's bridge `br-` and the first 12 digits of its id.
pub(crate) fn bridge_of_network() -> Result<String> {
    let id = docker(&["network", "inspect", "--format", "{{.Id}}", NETWORK])?;
    let id = id.trim();
    if id.len() < 12 {
        bail!("{NETWORK} has an unexpected id {id:?}");
    }
    Ok(format!("br-{}", &id[..12]))
}

fn install_pass_program() -> Result<()> {
    if Path::new(PASS_PIN).exists() {
        return Ok(());
    }
    std::fs::create_dir_all(BPFFS).with_context(|| format!("creating {BPFFS}"))?;
    if !is_mount_point(BPFFS)? {
        run("mount", &["-t", "bpf", "bpf", BPFFS])?;
    }
    debug_assert!(BPFFS.starts_with(RUN_DIR));
    pin_pass_program(PASS_PIN)
}

//! A pass-through XDP program for the switch-side veth ports.
//!
//! Kernel rule (measured on 6.18): a frame sent with XDP_TX (or redirected)
//! on a veth is delivered to the peer only if the peer runs its NAPI poll,
//! which it does when it has an XDP program attached. Without one the frame is
//! silently dropped. So the peer of the LB's eth0 (`lb` in lbt-switch) runs
//! this program: it returns XDP_PASS, and the frame goes on into the bridge.
//! Every switch port gets it, so any host may run an XDP data path.
//!
//! There is no C compiler for BPF here, so the program is lb-rawbpf's two raw
//! instructions loaded with the bpf(2) syscall, pinned on a bpffs of our own, and attached
//! with `ip link set ... xdpdrv pinned`. (`ip netns exec` and `ip -n` remount
//! /sys in a private mount namespace, so a pin under /sys/fs/bpf would not be
//! visible there; /run/lbt is.)

use crate::netns::{ip_in, run};
use crate::topology::{BPFFS_DIR, SWITCH_NS, XDP_PASS_PIN};
use anyhow::{bail, Context, Result};
use std::os::fd::OwnedFd;
use std::path::Path;

/// Mounts a bpffs at BPFFS_DIR (once) and pins the program at XDP_PASS_PIN.
pub(crate) fn install() -> Result<()> {
    if Path::new(XDP_PASS_PIN).exists() {
        return Ok(());
    }
    mount_bpffs()?;
    let prog = load()?;
    pin(&prog, XDP_PASS_PIN)
}

/// Attaches the pinned program in native (driver) mode to a switch port and
/// checks that the kernel reports it attached.
pub(crate) fn attach(port: &str) -> Result<()> {
    attach_in(SWITCH_NS, port)
}

/// As `attach`, on `dev` in `ns`: any veth whose peer runs an XDP data path.
pub(crate) fn attach_in(ns: &str, dev: &str) -> Result<()> {
    ip_in(ns, &["link", "set", "dev", dev, "xdpdrv", "pinned", XDP_PASS_PIN])?;
    if !xdp_attached(ns, dev)? {
        bail!("XDP pass-through program not shown on {dev} in {ns} after attaching");
    }
    Ok(())
}

/// Loads the pass-through program and pins it at `path` (on a bpffs the caller mounted):
/// the benchmarks' floor, the cost of running any XDP program at all through
/// BPF_PROG_TEST_RUN.
pub fn pin_pass_program(path: &str) -> Result<()> {
    pin(&load()?, path)
}

/// Whether `dev` in `ns` has an XDP program attached (`ip link` shows `prog/xdp`).
pub fn xdp_attached(ns: &str, dev: &str) -> Result<bool> {
    let shown = ip_in(ns, &["link", "show", "dev", dev])?;
    Ok(shown.contains("prog/xdp"))
}

fn mount_bpffs() -> Result<()> {
    std::fs::create_dir_all(BPFFS_DIR).with_context(|| format!("creating {BPFFS_DIR}"))?;
    if !is_mount_point(BPFFS_DIR)? {
        run("mount", &["-t", "bpf", "bpf", BPFFS_DIR])?;
    }
    Ok(())
}

/// Whether `path` is a mount point of this process's mount namespace.
pub(crate) fn is_mount_point(path: &str) -> Result<bool> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    // Field 5 of each line is the mount point.
    Ok(mounts.lines().any(|line| line.split(' ').nth(4) == Some(path)))
}

fn load() -> Result<OwnedFd> {
    let mut log = vec![0u8; 4096];
    lb_rawbpf::load_xdp_pass_with_log("lbt_pass", &mut log).map_err(|error| {
        let verifier = String::from_utf8_lossy(&log);
        anyhow::anyhow!(
            "bpf(BPF_PROG_LOAD) of the XDP pass-through program failed: {error}; verifier: {}",
            verifier.trim_end_matches('\0').trim()
        )
    })
}

fn pin(prog: &OwnedFd, path: &str) -> Result<()> {
    lb_rawbpf::pin(prog, path).with_context(|| format!("bpf(BPF_OBJ_PIN) at {path}"))
}

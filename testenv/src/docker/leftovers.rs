//! What of ours could outlive the environment, listed after `down` (the demo reports it, the
//! Docker test asserts there is none): containers and networks with our label, the
//! network's bridge, firewall rules naming that bridge or the network's addresses, and the
//! bpffs of the host-side pass-through program.

use super::engine::docker;
use super::{LABEL_KEY, LABEL_VALUE, NETWORK, RUN_DIR};
use anyhow::Result;
use std::path::Path;
use std::process::Command;

/// Everything of ours still there; empty when `down` cleaned up. `bridge` is the network's
/// bridge as it was while up (`DockerEnv::bridge`).
pub fn leftovers(bridge: &str) -> Result<Vec<String>> {
    let label = format!("label={LABEL_KEY}={LABEL_VALUE}");
    let mut left = Vec::new();
    for name in docker(&["ps", "-a", "--filter", &label, "--format", "{{.Names}}"])?.lines() {
        left.push(format!("container {name}"));
    }
    for name in docker(&["network", "ls", "--filter", &label, "--format", "{{.Name}}"])?.lines() {
        left.push(format!("network {name}"));
    }
    if docker(&["network", "inspect", NETWORK]).is_ok() {
        left.push(format!("network {NETWORK} (without our label)"));
    }
    if Command::new("ip").args(["link", "show", "dev", bridge]).output().is_ok_and(|o| o.status.success()) {
        left.push(format!("bridge {bridge}"));
    }
    // Only an engine with iptables on writes rules; a host without iptables-save has none.
    if let Ok(out) = Command::new("iptables-save").output() {
        let rules = String::from_utf8_lossy(&out.stdout);
        for rule in rules.lines().filter(|r| r.contains(bridge) || r.contains("172.20.")) {
            left.push(format!("firewall rule {rule}"));
        }
    }
    let bpffs = Path::new(RUN_DIR).join("bpffs");
    if bpffs.exists() {
        left.push(format!("{} (the pass-through program's bpffs)", bpffs.display()));
    }
    Ok(left)
}

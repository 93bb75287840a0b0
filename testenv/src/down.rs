//! Tearing the test network down.

use crate::netns::{namespaces, run};
use crate::process::{terminate, Pid};
use crate::servers;
use crate::topology::{BPFFS_DIR, CLUSTER_NS_PREFIX, NS_PREFIX, RUN_DIR};
use crate::xdp_pass::is_mount_point;
use anyhow::{Context, Result};
use std::path::Path;
use std::time::Duration;

const STOP_GRACE: Duration = Duration::from_secs(3);

/// Removes everything `up`, `add_server` and `cluster::up` made: backends (pid files) and
/// any other process left in an `lbt-*` or `lbc-*` namespace, the namespaces (which takes
/// the veths and the bridge with them), the bpffs and /run/lbt. Idempotent:
/// nothing there is not an error.
pub fn down() -> Result<()> {
    servers::stop_all()?;
    let ours: Vec<String> =
        namespaces()?.into_iter().filter(|ns| ns.starts_with(NS_PREFIX) || ns.starts_with(CLUSTER_NS_PREFIX)).collect();
    // A process left in a deleted namespace keeps it, and its veth, alive.
    terminate(&pids_in(&ours), STOP_GRACE);
    for ns in &ours {
        run("ip", &["netns", "delete", ns])?;
    }
    // Every mount under /run/lbt, deepest first (bpffs, and any a test or a person added).
    let mut mounts = mounts_under(RUN_DIR);
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mounts {
        run("umount", &[&m])?;
    }
    debug_assert!(!is_mount_point(BPFFS_DIR).unwrap_or(false));
    if Path::new(RUN_DIR).exists() {
        std::fs::remove_dir_all(RUN_DIR).with_context(|| format!("removing {RUN_DIR}"))?;
    }
    Ok(())
}

fn mounts_under(dir: &str) -> Vec<String> {
    let prefix = format!("{dir}/");
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .filter(|m| m == dir || m.starts_with(&prefix))
        .collect()
}

/// Best effort: a namespace file left unmounted by a crash has no pids to
/// list, and `ip netns delete` still removes it.
fn pids_in(namespaces: &[String]) -> Vec<Pid> {
    namespaces
        .iter()
        .filter_map(|ns| run("ip", &["netns", "pids", ns]).ok())
        .flat_map(|listed| listed.split_whitespace().filter_map(|pid| pid.parse::<Pid>().ok()).collect::<Vec<_>>())
        .collect()
}

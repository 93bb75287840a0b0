//! The fleet's shared store in `lbc-etcd`: one etcd member (`e1`, clients on
//! 10.61.0.5:2379) for the tests, or three (`e1`-`e3` on ports 2379, 2479, 2579) for the
//! demo, as a real fleet would run it. Their data lives under the fleet's run directory, so
//! stopping and starting member 1 (a test's "etcd down for 10 s") keeps what the nodes
//! wrote.

use super::daemons;
use super::topology::{etcd_member_url, ETCD_DATA_DIR, ETCD_NS, ETCD_PEER_PORT, ETCD_V4};
use crate::netns::exec;
use anyhow::Result;
use std::time::Duration;

const KEY: &str = "etcd";
const READY_WITHIN: Duration = Duration::from_secs(20);

/// Starts member 1 alone (a no-op if it runs) and waits until it reports itself healthy.
pub fn start_etcd() -> Result<()> {
    start_etcd_members(1)
}

/// Starts `members` members of one etcd cluster (those not running) and waits until each
/// reports itself healthy: all are started first, since a member of several is healthy only
/// once a quorum has formed.
pub fn start_etcd_members(members: u8) -> Result<()> {
    let peer = |k: u8| format!("http://{ETCD_V4}:{}", ETCD_PEER_PORT + 100 * u16::from(k - 1));
    let cluster: Vec<String> = (1..=members).map(|k| format!("e{k}={}", peer(k))).collect();
    let cluster = cluster.join(",");
    let mut started = Vec::new();
    for k in 1..=members {
        if daemons::running(&key(k), "etcd").is_some() {
            continue;
        }
        let (name, client, peer, dir) = (format!("e{k}"), etcd_member_url(k), peer(k), data_dir(k));
        let args = [
            "etcd",
            "--name",
            &name,
            "--data-dir",
            &dir,
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
            "--initial-cluster",
            &cluster,
        ];
        started.push((k, daemons::start(ETCD_NS, &key(k), &args)?));
    }
    for (k, mut child) in started {
        daemons::wait_ready(&key(k), &mut child, READY_WITHIN, || member_healthy(k))?;
    }
    Ok(())
}

/// Member k's process key (pid and log files): `etcd`, `etcd2`, `etcd3`.
fn key(k: u8) -> String {
    if k == 1 {
        KEY.to_string()
    } else {
        format!("{KEY}{k}")
    }
}

fn data_dir(k: u8) -> String {
    if k == 1 {
        ETCD_DATA_DIR.to_string()
    } else {
        format!("{ETCD_DATA_DIR}-e{k}")
    }
}

/// Stops member 1 (SIGTERM); its data stays for the next `start_etcd`.
pub fn stop_etcd() -> Result<()> {
    daemons::stop(KEY, "etcd")
}

/// Whether member 1 answers `/health` with `"health":"true"`.
pub fn etcd_healthy() -> bool {
    member_healthy(1)
}

fn member_healthy(k: u8) -> bool {
    let url = format!("{}/health", etcd_member_url(k));
    exec(ETCD_NS, &["curl", "-s", "--noproxy", "*", "--max-time", "1", &url])
        .map(|out| String::from_utf8_lossy(&out.stdout).contains("\"health\":\"true\""))
        .unwrap_or(false)
}

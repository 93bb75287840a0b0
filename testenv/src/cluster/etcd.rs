//! The fleet's shared store: one etcd member (`e1`) in `lbc-etcd`, serving clients on
//! 10.61.0.5:2379. Its data lives under the fleet's run directory, so stopping and starting
//! it (a test's "etcd down for 10 s") keeps what the nodes wrote.

use super::daemons;
use super::topology::{etcd_client_url, ETCD_DATA_DIR, ETCD_NS, ETCD_PEER_PORT, ETCD_V4};
use crate::netns::exec;
use anyhow::Result;
use std::time::Duration;

const KEY: &str = "etcd";
const READY_WITHIN: Duration = Duration::from_secs(20);

/// Starts the member (a no-op if it runs) and waits until it reports itself healthy.
pub fn start_etcd() -> Result<()> {
    if daemons::running(KEY, "etcd").is_some() {
        return Ok(());
    }
    let client = etcd_client_url();
    let peer = format!("http://{ETCD_V4}:{ETCD_PEER_PORT}");
    let cluster = format!("e1={peer}");
    let args = [
        "etcd",
        "--name",
        "e1",
        "--data-dir",
        ETCD_DATA_DIR,
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
    let mut child = daemons::start(ETCD_NS, KEY, &args)?;
    daemons::wait_ready(KEY, &mut child, READY_WITHIN, etcd_healthy)
}

/// Stops the member (SIGTERM); its data stays for the next `start_etcd`.
pub fn stop_etcd() -> Result<()> {
    daemons::stop(KEY, "etcd")
}

/// Whether the member answers `/health` with `"health":"true"`.
pub fn etcd_healthy() -> bool {
    let url = format!("{}/health", etcd_client_url());
    exec(ETCD_NS, &["curl", "-s", "--noproxy", "*", "--max-time", "1", &url])
        .map(|out| String::from_utf8_lossy(&out.stdout).contains("\"health\":\"true\""))
        .unwrap_or(false)
}

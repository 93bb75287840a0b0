//! Real peers of the proxy path for network tests: HAProxy (a backend that reads
//! PROXY headers, or a front load balancer that writes them) and TLS servers with their own
//! certificate (`openssl s_server`, the certificate made at start by `openssl req`). Each
//! runs in a namespace of the test network and is stopped when its `Peer` is dropped.
use std::path::PathBuf;
use std::process::Child;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::netns::{exec, exec_ok, spawn_logged};
use crate::process::{terminate, Pid};
use crate::topology::RUN_DIR;

const READY_WITHIN: Duration = Duration::from_secs(10);
const STOP_GRACE: Duration = Duration::from_secs(2);

/// A peer process; SIGTERM (then SIGKILL) when dropped.
pub struct Peer {
    child: Child,
    log: PathBuf,
}

impl Peer {
    /// What it has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        terminate(&[self.child.id() as Pid], STOP_GRACE);
    }
}

/// HAProxy in `ns` with `config` (written to `RUN_DIR/<name>.cfg`), once it listens on
/// `port`. It logs to its stdout (`log stdout format raw local0` in `config`), which is
/// the peer's log.
pub fn haproxy(ns: &str, name: &str, config: &str, port: u16) -> Result<Peer> {
    std::fs::create_dir_all(RUN_DIR)?;
    let cfg = format!("{RUN_DIR}/{name}.cfg");
    std::fs::write(&cfg, config).with_context(|| format!("writing {cfg}"))?;
    start(ns, name, &["haproxy", "-db", "-f", &cfg], port)
}

/// A TLS server in `ns` on `port` with a self-signed certificate for `common_name` (made
/// now, never stored beyond the test's run directory), answering `-www` pages.
pub fn tls_server(ns: &str, name: &str, port: u16, common_name: &str) -> Result<Peer> {
    std::fs::create_dir_all(RUN_DIR)?;
    let (cert, key) = (format!("{RUN_DIR}/{name}.crt"), format!("{RUN_DIR}/{name}.key"));
    let subject = format!("/CN={common_name}");
    // No spaces in any of these (the CN is a DNS name, the paths are RUN_DIR's).
    let req = format!(
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
         -subj {subject} -keyout {key} -out {cert}"
    );
    let args: Vec<&str> = req.split_whitespace().collect();
    exec_ok(ns, &args).context("openssl req")?;
    let accept = port.to_string();
    start(ns, name, &["openssl", "s_server", "-accept", &accept, "-cert", &cert, "-key", &key, "-www"], port)
}

fn start(ns: &str, name: &str, args: &[&str], port: u16) -> Result<Peer> {
    let log = PathBuf::from(format!("{RUN_DIR}/{name}.log"));
    let _ = std::fs::remove_file(&log);
    let child = spawn_logged(ns, args, &log)?;
    let mut peer = Peer { child, log };
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        if let Some(status) = peer.child.try_wait()? {
            bail!("{name} exited at start ({status}): {}", peer.log());
        }
        if listening(ns, port) {
            return Ok(peer);
        }
        if Instant::now() >= deadline {
            bail!("{name} does not listen on port {port} after {READY_WITHIN:?}: {}", peer.log());
        }
        sleep(Duration::from_millis(50));
    }
}

/// Whether something in `ns` listens on TCP `port`.
fn listening(ns: &str, port: u16) -> bool {
    let filter = format!("sport = :{port}");
    exec(ns, &["ss", "-Hltn", &filter]).is_ok_and(|o| !o.stdout.is_empty())
}

//! The fleet network's long-running processes (BIRD on the router, etcd, the backends'
//! echo servers and `lb decap`): started in a namespace with their output in a log and their
//! pid in a pid file under the fleet's run directory, so that they can be found and stopped
//! again by a later process (`cargo xtask testenv down`, a test stopping etcd).

use super::topology::{logfile, pidfile, RUN_DIR};
use crate::netns::spawn_logged;
use crate::process::{command_line, is_alive, terminate, Pid};
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

const STOP_GRACE: Duration = Duration::from_secs(3);
const LOG_TAIL_LINES: usize = 20;

/// Starts `args` in `ns` as the process named `key` (its log and pid file are named after
/// it). `ip netns exec` execs in place, so the pid recorded is the program's own. The
/// returned child is not killed when dropped: the process outlives the caller.
pub(crate) fn start(ns: &str, key: &str, args: &[&str]) -> Result<Child> {
    std::fs::create_dir_all(RUN_DIR).with_context(|| format!("creating {RUN_DIR}"))?;
    let child = spawn_logged(ns, args, &logfile(key))?;
    let path = pidfile(key);
    std::fs::write(&path, format!("{}\n", child.id())).with_context(|| format!("writing {}", path.display()))?;
    Ok(child)
}

/// The pid of `key` while it runs and still is the program it was started as (`program`
/// appears in its command line; a pid file can outlive its process and name a recycled pid).
pub(crate) fn running(key: &str, program: &str) -> Option<Pid> {
    let pid: Pid = std::fs::read_to_string(pidfile(key)).ok()?.trim().parse().ok()?;
    (is_alive(pid) && command_line(pid).contains(program)).then_some(pid)
}

/// SIGTERM (SIGKILL after a grace) to `key` if it runs, and forgets its pid file.
pub(crate) fn stop(key: &str, program: &str) -> Result<()> {
    if let Some(pid) = running(key, program) {
        terminate(&[pid], STOP_GRACE);
        if is_alive(pid) {
            bail!("{key} (pid {pid}) survived SIGKILL");
        }
    }
    match std::fs::remove_file(pidfile(key)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).context(format!("removing {key}'s pid file")),
        _ => Ok(()),
    }
}

/// Polls `ready` every 100 ms until it holds, failing early (with the log's tail) if the
/// process exits first, or at `limit`.
pub(crate) fn wait_ready(key: &str, child: &mut Child, limit: Duration, mut ready: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().with_context(|| format!("waiting for {key}"))? {
            bail!("{key} exited during start-up ({status}); {}", log_tail(&logfile(key)));
        }
        if ready() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{key} was not ready within {limit:?}; {}", log_tail(&logfile(key)));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub(crate) fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
    format!("last lines of {}:\n{tail}", path.display())
}

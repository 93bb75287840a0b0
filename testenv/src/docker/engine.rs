//! The Docker engine: one that answers is used as it is; when none does, `dockerd` is started
//! here (no init system is assumed) and stopped again by whoever started it.
//!
//! A dockerd started here runs with `--iptables=false --ip-forward=false --bridge=none`:
//! everything the environment does stays on its own bridge (nothing is NATed or routed off
//! the machine), so it needs no firewall rule, no forwarding and no `docker0`, and leaves
//! none of them behind when it stops. Its pid goes to RUN_DIR/dockerd.pid, so a later run
//! (after a Ctrl-C) still knows that this dockerd is ours to stop; its log goes to
//! target/docker/dockerd.log.

use super::{target_dir, RUN_DIR};
use crate::process::{command_line, is_alive, terminate, Pid};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

const START_WITHIN: Duration = Duration::from_secs(60);
const STOP_GRACE: Duration = Duration::from_secs(20);
const LOG_TAIL_LINES: usize = 15;

/// The engine for as long as it is needed; a dockerd this process (or an earlier run of it)
/// started is stopped by `stop` or on drop.
#[derive(Debug)]
pub struct Engine {
    started_here: Option<Pid>,
}

impl Engine {
    /// Uses the engine that answers `docker info`, or starts dockerd and waits until it
    /// answers.
    pub fn ensure() -> Result<Engine> {
        if answers() {
            return Ok(Engine { started_here: our_dockerd() });
        }
        if let Some(stale) = our_dockerd() {
            // Ours, alive, but not answering: a dockerd stuck in start-up or shutdown.
            terminate(&[stale], STOP_GRACE);
        }
        let pid = start_dockerd()?;
        Ok(Engine { started_here: Some(pid) })
    }

    /// Whether stopping this engine stops a dockerd (one started here).
    pub fn started_here(&self) -> bool {
        self.started_here.is_some()
    }

    /// Stops dockerd if it was started here; a no-op for an engine that was already running.
    pub fn stop(mut self) -> Result<()> {
        self.stop_ours()
    }

    fn stop_ours(&mut self) -> Result<()> {
        let Some(pid) = self.started_here.take() else { return Ok(()) };
        println!("==> stopping the dockerd started here (pid {pid})");
        terminate(&[pid], STOP_GRACE);
        if is_alive(pid) {
            bail!("dockerd (pid {pid}) survived SIGKILL");
        }
        let _ = std::fs::remove_file(pid_file());
        // Only once empty: the host proxy's or the pass-through program's files stay visible.
        let _ = std::fs::remove_dir(RUN_DIR);
        Ok(())
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Err(e) = self.stop_ours() {
            eprintln!("testenv: {e:#}");
        }
    }
}

/// `docker args...`; stdout, or an error naming the command and carrying its stderr.
pub fn docker(args: &[&str]) -> Result<String> {
    crate::netns::run("docker", args)
}

/// Whether the local image `name` exists (no registry is asked).
pub fn base_image_present(name: &str) -> bool {
    docker(&["image", "inspect", "--format", "{{.Id}}", name]).is_ok()
}

fn answers() -> bool {
    Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn pid_file() -> PathBuf {
    Path::new(RUN_DIR).join("dockerd.pid")
}

pub(crate) fn log_file() -> PathBuf {
    target_dir().join("dockerd.log")
}

/// The dockerd named by our pid file, if it is alive and still dockerd (a pid file left by
/// a crash may name a recycled pid).
fn our_dockerd() -> Option<Pid> {
    let pid: Pid = std::fs::read_to_string(pid_file()).ok()?.trim().parse().ok()?;
    (is_alive(pid) && command_line(pid).split_whitespace().next()?.ends_with("dockerd")).then_some(pid)
}

fn start_dockerd() -> Result<Pid> {
    use std::os::unix::process::CommandExt;
    if Command::new("dockerd").arg("--version").output().is_err() {
        bail!("no Docker engine answers and dockerd is not installed: run `cargo xtask deps --docker`");
    }
    std::fs::create_dir_all(RUN_DIR).with_context(|| format!("creating {RUN_DIR}"))?;
    std::fs::create_dir_all(target_dir()).with_context(|| format!("creating {}", target_dir().display()))?;
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(log_file())
        .with_context(|| format!("opening {}", log_file().display()))?;
    println!("==> starting dockerd (no engine answered); log: {}", log_file().display());
    let mut child = Command::new("dockerd")
        .args(["--iptables=false", "--ip-forward=false", "--bridge=none"])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: a Ctrl-C aimed at us must not kill it halfway through
        // start-up; the pid file lets the next run stop it.
        .process_group(0)
        .spawn()
        .context("starting dockerd")?;
    let pid = child.id() as Pid;
    std::fs::write(pid_file(), format!("{pid}\n")).with_context(|| format!("writing {}", pid_file().display()))?;
    let deadline = Instant::now() + START_WITHIN;
    while !answers() {
        if let Some(status) = child.try_wait()? {
            let _ = std::fs::remove_file(pid_file());
            bail!("dockerd exited during start-up ({status}); {}", log_tail());
        }
        if Instant::now() >= deadline {
            terminate(&[pid], STOP_GRACE);
            bail!("dockerd did not answer within {START_WITHIN:?}; {}", log_tail());
        }
        sleep(Duration::from_millis(250));
    }
    println!("==> dockerd answers (pid {pid})");
    Ok(pid)
}

fn log_tail() -> String {
    let text = std::fs::read_to_string(log_file()).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    format!(
        "last lines of {}:\n{}",
        log_file().display(),
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    )
}

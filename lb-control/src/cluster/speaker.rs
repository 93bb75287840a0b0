//! The speaker task: runs BIRD 2 as `lb`'s child and keeps it announcing what the
//! controller says (`Announcement`, over a watch channel).
//!
//! Why a child of `lb` and not a system BIRD (or GoBGP beside it): the announcement must end
//! when `lb` does. The child is started with `PR_SET_PDEATHSIG = SIGKILL`, so a SIGKILLed or
//! crashed `lb` takes its speaker with it; the kernel then closes the BGP sessions and the
//! routers withdraw the routes at once, without waiting for a hold time or a separate health
//! check of `lb`. A speaker that outlived the daemon would keep attracting traffic to a node
//! that no longer serves it.
//!
//! The death signal follows the *thread* that forked the child, so the speaker runs on a
//! thread of its own (with its own small runtime) that lives exactly as long as the speaker:
//! a runtime worker could retire (`block_in_place`) and take BIRD down with it.
//!
//! BIRD dying while `lb` lives is logged as an error and BIRD is started again, with a
//! backoff from 1s to 30s.
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tracing::{error, info, warn};

use super::announce::Announcement;
use super::bird;
use crate::telemetry::{BgpTelemetry, Telemetry};
use lb_config::Bgp;

/// How often the sessions' state is read (and a failed apply retried).
const POLL: Duration = Duration::from_secs(1);
/// How long BIRD gets to open its control socket after a start.
const START_WAIT: Duration = Duration::from_secs(5);
/// A `birdc` call that takes longer is abandoned (BIRD is stuck or gone).
const BIRDC_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The running speaker: stop it with [`SpeakerThread::stop`].
pub struct SpeakerThread {
    stop: watch::Sender<bool>,
    thread: std::thread::JoinHandle<()>,
}

impl SpeakerThread {
    /// Starts the speaker's thread; it announces what `announcements` holds until stopped.
    pub fn spawn(bgp: Bgp, announcements: watch::Receiver<Announcement>, telemetry: Arc<Telemetry>) -> Result<Self> {
        let (stop, stopped) = watch::channel(false);
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().context("the BGP speaker's runtime")?;
        let speaker = Speaker { bgp, telemetry, announcements, applied: None };
        let thread = std::thread::Builder::new()
            .name("lb-bgp".into())
            .spawn(move || runtime.block_on(speaker.run(stopped)))
            .context("the BGP speaker's thread")?;
        Ok(SpeakerThread { stop, thread })
    }

    /// Stops BIRD (its sessions close: the routers withdraw this node's routes) and waits
    /// for the thread.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let thread = self.thread;
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}

struct Speaker {
    bgp: Bgp,
    telemetry: Arc<Telemetry>,
    announcements: watch::Receiver<Announcement>,
    /// What `vips.conf` holds and BIRD has taken; `None` until the first start.
    applied: Option<Announcement>,
}

/// Why one run of BIRD ended.
enum Ended {
    Stopped,
    Died(String),
}

impl Speaker {
    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut backoff = BACKOFF_MIN;
        loop {
            let ended = match self.start().await {
                Ok(child) => self.serve(child, &mut stop).await,
                Err(e) => Ended::Died(format!("{e:#}")),
            };
            self.set_sessions(BTreeMap::new());
            match ended {
                Ended::Stopped => return,
                Ended::Died(why) => {
                    error!(retry_in = ?backoff, "BGP speaker (BIRD) is not running, so this node announces nothing: {why}");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => return,
                Err(_) = self.announcements.changed() => return,
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Writes both files and starts BIRD on them; returns once its control socket answers.
    async fn start(&mut self) -> Result<Child> {
        let dir = self.bgp.run_dir.clone();
        // Owner only: whoever can reach the control socket can reconfigure the speaker.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("cannot create run_dir {}", dir.display()))?;
        let current = self.announcements.borrow_and_update().clone();
        write_atomically(&dir.join(bird::VIPS_FILE), &bird::render_vips(&current))?;
        write_atomically(&dir.join(bird::CONFIG_FILE), &bird::render_config(&self.bgp, &dir))?;
        let socket = dir.join(bird::CONTROL_SOCKET);
        let _ = std::fs::remove_file(&socket);
        let mut child = spawn_bird(&self.bgp.bird, &dir)?;
        info!(pid = child.id(), program = %self.bgp.bird.display(), run_dir = %dir.display(), "BGP speaker (BIRD) started");
        let deadline = tokio::time::Instant::now() + START_WAIT;
        while birdc(&self.bgp.bird, &socket, "show status").await.is_err() {
            if let Some(status) = child.try_wait()? {
                bail!("BIRD exited at start ({status}); its messages are above");
            }
            if tokio::time::Instant::now() > deadline {
                let _ = child.kill().await;
                bail!("BIRD did not open its control socket {} within {START_WAIT:?}", socket.display());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.applied = Some(current.clone());
        self.publish(&current);
        Ok(child)
    }

    /// Until BIRD dies or the speaker is stopped: applies each new announcement and reads
    /// the sessions' state every `POLL`.
    async fn serve(&mut self, mut child: Child, stop: &mut watch::Receiver<bool>) -> Ended {
        let mut poll = tokio::time::interval(POLL);
        loop {
            tokio::select! {
                status = child.wait() => {
                    return Ended::Died(match status {
                        Ok(s) => format!("BIRD exited ({s})"),
                        Err(e) => format!("waiting for BIRD failed: {e}"),
                    });
                }
                _ = stop.changed() => {
                    // BIRD closes its sessions with a Cease on SIGTERM: the routers withdraw.
                    terminate(&mut child).await;
                    return Ended::Stopped;
                }
                changed = self.announcements.changed() => {
                    if changed.is_err() {
                        // The controller is gone: the daemon is stopping.
                        terminate(&mut child).await;
                        return Ended::Stopped;
                    }
                    self.apply().await;
                }
                _ = poll.tick() => {
                    self.apply().await;
                    self.poll_sessions().await;
                }
            }
        }
    }

    /// Rewrites `vips.conf` and has BIRD read it, when the announcement differs from what
    /// BIRD has. A failure leaves `applied` as it was, so the next poll tries again.
    async fn apply(&mut self) {
        let next = self.announcements.borrow_and_update().clone();
        if self.applied.as_ref() == Some(&next) {
            return;
        }
        let dir = &self.bgp.run_dir;
        let result = async {
            write_atomically(&dir.join(bird::VIPS_FILE), &bird::render_vips(&next))?;
            let reply = birdc(&self.bgp.bird, &dir.join(bird::CONTROL_SOCKET), "configure").await?;
            if !bird::reconfigured(&reply) {
                bail!("BIRD did not take the new VIP list: {}", reply.trim());
            }
            Ok(())
        }
        .await;
        match result {
            Ok(()) => {
                let vips: Vec<String> = next.vips.iter().map(ToString::to_string).collect();
                info!(announced = %vips.join(" "), draining = next.draining, "BGP announcement changed");
                self.publish(&next);
                self.applied = Some(next);
            }
            Err(e) => warn!("BGP announcement not applied, retrying: {e:#}"),
        }
    }

    async fn poll_sessions(&mut self) {
        let neighbors: Vec<IpAddr> = self.bgp.neighbors.iter().map(|n| n.address).collect();
        match birdc(&self.bgp.bird, &self.bgp.run_dir.join(bird::CONTROL_SOCKET), "show protocols").await {
            Ok(out) => self.set_sessions(bird::sessions_up(&out, &neighbors)),
            Err(e) => {
                warn!("cannot read the BGP sessions' state: {e:#}");
                self.set_sessions(BTreeMap::new());
            }
        }
    }

    fn publish(&self, applied: &Announcement) {
        self.telemetry.update(|t| {
            let bgp = t.bgp.get_or_insert_with(BgpTelemetry::default);
            bgp.announced = applied.vips.clone();
            bgp.draining = applied.draining;
        });
    }

    /// Sessions by neighbor; an empty map (BIRD not running) counts every one as down.
    fn set_sessions(&self, up: BTreeMap<IpAddr, bool>) {
        let all: BTreeMap<IpAddr, bool> =
            self.bgp.neighbors.iter().map(|n| (n.address, up.get(&n.address).copied().unwrap_or(false))).collect();
        self.telemetry.update(|t| {
            let bgp = t.bgp.get_or_insert_with(BgpTelemetry::default);
            bgp.sessions = all;
            if up.is_empty() {
                // No BIRD: nothing is announced, whatever was applied before.
                bgp.announced = BTreeSet::new();
            }
        });
    }
}

/// `bird -f -c RUN_DIR/bird.conf -s RUN_DIR/bird.ctl`, killed by the kernel when this
/// thread (and so `lb`) ends.
fn spawn_bird(program: &Path, dir: &Path) -> Result<Child> {
    let parent = std::process::id() as libc::pid_t;
    let mut command = std::process::Command::new(program);
    command
        .arg("-f")
        .arg("-c")
        .arg(dir.join(bird::CONFIG_FILE))
        .arg("-s")
        .arg(dir.join(bird::CONTROL_SOCKET))
        .stdin(std::process::Stdio::null());
    // SAFETY: only async-signal-safe calls (prctl, getppid) between fork and exec.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // `lb` died between the fork and the prctl: the signal will never come.
            if libc::getppid() != parent {
                return Err(std::io::Error::other("lb exited while starting BIRD"));
            }
            Ok(())
        });
    }
    let mut command = Command::from(command);
    command.kill_on_drop(true);
    command.spawn().with_context(|| format!("cannot start BIRD ({})", program.display()))
}

/// SIGTERM, then SIGKILL if BIRD has not exited within a second.
async fn terminate(child: &mut Child) {
    if let Some(pid) = child.id() {
        // SAFETY: a plain kill(2) of our own child, which has not been reaped yet.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    }
    if tokio::time::timeout(Duration::from_secs(1), child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}

/// `birdc` beside the `bird` program (or from PATH when `bird` is a bare name).
fn birdc_program(bird: &Path) -> PathBuf {
    match bird.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join("birdc"),
        _ => PathBuf::from("birdc"),
    }
}

/// One command through BIRD's control socket; its output, or why it failed.
async fn birdc(bird: &Path, socket: &Path, command: &str) -> Result<String> {
    let program = birdc_program(bird);
    let run = Command::new(&program).arg("-s").arg(socket).args(command.split(' ')).kill_on_drop(true).output();
    let out = tokio::time::timeout(BIRDC_TIMEOUT, run)
        .await
        .with_context(|| format!("birdc {command}: no answer within {BIRDC_TIMEOUT:?}"))?
        .with_context(|| format!("cannot run {}", program.display()))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("birdc {command}: {} {}", text.trim(), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(text)
}

/// Temp file and rename: BIRD never reads a half-written file.
fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
}

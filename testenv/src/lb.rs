//! Running `lb run` on the test network's LB host, for network tests, the demo and the
//! benchmarks. The config is written to /run/lbt/lb.toml; the maps are pinned on the test
//! network's own BPF filesystem (`ip netns exec` remounts /sys, so /sys/fs/bpf is no use).
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::netns::spawn_logged;
use crate::topology::{LB_NS, RUN_DIR};

pub const LB_PIN_PATH: &str = "/run/lbt/bpffs/lb";
pub const LB_CONFIG: &str = "/run/lbt/lb.toml";
pub const LB_LOG: &str = "/run/lbt/lb.log";

/// The `lb` binary of this workspace's build (debug profile unless LB_BIN says otherwise).
pub fn lb_binary() -> PathBuf {
    if let Ok(p) = std::env::var("LB_BIN") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/lb")
}

/// A running daemon; stopped with SIGTERM when dropped.
pub struct LbDaemon {
    child: Option<Child>,
    bin: PathBuf,
}

impl LbDaemon {
    /// Start `lb run` in the LB namespace with `config` and wait (at most 20 s) until it has
    /// attached XDP.
    pub fn start(bin: &Path, config: &str) -> Result<Self> {
        Self::start_with(bin, config, &[])
    }

    /// As `start`, with extra `lb run` arguments (e.g. `--detach-on-exit`). The config is
    /// only written when `config` is not empty (a restart re-uses the file).
    pub fn start_with(bin: &Path, config: &str, extra: &[&str]) -> Result<Self> {
        std::fs::create_dir_all(RUN_DIR)?;
        if !config.is_empty() {
            std::fs::write(LB_CONFIG, config).context("writing the daemon's config")?;
        }
        let _ = std::fs::remove_file(LB_LOG);
        let bin_s = bin.to_str().context("non-UTF-8 path")?;
        let mut args = vec![bin_s, "run", "-c", LB_CONFIG];
        args.extend_from_slice(extra);
        let child = spawn_logged(LB_NS, &args, Path::new(LB_LOG))?;
        let mut d = LbDaemon { child: Some(child), bin: bin.to_path_buf() };
        // Logged once the data path (XDP attached or adopted, or the proxy) serves.
        d.wait_for_log("lb is serving", Duration::from_secs(20))?;
        Ok(d)
    }

    /// The daemon's pid while it runs (`ip netns exec` execs in place), e.g. to read its
    /// CPU time.
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(LB_LOG).unwrap_or_default()
    }

    fn wait_for_log(&mut self, needle: &str, limit: Duration) -> Result<()> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.log().contains(needle) {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                bail!("lb run exited ({status}) before \"{needle}\"; its log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("lb run did not log \"{needle}\" within {limit:?}; its log:\n{}", self.log())
    }

    /// Replace the config and ask for a reload (SIGHUP); waits for the reload to be logged.
    pub fn reload(&mut self, config: &str) -> Result<()> {
        std::fs::write(LB_CONFIG, config)?;
        let before = self.log().matches("config reloaded").count();
        self.signal(libc::SIGHUP)?;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if self.log().matches("config reloaded").count() > before {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("no reload logged; log:\n{}", self.log())
    }

    fn signal(&self, sig: i32) -> Result<()> {
        let child = self.child.as_ref().context("daemon not running")?;
        // `ip netns exec` execs the command, so the child's pid is the daemon's.
        // SAFETY: kill(2) on our own child's pid.
        if unsafe { libc::kill(child.id() as i32, sig) } != 0 {
            bail!("cannot signal lb run: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// `lb <args>` against this daemon's pins, from the root namespace (pins are files).
    pub fn cli(&self, args: &[&str]) -> Result<Output> {
        Command::new(&self.bin).args(args).args(["--pin-path", LB_PIN_PATH]).output().context("running lb")
    }

    /// `lb list WHAT --json`, parsed by the caller.
    pub fn list_json(&self, what: &str) -> Result<String> {
        let out = self.cli(&["list", what, "--json"])?;
        if !out.status.success() {
            bail!("lb list {what} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// SIGKILL: the daemon gets no chance to clean up (a crash).
    pub fn kill(&mut self) -> Result<()> {
        let mut child = self.child.take().context("daemon not running")?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// Stop with SIGTERM and wait (at most 10 s); returns the exit status.
    pub fn stop(&mut self) -> Result<std::process::ExitStatus> {
        self.signal(libc::SIGTERM)?;
        let mut child = self.child.take().context("daemon not running")?;
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if start.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                bail!("lb run did not exit within 10 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for LbDaemon {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop();
        }
    }
}

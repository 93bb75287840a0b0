//! A process the bench started in a namespace, stopped by its own pid.
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub struct Proc {
    pub name: String,
    child: Option<Child>,
    log: String,
}

impl Proc {
    /// Start `args` in `ns`, output to `log`. `ip netns exec` execs in place, so the
    /// child's pid is the program's.
    pub fn spawn(name: &str, ns: &str, args: &[&str], log: &str) -> Result<Self> {
        let _ = std::fs::remove_file(log);
        let child = testenv::spawn_logged(ns, args, Path::new(log)).with_context(|| format!("starting {name}"))?;
        Ok(Proc { name: name.into(), child: Some(child), log: log.into() })
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// Fails (with the log) if the process has already exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
            bail!(
                "{} exited ({status}); its log:\n{}",
                self.name,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL after 5 s.
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else { return Ok(()) };
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill()?;
        child.wait()?;
        bail!("{} ignored SIGTERM for 5 s (killed)", self.name)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("xtask: {e:#}");
        }
    }
}

/// Polls `url` with curl from `ns` until it answers (at most `limit`).
pub fn wait_http(ns: &str, url: &str, limit: Duration) -> Result<()> {
    let start = Instant::now();
    loop {
        match testenv::curl(ns, url, Duration::from_millis(500)) {
            Ok(_) => return Ok(()),
            Err(e) if start.elapsed() > limit => {
                return Err(e).with_context(|| format!("{url} did not answer within {limit:?}"))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

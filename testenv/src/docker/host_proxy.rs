//! The seed's own scenario on the Docker host: `lb run` in proxy mode with
//! `vip = "0.0.0.0:8080"` and the three containers as backends, and `curl localhost:8080`.
//! The config, state file and log live under RUN_DIR/proxy; the admin API listens on a
//! free loopback port.

use super::RUN_DIR;
use crate::topology::{server_v4, BACKEND_PORT, SERVERS};
use anyhow::{bail, Context, Result};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// The seed's listening address.
pub const HOST_PROXY_VIP: &str = "0.0.0.0:8080";
const SERVING_WITHIN: Duration = Duration::from_secs(20);
const STOP_WITHIN: Duration = Duration::from_secs(10);

/// `lb run` on the host; stopped with SIGTERM on `stop` or drop.
#[derive(Debug)]
pub struct HostProxy {
    child: Option<Child>,
}

impl HostProxy {
    pub fn start(lb_bin: &Path) -> Result<HostProxy> {
        if TcpListener::bind((Ipv4Addr::UNSPECIFIED, 8080)).is_err() {
            bail!("port 8080 is taken on this host: the seed's scenario listens on {HOST_PROXY_VIP}");
        }
        let dir = dir();
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let config = dir.join("lb.toml");
        std::fs::write(&config, config_text(&dir, free_loopback_port()?))
            .with_context(|| format!("writing {}", config.display()))?;
        let log = log_path();
        let file = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(lb_bin)
            .arg("run")
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {} run", lb_bin.display()))?;
        let mut proxy = HostProxy { child: Some(child) };
        proxy.wait_serving()?;
        Ok(proxy)
    }

    /// The config it runs with.
    pub fn config() -> String {
        std::fs::read_to_string(dir().join("lb.toml")).unwrap_or_default()
    }

    pub fn log() -> String {
        std::fs::read_to_string(log_path()).unwrap_or_default()
    }

    /// SIGTERM, and waits for the exit; removes its files.
    pub fn stop(mut self) -> Result<()> {
        self.stop_child()
    }

    fn stop_child(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else { return Ok(()) };
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_WITHIN;
        while child.try_wait()?.is_none() {
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("lb run (proxy) did not exit within {STOP_WITHIN:?} of SIGTERM");
            }
            sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_dir_all(dir());
        Ok(())
    }

    fn wait_serving(&mut self) -> Result<()> {
        let deadline = Instant::now() + SERVING_WITHIN;
        while !Self::log().contains("lb is serving") {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                bail!("lb run (proxy) exited ({status}); its log:\n{}", Self::log());
            }
            if Instant::now() >= deadline {
                bail!("lb run (proxy) did not serve within {SERVING_WITHIN:?}; its log:\n{}", Self::log());
            }
            sleep(Duration::from_millis(100));
        }
        Ok(())
    }
}

impl Drop for HostProxy {
    fn drop(&mut self) {
        if let Err(e) = self.stop_child() {
            eprintln!("testenv: {e:#}");
        }
    }
}

/// `curl -s http://localhost:8080/` on the host: the body.
pub fn curl_host(timeout: Duration) -> Result<String> {
    let seconds = format!("{:.1}", timeout.as_secs_f64());
    crate::netns::run("curl", &["-s", "-S", "--max-time", &seconds, "http://localhost:8080/"])
}

fn dir() -> PathBuf {
    Path::new(RUN_DIR).join("proxy")
}

fn log_path() -> PathBuf {
    dir().join("lb.log")
}

fn config_text(dir: &Path, admin_port: u16) -> String {
    let backends: String = (1..=SERVERS)
        .map(|n| format!("[[service.backend]]\naddress = \"{}:{BACKEND_PORT}\"\n\n", server_v4(n)))
        .collect();
    format!(
        "# The seed's scenario: curl localhost:8080 balanced over the three containers.\n\
         [daemon]\nmode = \"proxy\"\nadmin_listen = \"127.0.0.1:{admin_port}\"\n\
         pin_path = \"{pins}\"\nstate_file = \"{state}\"\n\n\
         [[service]]\nname = \"seed\"\nvip = \"{HOST_PROXY_VIP}\"\n\n{backends}",
        pins = dir.join("bpffs").display(),
        state = dir.join("state.json").display(),
    )
}

/// A loopback port nothing listens on right now, for the admin API.
fn free_loopback_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

//! The seed's backend (server/backend.py) running in the server namespaces.

use crate::hosts::{add_host, hold_vips_on_loopback};
use crate::netns::{curl, namespace_exists, spawn_logged};
use crate::process::{command_line, is_alive, terminate, Pid};
use crate::topology::{
    check_server_number, server_name, server_ns, server_pidfile, server_v4, switch_port, Host, DSR_MARKER, RUN_DIR,
    SWITCH_NS,
};
use crate::xdp_pass;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::thread::sleep;
use std::time::{Duration, Instant};

/// How long a backend may take to answer after start (python start-up).
const READY_WITHIN: Duration = Duration::from_secs(10);
const STOP_GRACE: Duration = Duration::from_secs(3);
const LOG_TAIL_LINES: usize = 20;

/// The backend script shipped in this crate.
pub fn backend_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("server").join("backend.py")
}

/// Python 3.11 of the system (the pyenv shim on PATH may not be what root in a
/// namespace finds); `LBT_PYTHON` overrides.
pub fn python() -> String {
    if let Ok(python) = std::env::var("LBT_PYTHON") {
        return python;
    }
    if Path::new("/usr/bin/python3").exists() {
        return "/usr/bin/python3".to_string();
    }
    "python3".to_string()
}

/// Creates `lbt-server{n}` at 172.20.0.{10+n} / fd00:20::{10+n} on the bridge
/// of a running network, with the pass-through XDP on its switch port, the
/// VIPs on `lo` if the network was built with `dsr`, and starts `Server{n}`.
pub fn add_server(n: u8) -> Result<()> {
    check_server_number(n)?;
    if !namespace_exists(SWITCH_NS)? {
        bail!("the test network is not up ({SWITCH_NS} missing); run up() first");
    }
    let host = Host::server(n);
    if namespace_exists(&host.ns)? {
        bail!("{} already exists", host.ns);
    }
    add_host(&host)?;
    xdp_pass::attach(&switch_port(&host.ns))?;
    if Path::new(DSR_MARKER).exists() {
        hold_vips_on_loopback(&host.ns)?;
    }
    let backend = Backend::server(n);
    let mut child = launch(&backend)?;
    wait_ready(&backend, &mut child, Instant::now() + READY_WITHIN)
}

/// Starts server n's backend again (after `stop_server`); a no-op if it runs.
pub fn start_server(n: u8) -> Result<()> {
    check_server_number(n)?;
    if !namespace_exists(&server_ns(n))? {
        bail!("{} does not exist", server_ns(n));
    }
    if running_pid(n).is_some() {
        return Ok(());
    }
    let backend = Backend::server(n);
    let mut child = launch(&backend)?;
    wait_ready(&backend, &mut child, Instant::now() + READY_WITHIN)
}

/// Stops server n's backend process (the namespace and addresses stay); a
/// no-op if it is not running.
pub fn stop_server(n: u8) -> Result<()> {
    check_server_number(n)?;
    if let Some(pid) = running_pid(n) {
        terminate(&[pid], STOP_GRACE);
        if is_alive(pid) {
            bail!("backend of {} (pid {pid}) survived SIGKILL", server_name(n));
        }
    }
    remove_pidfile(n)
}

/// Starts the backends of servers `numbers` together, then waits for all.
pub(crate) fn start_all(numbers: &[u8]) -> Result<()> {
    let backends: Vec<Backend> = numbers.iter().map(|&n| Backend::server(n)).collect();
    start_backends(&backends)
}

/// Stops every backend that has a pid file (for `down`).
pub(crate) fn stop_all() -> Result<()> {
    let Ok(entries) = std::fs::read_dir(RUN_DIR) else {
        return Ok(());
    };
    let pids: Vec<Pid> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "pid"))
        .filter_map(|path| read_pid(&path))
        .filter(|&pid| is_backend(pid))
        .collect();
    terminate(&pids, STOP_GRACE);
    Ok(())
}

/// A backend process: the seed's server in namespace `ns`, answering as `name` on
/// `address`:80, with its log and pid file under RUN_DIR named by `key`.
pub(crate) struct Backend {
    pub ns: String,
    pub name: String,
    pub address: String,
    pub key: String,
}

impl Backend {
    fn server(n: u8) -> Backend {
        Backend { ns: server_ns(n), name: server_name(n), address: server_v4(n), key: format!("server{n}") }
    }

    fn log(&self) -> PathBuf {
        PathBuf::from(format!("{RUN_DIR}/{}.log", self.key))
    }

    fn pidfile(&self) -> PathBuf {
        PathBuf::from(format!("{RUN_DIR}/{}.pid", self.key))
    }
}

/// Starts `backends` together, then waits for all.
pub(crate) fn start_backends(backends: &[Backend]) -> Result<()> {
    let mut children = Vec::new();
    for b in backends {
        children.push(launch(b)?);
    }
    let deadline = Instant::now() + READY_WITHIN;
    backends.iter().zip(children.iter_mut()).try_for_each(|(b, child)| wait_ready(b, child, deadline))
}

/// `ip netns exec NS env SERVER_NAME=... python3 backend.py`, output to the backend's log,
/// pid to its pid file. `ip netns exec` and `env` exec in place, so the pid is python's.
fn launch(b: &Backend) -> Result<Child> {
    std::fs::create_dir_all(RUN_DIR).with_context(|| format!("creating {RUN_DIR}"))?;
    let name = format!("SERVER_NAME={}", b.name);
    let ip = format!("SERVER_IP={}", b.address);
    let port = format!("SERVER_PORT={}", crate::topology::BACKEND_PORT);
    let python = python();
    let script = backend_script();
    let script = script.to_str().context("backend.py path is not UTF-8")?;
    let child = spawn_logged(&b.ns, &["env", &name, &ip, &port, &python, script], &b.log())?;
    let pidfile = b.pidfile();
    std::fs::write(&pidfile, format!("{}\n", child.id())).with_context(|| format!("writing {}", pidfile.display()))?;
    // Dropping the Child later neither kills nor reaps it: the backend keeps
    // running after this process exits (`cargo xtask testenv up`).
    Ok(child)
}

/// Polls the backend from its own namespace until it answers, failing early
/// if the process dies.
fn wait_ready(b: &Backend, child: &mut Child, deadline: Instant) -> Result<()> {
    let url = format!("http://{}/", b.address);
    loop {
        if let Some(status) = child.try_wait().context("waiting for the backend")? {
            bail!("{} exited during start-up ({status}); {}", b.name, log_tail(&b.log()));
        }
        if curl(&b.ns, &url, Duration::from_millis(500)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{} did not answer on {url} within {READY_WITHIN:?}; {}", b.name, log_tail(&b.log()));
        }
        sleep(Duration::from_millis(100));
    }
}

/// The pid of server n's backend if it is alive and really is the backend
/// (a stale pid file may name a recycled pid).
fn running_pid(n: u8) -> Option<Pid> {
    read_pid(&server_pidfile(n)).filter(|&pid| is_alive(pid) && is_backend(pid))
}

/// Whether `pid` runs backend.py (through `ip netns exec` and `env`, whose
/// command lines name it too). While a process execs, its command line reads
/// empty for an instant (seen right after start): that counts as ours too.
fn is_backend(pid: Pid) -> bool {
    let command = command_line(pid);
    command.is_empty() || command.contains("backend.py")
}

fn read_pid(path: &Path) -> Option<Pid> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn remove_pidfile(n: u8) -> Result<()> {
    let path = server_pidfile(n);
    match std::fs::remove_file(&path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(error).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
    format!("last lines of {}:\n{tail}", path.display())
}

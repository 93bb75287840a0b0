//! `cargo xtask demo`: the test network, `lb run` attached by XDP on the LB host, 30
//! requests from the client through the VIP, the share each server got, and what the data
//! path recorded. Everything is torn down afterwards, on failure and on Ctrl-C too.
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{bail, Result};
use testenv::{LbDaemon, CLIENT_NS, VIP_V4};

const REQUESTS: usize = 30;

const CONFIG: &str = r#"# The demo's config: the seed's three servers behind one VIP, balanced in XDP.
[daemon]
interface = "eth0"
mode = "xdp"
pin_path = "/run/lbt/bpffs/lb"

[[service]]
name = "web"
vip = "172.20.0.100:80"
algorithm = "maglev"
forwarding = "nat"

[[service.backend]]
address = "172.20.0.11:80"

[[service.backend]]
address = "172.20.0.12:80"

[[service.backend]]
address = "172.20.0.13:80"
"#;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Tears the test network down however the demo ends.
pub(crate) struct Teardown;

impl Drop for Teardown {
    fn drop(&mut self) {
        println!("\n==> tearing down the test network");
        if let Err(e) = testenv::down() {
            eprintln!("xtask: teardown: {e:#}");
        }
    }
}

fn check_interrupt() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

pub fn run() -> Result<()> {
    if !crate::cmd::is_root() {
        bail!("the demo builds network namespaces and attaches XDP: run it as root");
    }
    // SAFETY: installing a handler that only stores to an atomic.
    unsafe { libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t) };
    let _teardown = Teardown;
    println!("==> bringing up the test network (client, LB, three servers, one switch)");
    testenv::up(&testenv::UpOptions::default())?;
    check_interrupt()?;
    println!("==> lb run -c lb.toml in lbt-lb, XDP on eth0:\n{CONFIG}");
    let mut daemon = LbDaemon::start(&testenv::lb_binary(), CONFIG)?;
    check_interrupt()?;
    println!("==> {REQUESTS} requests: curl http://{VIP_V4}/ from lbt-client");
    let mut shares: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..REQUESTS {
        check_interrupt()?;
        let body = testenv::curl(CLIENT_NS, &format!("http://{VIP_V4}/"), Duration::from_secs(3))?;
        let server = server_of(&body).unwrap_or_else(|| "?".into());
        println!("  request {:>2}: {server}", i + 1);
        *shares.entry(server).or_default() += 1;
    }
    println!("\n==> share per server");
    for (server, n) in &shares {
        println!("  {server}: {n} of {REQUESTS} ({:.0}%)", *n as f64 * 100.0 / REQUESTS as f64);
    }
    for what in ["backends", "flows"] {
        println!("\n==> lb list {what}");
        let out = daemon.cli(&["list", what])?;
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
    daemon.stop()?;
    if shares.len() < 3 {
        bail!("only {} of 3 servers answered", shares.len());
    }
    println!("\n==> all three servers answered through XDP");
    Ok(())
}

pub(crate) fn server_of(body: &str) -> Option<String> {
    let at = body.find("\"server\"")?;
    let rest = &body[at + 8..];
    let start = rest.find('"')? + 1;
    let end = rest[start..].find('"')? + start;
    Some(rest[start..end].to_string())
}

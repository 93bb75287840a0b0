//! `cargo xtask demo --l3`: the L3 layout (testenv `l3.rs`), `lb run` with XDP on both of
//! the LB's NICs, a `gue` service whose two backends sit in two subnets behind a router,
//! `lb decap` on each backend, requests from the client, and a capture at the router that
//! shows each request crossing it encapsulated (and the replies going past the LB).
use std::collections::BTreeMap;
use std::process::Child;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use testenv::l3::{far_name, far_ns, router_far_iface, FAR_SERVERS, ROUTER_CORE_IFACE, ROUTER_NS};
use testenv::{LbDaemon, CLIENT_NS, VIP_V4};

const REQUESTS: usize = 20;

const CONFIG: &str = r#"# The L3 demo's config: two backends behind a router, reached encapsulated (GUE).
[daemon]
interface = ["eth0", "eth1"]
mode = "xdp"
pin_path = "/run/lbt/bpffs/lb"

[[service]]
name = "far"
vip = "172.20.0.100:80"
algorithm = "maglev"
forwarding = "gue"

[[service.backend]]
address = "10.41.0.11:80"

[[service.backend]]
address = "10.42.0.12:80"
"#;

/// Stops the background processes (decap programs, the capture) however the demo ends.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn run() -> Result<()> {
    if !crate::cmd::is_root() {
        bail!("the demo builds network namespaces and attaches XDP: run it as root");
    }
    let _teardown = crate::demo::Teardown;
    println!("==> bringing up the test network with its L3 layout (router, two far subnets)");
    testenv::up(&testenv::UpOptions { l3: true, ..Default::default() })?;
    let lb = testenv::lb_binary();
    let lb = lb.to_str().context("lb path is not UTF-8")?;
    let mut children = Children(Vec::new());
    for n in 1..=FAR_SERVERS {
        println!("==> lb decap --interface eth0 in {}", far_ns(n));
        let log = std::path::PathBuf::from(format!("{}/decap-far{n}.log", testenv::RUN_DIR));
        children.0.push(testenv::spawn_logged(&far_ns(n), &[lb, "decap", "--interface", "eth0"], &log)?);
    }
    println!("==> lb run -c lb.toml in lbt-lb, XDP on eth0 and eth1:\n{CONFIG}");
    let mut daemon = LbDaemon::start(&testenv::lb_binary(), CONFIG)?;
    let capture = std::path::PathBuf::from(format!("{}/router.pcap.txt", testenv::RUN_DIR));
    let filter = "udp port 6080 or (src host 172.20.0.100 and tcp)";
    let ifaces = [ROUTER_CORE_IFACE.to_string(), router_far_iface(1), router_far_iface(2)];
    for iface in &ifaces {
        let log = capture.with_extension(format!("{iface}.txt"));
        children.0.push(testenv::spawn_logged(
            ROUTER_NS,
            &["tcpdump", "-n", "-l", "-c", "6", "-i", iface, filter],
            &log,
        )?);
    }
    std::thread::sleep(Duration::from_millis(800));
    println!("==> {REQUESTS} requests: curl http://{VIP_V4}/ from lbt-client");
    let mut shares: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..REQUESTS {
        let body = testenv::curl(CLIENT_NS, &format!("http://{VIP_V4}/"), Duration::from_secs(3))?;
        *shares.entry(crate::demo::server_of(&body).unwrap_or_else(|| "?".into())).or_default() += 1;
    }
    for (server, n) in &shares {
        println!("  {server}: {n} of {REQUESTS}");
    }
    std::thread::sleep(Duration::from_millis(500));
    drop(children);
    for iface in &ifaces {
        println!("\n==> captured at the router on {iface} (first packets)");
        print!("{}", std::fs::read_to_string(capture.with_extension(format!("{iface}.txt"))).unwrap_or_default());
    }
    println!("\n==> lb list backends");
    print!("{}", String::from_utf8_lossy(&daemon.cli(&["list", "backends"])?.stdout));
    daemon.stop()?;
    let expected: Vec<String> = (1..=FAR_SERVERS).map(far_name).collect();
    if expected.iter().any(|name| !shares.contains_key(name)) {
        bail!("not every far server answered: {shares:?}");
    }
    println!("\n==> both far servers answered through the router, encapsulated by XDP");
    Ok(())
}

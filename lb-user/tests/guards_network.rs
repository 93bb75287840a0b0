//! One daemon per data path, and adoption that checks what it adopts, on the test network
//! with the real `lb run`: a second daemon on the same pin_path (XDP) or VIP (proxy) is
//! refused, names the first one's pid and leaves it serving; a daemon started after the
//! first was SIGKILLed takes over; a pinned link whose interface was recreated, or that
//! runs on another interface than the config's, is replaced and the new daemon serves.
//! Root only: `cargo xtask test` runs them one at a time.
mod common;

use std::collections::BTreeSet;
use std::process::Output;
use std::time::{Duration, Instant};

use common::net::*;
use testenv::{LbDaemon, LB_NS, VIP_V4};

const V4: [&str; 3] = ["172.20.0.11:80", "172.20.0.12:80", "172.20.0.13:80"];

/// The second daemon's own files: config, admin port and state file differ from the first's,
/// so only the data path (pin_path or VIP) is shared.
const SECOND_CONFIG: &str = "/run/lbt/lb2.toml";
const SECOND_DAEMON: &str = "admin_listen = \"127.0.0.1:9101\"\nstate_file = \"/run/lbt/state2.json\"\n";
const FIRST_DAEMON: &str = "admin_listen = \"127.0.0.1:9100\"\nstate_file = \"/run/lbt/state.json\"\n";

fn config(daemon: &str, extra_daemon: &str, vip: &str, backends: &[&str]) -> String {
    let list: String = backends.iter().map(|a| format!("[[service.backend]]\naddress = \"{a}\"\n")).collect();
    format!(
        "[daemon]\n{daemon}pin_path = \"{pin}\"\n{extra_daemon}\n\
         [[service]]\nname = \"web\"\nvip = \"{vip}\"\nhealth_check = {{ type = \"none\" }}\n{list}",
        pin = testenv::LB_PIN_PATH
    )
}

fn xdp(interface: &str, extra_daemon: &str, backends: &[&str]) -> String {
    let daemon = format!("interface = \"{interface}\"\nmode = \"xdp\"\n");
    config(&daemon, extra_daemon, &format!("{VIP_V4}:80"), backends)
}

fn proxy(extra_daemon: &str, backends: &[&str]) -> String {
    config("interface = \"eth0\"\nmode = \"proxy\"\nworkers = 2\n", extra_daemon, &format!("{VIP_V4}:80"), backends)
}

fn all_three() -> BTreeSet<String> {
    ["Server1", "Server2", "Server3"].iter().map(|s| s.to_string()).collect()
}

/// `lb run` with `config` beside the running daemon; it must exit (at most 20 s). A daemon
/// that kept running has taken a share of what the first one serves: killed, and the test
/// fails.
fn second_daemon(config: &str, extra: &[&str]) -> Output {
    std::fs::write(SECOND_CONFIG, config).unwrap();
    let bin = testenv::lb_binary();
    let mut args = vec![bin.to_str().unwrap(), "run", "-c", SECOND_CONFIG];
    args.extend_from_slice(extra);
    let mut child = testenv::spawn(LB_NS, &args).unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("the second lb run kept running beside the first; its output:\n{}", text(&out));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Refused: a non-zero exit whose error names the first daemon's pid.
fn assert_refused_naming(out: &Output, first: &LbDaemon, what: &str) {
    let said = text(out);
    assert!(!out.status.success(), "the second daemon must fail: {said}");
    let pid = first.pid().expect("the first daemon runs");
    assert!(said.contains(&format!("pid {pid} (")), "the error names the first daemon's pid {pid}: {said}");
    assert!(said.contains(what), "the error says what is in use ({what}): {said}");
}

/// The VIP on the LB's loopback: in proxy mode the LB's kernel must own it.
fn vip_on_the_lb() {
    testenv::exec_ok(LB_NS, &["ip", "addr", "add", &format!("{VIP_V4}/32"), "dev", "lo"]).unwrap();
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_second_xdp_daemon_on_the_same_pin_path_is_refused_and_one_started_after_a_sigkill_adopts() {
    let _net = Net::up(false);
    let mut first = start(&xdp("eth0", FIRST_DAEMON, &V4));
    assert_eq!(servers_reached(&format!("http://{VIP_V4}/"), 30), all_three());

    // Another admin port and state file, the same pin_path, and only server 1: had it
    // written the tables, traffic would follow its backends; and with --detach-on-exit,
    // had it adopted, its exit would take the first one's data path away.
    let out = second_daemon(&xdp("eth0", SECOND_DAEMON, &V4[..1]), &["--detach-on-exit"]);
    assert_refused_naming(&out, &first, &format!("pin_path {} is in use by another lb", testenv::LB_PIN_PATH));
    assert!(!text(&out).contains("tables written"), "refused before writing anything: {}", text(&out));
    assert!(testenv::xdp_attached(LB_NS, "eth0").unwrap(), "the first one's program is still attached");
    // mode = "auto" does not fall back to the proxy beside it either.
    let auto = config("interface = \"eth0\"\nmode = \"auto\"\n", SECOND_DAEMON, &format!("{VIP_V4}:80"), &V4[..1]);
    let out = second_daemon(&auto, &[]);
    assert_refused_naming(&out, &first, "is in use by another lb");
    assert!(!text(&out).contains("falling back"), "{}", text(&out));

    // The first still serves with its own backends, and its API lists them.
    assert_eq!(servers_reached(&format!("http://{VIP_V4}/"), 30), all_three());
    let backends: Vec<serde_json::Value> = serde_json::from_str(&first.list_json("backends").unwrap()).unwrap();
    assert_eq!(backends.len(), 3, "{backends:?}");

    // SIGKILL: the lock dies with the daemon, and the next one adopts the data path.
    first.kill().unwrap();
    let bin = testenv::lb_binary();
    let mut next = LbDaemon::start_with(&bin, &xdp("eth0", FIRST_DAEMON, &V4), &["--detach-on-exit"]).unwrap();
    assert!(next.log().contains("replaced in the running link"), "adopted: {}", next.log());
    assert_eq!(servers_reached(&format!("http://{VIP_V4}/"), 30), all_three());

    // Its --detach-on-exit takes everything away, and only then lets the next daemon in,
    // which starts afresh.
    let status = next.stop().unwrap();
    assert!(status.success(), "{status}: {}", next.log());
    assert!(!testenv::xdp_attached(LB_NS, "eth0").unwrap(), "detached");
    assert!(!std::path::Path::new(testenv::LB_PIN_PATH).exists(), "the pin directory is gone");
    let fresh = start(&xdp("eth0", FIRST_DAEMON, &V4));
    assert!(fresh.log().contains("XDP program attached"), "{}", fresh.log());
    assert_eq!(servers_reached(&format!("http://{VIP_V4}/"), 30), all_three());
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_second_proxy_daemon_on_the_same_vip_is_refused_and_one_started_after_a_sigkill_serves() {
    let _net = Net::up(false);
    vip_on_the_lb();
    let mut first = LbDaemon::start_with(&testenv::lb_binary(), &proxy(FIRST_DAEMON, &V4), &[]).unwrap();
    assert_eq!(servers_reached(&format!("http://{VIP_V4}/"), 30), all_three());

    let out = second_daemon(&proxy(SECOND_DAEMON, &V4[..1]), &[]);
    assert_refused_naming(&out, &first, &format!("VIP {VIP_V4}:80 (tcp) is already served by another lb"));

    // Nothing shares the VIP: every request still spreads over the first daemon's three.
    assert_eq!(servers_reached(&format!("http://{VIP_V4}/"), 30), all_three());

    first.kill().unwrap();
    let _next = LbDaemon::start_with(&testenv::lb_binary(), &proxy(FIRST_DAEMON, &V4), &[]).unwrap();
    assert_eq!(servers_reached(&format!("http://{VIP_V4}/"), 30), all_three());
}

/// Delete the LB's eth0 (its veth pair goes with it) and build it again as `up` does: same
/// name, MAC and addresses, a new interface, on the switch with its pass-through program.
fn recreate_lb_eth0() {
    let lb = |args: &[&str]| {
        let mut full = vec!["ip"];
        full.extend_from_slice(args);
        testenv::exec_ok(LB_NS, &full).unwrap_or_else(|e| panic!("{e:#}"));
    };
    let switch = |args: &[&str]| {
        let mut full = vec!["ip"];
        full.extend_from_slice(args);
        testenv::exec_ok(testenv::SWITCH_NS, &full).unwrap_or_else(|e| panic!("{e:#}"));
    };
    let port = testenv::switch_port(LB_NS);
    lb(&["link", "del", "eth0"]);
    lb(&[
        "link",
        "add",
        "eth0",
        "address",
        testenv::LB_MAC,
        "type",
        "veth",
        "peer",
        "name",
        &port,
        "netns",
        testenv::SWITCH_NS,
    ]);
    switch(&["link", "set", &port, "master", testenv::BRIDGE]);
    testenv::exec_ok(testenv::SWITCH_NS, &["ethtool", "-K", &port, "tx", "off"]).unwrap();
    switch(&["link", "set", &port, "up"]);
    switch(&["link", "set", "dev", &port, "xdpdrv", "pinned", testenv::XDP_PASS_PIN]);
    lb(&["addr", "add", &format!("{}/{}", testenv::LB_V4, testenv::PREFIX_V4), "dev", "eth0"]);
    lb(&["addr", "add", &format!("{}/{}", testenv::LB_V6, testenv::PREFIX_V6), "dev", "eth0", "nodad"]);
    testenv::exec_ok(LB_NS, &["ethtool", "-K", "eth0", "tx", "off"]).unwrap();
    lb(&["link", "set", "eth0", "up"]);
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_pinned_link_severed_by_its_interface_being_recreated_is_replaced_and_the_new_daemon_serves() {
    let _net = Net::up(false);
    let cfg = xdp("eth0", FIRST_DAEMON, &V4);
    let mut first = start(&cfg);
    assert_eq!(servers_reached(&format!("http://{VIP_V4}/"), 30), all_three());
    let status = first.stop().unwrap();
    assert!(status.success(), "{status}: {}", first.log());

    recreate_lb_eth0();
    assert!(!testenv::xdp_attached(LB_NS, "eth0").unwrap(), "the new eth0 starts without a program");
    assert!(std::path::Path::new(&format!("{}/link", testenv::LB_PIN_PATH)).exists(), "the severed link is pinned");

    let next = start(&cfg);
    let log = next.log();
    assert!(log.contains("the pinned XDP link is severed"), "said so: {log}");
    assert!(log.contains("attached in place of the old link"), "{log}");
    assert!(testenv::xdp_attached(LB_NS, "eth0").unwrap(), "attached on the new eth0");
    assert_eq!(servers_reached(&format!("http://{VIP_V4}/"), 30), all_three());
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_pinned_link_on_another_interface_than_the_configs_moves_to_the_configured_one() {
    let _net = Net::up(false);
    // The first daemon serves lo (generic XDP: lo has no driver mode), which carries none of
    // the client's traffic; its link stays pinned after SIGTERM.
    let mut first = start(&xdp("lo", &format!("{FIRST_DAEMON}xdp_attach = \"generic\"\n"), &V4));
    assert!(testenv::xdp_attached(LB_NS, "lo").unwrap());
    let status = first.stop().unwrap();
    assert!(status.success(), "{status}: {}", first.log());

    // The config now says eth0: the data path moves there, and lo is left without it.
    let next = start(&xdp("eth0", FIRST_DAEMON, &V4));
    let log = next.log();
    assert!(log.contains("the pinned XDP link runs on lo, the config says eth0"), "said so: {log}");
    assert!(log.contains("flows on lo cannot be kept"), "{log}");
    assert!(!log.contains("flows kept"), "nothing claims the old interface's flows were kept: {log}");
    assert!(testenv::xdp_attached(LB_NS, "eth0").unwrap(), "attached on eth0");
    assert!(!testenv::xdp_attached(LB_NS, "lo").unwrap(), "detached from lo");
    assert_eq!(servers_reached(&format!("http://{VIP_V4}/"), 30), all_three());
}

//! Backends across a router (testenv's L3 layout): encapsulated forwarding (`ipip`, `gue`)
//! to far servers running `lb decap`, IPv4 and IPv6; replies that bypass the balancer; path
//! MTU with a lowered link MTU; tunnelled health checks; nat over the router; `lb check` on
//! an L2 `dsr` backend that is not on the balancer's segment.
//! Root only, on the test network: `cargo xtask test` runs it.
mod common;

use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use common::net::*;
use testenv::l3::*;
use testenv::{LbDaemon, CLIENT_NS, CLIENT_V4, LB_NS, VIP_V4, VIP_V6};

/// `lb decap --interface eth0` on far servers, stopped when dropped.
struct Decap(Vec<Child>);

impl Decap {
    fn on(servers: &[u8]) -> Decap {
        let lb = testenv::lb_binary();
        let children = servers
            .iter()
            .map(|&n| {
                let log = PathBuf::from(format!("{}/decap-far{n}.log", testenv::RUN_DIR));
                testenv::spawn_logged(&far_ns(n), &[lb.to_str().unwrap(), "decap", "--interface", "eth0"], &log)
                    .expect("lb decap")
            })
            .collect();
        for &n in servers {
            wait_for(&format!("lb decap attached in {}", far_ns(n)), Duration::from_secs(10), || {
                testenv::xdp_attached(&far_ns(n), "eth0").unwrap_or(false)
            });
        }
        Decap(children)
    }
}

impl Drop for Decap {
    fn drop(&mut self) {
        for child in &mut self.0 {
            // SIGTERM: lb decap detaches its program on the way out.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
    }
}

fn wait_for(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn service(name: &str, vip: &str, forwarding: &str, backends: &[String], extra: &str) -> String {
    let mut s = format!("[[service]]\nname = \"{name}\"\nvip = \"{vip}\"\nforwarding = \"{forwarding}\"\n{extra}");
    for b in backends {
        s.push_str(&format!("[[service.backend]]\naddress = \"{b}\"\n"));
    }
    s
}

fn daemon_section() -> String {
    format!(
        "[daemon]\ninterface = [\"eth0\", \"{LB_SERVER_IFACE}\"]\nmode = \"xdp\"\npin_path = \"{}\"\n\n",
        testenv::LB_PIN_PATH
    )
}

/// One IPv4 and one IPv6 service of `forwarding` on port `port` with both far servers.
fn far_config(forwarding: &str, port: u16, extra: &str) -> String {
    let v4: Vec<String> = (1..=FAR_SERVERS).map(|n| format!("{}:{port}", far_v4(n))).collect();
    let v6: Vec<String> = (1..=FAR_SERVERS).map(|n| format!("[{}]:{port}", far_v6(n))).collect();
    format!(
        "{}{}\n{}",
        daemon_section(),
        service("far", &format!("{VIP_V4}:{port}"), forwarding, &v4, extra),
        service("far6", &format!("[{VIP_V6}]:{port}"), forwarding, &v6, extra),
    )
}

fn far_names() -> std::collections::BTreeSet<String> {
    (1..=FAR_SERVERS).map(far_name).collect()
}

fn backends(lb: &LbDaemon) -> Vec<serde_json::Value> {
    serde_json::from_str(&lb.list_json("backends").expect("lb list backends")).expect("JSON rows")
}

fn health_of(lb: &LbDaemon, address: &str) -> String {
    let rows = backends(lb);
    let row = rows.iter().find(|r| r["address"] == address).unwrap_or_else(|| panic!("{address} in {rows:?}"));
    row["health"].as_str().unwrap_or("?").to_string()
}

fn wait_healthy(lb: &LbDaemon, addresses: &[String]) {
    wait_for("far backends healthy", Duration::from_secs(15), || addresses.iter().all(|a| health_of(lb, a) == "up"));
}

fn encapsulated_requests_reach_both_far_servers(forwarding: &str) {
    let _net = Net::up_l3();
    let _decap = Decap::on(&[1, 2]);
    let lb = start(&far_config(forwarding, 80, ""));
    wait_healthy(&lb, &[format!("{}:80", far_v4(1)), format!("{}:80", far_v4(2))]);
    assert_eq!(servers_reached(&format!("http://{VIP_V4}/"), 30), far_names(), "{forwarding} over IPv4");
    assert_eq!(servers_reached(&format!("http://[{VIP_V6}]/"), 30), far_names(), "{forwarding} over IPv6");
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn ipip_reaches_far_servers_over_ipv4_and_ipv6() {
    encapsulated_requests_reach_both_far_servers("ipip");
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn gue_reaches_far_servers_over_ipv4_and_ipv6() {
    encapsulated_requests_reach_both_far_servers("gue");
}

/// IPv4 client, IPv6 backends: the client's IPv4 packet inside an outer IPv6 header.
#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn ipip_carries_ipv4_clients_to_ipv6_backends() {
    let _net = Net::up_l3();
    let _decap = Decap::on(&[1, 2]);
    let v6: Vec<String> = (1..=FAR_SERVERS).map(|n| format!("[{}]:80", far_v6(n))).collect();
    let cfg = format!("{}{}", daemon_section(), service("far", &format!("{VIP_V4}:80"), "ipip", &v6, ""));
    let lb = start(&cfg);
    wait_healthy(&lb, &v6);
    assert_eq!(servers_reached(&format!("http://{VIP_V4}/"), 30), far_names());
}

/// Counts packets from the VIP to the client seen on `iface` in `ns` while `work` runs
/// (the tunnelled health checks' answers, from the VIP to the LB itself, do reach the LB).
fn count_vip_replies(ns: &str, iface: &str, work: impl FnOnce()) -> usize {
    let out = PathBuf::from(format!("{}/count-{ns}-{iface}.txt", testenv::RUN_DIR));
    let filter = format!("src host {VIP_V4} and dst host {CLIENT_V4} and tcp");
    let mut dump = testenv::spawn_logged(ns, &["tcpdump", "-n", "-l", "-i", iface, &filter], &out).expect("tcpdump");
    std::thread::sleep(Duration::from_millis(700));
    work();
    std::thread::sleep(Duration::from_millis(300));
    unsafe { libc::kill(dump.id() as i32, libc::SIGINT) };
    let _ = dump.wait();
    std::fs::read_to_string(&out)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&format!("{VIP_V4}.80 > {CLIENT_V4}.")))
        .count()
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn replies_cross_the_router_and_never_the_balancer() {
    let _net = Net::up_l3();
    let _decap = Decap::on(&[1, 2]);
    let lb = start(&far_config("gue", 80, ""));
    wait_healthy(&lb, &[format!("{}:80", far_v4(1)), format!("{}:80", far_v4(2))]);
    let url = format!("http://{VIP_V4}/");
    let mut at_balancer = 0;
    let at_router = count_vip_replies(ROUTER_NS, testenv::IFACE, || {
        for iface in [testenv::IFACE, LB_SERVER_IFACE] {
            at_balancer += count_vip_replies(LB_NS, iface, || {
                servers_reached(&url, 10);
            });
        }
    });
    assert!(at_router >= 20 * 3, "the router forwarded {at_router} reply packets for 20 requests");
    assert_eq!(at_balancer, 0, "replies reached the balancer");
}

/// A sink on port 9000 in each far server: reads until the client shuts its side, answers
/// with the byte count.
const SINK: &str = r#"
import socket, threading
def serve(family, addr):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((addr, 9000)); s.listen(16)
    while True:
        c, _ = s.accept()
        n = 0
        while True:
            b = c.recv(65536)
            if not b: break
            n += len(b)
        c.sendall(str(n).encode()); c.close()
threading.Thread(target=serve, args=(socket.AF_INET6, "::"), daemon=True).start()
serve(socket.AF_INET, "0.0.0.0")
"#;

/// Sends `bytes` to VIP:9000 and prints what the sink counted.
const UPLOAD: &str = r#"
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(family, socket.SOCK_STREAM)
s.settimeout(10)
s.connect((sys.argv[1], 9000))
s.sendall(b"x" * int(sys.argv[2]))
s.shutdown(socket.SHUT_WR)
print(s.recv(100).decode())
"#;

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_large_upload_completes_through_a_lowered_mtu_by_path_mtu_discovery() {
    let _net = Net::up_l3();
    let _decap = Decap::on(&[1, 2]);
    // The balancer's server-side link carries at most 1400 bytes: a full-size client
    // segment no longer fits once encapsulated.
    for (ns, dev) in [(LB_NS, LB_SERVER_IFACE), (ROUTER_NS, ROUTER_CORE_IFACE)] {
        testenv::exec_ok(ns, &["ip", "link", "set", "dev", dev, "mtu", "1400"]).unwrap();
    }
    let sinks: Vec<Child> = (1..=FAR_SERVERS)
        .map(|n| {
            let log = PathBuf::from(format!("{}/sink-far{n}.log", testenv::RUN_DIR));
            testenv::spawn_logged(&far_ns(n), &["python3", "-c", SINK], &log).unwrap()
        })
        .collect();
    let lb = start(&far_config("ipip", 9000, "[service.health_check]\ntype = \"tcp\"\n"));
    wait_healthy(&lb, &[format!("{}:9000", far_v4(1)), format!("{}:9000", far_v4(2))]);
    for vip in [VIP_V4, VIP_V6] {
        let out = testenv::exec(CLIENT_NS, &["python3", "-c", UPLOAD, vip, "300000"]).unwrap();
        let counted = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert_eq!(counted, "300000", "upload to {vip}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let metrics = testenv::curl(LB_NS, "http://127.0.0.1:9100/metrics", Duration::from_secs(3)).expect("metrics");
    let too_big: f64 = metrics
        .lines()
        .filter(|l| l.contains("too_big") && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(too_big >= 2.0, "no too-big answer counted:\n{metrics}");
    drop(sinks);
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_backend_without_the_vip_is_marked_down_by_its_tunnelled_health_check() {
    let _net = Net::up_l3();
    let _decap = Decap::on(&[1, 2]);
    // Far2 lost its VIPs: the kernel there drops the decapsulated packets.
    testenv::exec_ok(&far_ns(2), &["ip", "addr", "del", &format!("{VIP_V4}/32"), "dev", "lo"]).unwrap();
    testenv::exec_ok(&far_ns(2), &["ip", "addr", "del", &format!("{VIP_V6}/128"), "dev", "lo"]).unwrap();
    let lb = start(&far_config("gue", 80, "[service.health_check]\ntype = \"http\"\npath = \"/\"\n"));
    let far1 = format!("{}:80", far_v4(1));
    let far2 = format!("{}:80", far_v4(2));
    let far1_v6 = format!("[{}]:80", far_v6(1));
    let far2_v6 = format!("[{}]:80", far_v6(2));
    wait_for("far2 marked down, far1 healthy, in both families", Duration::from_secs(20), || {
        health_of(&lb, &far1) == "up"
            && health_of(&lb, &far2) == "down"
            && health_of(&lb, &far1_v6) == "up"
            && health_of(&lb, &far2_v6) == "down"
    });
    // Far2 is reachable directly (no tunnel): only the tunnel tells the truth.
    assert!(testenv::curl(LB_NS, &format!("http://{far2}/"), Duration::from_secs(2)).is_ok());
    assert_eq!(servers_reached(&format!("http://{VIP_V4}/"), 20), [far_name(1)].into_iter().collect());
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn nat_reaches_far_servers_through_the_router() {
    let _net = Net::up_l3();
    let v4: Vec<String> = (1..=FAR_SERVERS).map(|n| format!("{}:80", far_v4(n))).collect();
    let v6: Vec<String> = (1..=FAR_SERVERS).map(|n| format!("[{}]:80", far_v6(n))).collect();
    let cfg = format!(
        "{}{}\n{}",
        daemon_section(),
        service("far", &format!("{VIP_V4}:80"), "nat", &v4, ""),
        service("far6", &format!("[{VIP_V6}]:80"), "nat", &v6, ""),
    );
    let lb = start(&cfg);
    wait_healthy(&lb, &v4);
    assert_eq!(servers_reached(&format!("http://{VIP_V4}/"), 30), far_names());
    assert_eq!(servers_reached(&format!("http://[{VIP_V6}]/"), 30), far_names());
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn lb_check_says_a_dsr_backend_behind_the_router_is_not_on_the_segment() {
    let _net = Net::up_l3();
    let cfg = format!(
        "{}{}",
        daemon_section(),
        service("far", &format!("{VIP_V4}:80"), "dsr", &[format!("{}:80", far_v4(1))], "")
    );
    let path = PathBuf::from(format!("{}/l3-check.toml", testenv::RUN_DIR));
    std::fs::write(&path, &cfg).unwrap();
    let lb = testenv::lb_binary();
    let out = testenv::exec(LB_NS, &[lb.to_str().unwrap(), "check", "-c", path.to_str().unwrap()]).unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(&far_v4(1)) && text.contains("ipip"), "lb check said: {text}");
    assert!(text.contains("l3-check.toml:"), "no FILE:LINE:COL in: {text}");
}

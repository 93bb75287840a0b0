//! Tunnels end to end on two namespaces of this test's own, joined by a veth pair: a
//! "balancer" and a "backend" that holds the VIPs on `lo` and runs `lb decap` on its veth.
//!
//! - Encapsulated requests (IPIP 4-in-4, 6-in-6, 4-in-6, GUE over IPv4 and IPv6, crafted
//!   with raw and UDP sockets) reach a TCP listener on the VIP, and its SYN-ACK comes
//!   straight back from the VIP, unencapsulated; `lb decap` counts each kind.
//! - Tunnelled health checks (`lb run` on the balancer with an ipip and a gue service):
//!   both backends come up through the tunnel; once one VIP leaves the backend's `lo`, that
//!   service's backend goes down while the other stays up. A check made to the backend's own
//!   address would still pass there.
//!
//! Root only: `cargo xtask test` runs them. They take the test network's lock (they build no
//! part of testenv's network, but serialize with the tests that do).
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const BAL: &str = "lbt-tnlbal";
const BE: &str = "lbt-tnlbe";
const BAL_IF: &str = "tnlbal0";
const BE_IF: &str = "tnlbe0";
const BAL_V4: &str = "10.252.0.1";
const BE_V4: &str = "10.252.0.2";
const BAL_V6: &str = "fd00:252::1";
const BE_V6: &str = "fd00:252::2";
const VIP_IPIP: &str = "10.252.9.9";
const VIP_GUE: &str = "10.252.9.10";
const VIP_V6: &str = "fd00:252:9::9";
const PORT: u16 = 8080;
const RUN: &str = "/run/lbt-tunnel";

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn in_ns(ns: &str, args: &[&str]) -> String {
    testenv::exec_ok(ns, args).unwrap_or_else(|e| panic!("{e:#}"))
}

/// The two namespaces, with everything started in them; all gone when dropped.
struct Pair {
    children: Vec<Child>,
    _lock: testenv::NetworkLock,
}

impl Pair {
    fn up() -> Self {
        testenv::require_root();
        let lock = testenv::lock_network().expect("lock the test network");
        for ns in [BAL, BE] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
            ip(&["netns", "add", ns]);
        }
        let _ = std::fs::remove_dir_all(RUN);
        std::fs::create_dir_all(RUN).unwrap();
        ip(&["-n", BAL, "link", "add", BAL_IF, "type", "veth", "peer", "name", BE_IF, "netns", BE]);
        for (ns, dev, v4, v6) in [(BAL, BAL_IF, BAL_V4, BAL_V6), (BE, BE_IF, BE_V4, BE_V6)] {
            ip(&["-n", ns, "addr", "add", &format!("{v4}/24"), "dev", dev]);
            ip(&["-n", ns, "addr", "add", &format!("{v6}/64"), "dev", dev, "nodad"]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        for vip in [VIP_IPIP, VIP_GUE] {
            ip(&["-n", BE, "addr", "add", &format!("{vip}/32"), "dev", "lo"]);
        }
        ip(&["-n", BE, "addr", "add", &format!("{VIP_V6}/128"), "dev", "lo"]);
        // The balancer reaches the VIPs through the backend's link (the tunnel program takes
        // the checks from there).
        for vip in [VIP_IPIP, VIP_GUE] {
            ip(&["-n", BAL, "route", "add", &format!("{vip}/32"), "via", BE_V4, "dev", BAL_IF]);
        }
        let mut pair = Pair { children: Vec::new(), _lock: lock };
        pair.listen();
        pair
    }

    /// A TCP listener on every address of the backend, port PORT, for at most a minute.
    fn listen(&mut self) {
        const LISTEN: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", int(sys.argv[1])))
s.listen(64)
s.settimeout(1)
end = time.time() + 60
while time.time() < end:
    try:
        c, _ = s.accept()
        c.close()
    except OSError:
        pass
"#;
        self.children.push(testenv::spawn(BE, &["python3", "-c", LISTEN, &PORT.to_string()]).unwrap());
    }

    /// `lb decap` on the backend's veth; its log path.
    fn decap(&mut self) -> PathBuf {
        let log = Path::new(RUN).join("decap.log");
        let bin = testenv::lb_binary();
        let child = testenv::spawn_logged(BE, &[bin.to_str().unwrap(), "decap", "--interface", BE_IF], &log).unwrap();
        self.children.push(child);
        wait_for(&log, |l| l.contains("lb decap: stripping"), Duration::from_secs(10));
        log
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for c in &mut self.children {
            // SIGTERM first: lb stops cleanly (detaches, prints its counters).
            // SAFETY: a pid of our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        }
        for c in &mut self.children {
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(5) && c.try_wait().ok().flatten().is_none() {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in [BAL, BE] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

fn read(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

/// Wait (bounded) until some line of `log` satisfies `found`.
fn wait_for(log: &Path, found: impl Fn(&str) -> bool, limit: Duration) -> String {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(line) = read(log).lines().find(|l| found(l)) {
            return line.to_string();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{} did not show what was awaited within {limit:?}:\n{}", log.display(), read(log))
}

/// Sends one SYN per tunnel kind from the balancer and waits for each SYN-ACK from the VIP,
/// read on raw TCP sockets (which see only plain TCP: an encapsulated answer would not
/// count). Prints `KIND ok` or `KIND missing` per kind.
const PROBE: &str = r#"
import socket, struct, sys, time, select
bal4, be4, bal6, be6, vip4, vip6, port, gue = sys.argv[1:9]
port, gue = int(port), int(gue)

def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff

def tcp_syn(src, dst, sport, fam):
    h = struct.pack("!HHIIBBHHH", sport, port, 1000, 0, 5 << 4, 0x02, 64240, 0, 0)
    if fam == 4:
        pseudo = socket.inet_pton(socket.AF_INET, src) + socket.inet_pton(socket.AF_INET, dst) + struct.pack("!BBH", 0, 6, len(h))
    else:
        pseudo = socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst) + struct.pack("!IxxxB", len(h), 6)
    return h[:16] + struct.pack("!H", csum(pseudo + h)) + h[18:]

def ip4(src, dst, payload):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, 64, 6, 0,
                    socket.inet_pton(socket.AF_INET, src), socket.inet_pton(socket.AF_INET, dst))
    return h[:10] + struct.pack("!H", csum(h)) + h[12:] + payload

def ip6(src, dst, payload):
    return struct.pack("!IHBB", 6 << 28, len(payload), 6, 64) + socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst) + payload

def inner(fam, sport):
    if fam == 4:
        return ip4(bal4, vip4, tcp_syn(bal4, vip4, sport, 4))
    return ip6(bal6, vip6, tcp_syn(bal6, vip6, sport, 6))

def send(kind, pkt):
    if kind == "ipip4":
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 4); s.sendto(pkt, (be4, 0))
    elif kind == "ipip6":
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, 41); s.sendto(pkt, (be6, 0))
    elif kind == "ipip4in6":
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, 4); s.sendto(pkt, (be6, 0))
    elif kind == "gue4":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(pkt, (be4, gue))
    elif kind == "gue6":
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.sendto(pkt, (be6, gue))
    s.close()

r4 = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
r6 = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_TCP)
kinds = [("ipip4", 4, 41001), ("ipip6", 6, 41002), ("ipip4in6", 4, 41003), ("gue4", 4, 41004), ("gue6", 6, 41005)]
for kind, fam, sport in kinds:
    send(kind, inner(fam, sport))
    got = False
    end = time.time() + 3
    while not got and time.time() < end:
        ready, _, _ = select.select([r4, r6], [], [], 0.2)
        for r in ready:
            data, peer = r.recvfrom(4096)
            tcp = data[20:] if r is r4 else data
            sp, dp = struct.unpack("!HH", tcp[:4])
            flags = tcp[13]
            want = vip4 if fam == 4 else vip6
            if peer[0] == want and sp == port and dp == sport and flags & 0x12 == 0x12:
                got = True
    print(kind, "ok" if got else "missing", flush=True)
"#;

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn encapsulated_requests_reach_the_vip_and_replies_come_straight_back() {
    let mut pair = Pair::up();
    let log = pair.decap();
    let gue = lb_common::encap::DEFAULT_GUE_PORT.to_string();
    let out =
        in_ns(BAL, &["python3", "-c", PROBE, BAL_V4, BE_V4, BAL_V6, BE_V6, VIP_IPIP, VIP_V6, &PORT.to_string(), &gue]);
    for kind in ["ipip4", "ipip6", "ipip4in6", "gue4", "gue6"] {
        assert!(
            out.contains(&format!("{kind} ok")),
            "{kind}: no SYN-ACK from the VIP:\n{out}\ndecap log:\n{}",
            read(&log)
        );
    }
    // Stopped cleanly: detached, with the counts of what it stripped.
    let decap = pair.children.last_mut().unwrap();
    // SAFETY: a pid of our own child.
    unsafe { libc::kill(decap.id() as i32, libc::SIGINT) };
    let line = wait_for(&log, |l| l.contains("lb decap: detached"), Duration::from_secs(5));
    for count in ["ipip_v4=2", "ipip_v6=1", "gue_v4=1", "gue_v6=1", "malformed_dropped=0"] {
        assert!(line.contains(count), "{count} in {line}");
    }
    assert!(!in_ns(BE, &["ip", "link", "show", BE_IF]).contains("xdp"), "detached on SIGINT");
}

fn daemon_config() -> String {
    format!(
        r#"[daemon]
interface = "{BAL_IF}"
mode = "xdp"
pin_path = "/sys/fs/bpf/lb-tunnel-test"
admin_listen = "127.0.0.1:9190"
state_file = "{RUN}/state.json"
token_file = "{RUN}/token"

[[service]]
name = "via-ipip"
vip = "{VIP_IPIP}:{PORT}"
forwarding = "ipip"
[service.health_check]
type = "tcp"
interval = "300ms"
timeout = "300ms"
healthy_threshold = 1
unhealthy_threshold = 2
[[service.backend]]
address = "{BE_V4}:{PORT}"

[[service]]
name = "via-gue"
vip = "{VIP_GUE}:{PORT}"
forwarding = "gue"
[service.health_check]
type = "tcp"
interval = "300ms"
timeout = "300ms"
healthy_threshold = 1
unhealthy_threshold = 2
[[service.backend]]
address = "{BE_V4}:{PORT}"
"#
    )
}

/// A "health changed" line of `service` saying `health`.
fn health_line(service: &'static str, health: &'static str) -> impl Fn(&str) -> bool {
    move |l: &str| {
        l.contains("health changed")
            && l.contains(&format!("service={service}"))
            && (l.contains(&format!("health={health}")) || l.contains(&format!("health=\"{health}\"")))
    }
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn tunnelled_health_checks_mark_a_backend_without_the_vip_down() {
    let mut pair = Pair::up();
    pair.decap();
    let config = Path::new(RUN).join("lb.toml");
    std::fs::write(&config, daemon_config()).unwrap();
    let log = Path::new(RUN).join("lb.log");
    let bin = testenv::lb_binary();
    let lb = testenv::spawn_logged(
        BAL,
        &[bin.to_str().unwrap(), "run", "-c", config.to_str().unwrap(), "--detach-on-exit"],
        &log,
    )
    .unwrap();
    pair.children.push(lb);
    wait_for(&log, |l| l.contains("tunnel health-check program attached"), Duration::from_secs(20));
    wait_for(&log, health_line("via-ipip", "up"), Duration::from_secs(10));
    wait_for(&log, health_line("via-gue", "up"), Duration::from_secs(10));

    // The ipip service's VIP leaves the backend: its checks reach the backend, decapsulated,
    // and find no one; the backend's own address still answers, so only a check through
    // the tunnel can tell.
    ip(&["-n", BE, "addr", "del", &format!("{VIP_IPIP}/32"), "dev", "lo"]);
    let down = wait_for(&log, health_line("via-ipip", "down"), Duration::from_secs(10));
    assert!(down.contains("through the tunnel"), "the detail says where it looked: {down}");
    // The gue service's backend is untouched.
    std::thread::sleep(Duration::from_secs(1));
    assert!(!read(&log).lines().any(health_line("via-gue", "down")), "{}", read(&log));
}

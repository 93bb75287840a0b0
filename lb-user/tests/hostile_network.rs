//! Hostile traffic on the test network against the real `lb run` (XDP, `nat`, a 300-port
//! SNAT range), sent from a second client namespace while the real client keeps asking:
//! a spray of bare ACKs for connections that never existed takes no SNAT port at all
//! (dropped as `no_flow`), and a spray of SYNs from spoofed sources, larger than the SNAT
//! range of every backend together, holds its ports only until `tcp_handshake_timeout`,
//! after which every request of the real client succeeds. Root only.
mod common;

use std::time::{Duration, Instant};

use common::net::*;
use serde_json::Value;
use testenv::{LbDaemon, CLIENT_NS, VIP_V4};

const SPRAY_NS: &str = "lbt-spray";
const SPRAY_HOST: u8 = 4;
const SPRAY_V4: &str = "172.20.0.4";
/// 300 SNAT ports per backend, 900 for the three together.
const SNAT_PORTS: &str = "20000-20299";
const SNAT_RANGE: u64 = 300;
const HANDSHAKE_TIMEOUT_S: u64 = 3;
/// The sources the SYN spray pretends to be: nobody on the test network answers for them,
/// so no handshake ever completes (the backends' SYN-ACKs go nowhere).
const SPOOFED_PREFIX: &str = "10.99.";

fn config() -> String {
    format!(
        "[daemon]\ninterface = \"eth0\"\nmode = \"xdp\"\npin_path = \"{pin}\"\n\
         admin_listen = \"127.0.0.1:9100\"\nstate_file = \"/run/lbt/state.json\"\n\
         snat_ports = \"{SNAT_PORTS}\"\ntcp_handshake_timeout = \"{HANDSHAKE_TIMEOUT_S}s\"\n\n\
         [[service]]\nname = \"web\"\nvip = \"{VIP_V4}:80\"\nforwarding = \"nat\"\nhealth_check = {{ type = \"none\" }}\n\
         [[service.backend]]\naddress = \"172.20.0.11:80\"\n[[service.backend]]\naddress = \"172.20.0.12:80\"\n\
         [[service.backend]]\naddress = \"172.20.0.13:80\"\n",
        pin = testenv::LB_PIN_PATH,
    )
}

/// Raw TCP segments with the given flags from fresh source ports to `dst:dport`, paced; with
/// `spoof` the IP header is written here too, each segment from another address of
/// 10.99.0.0/16. Prints how many it sent. Bounded by `n`.
const SPRAY: &str = r#"
import socket, struct, sys, time
src, dst, dport, n, pps, flags, spoof = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7] == "spoof"
def csum(b):
    if len(b) % 2:
        b += b"\0"
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while t >> 16:
        t = (t & 0xffff) + (t >> 16)
    return ~t & 0xffff
if spoof:
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
start, sent = time.monotonic(), 0
for i in range(n):
    source = "10.99.%d.%d" % (i // 250, i % 250 + 1) if spoof else src
    ack = 1000 + i if flags & 0x10 else 0
    tcp = struct.pack("!HHIIBBHHH", 20000 + i % 40000, dport, 7 * i, ack, 5 << 4, flags, 64240, 0, 0)
    pseudo = socket.inet_aton(source) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
    if spoof:
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), i & 0xffff, 0, 64, 6, 0, socket.inet_aton(source), socket.inet_aton(dst))
        ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
        s.sendto(ip + tcp, (dst, 0))
    else:
        s.sendto(tcp, (dst, 0))
    sent += 1
    ahead = sent / pps - (time.monotonic() - start)
    if ahead > 0:
        time.sleep(ahead)
print(sent, flush=True)
"#;

const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;

fn spray(flags: u8, n: u32, spoof: bool) -> u64 {
    let out = testenv::exec_ok(
        SPRAY_NS,
        &[
            "python3",
            "-c",
            SPRAY,
            SPRAY_V4,
            VIP_V4,
            "80",
            &n.to_string(),
            "4000",
            &flags.to_string(),
            if spoof { "spoof" } else { "own" },
        ],
    )
    .expect("spray");
    out.trim().parse().unwrap_or_else(|_| panic!("spray output: {out}"))
}

/// Flows (each holding a SNAT port in nat mode) whose client address starts with `prefix`.
fn flows_from(lb: &LbDaemon, prefix: &str) -> u64 {
    let flows: Vec<Value> = serde_json::from_str(&lb.list_json("flows").unwrap()).unwrap();
    flows.iter().filter(|f| f["client"].as_str().unwrap_or_default().starts_with(prefix)).count() as u64
}

fn drops(lb: &LbDaemon, reason: &str) -> u64 {
    let stats: Value = serde_json::from_str(&lb.list_json("stats").unwrap()).unwrap();
    stats["drops"][reason].as_u64().unwrap_or_else(|| panic!("drops.{reason}: {stats}"))
}

/// `n` requests from the real client, one after the other; how many failed, and why.
fn requests(n: usize) -> Vec<String> {
    (0..n)
        .filter_map(|_| {
            testenv::curl(CLIENT_NS, &format!("http://{VIP_V4}/"), Duration::from_secs(2))
                .err()
                .map(|e| format!("{e:#}"))
        })
        .collect()
}

fn net_with_sprayer() -> Net {
    let net = Net::up(false);
    testenv::add_client(SPRAY_NS, SPRAY_HOST).expect("spray client");
    net
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_spray_of_bare_acks_takes_no_snat_port_and_every_request_succeeds() {
    let _net = net_with_sprayer();
    let lb = start(&config());
    assert!(requests(3).is_empty(), "the VIP answers before the spray");
    let no_flow_before = drops(&lb, "no_flow");
    let sent = spray(TCP_ACK, 2 * SNAT_RANGE as u32, false);
    let held = flows_from(&lb, SPRAY_V4);
    let dropped = drops(&lb, "no_flow") - no_flow_before;
    let failed = requests(15);
    println!("ACK spray: sent {sent}, SNAT ports held after it {held}, dropped as no_flow {dropped}; real client: {} of 15 failed", failed.len());
    assert_eq!(held, 0, "a bare ACK opens no nat flow");
    assert!(dropped >= sent, "every ACK is counted as no_flow ({dropped} of {sent})");
    assert!(failed.is_empty(), "the real client's requests after the spray: {failed:?}");
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_spoofed_syn_spray_larger_than_the_snat_range_lets_go_within_the_handshake_timeout() {
    let _net = net_with_sprayer();
    let lb = start(&config());
    assert!(requests(3).is_empty(), "the VIP answers before the spray");
    // Every backend's range and then some.
    let sent = spray(TCP_SYN, 4 * SNAT_RANGE as u32, true);
    let spray_end = Instant::now();
    let held = flows_from(&lb, SPOOFED_PREFIX);
    let exhausted = drops(&lb, "snat_exhausted");
    // The real client retries until its first success (bounded), then every request of a
    // run of 15 must succeed.
    let deadline = spray_end + Duration::from_secs(15);
    let first_success = loop {
        if requests(1).is_empty() {
            break Some(spray_end.elapsed());
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let held_then = flows_from(&lb, SPOOFED_PREFIX);
    let failed = requests(15);
    println!(
        "spoofed SYN spray: sent {sent}, SNAT ports held after it {held} (range {} over 3 backends), \
         snat_exhausted drops {exhausted}; first success {:?} after it, ports still held then {held_then}; \
         real client: {} of 15 failed",
        3 * SNAT_RANGE,
        first_success,
        failed.len()
    );
    assert!(
        held >= 3 * SNAT_RANGE * 9 / 10,
        "the spray filled the SNAT ranges ({held} held): the test tests nothing otherwise"
    );
    let first = first_success.expect("the real client got through within 15 s of the spray");
    assert!(first <= Duration::from_secs(15), "first success after {first:?}");
    assert!(failed.is_empty(), "the real client's requests once the embryonic flows expired: {failed:?}");
    // The client may get through before the embryonic flows expire (a few ports the spray
    // left free): then the ports must still come back, by the timeout and the next sweep of
    // ended flows (every 10 s).
    let back_by = spray_end + Duration::from_secs(HANDSHAKE_TIMEOUT_S + 12);
    let mut held_later = held_then;
    while held_later >= held && Instant::now() < back_by {
        std::thread::sleep(Duration::from_millis(500));
        held_later = flows_from(&lb, SPOOFED_PREFIX);
    }
    println!("ports held {:?} after the spray: {held_later}", spray_end.elapsed());
    assert!(held_later < held, "embryonic flows gave their ports back ({held} → {held_later})");
}

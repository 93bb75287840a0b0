//! `cargo xtask bench`'s data-path measurements, printed as one JSON object on stdout.
//! Root only: it loads the real XDP object, fills its maps with the daemon's own code (the
//! packet tests' harness) and times frames through BPF_PROG_TEST_RUN. The control plane's
//! costs are `bench_control`'s.
//!
//! ```sh
//! cargo run --release -p lb-xdp --example bench_datapath -- [--quick]
//! ```
//!
//! Two ways of timing a frame, because BPF_PROG_TEST_RUN with `repeat` runs the program
//! again and again on the *same buffer*, which the program rewrites:
//! - `repeat`: one call, the kernel's average over `repeat` runs. Exact, but only for
//!   frames the program leaves as they are (pass, non-VIP) or changes into a frame that
//!   takes the same path again (dsr: only the MACs change).
//!   An encapsulated frame (ipip, gue) leaves for a backend's address, which is not a VIP,
//!   so it is timed per call; dsr's established flow is timed that way too, beside it.
//! - `per_call`: one call per frame with `repeat = 1`, the kernel's time for each run
//!   summed. A nat rewrite (the frame leaves for a backend) or a new flow (each needs a
//!   new 5-tuple) can only be timed this way. Each such run also pays one timer read and
//!   bottom-half toggle; that overhead is measured on the pass-through program (per-call
//!   minus repeat) and subtracted, and both figures are in the JSON.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use aya::programs::{TestRun, TestRunOptions, Xdp};
use aya_obj::programs::XdpAttachType;
use lb_common::addr::{ip_words, port_be};
use lb_common::consts::{FLOW_ESTABLISHED, PROTO_TCP};
use lb_common::maps::{FlowKey, FlowState};
use lb_xdp::maps::Maps;
use lb_xdp::testkit::harness::{Harness, XDP_PASS, XDP_TX};
use lb_xdp::testkit::packet::{Pkt, ACK, SYN, TCP};
use serde_json::{json, Value};

/// Counts for one run of the benchmark.
struct Counts {
    /// `repeat` for the frames that allow it.
    repeat: u32,
    /// Frames timed one call each (established flows, replies).
    per_call: u32,
    /// New dsr flows timed (each inserts a flow).
    new_flows: u32,
    /// New nat flows timed: each also takes an SNAT port. Kept to ~20% of the ports (3
    /// backends × 31744), where a flow's 16 probes essentially never all find a taken port
    /// (at ~38% the first snat_exhausted drop showed up after ~36k flows).
    nat_new_flows: u32,
    /// Entries written into the flow table before the "filled" cases.
    fill: u32,
}

const FULL: Counts =
    Counts { repeat: 1_000_000, per_call: 1_000_000, new_flows: 100_000, nat_new_flows: 20_000, fill: 1 << 20 };
const QUICK: Counts = Counts { repeat: 1_000, per_call: 1_000, new_flows: 1_000, nat_new_flows: 1_000, fill: 10_000 };

/// flow_table_size 1M (the default) in both table states, so only the fill differs.
/// snat_ports wider than the default, for the nat new-flow case (see `nat_new_flows`).
/// Eight services (nat, dsr, ipip and gue; IPv4 and IPv6), each over the test network's
/// three servers.
fn config() -> String {
    let mut text = String::from(
        "[daemon]\ninterface = \"eth0\"\nsnat_ipv4 = \"172.20.0.10\"\nsnat_ipv6 = \"fd00:20::10\"\nsnat_ports = \"1024-32767\"\nflow_table_size = 1048576\n",
    );
    for (name, vip, forwarding, v6) in [
        ("nat4", "172.20.0.100:80", "nat", false),
        ("nat6", "[fd00:20::100]:80", "nat", true),
        ("dsr4", "172.20.0.101:80", "dsr", false),
        ("dsr6", "[fd00:20::101]:80", "dsr", true),
        ("ipip4", "172.20.0.102:80", "ipip", false),
        ("ipip6", "[fd00:20::102]:80", "ipip", true),
        ("gue4", "172.20.0.104:80", "gue", false),
        ("gue6", "[fd00:20::104]:80", "gue", true),
    ] {
        text += &format!("\n[[service]]\nname = \"{name}\"\nvip = \"{vip}\"\nforwarding = \"{forwarding}\"\n");
        for n in 1..=3 {
            let address = if v6 { format!("[fd00:20::1{n}]:80") } else { format!("172.20.0.1{n}:80") };
            text += &format!("[[service.backend]]\naddress = \"{address}\"\n");
        }
    }
    text
}

struct Family {
    name: &'static str,
    client: &'static str,
    nat_vip: &'static str,
    dsr_vip: &'static str,
    ipip_vip: &'static str,
    gue_vip: &'static str,
    non_vip: &'static str,
    snat: &'static str,
}

const FAMILIES: [Family; 2] = [
    Family {
        name: "ipv4",
        client: "172.20.0.2:40000",
        nat_vip: "172.20.0.100:80",
        dsr_vip: "172.20.0.101:80",
        ipip_vip: "172.20.0.102:80",
        gue_vip: "172.20.0.104:80",
        non_vip: "172.20.0.11:80",
        snat: "172.20.0.10",
    },
    Family {
        name: "ipv6",
        client: "[fd00:20::2]:40000",
        nat_vip: "[fd00:20::100]:80",
        dsr_vip: "[fd00:20::101]:80",
        ipip_vip: "[fd00:20::102]:80",
        gue_vip: "[fd00:20::104]:80",
        non_vip: "[fd00:20::11]:80",
        snat: "fd00:20::10",
    },
];

fn main() {
    lb_xdp::testkit::harness::require_root();
    let quick = std::env::args().any(|a| a == "--quick");
    let counts = if quick { QUICK } else { FULL };
    let started = Instant::now();
    let (datapath, overhead) = datapath(&counts);
    let out = json!({
        "quick": quick,
        "repeat": counts.repeat,
        "per_call": counts.per_call,
        "new_flows": counts.new_flows,
        "nat_new_flows": counts.nat_new_flows,
        "fill": counts.fill,
        "per_call_overhead_ns": overhead,
        "datapath": datapath,
        "seconds": started.elapsed().as_secs_f64(),
    });
    println!("{out}");
}

/// One row of the data-path table.
fn row(case: &str, family: &str, table: &str, method: &str, ns: f64, raw_ns: f64, packets: u64) -> Value {
    json!({ "case": case, "family": family, "table": table, "method": method, "ns": ns, "raw_ns": raw_ns, "packets": packets })
}

fn datapath(c: &Counts) -> (Vec<Value>, f64) {
    let mut rows = Vec::new();
    let empty = Harness::new(&config());
    // The floor: a program that only returns XDP_PASS, timed both ways; the difference is
    // what a per-call measurement adds to every frame.
    let pass_pin = format!("{}-pass", empty.pin_path().display());
    testenv::pin_pass_program(&pass_pin).expect("load and pin the pass-through program");
    let pass = Xdp::from_pin(&pass_pin, XdpAttachType::Interface).expect("open the pass-through program");
    let _ = std::fs::remove_file(&pass_pin);
    let floor_frame = Pkt::tcp(FAMILIES[0].client, FAMILIES[0].non_vip, ACK).bytes();
    let floor_repeat = repeat_ns(&pass, &floor_frame, c.repeat, XDP_PASS);
    let floor_call = per_call_ns(&pass, (0..c.per_call).map(|_| floor_frame.clone()), XDP_PASS);
    let overhead = (floor_call - floor_repeat).max(0.0);
    rows.push(row(
        "pass-through program (floor)",
        "ipv4",
        "empty",
        "repeat",
        floor_repeat,
        floor_repeat,
        c.repeat as u64,
    ));
    for f in &FAMILIES {
        rows.extend(family_cases(&empty, f, "empty", c, overhead));
    }
    // One 1M-entry table at a time: each harness holds ~150 MB of maps.
    drop(empty);
    let full = filled(c.fill);
    for f in &FAMILIES {
        rows.extend(family_cases(&full, f, "filled", c, overhead));
    }
    (rows, overhead)
}

/// A harness whose flow table holds `n` entries written from userspace through the pinned
/// map (dsr flows of other clients, live, to a real backend), so lookups and inserts run
/// against a full LRU hash.
fn filled(n: u32) -> Harness {
    let h = Harness::new(&config());
    let mut maps = Maps::open_pinned(h.pin_path()).expect("open the pinned maps");
    let backend = h.plan.backends.first().expect("a backend").id;
    let (vip, family) = ip_words("172.20.0.101".parse().unwrap());
    let now = monotonic_ns();
    let started = Instant::now();
    for i in 0..n {
        // Clients 10.0.0.0/8, one port each: distinct keys, none the measured flows'.
        let client = Ipv4Addr::from(0x0a00_0000u32 + i);
        let key = FlowKey {
            src: ip_words(IpAddr::V4(client)).0,
            dst: vip,
            sport: port_be(50000),
            dport: port_be(80),
            proto: PROTO_TCP,
            family,
            _pad: [0; 2],
        };
        let value = FlowState { last_seen_ns: now, backend_id: backend, flags: FLOW_ESTABLISHED, ..Default::default() };
        maps.flows.insert(key, value, 0).expect("insert into LB_FLOWS");
        assert!(started.elapsed() < Duration::from_secs(120), "filling the flow table took over 2 minutes");
    }
    eprintln!("bench_datapath: {n} flows written in {:.1} s", started.elapsed().as_secs_f64());
    h
}

/// CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns: a filled entry must look live.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn family_cases(h: &Harness, f: &Family, table: &str, c: &Counts, overhead: f64) -> Vec<Value> {
    let prog = h.program();
    let mut rows = Vec::new();
    let mut push = |case: &str, method: &str, raw: f64, packets: u32| {
        let ns = if method == "per_call" { (raw - overhead).max(0.0) } else { raw };
        rows.push(row(case, f.name, table, method, ns, raw, packets as u64));
    };

    let non_vip = Pkt::tcp(f.client, f.non_vip, ACK).bytes();
    push("non-VIP traffic (XDP_PASS)", "repeat", repeat_ns(prog, &non_vip, c.repeat, XDP_PASS), c.repeat);

    // nat: the SYN makes the flow, its later packets and the backend's replies are timed.
    let syn = Pkt::tcp(f.client, f.nat_vip, SYN);
    let (action, out) = h.run(&syn.bytes());
    assert_eq!(action, XDP_TX, "{}: the SYN to the nat VIP is forwarded", f.name);
    let ack = Pkt::tcp(f.client, f.nat_vip, ACK).bytes();
    push(
        "nat, established flow",
        "per_call",
        per_call_ns(prog, (0..c.per_call).map(|_| ack.clone()), XDP_TX),
        c.per_call,
    );
    let (backend, snat_port) = natted_to(&out, f);
    let mut reply =
        Pkt::tcp(&backend.to_string(), &SocketAddr::new(f.snat.parse().unwrap(), snat_port).to_string(), ACK);
    reply.src_mac = lb_xdp::testkit::harness::mac_of(backend.ip());
    reply.dst_mac = lb_xdp::testkit::packet::LB_MAC;
    let reply = reply.bytes();
    push(
        "nat, reply (reverse nat)",
        "per_call",
        per_call_ns(prog, (0..c.per_call).map(|_| reply.clone()), XDP_TX),
        c.per_call,
    );
    push(
        "nat, new flow (Maglev, flow + SNAT insert)",
        "per_call",
        per_call_ns(prog, (0..c.nat_new_flows).map(|i| new_client_syn(f, f.nat_vip, i)), XDP_TX),
        c.nat_new_flows,
    );

    // dsr: only the MACs change, so the rewritten frame takes the same path again.
    let (action, _) = h.run(&Pkt::tcp(f.client, f.dsr_vip, SYN).bytes());
    assert_eq!(action, XDP_TX, "{}: the SYN to the dsr VIP is forwarded", f.name);
    let dsr_ack = Pkt::tcp(f.client, f.dsr_vip, ACK).bytes();
    push("dsr, established flow", "repeat", repeat_ns(prog, &dsr_ack, c.repeat, XDP_TX), c.repeat);
    push(
        "dsr, new flow (Maglev, flow insert)",
        "per_call",
        per_call_ns(prog, (0..c.new_flows).map(|i| new_client_syn(f, f.dsr_vip, i + c.new_flows)), XDP_TX),
        c.new_flows,
    );
    // The same flow per call, to compare with the encapsulated flows, which can only be
    // timed so.
    push(
        "dsr, established flow",
        "per_call",
        per_call_ns(prog, (0..c.per_call).map(|_| dsr_ack.clone()), XDP_TX),
        c.per_call,
    );

    // ipip and gue: dsr plus an outer header (bpf_xdp_adjust_head and the header writes).
    for (kind, vip, offset) in [("ipip", f.ipip_vip, 2), ("gue", f.gue_vip, 3)] {
        let (action, _) = h.run(&Pkt::tcp(f.client, vip, SYN).bytes());
        assert_eq!(action, XDP_TX, "{}: the SYN to the {kind} VIP is forwarded", f.name);
        let ack = Pkt::tcp(f.client, vip, ACK).bytes();
        push(
            &format!("{kind}, established flow"),
            "per_call",
            per_call_ns(prog, (0..c.per_call).map(|_| ack.clone()), XDP_TX),
            c.per_call,
        );
        push(
            &format!("{kind}, new flow (Maglev, flow insert)"),
            "per_call",
            per_call_ns(prog, (0..c.new_flows).map(|i| new_client_syn(f, vip, i + offset * c.new_flows)), XDP_TX),
            c.new_flows,
        );
    }
    rows
}

/// A SYN from the i-th of many clients (distinct addresses, so distinct flows).
fn new_client_syn(f: &Family, vip: &str, i: u32) -> Vec<u8> {
    let client: IpAddr = if f.name == "ipv4" {
        IpAddr::V4(Ipv4Addr::from(0x0b00_0000u32 + i))
    } else {
        IpAddr::V6(Ipv6Addr::from(0xfd00_0021u128 << 96 | i as u128))
    };
    let vip: SocketAddr = vip.parse().unwrap();
    let mut p = Pkt::tcp(f.client, &vip.to_string(), SYN);
    p.src = SocketAddr::new(client, 40000);
    p.bytes()
}

/// The backend and SNAT port a natted frame was sent to (from its IP and TCP headers).
fn natted_to(frame: &[u8], f: &Family) -> (SocketAddr, u16) {
    let (dst, l4) = if f.name == "ipv4" {
        let ihl = (frame[14] & 0x0f) as usize * 4;
        (IpAddr::V4(Ipv4Addr::new(frame[30], frame[31], frame[32], frame[33])), 14 + ihl)
    } else {
        let mut o = [0u8; 16];
        o.copy_from_slice(&frame[38..54]);
        (IpAddr::V6(Ipv6Addr::from(o)), 54)
    };
    assert_eq!(frame[if f.name == "ipv4" { 23 } else { 20 }], TCP);
    let sport = u16::from_be_bytes([frame[l4], frame[l4 + 1]]);
    let dport = u16::from_be_bytes([frame[l4 + 2], frame[l4 + 3]]);
    (SocketAddr::new(dst, dport), sport)
}

/// The kernel's average ns per run over `repeat` runs of one frame.
fn repeat_ns(prog: &Xdp, frame: &[u8], repeat: u32, want: u32) -> f64 {
    let mut out = vec![0u8; frame.len() + 256];
    let r = prog
        .test_run(TestRunOptions { data_in: Some(frame), data_out: Some(&mut out), repeat, ..Default::default() })
        .expect("BPF_PROG_TEST_RUN");
    assert_eq!(r.return_value, want, "unexpected action in a repeat run");
    r.duration.as_nanos() as f64
}

/// The kernel's mean ns per run over one call per frame; every frame must end in `want`.
fn per_call_ns(prog: &Xdp, frames: impl Iterator<Item = Vec<u8>>, want: u32) -> f64 {
    let mut out = vec![0u8; 2048];
    let (mut total, mut n) = (0u128, 0u64);
    let deadline = Instant::now() + Duration::from_secs(120);
    for frame in frames {
        let r = prog
            .test_run(TestRunOptions { data_in: Some(&frame), data_out: Some(&mut out), ..Default::default() })
            .expect("BPF_PROG_TEST_RUN");
        assert_eq!(r.return_value, want, "unexpected action for frame {n}");
        total += r.duration.as_nanos();
        n += 1;
        assert!(Instant::now() < deadline, "a per-call case took over 2 minutes");
    }
    total as f64 / n.max(1) as f64
}

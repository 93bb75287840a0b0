//! `cargo xtask bench`'s data-path measurements, printed as one JSON object on stdout.
//! Root only: it loads the real XDP object, fills its maps with the daemon's own code (the
//! packet tests' harness) and times frames through BPF_PROG_TEST_RUN. The control plane's
//! costs are `bench_control`'s.
//!
//! ```sh
//! cargo run --release -p lb-xdp --example bench_datapath -- [--quick] [--empty-only]
//! ```
//!
//! `--empty-only`: only the empty flow table (a quick look while changing the data path).
//!
//! One method for every path: `BPF_PROG_TEST_RUN` with `repeat` on the bench entry point
//! `lb_xdp_bench` (lb-ebpf `bench.rs`), which is `lb_xdp` followed by a restore of the
//! frame, so that every repetition takes the path being timed even when the program
//! rewrites the frame (nat, encapsulation); for new flows it also counts the source
//! address up after each repetition, so that each one opens a flow. The restore's cost is
//! measured (the bench entry point minus `lb_xdp` on a frame neither rewrites) and
//! subtracted. Every timed call is checked: its return value, the action counter (every
//! repetition took that action), the new-flow counters (every repetition of a new-flow case
//! opened a flow, none of the others did), and the frame (restored as it came).
//! `BPF_F_TEST_XDP_LIVE_FRAMES` was tried and is not usable for this: its recycled pages
//! keep what the program wrote.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use aya::programs::{TestRun, TestRunOptions, Xdp};
use aya_obj::programs::XdpAttachType;
use lb_xdp::maps::sum_counters;
use lb_xdp::testkit::frame;
use lb_xdp::testkit::harness::{Harness, XDP_PASS, XDP_TX};
use lb_xdp::testkit::packet::{Pkt, ACK, SYN};
use serde_json::{json, Value};

/// One state of the flow table the cases run against.
struct Table {
    name: &'static str,
    /// `flow_table_size`.
    size: u32,
    /// Live flows put in first (by the data path itself: new dsr flows of other clients).
    fill: u32,
}

/// Counts for one run of the benchmark.
struct Counts {
    /// Repetitions of every established-flow, reply and non-VIP case.
    repeat: u32,
    /// New dsr / ipip / gue flows per case.
    new_flows: u32,
    /// New nat flows per case: each also takes an SNAT port. Kept to ~20% of the ports (3
    /// backends × 31744), where a flow's 16 probes essentially never all find a taken port.
    nat_new_flows: u32,
    tables: &'static [Table],
}

const FULL: Counts = Counts {
    repeat: 1_000_000,
    new_flows: 100_000,
    nat_new_flows: 20_000,
    tables: &[
        Table { name: "empty", size: 1 << 20, fill: 0 },
        Table { name: "1M flows", size: 1 << 20, fill: 1 << 20 },
        Table { name: "10M flows", size: 10 << 20, fill: 10 << 20 },
    ],
};
const QUICK: Counts = Counts {
    repeat: 1_000,
    new_flows: 1_000,
    nat_new_flows: 1_000,
    tables: &[
        Table { name: "empty", size: 1 << 16, fill: 0 },
        Table { name: "10k flows", size: 1 << 16, fill: 10_000 },
    ],
};

/// Repetitions per call while filling a table (bounded time per syscall).
const FILL_CHUNK: u32 = 1 << 20;

/// snat_ports wider than the default, for the nat new-flow case (see `nat_new_flows`).
/// Eight services (nat, dsr, ipip and gue; IPv4 and IPv6), each over the test network's
/// three servers.
fn config(flow_table_size: u32) -> String {
    let mut text = format!(
        "[daemon]\ninterface = \"eth0\"\nsnat_ipv4 = \"172.20.0.10\"\nsnat_ipv6 = \"fd00:20::10\"\nsnat_ports = \"1024-32767\"\nflow_table_size = {flow_table_size}\n",
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
    /// Offset in an Ethernet frame of the low 32-bit word of the source address.
    source_word: u32,
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
        source_word: 14 + 12,
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
        source_word: 14 + 8 + 12,
    },
];

fn main() {
    lb_xdp::testkit::harness::require_root();
    let quick = std::env::args().any(|a| a == "--quick");
    let counts = if quick { QUICK } else { FULL };
    let started = Instant::now();
    let empty_only = std::env::args().any(|a| a == "--empty-only");
    let tables = if empty_only { &counts.tables[..1] } else { counts.tables };
    let datapath = datapath(&counts, tables);
    let out = json!({
        "quick": quick,
        "repeat": counts.repeat,
        "new_flows": counts.new_flows,
        "nat_new_flows": counts.nat_new_flows,
        "tables": tables.iter().map(|t| json!({ "table": t.name, "flow_table_size": t.size, "fill": t.fill })).collect::<Vec<_>>(),
        "datapath": datapath,
        "seconds": started.elapsed().as_secs_f64(),
    });
    println!("{out}");
}

/// What a timed case expects of every repetition.
#[derive(Clone, Copy)]
struct Expect {
    action: u32,
    /// Each repetition opens a new flow (and gets a new source address to do so).
    new_flow: bool,
}

const PASSED: Expect = Expect { action: XDP_PASS, new_flow: false };
const SENT: Expect = Expect { action: XDP_TX, new_flow: false };
const OPENED: Expect = Expect { action: XDP_TX, new_flow: true };

/// The floor, the restore's cost and every case, for each table state.
fn datapath(c: &Counts, tables: &[Table]) -> Value {
    let mut rows = Vec::new();
    let mut wrapper = Vec::new();
    let mut floor = 0.0;
    for table in tables {
        // One table at a time: a 10M-entry harness holds a few GB of maps.
        let mut h = Harness::new(&config(table.size));
        // Verified before any flow opens: the verifier takes seconds, and an unanswered
        // handshake lives only `tcp_handshake_timeout`.
        h.bench_program();
        if floor == 0.0 {
            floor = floor_ns(&h, c.repeat);
        }
        fill(&mut h, table.fill);
        for f in &FAMILIES {
            let cost = restore_ns(&mut h, f, c.repeat);
            wrapper.push(json!({ "table": table.name, "family": f.name, "ns": cost }));
            rows.extend(family_cases(&mut h, f, table, c, cost));
        }
    }
    json!({ "floor_ns": floor, "restore_ns": wrapper, "rows": rows })
}

/// The pass-through program (returns XDP_PASS, touches nothing): what any XDP program
/// costs through this interface.
fn floor_ns(h: &Harness, repeat: u32) -> f64 {
    let pin = format!("{}-pass", h.pin_path().display());
    testenv::pin_pass_program(&pin).expect("load and pin the pass-through program");
    let pass = Xdp::from_pin(&pin, XdpAttachType::Interface).expect("open the pass-through program");
    let _ = std::fs::remove_file(&pin);
    let frame = Pkt::tcp(FAMILIES[0].client, FAMILIES[0].non_vip, ACK).bytes();
    let mut out = vec![0u8; frame.len() + 256];
    let r = pass
        .test_run(TestRunOptions { data_in: Some(&frame), data_out: Some(&mut out), repeat, ..Default::default() })
        .expect("BPF_PROG_TEST_RUN");
    assert_eq!(r.return_value, XDP_PASS);
    r.duration.as_nanos() as f64
}

/// The bench entry point's own cost: it minus `lb_xdp` on a non-VIP frame, which neither
/// rewrites (so both take exactly the same path, and `repeat` is exact for `lb_xdp`).
fn restore_ns(h: &mut Harness, f: &Family, repeat: u32) -> f64 {
    let frame = Pkt::tcp(f.client, f.non_vip, ACK).bytes();
    let mut out = vec![0u8; frame.len() + 256];
    // Alternating pairs, the median difference: one pair moves by tens of ns with what the
    // other core does, and this figure is subtracted from every case.
    let mut differences: Vec<f64> = (0..RESTORE_PAIRS)
        .map(|_| {
            let plain = h
                .program()
                .test_run(TestRunOptions {
                    data_in: Some(&frame),
                    data_out: Some(&mut out),
                    repeat,
                    ..Default::default()
                })
                .expect("BPF_PROG_TEST_RUN");
            assert_eq!(plain.return_value, XDP_PASS);
            timed(h, "restore cost", &frame, repeat, PASSED, 0) - plain.duration.as_nanos() as f64
        })
        .collect();
    differences.sort_by(f64::total_cmp);
    differences[differences.len() / 2].max(0.0)
}

/// Calls an established-flow, reply or non-VIP case is the median of.
const CALLS_PER_CASE: usize = 3;

/// Pairs of runs the restore's cost is the median of.
const RESTORE_PAIRS: usize = 5;

/// Put `n` live flows into the table through the data path itself: new dsr flows of
/// clients 10.0.0.0 upwards (none of them a measured flow's), `FILL_CHUNK` per call.
fn fill(h: &mut Harness, n: u32) {
    let started = Instant::now();
    let mut done = 0;
    while done < n {
        let count = (n - done).min(FILL_CHUNK);
        let client = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000u32 + done)), 50000);
        let syn = Pkt::tcp(&client.to_string(), FAMILIES[0].dsr_vip, SYN).bytes();
        timed(h, "fill", &syn, count, OPENED, FAMILIES[0].source_word);
        done += count;
        assert!(started.elapsed() < Duration::from_secs(180), "filling the flow table took over 3 minutes");
    }
    if n > 0 {
        eprintln!("bench_datapath: {n} flows opened in {:.1} s", started.elapsed().as_secs_f64());
    }
}

fn family_cases(h: &mut Harness, f: &Family, table: &Table, c: &Counts, restore: f64) -> Vec<Value> {
    let mut rows = Vec::new();
    let mut case = |h: &mut Harness, name: &str, frame: &[u8], repeat: u32, expect: Expect| {
        let vary = if expect.new_flow { f.source_word } else { 0 };
        let what = format!("{name} ({})", f.name);
        // A new flow can be opened once; any other case is the median of a few calls.
        let calls = if expect.new_flow { 1 } else { CALLS_PER_CASE };
        let mut runs: Vec<f64> = (0..calls).map(|_| timed(h, &what, frame, repeat, expect, vary)).collect();
        runs.sort_by(f64::total_cmp);
        let raw = runs[runs.len() / 2];
        let ns = (raw - restore).max(0.0);
        rows.push(json!({
            "case": name, "family": f.name, "table": table.name, "ns": ns, "raw_ns": raw,
            "mpps": if ns > 0.0 { 1e3 / ns } else { 0.0 }, "packets": repeat,
        }));
    };

    let non_vip = Pkt::tcp(f.client, f.non_vip, ACK).bytes();
    case(h, "non-VIP traffic (XDP_PASS)", &non_vip, c.repeat, PASSED);

    // nat: the SYN makes the flow; its later packets and the backend's replies are timed.
    let (action, out) = h.run(&Pkt::tcp(f.client, f.nat_vip, SYN).bytes());
    assert_eq!(action, XDP_TX, "{}: the SYN to the nat VIP is forwarded", f.name);
    let ack = Pkt::tcp(f.client, f.nat_vip, ACK).bytes();
    case(h, "nat, established flow", &ack, c.repeat, SENT);
    // The natted frame goes to the backend from the SNAT address and port the reply returns to.
    let (backend, snat) = (frame::destination(&out), frame::source(&out));
    assert_eq!(
        snat.ip(),
        f.snat.parse::<IpAddr>().unwrap(),
        "{}: the natted frame's source is the SNAT address",
        f.name
    );
    let mut reply = Pkt::tcp(&backend.to_string(), &snat.to_string(), ACK);
    reply.src_mac = lb_xdp::testkit::harness::mac_of(backend.ip());
    reply.dst_mac = lb_xdp::testkit::packet::LB_MAC;
    case(h, "nat, reply (reverse nat)", &reply.bytes(), c.repeat, SENT);
    case(h, "nat, new flow (Maglev, flow + SNAT insert)", &new_client_syn(f, f.nat_vip, 0), c.nat_new_flows, OPENED);

    for (kind, vip, clients) in [("dsr", f.dsr_vip, 1), ("ipip", f.ipip_vip, 2), ("gue", f.gue_vip, 3)] {
        let (action, _) = h.run(&Pkt::tcp(f.client, vip, SYN).bytes());
        assert_eq!(action, XDP_TX, "{}: the SYN to the {kind} VIP is forwarded", f.name);
        let ack = Pkt::tcp(f.client, vip, ACK).bytes();
        case(h, &format!("{kind}, established flow"), &ack, c.repeat, SENT);
        let syn = new_client_syn(f, vip, clients << 20);
        case(h, &format!("{kind}, new flow (Maglev, flow insert)"), &syn, c.new_flows, OPENED);
    }
    rows
}

/// A SYN from the i-th of many clients (a source address none of the other cases use).
fn new_client_syn(f: &Family, vip: &str, i: u32) -> Vec<u8> {
    let client: IpAddr = if f.name == "ipv4" {
        IpAddr::V4(Ipv4Addr::from(0x0b00_0000u32 + i))
    } else {
        IpAddr::V6(Ipv6Addr::from(0xfd00_0021u128 << 96 | i as u128))
    };
    let mut p = Pkt::tcp(f.client, vip, SYN);
    p.src = SocketAddr::new(client, 40000);
    p.bytes()
}

/// The kernel's mean ns per repetition of `frame` through the bench entry point, after
/// checking that every repetition did what `expect` says.
fn timed(h: &mut Harness, what: &str, frame: &[u8], repeat: u32, expect: Expect, vary_at: u32) -> f64 {
    let (actions, opened) = (h.action_count(expect.action), new_flows(h));
    let (action, out, took) = h.run_bench(frame, repeat, vary_at);
    assert_eq!(action, expect.action, "{what}: unexpected action");
    assert_eq!(h.action_count(expect.action) - actions, repeat as u64, "{what}: a repetition took another action");
    let want_new = if expect.new_flow { repeat as u64 } else { 0 };
    assert_eq!(new_flows(h) - opened, want_new, "{what}: new flows opened");
    if vary_at == 0 {
        assert_eq!(out, frame, "{what}: the bench entry point restores the frame");
    }
    took.as_nanos() as f64
}

/// New flows counted so far, over every service.
fn new_flows(h: &Harness) -> u64 {
    h.plan
        .services
        .iter()
        .map(|s| sum_counters(&h.maps().service_stats.get(&s.id, 0).expect("service stats")).new_flows)
        .sum()
}

//! The results of a run: medians over the rounds, the JSON file, BENCHMARKS.md.
use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{bail, Result};
use serde::Serialize;
use serde_json::{json, Value};

use super::targets::{CpuSource, Group, Target};
use super::wrk::{WrkResult, CONNECTIONS};
use super::{Plan, COMMAND};

/// One wrk run of one configuration in one round.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    pub target: String,
    pub round: u32,
    pub new_connections: bool,
    pub wrk: WrkResult,
    /// Machine-wide softirq seconds during the run.
    pub softirq_s: f64,
    /// The balancer process tree's user + system seconds during the run (proxies).
    pub process_s: Option<f64>,
}

/// Medians over the rounds of one configuration and one kind of load.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Figures {
    pub requests_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// The balancer's CPU seconds per 100k requests: softirq (XDP, nftables) or process
    /// time (proxies); none for direct.
    pub lb_cpu_s_per_100k: Option<f64>,
    /// Machine-wide softirq seconds per 100k requests (every row, direct included).
    pub softirq_s_per_100k: f64,
    /// Socket errors and non-2xx answers, summed over the rounds.
    pub errors: u64,
    pub rounds: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub name: String,
    pub label: String,
    pub group: Group,
    pub cpu: CpuSource,
    pub keep_alive: Figures,
    pub new_connections: Figures,
}

pub struct Results {
    pub quick: bool,
    pub rounds: u32,
    pub duration_s: u64,
    pub rows: Vec<Row>,
    samples: Vec<Sample>,
    pub datapath: Value,
    pub xdp_in_traffic: Value,
    pub health_s: Vec<f64>,
    pub elapsed_s: f64,
    machine: Value,
}

pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn figures(samples: &[&Sample], cpu: CpuSource) -> Figures {
    let per_100k = |s: f64, r: &WrkResult| s / r.requests.max(1) as f64 * 1e5;
    let lb_cpu = match cpu {
        CpuSource::None => None,
        CpuSource::Softirq => Some(median(samples.iter().map(|s| per_100k(s.softirq_s, &s.wrk)).collect())),
        CpuSource::Process => {
            Some(median(samples.iter().map(|s| per_100k(s.process_s.unwrap_or(0.0), &s.wrk)).collect()))
        }
    };
    Figures {
        requests_per_sec: median(samples.iter().map(|s| s.wrk.requests_per_sec).collect()),
        p50_ms: median(samples.iter().map(|s| s.wrk.p50_ms).collect()),
        p99_ms: median(samples.iter().map(|s| s.wrk.p99_ms).collect()),
        lb_cpu_s_per_100k: lb_cpu,
        softirq_s_per_100k: median(samples.iter().map(|s| per_100k(s.softirq_s, &s.wrk)).collect()),
        errors: samples.iter().map(|s| s.wrk.socket_errors + s.wrk.non_2xx).sum(),
        rounds: samples.len(),
    }
}

impl Results {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        quick: bool,
        plan: &Plan,
        targets: &[Target],
        samples: Vec<Sample>,
        datapath: Value,
        xdp_in_traffic: Value,
        health_s: Vec<f64>,
        elapsed: Duration,
    ) -> Self {
        let rows = targets
            .iter()
            .map(|t| {
                let pick = |close: bool| {
                    samples.iter().filter(|s| s.target == t.name && s.new_connections == close).collect::<Vec<_>>()
                };
                Row {
                    name: t.name.into(),
                    label: t.label.into(),
                    group: t.group,
                    cpu: t.cpu,
                    keep_alive: figures(&pick(false), t.cpu),
                    new_connections: figures(&pick(true), t.cpu),
                }
            })
            .collect();
        Results {
            quick,
            rounds: plan.rounds,
            duration_s: plan.duration.as_secs(),
            rows,
            samples,
            datapath,
            xdp_in_traffic,
            health_s,
            elapsed_s: elapsed.as_secs_f64(),
            machine: machine(),
        }
    }

    /// The quick run's assertion: every configuration and every measurement produced
    /// numbers. Never how fast.
    pub fn check_complete(&self, targets: &[Target]) -> Result<()> {
        let mut missing = Vec::new();
        for t in targets {
            for close in [false, true] {
                let ok = self.samples.iter().any(|s| {
                    s.target == t.name
                        && s.new_connections == close
                        && s.wrk.requests > 0
                        && s.wrk.requests_per_sec > 0.0
                        && s.wrk.p99_ms > 0.0
                });
                if !ok {
                    missing.push(format!("{} ({})", t.label, if close { "new connections" } else { "keep-alive" }));
                }
            }
        }
        let datapath = self.datapath["datapath"].as_array().cloned().unwrap_or_default();
        // floor + 2 families × 2 table states × the cases of each (bench_datapath's
        // `family_cases`: non-VIP; nat established, reply, new; dsr established twice, new;
        // ipip and gue established and new)
        const CASES: usize = 11;
        if datapath.len() != 1 + 2 * 2 * CASES || datapath.iter().any(|r| r["ns"].as_f64().is_none_or(|ns| ns <= 0.0)) {
            missing.push(format!("data-path rows ({} of {})", datapath.len(), 1 + 2 * 2 * CASES));
        }
        missing.extend(control_missing(&self.datapath["control"]));
        if self.xdp_in_traffic["packets"].as_u64().unwrap_or(0) == 0 {
            missing.push("XDP run time under load".into());
        }
        if self.health_s.is_empty() {
            missing.push("health-check detection time".into());
        }
        if !missing.is_empty() {
            bail!("the bench produced no numbers for: {}", missing.join(", "));
        }
        Ok(())
    }

    pub fn to_json(&self) -> Value {
        json!({
            "command": if self.quick { format!("{COMMAND} --quick") } else { COMMAND.to_string() },
            "machine": self.machine,
            "rounds": self.rounds,
            "duration_s": self.duration_s,
            "connections": CONNECTIONS,
            "elapsed_s": self.elapsed_s,
            "rows": self.rows,
            "samples": self.samples,
            "datapath": self.datapath,
            "xdp_in_traffic": self.xdp_in_traffic,
            "health_detection_s": self.health_s,
        })
    }

    pub fn row(&self, name: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.name == name)
    }

    /// `a / b` of keep-alive req/s (`close` false) or new conn/s.
    fn ratio(&self, a: &str, b: &str, close: bool) -> Option<f64> {
        let pick = |r: &Row| if close { r.new_connections.requests_per_sec } else { r.keep_alive.requests_per_sec };
        let (a, b) = (pick(self.row(a)?), pick(self.row(b)?));
        (b > 0.0).then(|| a / b)
    }

    fn dp(&self, case: &str, family: &str, table: &str) -> Option<f64> {
        self.datapath["datapath"]
            .as_array()?
            .iter()
            .find(|r| r["case"] == case && r["family"] == family && r["table"] == table)?["ns"]
            .as_f64()
    }

    pub fn markdown(&self) -> String {
        let mut m = String::new();
        let cmd = if self.quick { format!("{COMMAND} --quick") } else { COMMAND.to_string() };
        let _ = writeln!(m, "# Benchmarks\n\nGenerated by `{cmd}` (do not edit by hand: run it again). Raw data: [`bench/results/{}.json`](bench/results/{}.json); the run took {:.0} s.\n", if self.quick { "quick" } else { "full" }, if self.quick { "quick" } else { "full" }, self.elapsed_s);
        let _ =
            writeln!(m, "![keep-alive requests/s and new connections/s per configuration](bench/results/chart.png)\n");
        self.headline(&mut m);
        self.goals(&mut m);
        self.main_table(&mut m, Group::Main, "## Throughput, latency and CPU");
        self.peer_ratios(&mut m);
        self.main_table(&mut m, Group::IoModel, "## Proxy I/O models");
        self.datapath_table(&mut m);
        self.control_plane(&mut m);
        analysis(&mut m);
        self.machine_and_method(&mut m, &cmd);
        m
    }

    fn headline(&self, m: &mut String) {
        let f = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.2}×"));
        let _ = writeln!(m, "## Headline\n");
        let _ = writeln!(m, "| | keep-alive req/s vs direct | new conn/s vs direct | vs HAProxy (req/s, conn/s) | vs nginx stream | vs nftables DNAT |\n|---|---|---|---|---|---|");
        for lb in ["xdp_nat", "xdp_dsr", "proxy_l4", "proxy_http"] {
            let Some(row) = self.row(lb) else { continue };
            let pair = |peer: &str| format!("{} / {}", f(self.ratio(lb, peer, false)), f(self.ratio(lb, peer, true)));
            let _ = writeln!(
                m,
                "| {} | {} | {} | {} | {} | {} |",
                row.label,
                f(self.ratio(lb, "direct", false)),
                f(self.ratio(lb, "direct", true)),
                pair("haproxy"),
                pair("nginx_stream"),
                pair("nft_dnat")
            );
        }
        m.push('\n');
    }

    fn goals(&self, m: &mut String) {
        let met = |ok: bool| if ok { "met" } else { "**missed**" };
        let _ = writeln!(m, "## Goals (reported, not asserted)\n\n| Goal | Measured | |\n|---|---|---|");
        if let Some(r) = self.ratio("xdp_nat", "direct", false) {
            let _ = writeln!(m, "| XDP nat ≥ 0.9× direct req/s | {r:.2}× | {} |", met(r >= 0.9));
        }
        let peers = ["haproxy", "nginx_stream", "nft_dnat"];
        for close in [false, true] {
            let worst = peers.iter().filter_map(|p| self.ratio("xdp_nat", p, close)).fold(f64::INFINITY, f64::min);
            if worst.is_finite() {
                let what = if close { "new conn/s" } else { "req/s" };
                let _ = writeln!(
                    m,
                    "| XDP nat ahead of every peer on {what} | worst ratio {worst:.2}× | {} |",
                    met(worst > 1.0)
                );
            }
        }
        if let Some(r) = self.ratio("proxy_l4", "haproxy", false) {
            let c = self.ratio("proxy_l4", "haproxy", true).unwrap_or(0.0);
            let _ = writeln!(m, "| proxy l4 ≥ HAProxy mode tcp | {r:.2}× req/s, {c:.2}× conn/s | {} |", met(r >= 1.0));
        }
        self.scale_goal(m);
        if let Some(ns) = self.dp("nat, established flow", "ipv4", "empty") {
            let dsr = self.dp("dsr, established flow", "ipv4", "empty").unwrap_or(0.0);
            let _ = writeln!(
                m,
                "| established-flow fast path ≤ 100 ns/packet | nat {ns:.0} ns, dsr {dsr:.0} ns (IPv4) | {} |",
                met(ns.max(dsr) <= 100.0)
            );
        }
        m.push('\n');
    }

    /// At least 1024 services and 16384 backends: the limits this build has, and the
    /// largest reconcile the control-plane bench made.
    fn scale_goal(&self, m: &mut String) {
        let c = &self.datapath["control"];
        let (services, backends) = (c["limits"]["max_services"].as_u64(), c["limits"]["max_backends"].as_u64());
        let (Some(services), Some(backends)) = (services, backends) else { return };
        let largest = c["reconcile"].as_array().into_iter().flatten().max_by_key(|r| r["services"].as_u64());
        let reconciled = largest.map_or("–".to_string(), |r| {
            format!("{} services reconciled in {:.0} ms", r["services"], r["initial_ms"].as_f64().unwrap_or(0.0))
        });
        let ok = services >= 1024 && backends >= 16384;
        let met = if ok { "met" } else { "**missed**" };
        let _ = writeln!(
            m,
            "| ≥ 1024 services, ≥ 16384 backends | limits {services} services, {backends} backends; {reconciled} | {met} |"
        );
    }

    fn main_table(&self, m: &mut String, group: Group, title: &str) {
        let direct = self
            .row("direct")
            .map(|r| (r.keep_alive.requests_per_sec, r.new_connections.requests_per_sec))
            .unwrap_or((0.0, 0.0));
        let x = |v: f64, d: f64| if d > 0.0 { format!("{:.2}×", v / d) } else { "–".into() };
        let cpu = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.2}"));
        let _ = writeln!(m, "{title}\n");
        let _ = writeln!(m, "Medians of {} rounds of {} s per figure; {CONNECTIONS} connections. CPU: seconds per 100k requests, on the LB side (softirq for XDP and nftables, process time for proxies) and machine-wide softirq.\n", self.rounds, self.duration_s);
        let _ = writeln!(m, "| Configuration | keep-alive req/s | × direct | p50 / p99 ms | new conn/s | × direct | p50 / p99 ms | LB CPU keep-alive | LB CPU new conn | softirq keep-alive | softirq new conn | errors |");
        let _ = writeln!(m, "|---|---|---|---|---|---|---|---|---|---|---|---|");
        for r in self.rows.iter().filter(|r| r.group == group || (group == Group::IoModel && r.name == "direct")) {
            let (k, n) = (&r.keep_alive, &r.new_connections);
            let _ = writeln!(
                m,
                "| {} | {:.0} | {} | {:.2} / {:.2} | {:.0} | {} | {:.2} / {:.2} | {} | {} | {:.2} | {:.2} | {} |",
                r.label,
                k.requests_per_sec,
                x(k.requests_per_sec, direct.0),
                k.p50_ms,
                k.p99_ms,
                n.requests_per_sec,
                x(n.requests_per_sec, direct.1),
                n.p50_ms,
                n.p99_ms,
                cpu(k.lb_cpu_s_per_100k),
                cpu(n.lb_cpu_s_per_100k),
                k.softirq_s_per_100k,
                n.softirq_s_per_100k,
                k.errors + n.errors
            );
        }
        m.push('\n');
    }

    fn peer_ratios(&self, m: &mut String) {
        let peers = ["direct", "haproxy", "nginx_stream", "nft_dnat"];
        let _ = writeln!(m, "### Ratios: each lb row to each peer (keep-alive req/s, new conn/s)\n");
        let _ = writeln!(
            m,
            "| lb | {} |\n|---|{}",
            peers
                .iter()
                .map(|p| self.row(p).map_or(p.to_string(), |r| r.label.clone()))
                .collect::<Vec<_>>()
                .join(" | "),
            "---|".repeat(peers.len())
        );
        for lb in self.rows.iter().filter(|r| r.name.starts_with("xdp") || r.name.starts_with("proxy")) {
            let cells: Vec<String> = peers
                .iter()
                .map(|p| match (self.ratio(&lb.name, p, false), self.ratio(&lb.name, p, true)) {
                    (Some(a), Some(b)) => format!("{a:.2}× / {b:.2}×"),
                    _ => "–".into(),
                })
                .collect();
            let _ = writeln!(m, "| {} | {} |", lb.label, cells.join(" | "));
        }
        m.push('\n');
    }

    fn datapath_table(&self, m: &mut String) {
        let d = &self.datapath;
        let _ = writeln!(m, "## Data path: ns per packet (BPF_PROG_TEST_RUN)\n");
        let _ = writeln!(
            m,
            "The real XDP object, its maps written by the daemon's own code (`lb-xdp/examples/bench_datapath.rs`, built on the packet tests' harness). `repeat`: one call, the kernel's mean over {} runs of one frame (for frames the program leaves on the same path). `per_call`: one call per frame (nat rewrites the frame into one for a backend, and each new flow needs a new 5-tuple), {} established/reply frames, {} new dsr flows and {} new nat flows, the kernel's time per run minus the per-call timer overhead measured on the pass-through program ({:.1} ns). \"Filled table\": {} live entries written into `LB_FLOWS` (flow_table_size 1048576) first.\n",
            d["repeat"], d["per_call"], d["new_flows"], d["nat_new_flows"], d["per_call_overhead_ns"].as_f64().unwrap_or(0.0), d["fill"]
        );
        let _ = writeln!(
            m,
            "| Case | method | IPv4 | IPv6 | IPv4, filled table | IPv6, filled table |\n|---|---|---|---|---|---|"
        );
        let rows = d["datapath"].as_array().cloned().unwrap_or_default();
        let mut cases: Vec<(String, String)> = Vec::new();
        for r in &rows {
            let key = (r["case"].as_str().unwrap_or("").to_string(), r["method"].as_str().unwrap_or("").to_string());
            if !cases.contains(&key) {
                cases.push(key);
            }
        }
        for (case, method) in cases {
            let cell = |f: &str, t: &str| self.dp(&case, f, t).map_or("–".into(), |v| format!("{v:.0}"));
            let _ = writeln!(
                m,
                "| {case} | {method} | {} | {} | {} | {} |",
                cell("ipv4", "empty"),
                cell("ipv6", "empty"),
                cell("ipv4", "filled"),
                cell("ipv6", "filled")
            );
        }
        let t = &self.xdp_in_traffic;
        let _ = writeln!(
            m,
            "\n**Under real traffic** (kernel BPF statistics, one {} s keep-alive run of XDP nat on the test network's veth): {:.0} ns per packet in the program, {:.2} packets per request through it (requests and replies).\n",
            self.duration_s,
            t["ns_per_packet"].as_f64().unwrap_or(0.0),
            t["packets_per_request"].as_f64().unwrap_or(0.0)
        );
    }

    fn control_plane(&self, m: &mut String) {
        let c = &self.datapath["control"];
        let ms = |v: &Value| v.as_f64().unwrap_or(0.0);
        let _ = writeln!(m, "## Control plane\n\nHow each cost grows with the number of services (`lb-xdp/examples/bench_control.rs`; every service has {} backends, each its own address and VIP).\n\n| What | Time |\n|---|---|", c["backends_per_service"]);
        for g in c["maglev"].as_array().into_iter().flatten() {
            let _ = writeln!(
                m,
                "| Maglev table build, {} backends, M = {} | {:.2} ms |",
                g["backends"],
                g["m"],
                ms(&g["ms"])
            );
        }
        for p in c["plan"].as_array().into_iter().flatten() {
            let _ = writeln!(
                m,
                "| Every Maglev table of {} services built from scratch (the daemon's plan, as at a start) | {:.1} ms |",
                p["services"],
                ms(&p["ms"])
            );
        }
        for r in c["reconcile"].as_array().into_iter().flatten() {
            let _ = writeln!(
                m,
                "| Reconcile (config → plan → map writes, flip) of {} services into empty maps (max_services {}) | {:.1} ms |",
                r["services"],
                r["max_services"],
                ms(&r["initial_ms"])
            );
            let _ = writeln!(
                m,
                "| Reload changing one weight in each of the {} services (every table rebuilt and rewritten) | {:.1} ms |",
                r["services"],
                ms(&r["change_all_ms"])
            );
        }
        let h: Vec<String> = self.health_s.iter().map(|s| format!("{s:.2}")).collect();
        let _ = writeln!(m, "| Health-check detection (http, interval 500 ms, unhealthy_threshold 3): backend stopped → `/v1/services` shows it down | median {:.2} s (runs: {} s) |", median(self.health_s.clone()), h.join(", "));
        let mib = |v: &Value| v.as_u64().unwrap_or(0) as f64 / (1024.0 * 1024.0);
        let _ = writeln!(m, "\n**Map memory**, as the kernel charges it (`memlock` in `/proc/PID/fdinfo` of every map of a fresh load). Flow tables: `LB_FLOWS` and `LB_NAT`, sized by `flow_table_size`; service tables: `LB_RING` and `LB_SEQ`, sized by `max_services` (two 65537-slot Maglev tables per service); other: every other map (per-backend arrays of 16384 rows, the per-CPU ones once per CPU).\n\n| flow_table_size | max_services | flow tables | service tables | other | total |\n|---|---|---|---|---|---|");
        for r in c["memory"].as_array().into_iter().flatten() {
            let _ = writeln!(
                m,
                "| {} | {} | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.1} MiB |",
                r["flow_table_size"],
                r["max_services"],
                mib(&r["flow_tables_bytes"]),
                mib(&r["service_tables_bytes"]),
                mib(&r["other_bytes"]),
                mib(&r["total_bytes"])
            );
        }
        let _ = writeln!(m);
    }

    fn machine_and_method(&self, m: &mut String, cmd: &str) {
        let mc = &self.machine;
        let _ = writeln!(m, "## Machine\n");
        for (k, v) in mc.as_object().into_iter().flatten() {
            let _ = writeln!(m, "- {k}: {}", v.as_str().map_or(v.to_string(), str::to_string));
        }
        let _ = writeln!(
            m,
            "\n## Method\n\n\
- Command: `{cmd}` (as root; it calls `cargo xtask deps` first and builds `lb` and the data-path bench in release mode).\n\
- The test network of `cargo xtask testenv up --dsr`: client, LB and three servers in network namespaces on one bridge, veth everywhere. The backends are nginx (two workers each, `return 200` with a JSON body and `X-Server`) started by the bench in place of the seed's Python server, which would be the bottleneck.\n\
- Load: `wrk -t2 -c{CONNECTIONS} -d{}s --latency` from `lbt-client`. Keep-alive: requests/s over {CONNECTIONS} persistent connections. New connections: the same with `Connection: close`, so every request is a new TCP connection (new conn/s = requests/s).\n\
- Load-generator settings inside the test network only: `net.ipv4.tcp_tw_reuse = 1` and `ip_local_port_range = 1024 65535` on the client, `tcp_tw_reuse = 1` on the LB (for the proxies' connections to the backends). Without them the client's TIME_WAIT sockets made connect() slower and slower through a round.\n\
- Direct: the client to server1 alone, no balancer: the limit the other rows are measured against. Every other row balances over the three servers: lb XDP nat and dsr (Maglev), lb proxy l4 and http (round robin, `workers = 0`: one per core), HAProxy 2.6 (`mode tcp`, `balance roundrobin`, `nbthread 2`), nginx stream (2 workers, round robin), nftables DNAT (`numgen inc mod 3`, SNAT to the LB). Peers are Debian 12's packages, configured by the bench (`xtask/src/bench/peers.rs`). The lb rows use `tcp_idle_timeout = \"2s\"` so that closed flows free their SNAT port sooner, and no health checks (the peers have none).\n\
- Interleaved: each round runs every configuration once (A B C … A B C …), started and stopped cleanly (`lb run --detach-on-exit`); every figure is the median over {} rounds.\n\
- CPU: \"LB CPU\" is machine-wide softirq time (`/proc/stat`) for XDP and nftables, and the balancer's process tree (user + system, `/proc/PID/stat`) for proxies, per 100k requests. **Honesty note:** on veth the client, the LB and the backends share the same 2 CPUs, and softirq time is machine-wide: it includes the client's and the backends' packet processing too. Compare the softirq column with the direct row to see what a balancer adds. The XDP program's own share is measured separately (BPF statistics, above).\n\
- Everything shares 2 cores: the balancer competes with wrk and nginx for CPU, so the ratios say how much of the machine each balancer leaves to the work, not what it could carry on a dedicated core.\n\
- Data path: see its section; control plane (`bench_control`): Maglev builds with `lb_common::maglev::build` (median of 5), whole-config builds and reconciles with the daemon's own plan and map writer on the real maps, map memory as the kernel charges it; detection with the real daemon on the test network.\n",
            self.duration_s, self.rounds
        );
    }
}

/// What `bench_control` must have produced: every row of each of its measurements, each a
/// positive figure.
fn control_missing(c: &Value) -> Vec<String> {
    let rows = |key: &str| c[key].as_array().cloned().unwrap_or_default();
    let positive = |v: &Value| v.as_f64().is_some_and(|x| x > 0.0);
    let mut missing = Vec::new();
    if rows("maglev").len() != 3 || !rows("maglev").iter().all(|r| positive(&r["ms"])) {
        missing.push("Maglev build times".to_string());
    }
    if rows("plan").len() != 3 || !rows("plan").iter().all(|r| positive(&r["ms"])) {
        missing.push("whole-config table builds".to_string());
    }
    let reconcile = rows("reconcile");
    if reconcile.len() != 3 || !reconcile.iter().all(|r| positive(&r["initial_ms"]) && positive(&r["change_all_ms"])) {
        missing.push("reconcile times".to_string());
    }
    let memory = rows("memory");
    if memory.len() < 2 || !memory.iter().all(|r| positive(&r["flow_tables_bytes"]) && positive(&r["total_bytes"])) {
        missing.push("map memory".to_string());
    }
    missing
}

/// Where the time goes is a reading of profiles, not a measurement this run makes: it is
/// written by hand in bench/analysis.md and included as it is, under a heading that says so.
fn analysis(m: &mut String) {
    let path = crate::cmd::workspace().join("bench/analysis.md");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let _ = writeln!(
            m,
            "## Where the time goes (from profiles; written by hand in `bench/analysis.md`)\n\n{}\n",
            text.trim()
        );
    }
}

fn machine() -> Value {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default();
    let mem_kb: u64 = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let version = |cmd: &str, arg: &str| {
        std::process::Command::new(cmd).arg(arg).output().map(|o| {
            let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
            text.lines().next().unwrap_or("").trim().to_string()
        })
    };
    json!({
        "cpu": model,
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "memory": format!("{:.1} GiB", mem_kb as f64 / 1048576.0),
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
        "debian": read("/etc/debian_version").trim(),
        "load average at the end": read("/proc/loadavg").split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        "haproxy": version("haproxy", "-v").unwrap_or_default(),
        "nginx": version("nginx", "-v").unwrap_or_default(),
        "wrk": version("wrk", "-v").unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control(services: &[u64], memory_rows: usize) -> Value {
        let maglev: Vec<Value> = [10, 100, 1000].iter().map(|b| json!({ "backends": b, "ms": 2.5 })).collect();
        let plan: Vec<Value> = services.iter().map(|s| json!({ "services": s, "ms": 1.0 })).collect();
        let reconcile: Vec<Value> =
            services.iter().map(|s| json!({ "services": s, "initial_ms": 9.0, "change_all_ms": 8.0 })).collect();
        let memory: Vec<Value> =
            (0..memory_rows).map(|_| json!({ "flow_tables_bytes": 1u64 << 20, "total_bytes": 1u64 << 26 })).collect();
        json!({ "maglev": maglev, "plan": plan, "reconcile": reconcile, "memory": memory })
    }

    #[test]
    fn a_complete_control_run_has_nothing_missing() {
        assert!(control_missing(&control(&[1, 100, 1000], 4)).is_empty());
    }

    #[test]
    fn a_control_run_without_rows_or_with_a_zero_figure_is_incomplete() {
        assert_eq!(
            control_missing(&control(&[1, 100], 0)),
            ["whole-config table builds", "reconcile times", "map memory"]
        );
        let mut zero = control(&[1, 100, 1000], 4);
        zero["reconcile"][2]["change_all_ms"] = json!(0.0);
        assert_eq!(control_missing(&zero), ["reconcile times"]);
        assert_eq!(control_missing(&Value::Null).len(), 4, "no bench_control output at all");
    }
}

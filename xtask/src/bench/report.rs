//! The results of a run: medians over the rounds, the JSON file, BENCHMARKS.md.
use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{bail, Result};
use serde::Serialize;
use serde_json::{json, Value};

use super::targets::{CpuSource, Group, Target};
use super::wrk::{WrkErrors, WrkResult, CONNECTIONS};
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
    /// wrk's errors of each kind, summed over the rounds.
    pub errors: WrkErrors,
    /// Of those, the balancer's failures and the harness's own (`WrkErrors::classify`
    /// against the direct row's worst round under the same load).
    pub real_errors: u64,
    pub harness_errors: u64,
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

/// What the harness alone makes under one kind of load: the direct row's worst round.
fn harness_errors(samples: &[Sample], new_connections: bool) -> WrkErrors {
    samples
        .iter()
        .filter(|s| s.target == "direct" && s.new_connections == new_connections)
        .fold(WrkErrors::default(), |acc, s| acc.max(s.wrk.errors))
}

fn figures(samples: &[&Sample], cpu: CpuSource, harness: &WrkErrors) -> Figures {
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
        errors: samples.iter().fold(WrkErrors::default(), |acc, s| acc + s.wrk.errors),
        real_errors: samples.iter().map(|s| s.wrk.errors.classify(harness).real).sum(),
        harness_errors: samples.iter().map(|s| s.wrk.errors.classify(harness).harness).sum(),
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
        let harness = [harness_errors(&samples, false), harness_errors(&samples, true)];
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
                    keep_alive: figures(&pick(false), t.cpu, &harness[0]),
                    new_connections: figures(&pick(true), t.cpu, &harness[1]),
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
        // 2 families × each table state × the cases of each (bench_datapath's
        // `family_cases`: non-VIP; nat established, reply, new; dsr, ipip and gue
        // established and new)
        const CASES: usize = 10;
        let rows = self.dp_rows();
        let tables = self.datapath["tables"].as_array().map_or(0, Vec::len);
        let want = 2 * tables * CASES;
        if tables == 0 || rows.len() != want || rows.iter().any(|r| r["raw_ns"].as_f64().is_none_or(|ns| ns <= 0.0)) {
            missing.push(format!("data-path rows ({} of {want})", rows.len()));
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

    fn dp_rows(&self) -> Vec<Value> {
        self.datapath["datapath"]["rows"].as_array().cloned().unwrap_or_default()
    }

    /// The table states the data path was timed with, by name (`empty`, `1M flows`, ...).
    fn dp_tables(&self) -> Vec<String> {
        let tables = self.datapath["tables"].as_array().cloned().unwrap_or_default();
        tables.iter().filter_map(|t| t["table"].as_str().map(String::from)).collect()
    }

    fn dp(&self, case: &str, family: &str, table: &str) -> Option<f64> {
        // A case is named by its prefix ("nat, new flow" for "nat, new flow (Maglev, ...)").
        self.dp_rows().iter().find(|r| {
            r["case"].as_str().is_some_and(|c| c.starts_with(case)) && r["family"] == family && r["table"] == table
        })?["ns"]
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
        let _ = writeln!(m, "Each lb row against the peers of its kind: the l4 rows against HAProxy `mode tcp`, nginx stream and nftables; `lb proxy http` against HAProxy `mode http` and nginx `proxy_pass`, both with keep-alive to the backends.\n");
        let _ = writeln!(m, "| | keep-alive req/s vs direct | new conn/s vs direct | vs HAProxy (req/s, conn/s) | vs nginx | vs nftables DNAT |\n|---|---|---|---|---|---|");
        for lb in ["xdp_nat", "xdp_dsr", "proxy_l4", "proxy_http"] {
            let Some(row) = self.row(lb) else { continue };
            let pair = |peer: Option<&str>| match peer {
                Some(p) => format!("{} / {}", f(self.ratio(lb, p, false)), f(self.ratio(lb, p, true))),
                None => "–".into(),
            };
            let [haproxy, nginx, nft] = headline_peers(lb);
            let _ = writeln!(
                m,
                "| {} | {} | {} | {} | {} | {} |",
                row.label,
                f(self.ratio(lb, "direct", false)),
                f(self.ratio(lb, "direct", true)),
                pair(haproxy),
                pair(nginx),
                pair(nft)
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
            let _ = writeln!(
                m,
                "| proxy l4 ≥ 1.1× HAProxy mode tcp (req/s and conn/s) | {r:.2}× req/s, {c:.2}× conn/s | {} |",
                met(r >= 1.1 && c >= 1.1)
            );
        }
        let failing: Vec<String> = self
            .rows
            .iter()
            .filter(|r| r.name.starts_with("xdp") || r.name.starts_with("proxy"))
            .filter(|r| r.keep_alive.real_errors + r.new_connections.real_errors > 0)
            .map(|r| format!("{} ({})", r.label, r.keep_alive.real_errors + r.new_connections.real_errors))
            .collect();
        let _ = writeln!(
            m,
            "| no failed request in any lb row (errors column) | {} | {} |",
            if failing.is_empty() { "none".to_string() } else { failing.join(", ") },
            met(failing.is_empty())
        );
        self.scale_goal(m);
        self.datapath_goals(m);
        m.push('\n');
    }

    /// The data path's goals, IPv4, against the empty table and the fullest one timed.
    fn datapath_goals(&self, m: &mut String) {
        let met = |ok: bool| if ok { "met" } else { "**missed**" };
        let tables = self.dp_tables();
        let (Some(empty), Some(full)) = (tables.first(), tables.get(1)) else { return };
        let pair = |case: &str, table: &str| {
            Some((self.dp(&format!("nat, {case}"), "ipv4", table)?, self.dp(&format!("dsr, {case}"), "ipv4", table)?))
        };
        for table in [empty, full] {
            if let Some((nat, dsr)) = pair("established flow", table) {
                let _ = writeln!(
                    m,
                    "| established flow ≤ 100 ns/packet ({table}) | nat {nat:.0} ns, dsr {dsr:.0} ns (IPv4) | {} |",
                    met(nat.max(dsr) <= 100.0)
                );
            }
        }
        for (table, goal) in [(empty, 600.0), (full, 900.0)] {
            if let Some((nat, dsr)) = pair("new flow", table) {
                let _ = writeln!(
                    m,
                    "| new flow ≤ {goal:.0} ns/packet ({table}) | nat {nat:.0} ns, dsr {dsr:.0} ns (IPv4) | {} |",
                    met(nat.max(dsr) <= goal)
                );
            }
        }
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
        let _ = writeln!(m, "Medians of {} rounds of {} s per figure; {CONNECTIONS} connections. CPU: seconds per 100k requests, on the LB side (softirq for XDP and nftables, process time for proxies) and machine-wide softirq. Errors, summed over the rounds: \"errors\" are failures (non-2xx answers, connect errors, timeouts, and read or write errors beyond the most the direct row had in a round under the same load); \"harness errors\" are the read and write errors within that, which wrk makes with no balancer at all (see docs/benchmarks.md, \"Errors\"). Each kind is in the JSON (`errors`).\n", self.rounds, self.duration_s);
        let _ = writeln!(m, "| Configuration | keep-alive req/s | × direct | p50 / p99 ms | new conn/s | × direct | p50 / p99 ms | LB CPU keep-alive | LB CPU new conn | softirq keep-alive | softirq new conn | errors | harness errors |");
        let _ = writeln!(m, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        for r in self.rows.iter().filter(|r| r.group == group || (group == Group::IoModel && r.name == "direct")) {
            let (k, n) = (&r.keep_alive, &r.new_connections);
            let _ = writeln!(
                m,
                "| {} | {:.0} | {} | {:.2} / {:.2} | {:.0} | {} | {:.2} / {:.2} | {} | {} | {:.2} | {:.2} | {} | {} |",
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
                k.real_errors + n.real_errors,
                k.harness_errors + n.harness_errors
            );
        }
        m.push('\n');
    }

    /// One table per kind of peer: the l4 rows (XDP, proxy l4) against the l4 peers, the
    /// http rows against the HTTP proxies.
    fn peer_ratios(&self, m: &mut String) {
        let _ = writeln!(m, "### Ratios: each lb row to each peer of its kind (keep-alive req/s, new conn/s)\n");
        let is_http = |r: &&Row| r.name.starts_with("proxy_http");
        let l4: Vec<&Row> = self
            .rows
            .iter()
            .filter(|r| r.name.starts_with("xdp") || r.name.starts_with("proxy"))
            .filter(|r| !is_http(r))
            .collect();
        let http: Vec<&Row> = self.rows.iter().filter(is_http).collect();
        self.ratio_table(m, &l4, &["direct", "haproxy", "nginx_stream", "nft_dnat"]);
        self.ratio_table(m, &http, &["direct", "haproxy_http", "nginx_http"]);
    }

    fn ratio_table(&self, m: &mut String, lbs: &[&Row], peers: &[&str]) {
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
        for lb in lbs {
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
        let tables = self.dp_tables();
        let _ = writeln!(m, "## Data path: ns per packet (BPF_PROG_TEST_RUN)\n");
        let _ = writeln!(
            m,
            "The real XDP object, its maps written by the daemon's own code (`lb-xdp/examples/bench_datapath.rs`, built on the packet tests' harness). Every case is timed the same way: `BPF_PROG_TEST_RUN` with `repeat` ({} for established flows, replies and non-VIP traffic; {} new dsr/ipip/gue flows and {} new nat flows per case) on the bench entry point `lb_xdp_bench`, which is the program followed by a restore of its frame (lb-ebpf `bench.rs`), so every repetition takes the timed path; for new flows the restore also counts the source address up (one call per case: a flow opens once); every other case is the median of 3 calls. The restore's own cost (it minus `lb_xdp` on a non-VIP frame, the median of 5 pairs of calls: {}) is subtracted. Every timed call is checked: return value, action counters, new-flow counters and the restored frame. The flow table is filled by the data path itself (new dsr flows of other clients) before the timed cases. The pass-through program (the floor of any XDP program here) takes {:.0} ns. Mpps = packets per second on one core, 1000 / ns.\n",
            d["repeat"],
            d["new_flows"],
            d["nat_new_flows"],
            self.restore_costs(),
            d["datapath"]["floor_ns"].as_f64().unwrap_or(0.0),
        );
        let mut head = String::from("| Case | Mpps (IPv4, empty) |");
        let mut rule = String::from("|---|---|");
        for t in &tables {
            let _ = write!(head, " IPv4, {t} | IPv6, {t} |");
            rule.push_str("---|---|");
        }
        let _ = writeln!(m, "{head}\n{rule}");
        let mut cases: Vec<String> = Vec::new();
        for r in self.dp_rows() {
            let case = r["case"].as_str().unwrap_or("").to_string();
            if !cases.contains(&case) {
                cases.push(case);
            }
        }
        for case in cases {
            let cell = |f: &str, t: &str| self.dp(&case, f, t).map_or("–".into(), |v| format!("{v:.0}"));
            let mpps = tables.first().and_then(|t| self.dp(&case, "ipv4", t)).filter(|ns| *ns > 0.0);
            let mut line = format!("| {case} | {} |", mpps.map_or("–".into(), |ns| format!("{:.1}", 1e3 / ns)));
            for t in &tables {
                let _ = write!(line, " {} | {} |", cell("ipv4", t), cell("ipv6", t));
            }
            let _ = writeln!(m, "{line}");
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

    /// The bench entry point's restore cost per table and family, as "a–b ns".
    fn restore_costs(&self) -> String {
        let costs: Vec<f64> = self.datapath["datapath"]["restore_ns"]
            .as_array()
            .map(|a| a.iter().filter_map(|c| c["ns"].as_f64()).collect())
            .unwrap_or_default();
        let lo = costs.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = costs.iter().copied().fold(0.0, f64::max);
        if lo.is_finite() {
            format!("{lo:.0}–{hi:.0} ns")
        } else {
            "–".into()
        }
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

/// The headline's peers for an lb row (HAProxy, nginx, nftables), of the row's kind: an
/// HTTP proxy against HTTP proxies (nftables has no such mode), the rest against l4.
fn headline_peers(lb: &str) -> [Option<&'static str>; 3] {
    if lb.starts_with("proxy_http") {
        [Some("haproxy_http"), Some("nginx_http"), None]
    } else {
        [Some("haproxy"), Some("nginx_stream"), Some("nft_dnat")]
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

    fn sample(target: &str, round: u32, new_connections: bool, errors: WrkErrors) -> Sample {
        Sample {
            target: target.into(),
            round,
            new_connections,
            wrk: WrkResult { requests: 1000, requests_per_sec: 1000.0, errors, ..Default::default() },
            softirq_s: 0.0,
            process_s: None,
        }
    }

    #[test]
    fn a_rows_errors_are_split_against_directs_worst_round_of_the_same_load() {
        let read = |n| WrkErrors { read: n, ..Default::default() };
        let samples = vec![
            sample("direct", 1, true, read(1)),
            sample("direct", 2, true, read(2)),
            // Keep-alive: direct had none, so any read error there is the balancer's.
            sample("direct", 1, false, read(0)),
            sample("proxy_l4", 1, true, WrkErrors { read: 3, timeout: 1, ..Default::default() }),
            sample("proxy_l4", 2, true, read(2)),
            sample("proxy_l4", 1, false, read(1)),
        ];
        let close = harness_errors(&samples, true);
        assert_eq!(close, read(2));
        let l4: Vec<&Sample> = samples.iter().filter(|s| s.target == "proxy_l4" && s.new_connections).collect();
        let f = figures(&l4, CpuSource::Process, &close);
        // Round 1: 1 read beyond direct's 2, plus the timeout; round 2: within.
        assert_eq!((f.real_errors, f.harness_errors), (2, 4));
        assert_eq!(f.errors, WrkErrors { read: 5, timeout: 1, ..Default::default() });
        let keep: Vec<&Sample> = samples.iter().filter(|s| s.target == "proxy_l4" && !s.new_connections).collect();
        let f = figures(&keep, CpuSource::Process, &harness_errors(&samples, false));
        assert_eq!((f.real_errors, f.harness_errors), (1, 0));
    }

    #[test]
    fn http_rows_meet_http_peers_and_l4_rows_l4_peers() {
        assert_eq!(headline_peers("proxy_http"), [Some("haproxy_http"), Some("nginx_http"), None]);
        assert_eq!(headline_peers("proxy_l4"), [Some("haproxy"), Some("nginx_stream"), Some("nft_dnat")]);
        assert_eq!(headline_peers("xdp_nat"), [Some("haproxy"), Some("nginx_stream"), Some("nft_dnat")]);
    }

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

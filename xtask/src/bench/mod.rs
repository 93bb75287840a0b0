//! `cargo xtask bench [--quick]`: what the balancer costs, measured on the test network
//! against the limit (the client straight to one backend) and against its peers
//! (HAProxy, nginx stream, nftables DNAT), plus the data path's ns per packet through
//! BPF_PROG_TEST_RUN and the control plane's build, reconcile and detection times.
//!
//! Configurations are measured interleaved, in rounds (A B C … A B C …), so that a
//! machine that slows down or speeds up part-way through touches every row alike; each
//! figure is the median over the rounds. `--quick` runs everything once with tiny counts
//! (a harness check for `cargo xtask test`: every configuration must produce numbers; how
//! fast they are is not judged) and writes under target/ instead of the committed files.
mod backends;
mod chart;
mod cpu;
mod datapath;
mod peers;
mod process;
mod report;
mod targets;
mod wrk;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;
use testenv::{LbDaemon, LB_NS};

use crate::cmd::{cargo, is_root, status, workspace};
use backends::Backends;
use report::Sample;
use targets::{CpuSource, Running, Target};

/// Configs, logs and pid files of this run, inside the test network's run directory
/// (removed by `testenv::down`).
pub const WORK_DIR: &str = "/run/lbt/bench";

/// How much of everything a run does.
pub struct Plan {
    pub rounds: u32,
    /// Of each wrk run.
    pub duration: Duration,
    pub health_trials: u32,
}

const FULL: Plan = Plan { rounds: 5, duration: Duration::from_secs(3), health_trials: 3 };
const QUICK: Plan = Plan { rounds: 1, duration: Duration::from_secs(1), health_trials: 1 };

/// The exact command, as BENCHMARKS.md shows it.
pub const COMMAND: &str = "cargo xtask bench";

/// Removes the test network however the bench ends.
struct Teardown;

impl Drop for Teardown {
    fn drop(&mut self) {
        if let Err(e) = testenv::down() {
            eprintln!("xtask: teardown: {e:#}");
        }
    }
}

pub fn run(quick: bool) -> Result<()> {
    if !is_root() {
        bail!("the bench builds network namespaces and loads XDP programs: run it as root");
    }
    let plan = if quick { QUICK } else { FULL };
    let started = Instant::now();
    let profile = build(quick)?;
    let lb_bin = workspace().join(format!("target/{profile}/lb"));

    println!("==> data path (BPF_PROG_TEST_RUN) and control plane");
    let datapath = datapath::run(&workspace().join(format!("target/{profile}/examples")), quick)?;

    println!("==> waiting for the test network (lock)");
    let _lock = testenv::lock_network()?;
    println!("==> test network up (dsr layout: VIPs also on the servers' lo)");
    let _teardown = Teardown;
    testenv::up(&testenv::UpOptions { dsr: true, ..Default::default() })?;
    load_generator_sysctls()?;
    std::fs::create_dir_all(WORK_DIR).with_context(|| format!("creating {WORK_DIR}"))?;
    std::fs::write(format!("{WORK_DIR}/token"), "bench-token\n").context("writing the token file")?;
    println!("==> nginx backends in lbt-server1..3 (in place of the seed's Python server)");
    let mut backends = Backends::start()?;

    let targets = targets::all();
    let mut samples = Vec::new();
    for round in 1..=plan.rounds {
        for t in &targets {
            println!("==> round {round}/{}: {}", plan.rounds, t.label);
            samples.extend(measure(t, round, &plan, &lb_bin)?);
        }
    }
    println!("==> XDP program run time under load (kernel BPF statistics)");
    let xdp_in_traffic = xdp_in_traffic(&targets, &plan, &lb_bin)?;
    println!("==> health-check detection time");
    let health = health_detection(&mut backends, plan.health_trials, &lb_bin)?;
    drop(backends);

    let results =
        report::Results::new(quick, &plan, &targets, samples, datapath, xdp_in_traffic, health, started.elapsed());
    results.check_complete(&targets)?;
    let out = if quick { workspace().join("target/bench-quick") } else { workspace() };
    write_outputs(&results, &out, quick)?;
    println!("==> bench done in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// wrk closes each `Connection: close` connection as soon as it has the answer, so the
/// client holds a TIME_WAIT socket per connection for 60 s; so do the proxies towards the
/// backends. Without reuse, tens of thousands of them make connect()'s port search slower
/// and slower (measured: new conn/s fell from ~9k to ~700/s by the end of a round).
/// tcp_tw_reuse (safe with timestamps) and the whole port range on the client, as on any
/// load generator; only inside the test network's namespaces.
fn load_generator_sysctls() -> Result<()> {
    testenv::exec_ok(
        testenv::CLIENT_NS,
        &["sysctl", "-q", "-w", "net.ipv4.tcp_tw_reuse=1", "net.ipv4.ip_local_port_range=1024 65535"],
    )?;
    testenv::exec_ok(LB_NS, &["sysctl", "-q", "-w", "net.ipv4.tcp_tw_reuse=1"]).map(drop)
}

/// Release builds for the figures: a debug proxy or loader would measure the compiler,
/// not the design. The quick run judges no speed and reuses the debug build that
/// `cargo xtask test` has just made. Returns the profile's target directory name.
fn build(quick: bool) -> Result<&'static str> {
    let (profile, flags): (_, &[&str]) = if quick { ("debug", &[]) } else { ("release", &["--release"]) };
    println!("==> building lb and the data-path bench ({profile})");
    let mut c = cargo();
    c.arg("build").args(flags).args(["-p", "lb-user", "--bin", "lb", "-p", "lb-xdp"]);
    c.args(["--example", "bench_datapath", "--example", "bench_control"]);
    status(c)?;
    Ok(profile)
}

/// One configuration in one round: keep-alive requests, then new connections.
fn measure(t: &Target, round: u32, plan: &Plan, lb_bin: &Path) -> Result<Vec<Sample>> {
    let running = Running::start(t, lb_bin)?;
    let mut samples = Vec::new();
    for close in [false, true] {
        let pid = running.pid();
        let (soft0, proc0) = (cpu::softirq_seconds()?, pid.map_or(0.0, cpu::tree_seconds));
        let wrk = wrk::run(&t.url(), plan.duration, close)?;
        let (soft1, proc1) = (cpu::softirq_seconds()?, pid.map_or(0.0, cpu::tree_seconds));
        let process = if t.cpu == CpuSource::Process { Some(proc1 - proc0) } else { None };
        println!(
            "    {}: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, errors {:?}",
            if close { "new connections" } else { "keep-alive" },
            wrk.requests_per_sec,
            wrk.p50_ms,
            wrk.p99_ms,
            wrk.errors
        );
        samples.push(Sample {
            target: t.name.into(),
            round,
            new_connections: close,
            wrk,
            softirq_s: soft1 - soft0,
            process_s: process,
        });
    }
    running.stop()?;
    Ok(samples)
}

/// The XDP program's own time per packet on the real veth path, from the kernel's BPF
/// statistics during one keep-alive run of XDP nat. Not taken during the rounds: the
/// statistics add two clock reads to every program run.
fn xdp_in_traffic(targets: &[Target], plan: &Plan, lb_bin: &Path) -> Result<Value> {
    let t = targets.iter().find(|t| t.name == "xdp_nat").context("no xdp_nat target")?;
    let running = Running::start(t, lb_bin)?;
    let stats = cpu::BpfStats::enable()?;
    let (time0, count0) = cpu::xdp_run_time(LB_NS, "eth0")?;
    let wrk = wrk::run(&t.url(), plan.duration, false)?;
    let (time1, count1) = cpu::xdp_run_time(LB_NS, "eth0")?;
    drop(stats);
    running.stop()?;
    let packets = count1.saturating_sub(count0);
    Ok(serde_json::json!({
        "requests": wrk.requests,
        "packets": packets,
        "ns_per_packet": (time1 - time0) * 1e9 / packets.max(1) as f64,
        "packets_per_request": packets as f64 / wrk.requests.max(1) as f64,
    }))
}

/// Seconds from stopping a backend until `/v1/services` shows it down, with http checks
/// every 500 ms and unhealthy_threshold 3.
fn health_detection(backends: &mut Backends, trials: u32, lb_bin: &Path) -> Result<Vec<f64>> {
    const VICTIM: &str = "172.20.0.13:80";
    let mut d = LbDaemon::start_with(lb_bin, &targets::lb_health_config(), &["--detach-on-exit"])?;
    let mut times = Vec::new();
    for _ in 0..trials {
        wait_health(VICTIM, "up", Duration::from_secs(10))?;
        backends.stop(3)?;
        let stopped = Instant::now();
        wait_health(VICTIM, "down", Duration::from_secs(10))?;
        times.push(stopped.elapsed().as_secs_f64());
        backends.restart(3)?;
    }
    d.stop()?;
    Ok(times)
}

fn wait_health(address: &str, want: &str, limit: Duration) -> Result<()> {
    let start = Instant::now();
    loop {
        let body = testenv::exec_ok(LB_NS, &["curl", "-sS", "--max-time", "1", "http://127.0.0.1:9100/v1/services"])?;
        let services: Value = serde_json::from_str(&body).context("GET /v1/services")?;
        let health = services[0]["backends"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|b| b["address"] == address)
            .map(|b| b["health"].clone());
        if health.as_ref().and_then(Value::as_str) == Some(want) {
            return Ok(());
        }
        if start.elapsed() > limit {
            bail!("{address} not {want} within {limit:?} (health {health:?})");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn write_outputs(results: &report::Results, root: &Path, quick: bool) -> Result<()> {
    let dir: PathBuf = root.join("bench/results");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = if quick { "quick" } else { "full" };
    let json = dir.join(format!("{name}.json"));
    std::fs::write(&json, serde_json::to_string_pretty(&results.to_json())?)
        .with_context(|| format!("writing {}", json.display()))?;
    let png = dir.join("chart.png");
    chart::draw(results, &png)?;
    let md = root.join("BENCHMARKS.md");
    std::fs::write(&md, results.markdown()).with_context(|| format!("writing {}", md.display()))?;
    println!("==> wrote {}, {} and {}", json.display(), md.display(), png.display());
    Ok(())
}

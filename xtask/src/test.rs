//! `cargo xtask test`: the layers of docs/testing.md, each with its own count: host, packet,
//! network, `cargo xtask bench --quick` (so that the benchmark harness cannot rot), and the
//! Docker layer (the seed's Docker environment with a real engine, set up by `deps --docker`).
//! Root-only tests are `#[ignore]`d in plain `cargo test` (so it never pretends to run
//! them) and run here with `--ignored`; without root this command fails, it never skips.
//! Among the root tests found: the packet fuzz's short budget (50,000 frames, packet layer)
//! and the two-minute soak (network layer); `cargo xtask fuzz` and `cargo xtask soak` run
//! them longer.
use std::io::{BufRead, BufReader};
use std::process::Stdio;

use anyhow::{bail, Context, Result};

use crate::cmd::{cargo, is_root, workspace};
use crate::roots::{self, Layer};

const HOST: &str = "1. host unit tests";
const PACKET: &str = "2. packet tests (XDP object through BPF_PROG_TEST_RUN)";
const NETWORK: &str = "3. network tests (netns test network, real XDP attach, real clients)";

#[derive(Default, Clone, Copy)]
struct Count {
    passed: u64,
    failed: u64,
    ignored: u64,
}

pub fn run(host_only: bool) -> Result<()> {
    if !host_only && !is_root() {
        bail!(
            "the packet and network tests need root: run `sudo cargo xtask test` (or `cargo xtask test --host-only`)"
        );
    }
    let mut results = vec![(HOST, run_layer(HOST, &["test".to_string(), "--no-fail-fast".into()])?)];
    if !host_only {
        // Packet tests share nothing but the CPU; network tests share one test network.
        results.push((PACKET, root_layer(PACKET, Layer::Packet, 2)?));
        results.push((NETWORK, root_layer(NETWORK, Layer::Network, 1)?));
    }
    if !host_only {
        results.push((BENCH, bench_quick()));
        results.push((DOCKER, docker_layer()?));
    }
    println!("\n==> summary");
    let mut total = Count::default();
    for (name, c) in &results {
        println!("{name}: {} passed, {} failed, {} ignored", c.passed, c.failed, c.ignored);
        total.passed += c.passed;
        total.failed += c.failed;
    }
    println!("{} passed, {} failed", total.passed, total.failed);
    if total.failed > 0 {
        bail!("{} tests failed", total.failed);
    }
    Ok(())
}

const BENCH: &str = "4. bench --quick (every benchmark configuration produces numbers)";
const DOCKER: &str = "5. docker (the seed's Docker environment: real engine, containers, XDP and proxy)";

/// The Docker environment installed (`deps --docker`: the installer is the only way anything
/// gets installed, and a dockerd it started for the base image is stopped again), then the
/// `docker_*.rs` root tests, which start and stop an engine themselves when none runs. Like
/// every root layer it fails, never skips, when it cannot run: a failed set-up counts as a
/// failed test.
fn docker_layer() -> Result<Count> {
    println!("\n==> {DOCKER}: cargo xtask deps --docker");
    let started = std::time::Instant::now();
    if let Err(e) = crate::deps::docker().and_then(|engine| engine.stop()) {
        eprintln!("xtask: the Docker environment cannot run: {e:#}");
        return Ok(Count { failed: 1, ..Count::default() });
    }
    let count = root_layer(DOCKER, Layer::Docker, 1)?;
    println!("==> {DOCKER}: {:.0} s", started.elapsed().as_secs_f64());
    Ok(count)
}

/// The quick bench as one pass or one failure: it asserts that every configuration and
/// measurement produced numbers, never how fast they were.
fn bench_quick() -> Count {
    println!("\n==> {BENCH}");
    match crate::bench::run(true) {
        Ok(()) => Count { passed: 1, ..Count::default() },
        Err(e) => {
            eprintln!("xtask: bench --quick: {e:#}");
            Count { failed: 1, ..Count::default() }
        }
    }
}

/// Every root test file of `layer`, one cargo invocation per package, added up.
fn root_layer(name: &str, layer: Layer, threads: u32) -> Result<Count> {
    let found = roots::discover(&workspace(), layer)?;
    if found.is_empty() {
        bail!("{name}: no test file carries the root marker {}", roots::ROOT_MARKER);
    }
    let mut total = Count::default();
    for package in found {
        // --no-fail-fast: one failing test file must not hide the results of the others.
        let mut args = vec!["test".to_string(), "--no-fail-fast".into(), "-p".into(), package.package.clone()];
        for test in &package.tests {
            args.extend(["--test".to_string(), test.clone()]);
        }
        args.extend(["--".to_string(), "--ignored".into(), format!("--test-threads={threads}")]);
        let count = run_layer(name, &args)?;
        total.passed += count.passed;
        total.failed += count.failed;
        total.ignored += count.ignored;
    }
    Ok(total)
}

/// Run one cargo invocation of a layer, echoing its output and adding up its `test
/// result:` lines.
fn run_layer(name: &str, args: &[String]) -> Result<Count> {
    println!("\n==> {name}: cargo {}", args.join(" "));
    let mut c = cargo();
    c.args(args).stdout(Stdio::piped());
    let mut child = c.spawn().context("running cargo test")?;
    let mut count = Count::default();
    for line in BufReader::new(child.stdout.take().context("cargo stdout")?).lines() {
        let line = line?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            count.passed += number_before(rest, " passed");
            count.failed += number_before(rest, " failed");
            count.ignored += number_before(rest, " ignored");
        }
    }
    let status = child.wait()?;
    if !status.success() && count.failed == 0 {
        bail!("{name} did not run to the end ({status})");
    }
    Ok(count)
}

fn number_before(text: &str, label: &str) -> u64 {
    text.find(label).and_then(|end| text[..end].rsplit(|c: char| !c.is_ascii_digit()).next()?.parse().ok()).unwrap_or(0)
}

//! `cargo xtask test`: the three layers of ARCHITECTURE.md, each with its own count, and a
//! fourth: `cargo xtask bench --quick`, so that the benchmark harness cannot rot.
//! Root-only tests are `#[ignore]`d in plain `cargo test` (so it never pretends to run
//! them) and run here with `--ignored`; without root this command fails, it never skips.
use std::io::{BufRead, BufReader};
use std::process::Stdio;

use anyhow::{bail, Context, Result};

use crate::cmd::{cargo, is_root};

struct Layer {
    name: &'static str,
    args: &'static [&'static str],
}

const HOST: Layer = Layer { name: "1. host unit tests", args: &["test"] };

const ROOT_LAYERS: &[Layer] = &[
    Layer {
        name: "2. packet tests (XDP object through BPF_PROG_TEST_RUN)",
        args: &["test", "-p", "lb-user", "--test", "packet_fixtures", "--test", "packet_protection", "--test", "packet_icmp", "--test", "packet_layout", "--", "--ignored", "--test-threads=2"],
    },
    Layer {
        name: "3. network tests (netns test network, real XDP attach, real clients)",
        args: &["test", "-p", "testenv", "--test", "network", "--", "--ignored", "--test-threads=1"],
    },
    Layer {
        name: "3. network tests (netns test network, real XDP attach, real clients)",
        args: &["test", "-p", "lb-user", "--test", "network", "--test", "control_plane", "--test", "proxy_network", "--test", "protection_network", "--test", "doctor", "--test", "icmp_network", "--", "--ignored", "--test-threads=1"],
    },
];

#[derive(Default, Clone, Copy)]
struct Count {
    passed: u64,
    failed: u64,
    ignored: u64,
}

pub fn run(host_only: bool) -> Result<()> {
    if !host_only && !is_root() {
        bail!("the packet and network tests need root: run `sudo cargo xtask test` (or `cargo xtask test --host-only`)");
    }
    let mut results = vec![(HOST.name, run_layer(&HOST)?)];
    if !host_only {
        for layer in ROOT_LAYERS {
            let count = run_layer(layer)?;
            // A layer may take several cargo invocations: add them up under one name.
            match results.iter_mut().find(|(name, _)| *name == layer.name) {
                Some((_, total)) => {
                    total.passed += count.passed;
                    total.failed += count.failed;
                    total.ignored += count.ignored;
                }
                None => results.push((layer.name, count)),
            }
        }
    }
    if !host_only {
        results.push((BENCH, bench_quick()));
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

/// Run one layer, echoing cargo's output and adding up its `test result:` lines.
fn run_layer(layer: &Layer) -> Result<Count> {
    println!("\n==> {}", layer.name);
    let mut c = cargo();
    c.args(layer.args).stdout(Stdio::piped());
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
        bail!("{} did not run to the end ({status})", layer.name);
    }
    Ok(count)
}

fn number_before(text: &str, label: &str) -> u64 {
    text.find(label)
        .and_then(|end| text[..end].rsplit(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .unwrap_or(0)
}

//! `cargo xtask fuzz`: the long packet fuzz (lb-xdp/tests/packet_fuzz.rs, at least a million
//! frames through the real XDP object), then each cargo-fuzz target of fuzz/ for a bounded
//! time. `cargo xtask test` runs the packet fuzz's short budget with the packet layer.
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::cmd::{cargo, is_root, path_with_llvm, status, workspace};

/// The libFuzzer targets of fuzz/Cargo.toml, each with a seed corpus in fuzz/seeds/.
pub const TARGETS: [&str; 3] = ["config", "api", "common"];

pub struct Budget {
    /// Frames through the XDP object.
    pub frames: u64,
    /// Seconds per cargo-fuzz target.
    pub seconds: u64,
}

pub fn run(budget: &Budget) -> Result<()> {
    if !is_root() {
        bail!("the packet fuzz loads the XDP object and needs root: run `sudo cargo xtask fuzz`");
    }
    packet_fuzz(budget.frames)?;
    let mut runs = Vec::new();
    for target in TARGETS {
        runs.push((target, libfuzzer(target, budget.seconds)?));
    }
    println!("\n==> fuzz summary");
    println!("packet fuzz: {} frames, no failure", budget.frames);
    for (target, executions) in runs {
        println!("cargo fuzz {target}: {executions} inputs in {} s, no crash", budget.seconds);
    }
    Ok(())
}

fn packet_fuzz(frames: u64) -> Result<()> {
    println!("\n==> packet fuzz: {frames} frames through the XDP object");
    let mut c = cargo();
    c.env("LB_PACKET_FUZZ_FRAMES", frames.to_string()).args([
        "test",
        "-p",
        "lb-xdp",
        "--test",
        "packet_fuzz",
        "--",
        "--ignored",
        "--nocapture",
    ]);
    status(c)
}

/// One target for `seconds`, its corpus kept under fuzz/corpus/ (git ignores it) beside the
/// checked-in seeds. Returns how many inputs libFuzzer ran.
fn libfuzzer(target: &str, seconds: u64) -> Result<u64> {
    println!("\n==> cargo fuzz run {target} (-max_total_time={seconds})");
    let fuzz = workspace().join("fuzz");
    let corpus = fuzz.join("corpus").join(target);
    std::fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
    let seeds = fuzz.join("seeds").join(target);
    // Through rustup, for nightly (libFuzzer's sanitizer flags), without the outer cargo's
    // toolchain variables. No target loads the XDP object, so lb-xdp's build skips it.
    let mut c = Command::new("rustup");
    c.current_dir(&fuzz)
        .env("PATH", path_with_llvm())
        .env("AYA_BUILD_SKIP", "1")
        .env_remove("CARGO")
        .env_remove("RUSTC")
        .env_remove("RUSTUP_TOOLCHAIN")
        .args(["run", "nightly", "cargo", "fuzz", "run", target])
        .arg(&corpus)
        .arg(&seeds)
        .args(["--", &format!("-max_total_time={seconds}"), "-print_final_stats=1"])
        .stderr(Stdio::piped());
    let mut child = c.spawn().context("running cargo fuzz")?;
    let mut executions = 0;
    for line in BufReader::new(child.stderr.take().context("cargo fuzz stderr")?).lines() {
        let line = line?;
        eprintln!("{line}");
        if let Some(n) = line.strip_prefix("stat::number_of_executed_units:") {
            executions = n.trim().parse().unwrap_or(0);
        }
    }
    let st = child.wait()?;
    if !st.success() {
        bail!("cargo fuzz run {target} failed ({st}): the crashing input is under fuzz/artifacts/{target}/");
    }
    Ok(executions)
}

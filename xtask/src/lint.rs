//! `cargo xtask lint`: formatting and clippy, as CI runs them before the tests. Host crates
//! with stable's clippy; the eBPF crate with nightly's, for the BPF target it is built for.
use anyhow::Result;

use crate::cmd::{cargo, status};

pub fn run() -> Result<()> {
    println!("==> cargo fmt --check");
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    status(fmt)?;

    println!("==> cargo clippy (host crates)");
    let mut host = cargo();
    // Default members: every crate but lb-ebpf, which only builds for the BPF target.
    host.args(["clippy", "--all-targets", "--", "-D", "warnings"]);
    status(host)?;

    println!("==> cargo clippy (lb-ebpf, bpfel-unknown-none)");
    let mut ebpf = cargo();
    ebpf.current_dir(crate::cmd::workspace().join("lb-ebpf")).args([
        "+nightly",
        "clippy",
        "-Z",
        "build-std=core",
        "--target",
        "bpfel-unknown-none",
        "--",
        "-D",
        "warnings",
    ]);
    status(ebpf)
}

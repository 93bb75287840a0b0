//! `cargo xtask lint`: formatting and clippy, as CI runs them before the tests. Host crates
//! with stable's clippy; the eBPF crate with nightly's, for the BPF target it is built for.
use anyhow::Result;

use std::process::Command;

use crate::cmd::{cargo, path_with_llvm, status, workspace};

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
    // Through rustup, for nightly; without the outer cargo's own toolchain variables.
    let mut ebpf = Command::new("rustup");
    ebpf.current_dir(workspace().join("lb-ebpf"))
        .env("PATH", path_with_llvm())
        .env_remove("CARGO")
        .env_remove("RUSTC")
        .env_remove("RUSTUP_TOOLCHAIN")
        .args(["run", "nightly", "cargo", "clippy", "-Z", "build-std=core", "--target", "bpfel-unknown-none"])
        .args(["--", "-D", "warnings"]);
    status(ebpf)
}

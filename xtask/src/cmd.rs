//! Running cargo and friends with the environment the eBPF build needs.
use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

pub const LLVM_BIN: &str = "/usr/lib/llvm-22/bin";

pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `cargo` in the workspace, with LLVM 22 first on PATH (bpf-linker's requirement).
pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(workspace()).env("PATH", path_with_llvm());
    c
}

pub fn path_with_llvm() -> String {
    format!("{LLVM_BIN}:{}:{}", cargo_bin(), std::env::var("PATH").unwrap_or_default())
}

pub fn cargo_bin() -> String {
    let home = std::env::var("CARGO_HOME")
        .unwrap_or_else(|_| format!("{}/.cargo", std::env::var("HOME").unwrap_or_else(|_| "/root".into())));
    format!("{home}/bin")
}

pub fn status(mut c: Command) -> Result<()> {
    let what = format!("{c:?}");
    let st = c.status().with_context(|| format!("running {what}"))?;
    if !st.success() {
        bail!("{what} failed ({st})");
    }
    Ok(())
}

pub fn build() -> Result<()> {
    println!("==> building the workspace (XDP program included)");
    let mut c = cargo();
    // Default members: lb-ebpf is built by lb-xdp's build script for the BPF target.
    c.args(["build", "--all-targets"]);
    status(c)
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

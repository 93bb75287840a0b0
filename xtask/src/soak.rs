//! `cargo xtask soak [--minutes N]`: the soak test (lb-user/tests/soak_network.rs) for N
//! minutes: real clients through `lb run` on the test network while it churns. `cargo
//! xtask test` runs it for its default two minutes with the network layer (it carries the
//! root marker).
use anyhow::{bail, Result};

use crate::cmd::{cargo, is_root, status};

pub fn run(minutes: u64) -> Result<()> {
    if !is_root() {
        bail!("the soak runs on the netns test network and needs root: run `sudo cargo xtask soak`");
    }
    println!("\n==> soak: {minutes} minutes on the test network");
    let mut c = cargo();
    c.env("LB_SOAK_MINUTES", minutes.to_string()).args([
        "test",
        "-p",
        "lb-user",
        "--test",
        "soak_network",
        "--",
        "--ignored",
        "--nocapture",
    ]);
    status(c)
}

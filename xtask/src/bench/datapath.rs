//! Runs lb-xdp's `bench_datapath` example (the real XDP object through
//! BPF_PROG_TEST_RUN, Maglev builds, a reconcile) and takes its JSON.
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use serde_json::Value;

pub fn run(example: &Path, quick: bool) -> Result<Value> {
    let mut c = Command::new("timeout");
    // The example bounds each of its loops; this bounds the whole (1M-entry fill included).
    c.arg("600").arg(example).stdout(Stdio::piped()).stderr(Stdio::inherit());
    if quick {
        c.arg("--quick");
    }
    let out = c.output().with_context(|| format!("running {}", example.display()))?;
    if !out.status.success() {
        bail!("{} failed ({})", example.display(), out.status);
    }
    serde_json::from_slice(&out.stdout).with_context(|| format!("parsing the JSON of {}", example.display()))
}

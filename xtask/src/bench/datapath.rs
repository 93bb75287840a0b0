//! Runs lb-xdp's `bench_datapath` example (the real XDP object through
//! BPF_PROG_TEST_RUN) and its `bench_control` example (Maglev builds, reconciles and map
//! memory per number of services and flow-table size), and takes their JSON: the data
//! path's object, with the control plane's under `control`.
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// `examples`: the target directory's `examples`, both built.
pub fn run(examples: &Path, quick: bool) -> Result<Value> {
    let mut datapath = run_example(&examples.join("bench_datapath"), quick)?;
    datapath["control"] = run_example(&examples.join("bench_control"), quick)?;
    Ok(datapath)
}

fn run_example(example: &Path, quick: bool) -> Result<Value> {
    let mut c = Command::new("timeout");
    // The examples bound each of their loops; this bounds the whole (1M-entry fill, or
    // 1000 services' tables, included).
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

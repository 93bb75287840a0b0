//! The test tools from PyPI (`testenv::tools`), each in its own virtual environment under
//! target/tools/, made with Debian's Python (python3-venv is among the apt packages) and a
//! pinned version, so a fresh machine and CI get the same one.
use std::process::Command;

use anyhow::Result;
use testenv::tools;

use crate::cmd::status;

pub fn install() -> Result<()> {
    schemathesis()
}

fn schemathesis() -> Result<()> {
    let version = Command::new(tools::schemathesis())
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if version.contains(tools::SCHEMATHESIS_VERSION) {
        return Ok(());
    }
    let venv = tools::schemathesis_venv();
    println!("==> schemathesis {} into {}", tools::SCHEMATHESIS_VERSION, venv.display());
    let mut make = Command::new("/usr/bin/python3");
    make.args(["-m", "venv", "--clear"]).arg(&venv);
    status(make)?;
    let mut pip = Command::new(venv.join("bin").join("pip"));
    pip.args(["install", "--quiet", "--disable-pip-version-check"])
        .arg(format!("schemathesis=={}", tools::SCHEMATHESIS_VERSION));
    status(pip)
}

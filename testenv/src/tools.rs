//! Test tools that come from PyPI rather than Debian, installed by `cargo xtask deps` into
//! virtual environments under `target/tools/`, so they never touch the system's Python.
use std::path::{Path, PathBuf};

/// schemathesis, which checks the admin API against its OpenAPI description.
pub const SCHEMATHESIS_VERSION: &str = "4.32.5";

pub fn dir() -> PathBuf {
    let testenv = Path::new(env!("CARGO_MANIFEST_DIR"));
    testenv.parent().unwrap_or(testenv).join("target").join("tools")
}

/// The virtual environment schemathesis is installed in.
pub fn schemathesis_venv() -> PathBuf {
    dir().join("schemathesis")
}

/// Its command (`st`), present once `cargo xtask deps` ran.
pub fn schemathesis() -> PathBuf {
    schemathesis_venv().join("bin").join("schemathesis")
}

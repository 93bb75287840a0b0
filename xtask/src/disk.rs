//! Room on disk for a whole `cargo xtask test`, checked before it builds: a run that fills
//! the disk fails minutes in with a compiler's I/O error that names no cause.
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{bail, Context, Result};

const GB: u64 = 1 << 30;
/// What a whole run from a fresh clone leaves under `target/` at its peak (the test build,
/// the bench's build, the tools' venv and npm folders, the Docker layer's base root):
/// 5.3 GB measured, with a margin. Before the test build dropped full debug info it was
/// 23 GB, and a CI disk ran out.
pub const TEST_RUN_TARGET: u64 = 6 * GB;

/// Fail, saying how much is missing, unless `target/` can grow to `needed` bytes.
pub fn check_room(target: &Path, needed: u64) -> Result<()> {
    let held = if target.exists() { size_of_tree(target) } else { 0 };
    let free = free_bytes(target.parent().unwrap_or(target))?;
    let more = needed.saturating_sub(held);
    if free < more {
        bail!(
            "not enough disk for the test run: target/ grows to about {:.1} GB and holds {:.1} GB, \
             but only {:.1} GB are free on its filesystem; free {:.1} GB more (`cargo clean` removes \
             old builds) and run again",
            gb(needed),
            gb(held),
            gb(free),
            gb(more - free)
        );
    }
    Ok(())
}

fn gb(bytes: u64) -> f64 {
    bytes as f64 / GB as f64
}

/// Bytes available to an unprivileged user on the filesystem holding `dir` (root may use
/// the reserved blocks too, but the build should not count on them).
fn free_bytes(dir: &Path) -> Result<u64> {
    let path = CString::new(dir.as_os_str().as_bytes()).context("a path with a NUL byte")?;
    // SAFETY: statvfs on a NUL-terminated path into a zeroed struct.
    let st = unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(path.as_ptr(), &mut st) != 0 {
            return Err(std::io::Error::last_os_error()).with_context(|| format!("statvfs {}", dir.display()));
        }
        st
    };
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

/// The disk space the files under `dir` take (blocks, not lengths); unreadable entries
/// count as nothing.
fn size_of_tree(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(m) if m.is_dir() => size_of_tree(&entry.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_that_cannot_fit_is_refused_saying_how_much_is_missing() {
        let dir = std::env::temp_dir().join(format!("xtask-disk-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("target/debug")).unwrap();
        std::fs::write(dir.join("target/debug/a"), vec![1u8; 1 << 20]).unwrap();
        let target = dir.join("target");
        let held = size_of_tree(&target);
        assert!(held >= 1 << 20, "the 1 MiB file counts: {held}");
        check_room(&target, 1 << 20).expect("what target/ holds already needs no more room");
        let err = check_room(&target, u64::MAX / 2).expect_err("no disk has 4 EiB free").to_string();
        assert!(err.contains("not enough disk for the test run") && err.contains("GB more"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

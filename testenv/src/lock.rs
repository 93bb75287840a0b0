//! One test network per machine: tests that build it take this lock.

use crate::topology::LOCK_FILE;
use anyhow::{Context, Result};
use std::fs::File;
use std::os::fd::AsRawFd;

/// Held while a test uses the network; released on drop (or process exit).
#[derive(Debug)]
pub struct NetworkLock {
    _file: File,
}

/// Blocks until no other test (thread or process) holds the network.
/// `cargo test` runs the tests of one binary in parallel, and they all share
/// the same namespace names.
pub fn lock_network() -> Result<NetworkLock> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK_FILE)
        .with_context(|| format!("opening {LOCK_FILE}"))?;
    // flock locks belong to the open file description, so two opens in one
    // process exclude each other like two processes do.
    // SAFETY: the fd is valid for the lifetime of `file`.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error()).context(format!("flock {LOCK_FILE}"));
    }
    Ok(NetworkLock { _file: file })
}

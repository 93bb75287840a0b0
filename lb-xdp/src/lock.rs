//! One daemon per XDP data path. Two daemons on one `pin_path` would both write its maps
//! (traffic following one daemon's backends while the other's API lists its own), and one's
//! `--detach-on-exit` would take the other's data path away. So a daemon locks the pin
//! directory itself (`flock`, exclusive) before it reads or writes anything under it, and
//! holds the lock until it has stopped, pins removed or left for the next daemon. A second
//! `lb run` on the same `pin_path` is refused, naming the first one's pid. The lock dies
//! with its holder, so a daemon started after a crash (SIGKILL) adopts as before.
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use lb_control::lock::{self, Acquired, FileLock, Holder};

/// Held for the daemon's life; dropping it lets the next daemon in.
#[derive(Debug)]
pub struct PinLock {
    _lock: FileLock,
    created: bool,
}

impl PinLock {
    /// Whether the pin directory was created by this lock (it did not exist before): a
    /// fresh start that fails removes it again.
    pub fn created(&self) -> bool {
        self.created
    }
}

/// Another daemon holds the pin directory.
#[derive(Debug, thiserror::Error)]
#[error(
    "pin_path {} is in use by another lb: {} serves this data path. Two daemons on one pin_path \
     would both write its maps, so this one stops here and touches nothing; stop the other \
     first (SIGTERM leaves its data path forwarding for the next `lb run` to adopt), or give \
     this one its own daemon.pin_path",
    pin_path.display(),
    lock::describe(holders)
)]
pub struct PinPathBusy {
    pub pin_path: PathBuf,
    pub holders: Vec<Holder>,
}

/// Lock `pin_path` (created if missing) for this daemon.
pub fn lock_pin_path(pin_path: &Path) -> Result<PinLock> {
    let created = !pin_path.exists();
    std::fs::create_dir_all(pin_path).with_context(|| format!("cannot create pin_path {}", pin_path.display()))?;
    match lock::lock_dir(pin_path).with_context(|| format!("locking pin_path {}", pin_path.display()))? {
        Acquired::Held(l) => Ok(PinLock { _lock: l, created }),
        Acquired::Busy(holders) => Err(PinPathBusy { pin_path: pin_path.to_path_buf(), holders }.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_daemon_on_the_same_pin_path_is_refused_naming_the_first_ones_pid() {
        let dir = std::env::temp_dir().join(format!("lb-pinlock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let pins = dir.join("lb");
        let first = lock_pin_path(&pins).expect("the first daemon locks");
        assert!(pins.is_dir() && first.created(), "created on the way");
        let err = lock_pin_path(&pins).expect_err("the second is refused");
        let busy = err.downcast_ref::<PinPathBusy>().expect("a PinPathBusy");
        assert_eq!(busy.holders[0].pid, std::process::id());
        let text = err.to_string();
        assert!(text.contains(&format!("pid {}", std::process::id())), "{text}");
        assert!(text.contains(&pins.display().to_string()), "{text}");
        drop(first);
        let again = lock_pin_path(&pins).expect("free once the first is gone");
        assert!(!again.created());
        drop(again);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

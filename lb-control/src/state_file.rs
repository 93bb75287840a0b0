//! The state file (`daemon.state_file`): what a restarted daemon must not forget.
//! Registrations, API-set admin states and weights, and what the daemon knew of its backends'
//! health: which ones were down and which were ejected by their circuit breaker, so a
//! restart does not put a failing backend back into rotation before its checker says so.
//!
//! Written durably: a temp file in the same directory, fsync, rename over the old file,
//! fsync of the directory. A crash at any point leaves either the old file or the new one,
//! whole. A file that does not parse is moved aside (`<name>.corrupt-<unix seconds>`) with
//! a loud warning and the daemon starts without it: registrations come back with the
//! agents' next heartbeats (a heartbeat for an unknown registration gets 404, and the agent
//! registers again), which is better than a load balancer that refuses to boot.
use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tracing::error;

use lb_config::AdminState;

/// The file's format. Every list defaults to empty, so files written by older daemons
/// (registrations and states only) still load.
#[derive(Serialize, Deserialize, Default, Debug, PartialEq)]
pub struct StateFile {
    #[serde(default)]
    pub registrations: Vec<SavedRegistration>,
    #[serde(default)]
    pub states: Vec<SavedState>,
    /// Weights set through the API.
    #[serde(default)]
    pub weights: Vec<SavedWeight>,
    /// Backends whose active health check had them down.
    #[serde(default)]
    pub down: Vec<SavedBackend>,
    /// Backends whose circuit breaker was open or half-open.
    #[serde(default)]
    pub ejections: Vec<SavedEjection>,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct SavedRegistration {
    pub service: String,
    pub address: SocketAddr,
    pub weight: u32,
    pub ttl_ms: u64,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct SavedState {
    pub service: String,
    pub address: SocketAddr,
    pub state: AdminState,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct SavedWeight {
    pub service: String,
    pub address: SocketAddr,
    pub weight: u32,
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
pub struct SavedBackend {
    pub service: String,
    pub address: SocketAddr,
}

/// An ejection by wall clock: the time the daemon was down counts towards it.
#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
pub struct SavedEjection {
    pub service: String,
    pub address: SocketAddr,
    /// When the ejection ends (then the breaker goes half-open), in ms since the epoch.
    pub until_unix_ms: u64,
    /// Ejections in a row, so the next one keeps doubling.
    pub in_row: u32,
}

/// Wall-clock milliseconds `after` from now.
pub fn unix_ms_in(after: Duration) -> u64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    (now + after).as_millis().min(u64::MAX as u128) as u64
}

/// How long until the wall-clock instant `unix_ms` (zero if it has passed).
pub fn until_unix_ms(unix_ms: u64) -> Duration {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    Duration::from_millis(unix_ms).saturating_sub(now)
}

/// Read the state file: a missing file is an empty one; one that does not parse is moved
/// aside (and its new name logged) and read as empty. Only an I/O error is an error.
pub fn read(path: &Path) -> Result<StateFile> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(StateFile::default()),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => return set_aside(path, &e.to_string()),
        Err(e) => return Err(e).with_context(|| format!("reading state file {}", path.display())),
    };
    match serde_json::from_str(&text) {
        Ok(file) => Ok(file),
        Err(e) => set_aside(path, &e.to_string()),
    }
}

/// Move a state file that cannot be read to `<name>.corrupt-<unix seconds>`.
fn set_aside(path: &Path, why: &str) -> Result<StateFile> {
    let aside = corrupt_name(path, SystemTime::now());
    std::fs::rename(path, &aside)
        .with_context(|| format!("state file {} does not parse ({why}) and cannot be moved aside", path.display()))?;
    error!(
        state_file = %path.display(),
        moved_to = %aside.display(),
        reason = why,
        "THE STATE FILE DOES NOT PARSE: moved aside, starting without it; registrations come back with the \
         agents' heartbeats, API-set admin states and remembered health are lost"
    );
    Ok(StateFile::default())
}

pub fn corrupt_name(path: &Path, at: SystemTime) -> PathBuf {
    let secs = at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".corrupt-{secs}"));
    path.with_file_name(name)
}

/// Write `file` durably to `path` (see the module's comment).
pub fn write(path: &Path, file: &StateFile) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let bytes = serde_json::to_vec_pretty(file)?;
    let tmp = temp_name(path);
    let written = (|| -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", tmp.display()));
    }
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    // The rename is durable only once the directory entry is.
    File::open(&dir).and_then(|d| d.sync_all()).with_context(|| format!("syncing directory {}", dir.display()))?;
    Ok(())
}

/// A hidden name beside `path`, never `path` itself (a state file named `x.tmp` must not
/// be written in place), and this process's own.
pub fn temp_name(path: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("lb-state-file-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_state_file_that_does_not_parse_is_moved_aside_and_read_as_empty() {
        let dir = scratch("corrupt");
        let path = dir.join("state.json");
        std::fs::write(&path, "{\"registrations\": [ {not json").unwrap();
        assert_eq!(read(&path).unwrap(), StateFile::default());
        assert!(!path.exists(), "moved away");
        let aside: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("state.json.corrupt-"))
            .collect();
        assert_eq!(aside.len(), 1, "the broken file is kept for a human");
        assert_eq!(std::fs::read_to_string(dir.join(&aside[0])).unwrap(), "{\"registrations\": [ {not json");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_file_with_bytes_that_are_not_text_is_moved_aside_too() {
        let dir = scratch("binary");
        let path = dir.join("state.json");
        std::fs::write(&path, [0xff, 0xfe, 0x00, 0x80]).unwrap();
        assert_eq!(read(&path).unwrap(), StateFile::default());
        assert!(!path.exists());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn writes_go_through_a_temp_file_beside_the_state_file_even_when_it_is_named_tmp() {
        let dir = scratch("tmp-name");
        let path = dir.join("state.tmp");
        assert_ne!(temp_name(&path), path, "the temp file is never the state file itself");
        assert_eq!(temp_name(&path).parent(), path.parent(), "same directory: the rename is atomic");
        let file = StateFile {
            down: vec![SavedBackend { service: "web".into(), address: "10.0.0.1:80".parse().unwrap() }],
            ..Default::default()
        };
        write(&path, &file).unwrap();
        assert_eq!(read(&path).unwrap(), file);
        let names: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["state.tmp"], "no temp file left behind");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_file_from_an_older_daemon_reads_with_nothing_remembered() {
        let dir = scratch("old");
        let path = dir.join("state.json");
        std::fs::write(&path, r#"{"registrations": [], "states": []}"#).unwrap();
        let file = read(&path).unwrap();
        assert!(file.down.is_empty() && file.ejections.is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn wall_clock_deadlines_round_trip() {
        let at = unix_ms_in(Duration::from_secs(30));
        let left = until_unix_ms(at);
        assert!(left > Duration::from_secs(29) && left <= Duration::from_secs(30), "{left:?}");
        assert_eq!(until_unix_ms(0), Duration::ZERO, "passed");
    }
}

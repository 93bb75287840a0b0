//! Reload on config file change. The directory is watched, not the file: editors and config
//! managers replace files by renaming a new one over them, which a watch on the old inode
//! would never see. Bursts of events (write, then close, then rename) become one reload.
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use futures_util::StreamExt;
use inotify::{Inotify, WatchMask};
use tokio::sync::mpsc;
use tracing::{info, warn};

/// Quiet time after the last event before reloading.
const SETTLE: Duration = Duration::from_millis(200);

pub fn spawn(config_path: &Path, reloads: mpsc::Sender<()>) -> Result<tokio::task::JoinHandle<()>> {
    let path = std::fs::canonicalize(config_path).unwrap_or_else(|_| config_path.to_path_buf());
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    let name: OsString = path.file_name().context("the config path names no file")?.to_os_string();
    let inotify = Inotify::init().context("inotify_init")?;
    inotify
        .watches()
        .add(&dir, WatchMask::CLOSE_WRITE | WatchMask::MOVED_TO | WatchMask::CREATE)
        .with_context(|| format!("watching {}", dir.display()))?;
    let mut events = inotify.into_event_stream(vec![0u8; 4096]).context("inotify stream")?;
    info!(dir = %dir.display(), "watching the config file for changes");
    Ok(tokio::spawn(async move {
        loop {
            let Some(event) = events.next().await else { return };
            match event {
                Ok(e) if e.name.as_deref() == Some(name.as_os_str()) => {}
                Ok(_) => continue,
                Err(e) => {
                    warn!("config watch failed, file changes are no longer noticed (SIGHUP and the API still reload): {e}");
                    return;
                }
            }
            // Let the burst settle: swallow events until SETTLE passes without one.
            while let Ok(Some(_)) = tokio::time::timeout(SETTLE, events.next()).await {}
            if reloads.send(()).await.is_err() {
                return;
            }
        }
    }))
}

//! Reload on config file change. The directory is watched, not the file: editors and config
//! managers replace files by renaming a new one over them, which a watch on the old inode
//! would never see. Only events that name the config file count, both to start a reload
//! and to hold it back: other files in the directory (logs, a state file, an editor's swap
//! file) may change all the time. A burst of events (write, then close, then rename)
//! becomes one reload.
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use futures_util::{Stream, StreamExt};
use inotify::{Event, Inotify, WatchMask};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{info, warn};

/// Quiet time after the config file's last event before reloading.
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
    let events = inotify.into_event_stream(vec![0u8; 4096]).context("inotify stream")?;
    info!(dir = %dir.display(), "watching the config file for changes");
    Ok(tokio::spawn(watch(events, name, reloads)))
}

async fn watch(
    mut events: impl Stream<Item = io::Result<Event<OsString>>> + Unpin,
    name: OsString,
    reloads: mpsc::Sender<()>,
) {
    while next_naming(&mut events, &name).await.is_some() {
        // Let the burst settle: wait until SETTLE passes without another event of the file.
        let mut quiet_until = Instant::now() + SETTLE;
        loop {
            match tokio::time::timeout_at(quiet_until, next_naming(&mut events, &name)).await {
                Err(_) => break,
                Ok(Some(())) => quiet_until = Instant::now() + SETTLE,
                Ok(None) => return,
            }
        }
        if reloads.send(()).await.is_err() {
            return;
        }
    }
}

/// Waits for the next event that names the config file, skipping the others; `None` when
/// the watch ended.
async fn next_naming(
    events: &mut (impl Stream<Item = io::Result<Event<OsString>>> + Unpin),
    name: &OsStr,
) -> Option<()> {
    loop {
        match events.next().await? {
            Ok(e) if e.name.as_deref() == Some(name) => return Some(()),
            Ok(_) => {}
            Err(e) => {
                warn!("config watch failed, file changes are no longer noticed (SIGHUP and the API still reload): {e}");
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    /// A directory of its own, removed at the end.
    struct Dir(PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn dir(test: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("lb-watch-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    /// Writes `other` in the background every 50 ms until the returned flag is set.
    fn neighbour(other: PathBuf) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let writer = std::thread::spawn(move || {
            let mut n = 0u64;
            while !flag.load(Ordering::SeqCst) {
                n += 1;
                std::fs::write(&other, n.to_string()).unwrap();
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        (stop, writer)
    }

    #[tokio::test]
    async fn a_neighbour_written_every_50ms_neither_reloads_nor_holds_a_reload_back() {
        let d = dir("neighbour");
        let config = d.0.join("lb.toml");
        std::fs::write(&config, "# first\n").unwrap();
        let (tx, mut reloads) = mpsc::channel(8);
        let task = spawn(&config, tx).unwrap();
        let (stop, writer) = neighbour(d.0.join("state.json"));

        let quiet = tokio::time::timeout(SETTLE * 3, reloads.recv()).await;
        assert!(quiet.is_err(), "another file's writes are no reason to reload");

        let written = std::time::Instant::now();
        std::fs::write(&config, "# second\n").unwrap();
        let reload = tokio::time::timeout(SETTLE + Duration::from_millis(800), reloads.recv()).await;
        let (waited, neighbour_still_writing) = (written.elapsed(), !writer.is_finished());
        stop.store(true, Ordering::SeqCst);
        writer.join().unwrap();
        task.abort();
        assert_eq!(reload, Ok(Some(())), "the config's change reloads while the neighbour goes on writing");
        assert!(neighbour_still_writing);
        assert!(waited >= SETTLE, "the change settled first ({waited:?})");
    }

    #[tokio::test]
    async fn a_burst_of_the_files_own_events_is_one_reload() {
        let d = dir("burst");
        let config = d.0.join("lb.toml");
        std::fs::write(&config, "# first\n").unwrap();
        let (tx, mut reloads) = mpsc::channel(8);
        let task = spawn(&config, tx).unwrap();
        // Written in place, then replaced by a rename, as editors do.
        std::fs::write(&config, "# second\n").unwrap();
        let next = d.0.join("lb.toml.new");
        std::fs::write(&next, "# third\n").unwrap();
        std::fs::rename(&next, &config).unwrap();
        let first = tokio::time::timeout(SETTLE * 5, reloads.recv()).await;
        let second = tokio::time::timeout(SETTLE * 3, reloads.recv()).await;
        task.abort();
        assert_eq!(first, Ok(Some(())));
        assert!(second.is_err(), "one burst, one reload");
    }
}

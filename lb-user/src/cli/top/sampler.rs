//! Samples on a thread of their own, one per interval, so a daemon slow to answer never
//! holds up the keys or the drawing.
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use super::sample::{Sample, Source};

/// A refresh's result; the error as the text the header shows.
pub type Refresh = Result<Sample, String>;

/// Starts sampling now and then every `interval` (a slow sample delays the next one, it
/// does not pile them up). The thread ends once the receiver is dropped.
pub fn spawn(source: Source, interval: Duration) -> Receiver<Refresh> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || loop {
        let started = Instant::now();
        let refresh = source.sample().map_err(|e| format!("{e:#}"));
        if tx.send(refresh).is_err() {
            return;
        }
        std::thread::sleep(interval.saturating_sub(started.elapsed()));
    });
    rx
}

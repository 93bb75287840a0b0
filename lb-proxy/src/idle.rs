//! Idle timeouts that any traffic resets: both directions of a connection touch one
//! `Activity`, and `expired` completes once neither has moved for the timeout.
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

pub struct Activity {
    start: Instant,
    /// Milliseconds after `start` of the last traffic.
    last_ms: AtomicU64,
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

impl Activity {
    pub fn new() -> Self {
        Activity { start: Instant::now(), last_ms: AtomicU64::new(0) }
    }

    pub fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        // Relaxed and not monotonic-checked: two threads racing write times a few µs apart.
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    pub fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    /// Completes once there has been no traffic for `timeout`. It sleeps to the current
    /// deadline and looks again, so traffic costs one store, not a timer reset.
    pub async fn expired(&self, timeout: Duration) {
        loop {
            let deadline = self.last() + timeout;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

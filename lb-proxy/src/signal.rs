//! One-way switches that end tasks: a backend's cut, a service's or the whole proxy's stop
//! (no new connections) and kill (close everything now).
use tokio::sync::watch;

/// A one-way switch (false → true) that any number of tasks can wait on.
#[derive(Debug)]
pub struct Signal(watch::Sender<bool>);

impl Default for Signal {
    fn default() -> Self {
        Signal(watch::channel(false).0)
    }
}

impl Signal {
    pub fn fire(&self) {
        self.0.send_replace(true);
    }

    pub fn is_fired(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes once fired (at once if it already is).
    pub async fn fired(&self) {
        let mut rx = self.0.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|v| *v).await;
    }
}

/// Signals of the whole proxy: shutdown fires `stop`, then `kill` when the drain ends.
#[derive(Debug, Default)]
pub struct Signals {
    pub stop: Signal,
    pub kill: Signal,
}

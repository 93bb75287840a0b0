//! Whether the daemon serves: set by the controller when its loop starts (the data path
//! serves, the checkers run) and cleared when it stops; read by `/readyz`, and awaited by
//! whatever must act the moment it turns ready (systemd's `READY=1`).
use std::sync::Arc;

use tokio::sync::watch;

#[derive(Clone)]
pub struct ReadyFlag(Arc<watch::Sender<bool>>);

impl ReadyFlag {
    pub fn new(ready: bool) -> Self {
        ReadyFlag(Arc::new(watch::Sender::new(ready)))
    }

    pub fn set(&self, ready: bool) {
        self.0.send_replace(ready);
    }

    pub fn get(&self) -> bool {
        *self.0.borrow()
    }

    /// Returns once the flag is set (at once if it is).
    pub async fn wait(&self) {
        let mut rx = self.0.subscribe();
        // The sender lives in `self`, so the channel cannot close while this waits.
        let _ = rx.wait_for(|ready| *ready).await;
    }
}

impl Default for ReadyFlag {
    fn default() -> Self {
        Self::new(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn wait_returns_when_the_flag_is_set_and_at_once_when_it_is() {
        let flag = ReadyFlag::default();
        assert!(!flag.get());
        let waiting = tokio::spawn({
            let flag = flag.clone();
            async move { flag.wait().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "returned before the flag was set");
        flag.set(true);
        tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("wait returned").unwrap();
        assert!(flag.get());
        tokio::time::timeout(Duration::from_secs(5), flag.wait()).await.expect("set already: at once");
        flag.set(false);
        assert!(!flag.get());
    }
}

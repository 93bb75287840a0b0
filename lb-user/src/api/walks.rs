//! At most one walk of the XDP flow table at a time. A walk (`/metrics` counts live flows
//! per backend, `/v1/flows` lists them) costs one syscall per entry: with a full table,
//! concurrent scrapes and listings would each hold a CPU for seconds. A second walk waits
//! for the first, up to [`WALK_WAIT`]; past that it is refused with 503 and a message that
//! says to retry, instead of queueing without bound.
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::HttpError;

/// How long a walk waits for the one in progress before it is refused.
pub const WALK_WAIT: Duration = Duration::from_secs(10);

/// The permit to walk the flow table; cloned handles share it.
#[derive(Clone, Debug)]
pub struct FlowWalks {
    permit: Arc<Semaphore>,
    wait: Duration,
}

impl Default for FlowWalks {
    fn default() -> Self {
        Self::with_wait(WALK_WAIT)
    }
}

impl FlowWalks {
    pub fn with_wait(wait: Duration) -> Self {
        Self { permit: Arc::new(Semaphore::new(1)), wait }
    }

    /// Waits for the walk in progress to end, then holds the permit until the returned
    /// guard drops. Move the guard into the blocking task that walks: a client that hangs
    /// up drops the handler, not the walk, and the next walk must still wait for it.
    pub async fn begin(&self) -> Result<OwnedSemaphorePermit, HttpError> {
        match tokio::time::timeout(self.wait, self.permit.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphore is never closed; treat it like a busy one all the same.
            Ok(Err(_)) | Err(_) => Err(HttpError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "another walk of the flow table (/metrics or /v1/flows) has been running for over {:?}; retry later",
                    self.wait
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_walk_waits_for_the_first_and_gives_up_after_the_wait() {
        let walks = FlowWalks::with_wait(Duration::from_millis(100));
        let first = walks.begin().await.unwrap();
        let refused = walks.begin().await.unwrap_err();
        assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(refused.message.contains("retry"), "{}", refused.message);
        let waiting = tokio::spawn({
            let walks = walks.clone();
            async move { walks.begin().await.is_ok() }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(first);
        assert!(waiting.await.unwrap(), "the waiting walk runs once the first ends");
    }
}

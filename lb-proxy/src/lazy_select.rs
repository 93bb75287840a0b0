//! A two-way select for a busy future and rare ones: `work` (a relay's copying, woken on
//! every read and write) is polled on every wake-up; `ends` (idle timer, cut and kill
//! signals, woken perhaps once in the connection's life) only when one of them woke the
//! task. `tokio::select!` polls every branch on every wake-up, and polling a signal that
//! has not fired still takes its `Notify`'s lock: on a keep-alive relay that was several
//! locks per request for nothing.
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

/// The waker `ends` is polled with: it notes that they woke, then wakes the task.
struct EndsWaker {
    woke: AtomicBool,
    task: AtomicWaker,
}

impl Wake for EndsWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woke.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// Whichever of `work` and `ends` completes first (`work` when both are ready).
pub async fn select_lazy<T>(work: impl Future<Output = T>, ends: impl Future<Output = T>) -> T {
    let mut work = pin!(work);
    let mut ends = pin!(ends);
    // `woke` starts set: `ends` must be polled once to register its wakers.
    let shared = Arc::new(EndsWaker { woke: AtomicBool::new(true), task: AtomicWaker::new() });
    let ends_waker = Waker::from(shared.clone());
    poll_fn(|cx| {
        if let Poll::Ready(v) = work.as_mut().poll(cx) {
            return Poll::Ready(v);
        }
        // Registered before `woke` is read: a wake after the read finds this task's waker.
        shared.task.register(cx.waker());
        if shared.woke.swap(false, Ordering::AcqRel) {
            if let Poll::Ready(v) = ends.as_mut().poll(&mut Context::from_waker(&ends_waker)) {
                return Poll::Ready(v);
            }
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;

    /// A future that counts its polls and never completes.
    struct Counted<'a>(&'a AtomicUsize);

    impl Future for Counted<'_> {
        type Output = &'static str;
        fn poll(self: std::pin::Pin<&mut Self>, _: &mut Context<'_>) -> Poll<&'static str> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Poll::Pending
        }
    }

    #[tokio::test]
    async fn ends_are_not_polled_when_only_work_woke() {
        let polls = AtomicUsize::new(0);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u32>();
        let work = async {
            let mut n = 0;
            while let Some(v) = rx.recv().await {
                n += v;
                if n == 100 {
                    return "work";
                }
            }
            "closed"
        };
        let feeder = async {
            for _ in 0..100 {
                tx.send(1).unwrap();
                tokio::task::yield_now().await;
            }
        };
        let (r, ()) = tokio::join!(select_lazy(work, Counted(&polls)), feeder);
        assert_eq!(r, "work");
        assert_eq!(polls.load(Ordering::Relaxed), 1, "polled once, to register; never again");
    }

    #[tokio::test]
    async fn an_end_that_wakes_is_polled_and_wins() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let work = std::future::pending::<&str>();
        let ends = async {
            let _ = rx.await;
            "ended"
        };
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let _ = tx.send(());
        });
        let r = tokio::time::timeout(Duration::from_secs(5), select_lazy(work, ends)).await;
        assert_eq!(r, Ok("ended"));
    }

    #[tokio::test]
    async fn work_ready_at_once_wins() {
        assert_eq!(select_lazy(async { 1 }, async { 2 }).await, 1);
    }
}

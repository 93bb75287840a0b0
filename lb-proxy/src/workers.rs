//! The proxy's workers: one thread per worker (`workers`; 0: one per core), each running
//! its own current-thread tokio runtime. Worker `i` serves listener `i` of every service
//! (`listen`: one `SO_REUSEPORT` socket per worker), and the tasks a listener spawns
//! (connections, sessions, upgrades) stay on its runtime: a connection lives on one thread
//! from accept to close, so its wake-ups never unpark another thread.
//!
//! The control plane stays on the daemon's runtime; it reaches the workers only through
//! the signals, tables and counters the tasks share (all of them thread-safe).
//!
//! The set grows when a reload raises `workers` and never shrinks: a worker that serves no
//! listener any more sleeps in its runtime at no cost. Dropping `Workers` ends every thread
//! and waits for it: its runtime, any task still on it (the proxy's shutdown has drained
//! them first) and the runtime's own descriptors are gone when the drop returns.
use std::io;
use std::sync::Mutex;

use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;

struct Worker {
    handle: Handle,
    /// Dropped (or sent) to end the thread.
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            // Never wait for oneself (a drop on the worker's own thread): it would not end.
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

#[derive(Default)]
pub struct Workers {
    running: Mutex<Vec<Worker>>,
}

impl Workers {
    /// The runtime of worker `i`, started (with any below it) if it is not running yet.
    pub fn handle(&self, i: usize) -> io::Result<Handle> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        while running.len() <= i {
            let worker = start(running.len())?;
            running.push(worker);
        }
        Ok(running[i].handle.clone())
    }

    /// Worker threads running now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.running.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// A thread with its own current-thread runtime, serving until its `Worker` is dropped.
fn start(index: usize) -> io::Result<Worker> {
    let runtime = Builder::new_current_thread().enable_all().build()?;
    let handle = runtime.handle().clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let thread = std::thread::Builder::new().name(format!("lb-proxy-{index}")).spawn(move || {
        // Either a send or the sender's drop ends the wait.
        let _ = runtime.block_on(stopped);
        // The runtime drops here, outside any async context, with what is left on it.
    })?;
    Ok(Worker { handle, stop: Some(stop), thread: Some(thread) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_worker_is_one_thread_and_tasks_stay_on_it() {
        let workers = Workers::default();
        let thread_of = |i: usize| {
            let h = workers.handle(i).unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            h.spawn(async move {
                // A task spawned from a worker's task runs on that worker too.
                let inner = tokio::spawn(async { std::thread::current().name().map(str::to_string) });
                let _ = tx.send((std::thread::current().name().map(str::to_string), inner.await.unwrap()));
            });
            rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap()
        };
        assert_eq!(thread_of(1), (Some("lb-proxy-1".into()), Some("lb-proxy-1".into())));
        assert_eq!(workers.len(), 2, "asking for worker 1 starts worker 0 too");
        assert_eq!(thread_of(0), (Some("lb-proxy-0".into()), Some("lb-proxy-0".into())));
    }

    #[test]
    fn dropping_the_workers_ends_their_tasks() {
        let workers = Workers::default();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        workers.handle(0).unwrap().spawn(async move {
            let _held = tx;
            std::future::pending::<()>().await;
        });
        drop(workers);
        // The task's future was dropped with its runtime, and with it the sender, before
        // the drop returned.
        assert_eq!(rx.try_recv(), Err(std::sync::mpsc::TryRecvError::Disconnected));
    }
}

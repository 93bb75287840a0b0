//! SIGTERM / SIGINT as a counter the agent loop polls.
//!
//! The handler only bumps atomics (async-signal-safe); the loop sleeps in short slices and
//! looks at the counter between them, so a signal is noticed within one slice while
//! waiting, and right after the request in flight (at most [`REQUEST_TIMEOUT`]) otherwise.
//! The first signal starts a graceful leave; a second one cuts the drain wait short.
//!
//! [`REQUEST_TIMEOUT`]: super::client::REQUEST_TIMEOUT
use std::io;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How often a sleeping agent looks at the signal counter.
const SLICE: Duration = Duration::from_millis(20);

static SIGNALS: AtomicUsize = AtomicUsize::new(0);
static LAST_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(signal: libc::c_int) {
    LAST_SIGNAL.store(signal, Ordering::SeqCst);
    SIGNALS.fetch_add(1, Ordering::SeqCst);
}

/// A handle on the stop requests: the process's signals, or a manual counter for tests.
#[derive(Clone, Copy, Debug)]
pub struct Shutdown {
    count: &'static AtomicUsize,
    last: &'static AtomicI32,
}

impl Shutdown {
    /// Installs handlers for SIGTERM and SIGINT (process-wide) and returns their counter.
    pub fn on_signals() -> io::Result<Shutdown> {
        for signal in [libc::SIGTERM, libc::SIGINT] {
            // SAFETY: a zeroed sigaction is valid; the handler only touches atomics, which is
            // async-signal-safe. SA_RESTART keeps blocking I/O from failing with EINTR.
            let installed = unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
                action.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut action.sa_mask);
                libc::sigaction(signal, &action, std::ptr::null_mut())
            };
            if installed != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(Shutdown { count: &SIGNALS, last: &LAST_SIGNAL })
    }

    /// A counter no signal touches; [`request`](Self::request) stands in for one.
    pub fn manual() -> Shutdown {
        Shutdown { count: Box::leak(Box::new(AtomicUsize::new(0))), last: Box::leak(Box::new(AtomicI32::new(0))) }
    }

    /// As if a SIGTERM arrived.
    pub fn request(&self) {
        self.last.store(libc::SIGTERM, Ordering::SeqCst);
        self.count.fetch_add(1, Ordering::SeqCst);
    }

    /// How many stop requests arrived so far.
    pub fn requests(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    pub fn requested(&self) -> bool {
        self.requests() > 0
    }

    /// "SIGTERM", "SIGINT" (the latest), or "stop request".
    pub fn cause(&self) -> &'static str {
        match self.last.load(Ordering::SeqCst) {
            libc::SIGTERM => "SIGTERM",
            libc::SIGINT => "SIGINT",
            _ => "stop request",
        }
    }

    /// Sleeps `duration`, or until there have been `requests` stop requests in all;
    /// true when woken by them.
    pub fn sleep_unless(&self, duration: Duration, requests: usize) -> bool {
        let deadline = Instant::now() + duration;
        loop {
            if self.requests() >= requests {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            std::thread::sleep(SLICE.min(deadline - now));
        }
    }

    /// Sleeps `duration` unless a stop is requested; true when it was.
    pub fn sleep(&self, duration: Duration) -> bool {
        self.sleep_unless(duration, 1)
    }

    /// Sleeps until `deadline` unless a stop is requested; true when it was.
    pub fn sleep_until(&self, deadline: Instant) -> bool {
        self.sleep(deadline.saturating_duration_since(Instant::now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_wakes_a_sleeper_within_a_slice() {
        let shutdown = Shutdown::manual();
        let waker = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            shutdown.request();
        });
        let start = Instant::now();
        assert!(shutdown.sleep(Duration::from_secs(5)));
        assert!(start.elapsed() < Duration::from_secs(1));
        waker.join().unwrap();
        assert_eq!(shutdown.cause(), "SIGTERM");
        // Already requested once: only a second request ends this wait early.
        assert!(!shutdown.sleep_unless(Duration::from_millis(30), 2));
    }
}

//! Passive outcomes: whether a new flow to a backend worked, as the circuit breaker reads
//! them (`ProxyDataplane::outcomes`). Each flow counts once, success or failure, into its
//! backend's `succeeded_total` / `failed_total`.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::stats::BackendStats;

/// An error of our own host, not of the backend: out of descriptors (EMFILE, ENFILE), of
/// buffers (ENOBUFS) or memory. Never a backend's failed outcome, or under descriptor
/// pressure the breaker would eject every healthy backend; and no use trying the next one.
pub fn is_local(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
}

/// Counts one success.
pub fn succeeded(stats: &BackendStats) {
    stats.succeeded_total.fetch_add(1, Ordering::Relaxed);
}

/// Counts one failure.
pub fn failed(stats: &BackendStats) {
    stats.failed_total.fetch_add(1, Ordering::Relaxed);
}

/// A flow's outcome, decided once: the first `succeed` or `fail` counts, later ones do not.
/// For flows whose verdict comes from several places (the first reply byte, or how the
/// flow ended; a UDP session's first reply or an ICMP error).
pub struct Verdict {
    stats: Arc<BackendStats>,
    decided: AtomicBool,
}

impl Verdict {
    pub fn new(stats: Arc<BackendStats>) -> Self {
        Verdict { stats, decided: AtomicBool::new(false) }
    }

    pub fn succeed(&self) {
        if !self.decided.swap(true, Ordering::Relaxed) {
            succeeded(&self.stats);
        }
    }

    pub fn fail(&self) {
        if !self.decided.swap(true, Ordering::Relaxed) {
            failed(&self.stats);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_verdict_counts() {
        let stats = Arc::new(BackendStats::default());
        let v = Verdict::new(stats.clone());
        v.succeed();
        v.fail();
        v.succeed();
        let w = Verdict::new(stats.clone());
        w.fail();
        w.succeed();
        assert_eq!(stats.succeeded_total.load(Ordering::Relaxed), 1);
        assert_eq!(stats.failed_total.load(Ordering::Relaxed), 1);
    }
}

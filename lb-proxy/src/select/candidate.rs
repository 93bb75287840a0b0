//! What the selector places and what it places it on: the flow, the backends that may take
//! it, and the count of their active flows that the least-loaded algorithms read.
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A backend that may take new flows, as the selector sees it.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub address: SocketAddr,
    pub weight: u32,
    /// Connections (or UDP sessions) open to it now; the proxy keeps it up to date.
    pub active: Arc<AtomicU64>,
}

/// The flow being placed.
#[derive(Clone, Copy, Debug)]
pub struct Flow {
    pub client: SocketAddr,
    pub vip: SocketAddr,
    pub proto: u8,
}

/// Keeps a candidate's active count right for as long as a connection lives.
pub struct ActiveGuard(Arc<AtomicU64>);

impl ActiveGuard {
    pub fn new(c: &Candidate) -> Self {
        c.active.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(c.active.clone())
    }

    /// Counts a new flow only while the candidate has fewer than `cap` (0: no cap). The
    /// check and the increment are one atomic step, so concurrent picks never overshoot.
    pub fn reserve(c: &Candidate, cap: u64) -> Option<Self> {
        if cap == 0 {
            return Some(ActiveGuard::new(c));
        }
        c.active.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < cap).then_some(n + 1)).ok()?;
        Some(ActiveGuard(c.active.clone()))
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

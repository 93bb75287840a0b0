//! Backend selection for the proxy path: every algorithm of the config behind one type.
//! Where the logic is the XDP path's (Maglev tables, the flow hash, the source hash) it is
//! the same lb-common code, so a flow gets the same backend on both paths; the stateful
//! algorithms (round robin, least connections, two choices) keep their state here, shared
//! by all worker threads.
mod algorithms;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use lb_common::consts::RING_SIZE;
use lb_common::maglev::{self, MaglevBackend};

use lb_config::Algorithm;

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

pub struct Selector {
    algorithm: Algorithm,
    candidates: Vec<Candidate>,
    /// Maglev table over candidate indexes (maglev and source_hash only).
    table: Vec<u32>,
    cursor: AtomicUsize,
    /// Smooth weighted round robin's current weights (nginx's algorithm).
    current: Mutex<Vec<i64>>,
}

impl Selector {
    /// `candidates` are the backends in rotation (ready, weight > 0, not down).
    pub fn new(algorithm: Algorithm, candidates: Vec<Candidate>) -> Self {
        let table = match algorithm {
            Algorithm::Maglev | Algorithm::SourceHash => {
                let members: Vec<MaglevBackend> = candidates
                    .iter()
                    .enumerate()
                    .map(|(i, c)| MaglevBackend::new(i as u32, c.address.to_string().as_bytes(), c.weight))
                    .collect();
                maglev::build(&members, RING_SIZE)
            }
            _ => Vec::new(),
        };
        let current = Mutex::new(vec![0; candidates.len()]);
        Selector { algorithm, candidates, table, cursor: AtomicUsize::new(0), current }
    }

    pub fn candidates(&self) -> &[Candidate] {
        &self.candidates
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The backend for a new flow, skipping the ones `excluded` names (a failed connect,
    /// a full or ejected backend: the "next choice"). None when nothing is left.
    pub fn pick(&self, flow: &Flow, excluded: &[SocketAddr]) -> Option<&Candidate> {
        let allowed = |i: usize| !excluded.contains(&self.candidates[i].address);
        if !(0..self.candidates.len()).any(allowed) {
            return None;
        }
        let i = match self.algorithm {
            Algorithm::Maglev => algorithms::table_walk(&self.table, algorithms::flow_hash_of(flow), allowed),
            Algorithm::SourceHash => algorithms::table_walk(&self.table, algorithms::source_hash_of(flow), allowed),
            Algorithm::RoundRobin => algorithms::round_robin(self.candidates.len(), &self.cursor, allowed),
            Algorithm::WeightedRoundRobin => {
                let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
                algorithms::smooth_weighted(&self.candidates, &mut current, allowed)
            }
            Algorithm::Random => algorithms::weighted_random(&self.candidates, allowed),
            Algorithm::LeastConn => algorithms::least_conn(&self.candidates, &self.cursor, allowed),
            Algorithm::P2c => algorithms::two_choices(&self.candidates, allowed),
        }?;
        Some(&self.candidates[i])
    }
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

#[cfg(test)]
mod tests;

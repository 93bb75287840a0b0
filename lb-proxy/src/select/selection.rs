//! The one trait every algorithm implements, modelled on pingora's `BackendSelection`:
//! for a flow, an iterator whose first `next()` is the first choice and whose later ones
//! are the next choices, for when the earlier ones cannot take the flow (the connect
//! failed, the backend is full). Callers iterate; nothing is "excluded" by address.
use super::candidate::{Candidate, Flow};

/// A backend selection over a fixed set of candidates.
///
/// The iterator's contract, for every algorithm:
/// - the first choice is the flow's backend when all of them can take it (for Maglev and
///   source_hash: the XDP path's backend for the same flow);
/// - no candidate comes twice for one flow, and the iterator ends (None, and stays so) once
///   every candidate has come;
/// - shared state (round robin's cursor, smooth weighted round robin's current weights)
///   moves once per flow, at the first `next()`: an iterator never advanced changes
///   nothing, and the next choices do not skew the rotation;
/// - loads (active counts) are read when each choice is asked for.
pub trait Selection {
    type Iter<'a>: Iterator<Item = &'a Candidate>
    where
        Self: 'a;

    /// The backends this selection chooses among (in rotation: ready, weight > 0, not down).
    fn candidates(&self) -> &[Candidate];

    /// The flow's choices: the first, then the next ones.
    fn iter(&self, flow: &Flow) -> Self::Iter<'_>;
}

/// The candidates an iterator has yielded, by index, so that none comes twice.
pub(super) struct Yielded {
    done: Vec<bool>,
    count: usize,
}

impl Yielded {
    pub fn new(candidates: usize) -> Self {
        Yielded { done: vec![false; candidates], count: 0 }
    }

    /// Marks `i` as yielded; false if it already was.
    pub fn insert(&mut self, i: usize) -> bool {
        if self.done[i] {
            return false;
        }
        self.done[i] = true;
        self.count += 1;
        true
    }

    /// Every candidate has been yielded: nothing is left to choose.
    pub fn all(&self) -> bool {
        self.count == self.done.len()
    }

    /// The candidates not yielded yet, in index order.
    pub fn remaining(&self) -> impl Iterator<Item = usize> + '_ {
        self.done.iter().enumerate().filter(|(_, d)| !**d).map(|(i, _)| i)
    }
}

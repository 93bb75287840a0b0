//! Round robin and nginx's smooth weighted round robin. Their state is shared by every
//! worker and moves once per new flow, at its first choice; the next choices follow from
//! it without moving it, so a failed connect does not skew the rotation.
use std::cmp::Reverse;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::candidate::{Candidate, Flow};
use super::selection::Selection;

/// Each candidate in turn, whatever the weights.
pub struct RoundRobin {
    candidates: Vec<Candidate>,
    cursor: AtomicUsize,
}

impl RoundRobin {
    pub fn new(candidates: Vec<Candidate>) -> Self {
        RoundRobin { candidates, cursor: AtomicUsize::new(0) }
    }
}

impl Selection for RoundRobin {
    type Iter<'a> = Rotation<'a>;

    fn candidates(&self) -> &[Candidate] {
        &self.candidates
    }

    fn iter(&self, _flow: &Flow) -> Rotation<'_> {
        Rotation { selection: self, start: None, taken: 0 }
    }
}

/// The cursor's candidate first (taking its turn), then the ones after it, round.
pub struct Rotation<'a> {
    selection: &'a RoundRobin,
    start: Option<usize>,
    taken: usize,
}

impl<'a> Iterator for Rotation<'a> {
    type Item = &'a Candidate;

    fn next(&mut self) -> Option<&'a Candidate> {
        let RoundRobin { candidates, cursor } = self.selection;
        let n = candidates.len();
        if self.taken == n {
            return None;
        }
        let start = *self.start.get_or_insert_with(|| cursor.fetch_add(1, Ordering::Relaxed) % n);
        let i = (start + self.taken) % n;
        self.taken += 1;
        Some(&candidates[i])
    }
}

/// nginx's smooth weighted round robin: every round adds each weight to its current value,
/// takes the largest and subtracts the total from it. Weights 5,1,1 give a a b a c a a, not
/// a a a a a b c: no bursts.
pub struct SmoothWeighted {
    candidates: Vec<Candidate>,
    current: Mutex<Vec<i64>>,
}

impl SmoothWeighted {
    pub fn new(candidates: Vec<Candidate>) -> Self {
        let current = Mutex::new(vec![0; candidates.len()]);
        SmoothWeighted { candidates, current }
    }

    fn current(&self) -> std::sync::MutexGuard<'_, Vec<i64>> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One round: the candidate it picks (None without candidates).
    fn round(&self) -> Option<usize> {
        let mut current = self.current();
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for (i, c) in self.candidates.iter().enumerate() {
            current[i] += c.weight as i64;
            total += c.weight as i64;
            if best.is_none_or(|b| current[i] > current[b]) {
                best = Some(i);
            }
        }
        let b = best?;
        current[b] -= total;
        Some(b)
    }

    /// Every candidate but `first`, in the order the next round would favour them (most
    /// owed first), most owed last: the order they are popped in.
    fn most_owed_last(&self, first: usize) -> Vec<usize> {
        let current = self.current();
        let owed = |i: usize| current[i] + self.candidates[i].weight as i64;
        let mut rest: Vec<usize> = (0..self.candidates.len()).filter(|&i| i != first).collect();
        rest.sort_by_key(|&i| (Reverse(owed(i)), i));
        rest.reverse();
        rest
    }
}

impl Selection for SmoothWeighted {
    type Iter<'a> = WeightedTurns<'a>;

    fn candidates(&self) -> &[Candidate] {
        &self.candidates
    }

    fn iter(&self, _flow: &Flow) -> WeightedTurns<'_> {
        WeightedTurns { selection: self, first: None, rest: None }
    }
}

/// The round's pick first (playing the round), then the others, most owed first.
pub struct WeightedTurns<'a> {
    selection: &'a SmoothWeighted,
    first: Option<usize>,
    /// Filled at the second choice: most flows never ask for it.
    rest: Option<Vec<usize>>,
}

impl<'a> Iterator for WeightedTurns<'a> {
    type Item = &'a Candidate;

    fn next(&mut self) -> Option<&'a Candidate> {
        let selection = self.selection;
        let Some(first) = self.first else {
            let b = selection.round()?;
            self.first = Some(b);
            return Some(&selection.candidates[b]);
        };
        let rest = self.rest.get_or_insert_with(|| selection.most_owed_last(first));
        rest.pop().map(|i| &selection.candidates[i])
    }
}

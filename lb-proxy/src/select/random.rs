//! Weighted random: each choice drawn at random among the candidates not chosen yet, in
//! proportion to weight.
use rand::Rng;

use super::candidate::{Candidate, Flow};
use super::selection::{Selection, Yielded};

pub struct WeightedRandom {
    candidates: Vec<Candidate>,
}

impl WeightedRandom {
    pub fn new(candidates: Vec<Candidate>) -> Self {
        WeightedRandom { candidates }
    }
}

impl Selection for WeightedRandom {
    type Iter<'a> = Draws<'a>;

    fn candidates(&self) -> &[Candidate] {
        &self.candidates
    }

    fn iter(&self, _flow: &Flow) -> Draws<'_> {
        Draws { candidates: &self.candidates, yielded: Yielded::new(self.candidates.len()) }
    }
}

/// Draws without replacement.
pub struct Draws<'a> {
    candidates: &'a [Candidate],
    yielded: Yielded,
}

impl<'a> Iterator for Draws<'a> {
    type Item = &'a Candidate;

    fn next(&mut self) -> Option<&'a Candidate> {
        let weight = |i: usize| self.candidates[i].weight as u64;
        let total: u64 = self.yielded.remaining().map(weight).sum();
        if total == 0 {
            return None;
        }
        let mut r = rand::thread_rng().gen_range(0..total);
        let i = self.yielded.remaining().find(|&i| {
            if r < weight(i) {
                return true;
            }
            r -= weight(i);
            false
        })?;
        self.yielded.insert(i);
        Some(&self.candidates[i])
    }
}

//! The load-aware algorithms: least connections and power of two choices. Load is active
//! flows per unit of weight, read when each choice is asked for.
use std::sync::atomic::{AtomicUsize, Ordering};

use rand::Rng;

use super::candidate::{Candidate, Flow};
use super::selection::{Selection, Yielded};

/// Active connections per unit of weight; lower is better.
fn load(c: &Candidate) -> f64 {
    c.active.load(Ordering::Relaxed) as f64 / c.weight.max(1) as f64
}

/// The least loaded candidate first, then the next least loaded.
pub struct LeastConn {
    candidates: Vec<Candidate>,
    cursor: AtomicUsize,
}

impl LeastConn {
    pub fn new(candidates: Vec<Candidate>) -> Self {
        LeastConn { candidates, cursor: AtomicUsize::new(0) }
    }
}

impl Selection for LeastConn {
    type Iter<'a> = LeastLoaded<'a>;

    fn candidates(&self) -> &[Candidate] {
        &self.candidates
    }

    fn iter(&self, _flow: &Flow) -> LeastLoaded<'_> {
        LeastLoaded { selection: self, turn: None, yielded: Yielded::new(self.candidates.len()) }
    }
}

/// Ties go round robin over the tied ones, so equal backends share evenly whatever sits
/// between them: the flow takes one turn of the shared cursor, at its first choice, and
/// breaks its later ties with the same turn.
pub struct LeastLoaded<'a> {
    selection: &'a LeastConn,
    turn: Option<usize>,
    yielded: Yielded,
}

impl<'a> Iterator for LeastLoaded<'a> {
    type Item = &'a Candidate;

    fn next(&mut self) -> Option<&'a Candidate> {
        let LeastConn { candidates, cursor } = self.selection;
        let loads: Vec<(usize, f64)> = self.yielded.remaining().map(|i| (i, load(&candidates[i]))).collect();
        let best = loads.iter().map(|&(_, l)| l).min_by(f64::total_cmp)?;
        let tied: Vec<usize> = loads.into_iter().filter(|&(_, l)| l == best).map(|(i, _)| i).collect();
        let turn = *self.turn.get_or_insert_with(|| cursor.fetch_add(1, Ordering::Relaxed));
        let i = tied[turn % tied.len()];
        self.yielded.insert(i);
        Some(&candidates[i])
    }
}

/// Power of two choices: two random candidates, the less loaded wins.
pub struct TwoChoices {
    candidates: Vec<Candidate>,
}

impl TwoChoices {
    pub fn new(candidates: Vec<Candidate>) -> Self {
        TwoChoices { candidates }
    }
}

impl Selection for TwoChoices {
    type Iter<'a> = TwoDraws<'a>;

    fn candidates(&self) -> &[Candidate] {
        &self.candidates
    }

    fn iter(&self, _flow: &Flow) -> TwoDraws<'_> {
        TwoDraws { candidates: &self.candidates, yielded: Yielded::new(self.candidates.len()) }
    }
}

/// Each choice: two random candidates among those not chosen yet, the less loaded wins
/// (the last one left comes alone).
pub struct TwoDraws<'a> {
    candidates: &'a [Candidate],
    yielded: Yielded,
}

impl<'a> Iterator for TwoDraws<'a> {
    type Item = &'a Candidate;

    fn next(&mut self) -> Option<&'a Candidate> {
        let pool: Vec<usize> = self.yielded.remaining().collect();
        let i = match pool.len() {
            0 => return None,
            1 => pool[0],
            n => {
                let mut rng = rand::thread_rng();
                let a = rng.gen_range(0..n);
                let b = (a + rng.gen_range(1..n)) % n;
                let (a, b) = (pool[a], pool[b]);
                if load(&self.candidates[b]) < load(&self.candidates[a]) {
                    b
                } else {
                    a
                }
            }
        };
        self.yielded.insert(i);
        Some(&self.candidates[i])
    }
}

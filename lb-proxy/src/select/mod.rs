//! Backend selection for the proxy path: every algorithm of the config behind one trait,
//! `Selection`, whose iterator gives a flow's first choice and then its next ones. Where
//! the logic is the XDP path's (Maglev tables, the flow hash, the source hash) it is the
//! same lb-common code, so a flow gets the same backend on both paths; the stateful
//! algorithms (round robin, least connections) keep their state here, shared by all
//! worker threads.
//!
//! - `hash`: maglev, source_hash (a walk of the Maglev table from the flow's slot).
//! - `round_robin`: round_robin, weighted_round_robin (nginx's smooth one).
//! - `random`: random, in proportion to weight.
//! - `least_conn`: least_conn, p2c.
mod candidate;
mod hash;
mod least_conn;
mod persist;
mod random;
mod round_robin;
mod selection;

pub use candidate::{ActiveGuard, Candidate, Flow};
pub use persist::{Persistence, Persistent, MAX_CLIENTS};
pub use selection::Selection;

use hash::{HashTable, TableWalk};
use least_conn::{LeastConn, LeastLoaded, TwoChoices, TwoDraws};
use random::{Draws, WeightedRandom};
use round_robin::{Rotation, RoundRobin, SmoothWeighted, WeightedTurns};

use lb_config::Algorithm;

/// The selection a service's config names.
pub struct Selector(Algorithms);

enum Algorithms {
    Hash(HashTable),
    RoundRobin(RoundRobin),
    SmoothWeighted(SmoothWeighted),
    Random(WeightedRandom),
    LeastConn(LeastConn),
    TwoChoices(TwoChoices),
}

impl Selector {
    /// `candidates` are the backends in rotation (ready, weight > 0, not down).
    pub fn new(algorithm: Algorithm, candidates: Vec<Candidate>) -> Self {
        Selector(match algorithm {
            Algorithm::Maglev => Algorithms::Hash(HashTable::maglev(candidates)),
            Algorithm::SourceHash => Algorithms::Hash(HashTable::source_hash(candidates)),
            Algorithm::RoundRobin => Algorithms::RoundRobin(RoundRobin::new(candidates)),
            Algorithm::WeightedRoundRobin => Algorithms::SmoothWeighted(SmoothWeighted::new(candidates)),
            Algorithm::Random => Algorithms::Random(WeightedRandom::new(candidates)),
            Algorithm::LeastConn => Algorithms::LeastConn(LeastConn::new(candidates)),
            Algorithm::P2c => Algorithms::TwoChoices(TwoChoices::new(candidates)),
        })
    }
}

impl Selection for Selector {
    type Iter<'a> = Choices<'a>;

    fn candidates(&self) -> &[Candidate] {
        match &self.0 {
            Algorithms::Hash(s) => s.candidates(),
            Algorithms::RoundRobin(s) => s.candidates(),
            Algorithms::SmoothWeighted(s) => s.candidates(),
            Algorithms::Random(s) => s.candidates(),
            Algorithms::LeastConn(s) => s.candidates(),
            Algorithms::TwoChoices(s) => s.candidates(),
        }
    }

    fn iter(&self, flow: &Flow) -> Choices<'_> {
        Choices(match &self.0 {
            Algorithms::Hash(s) => Iters::Hash(s.iter(flow)),
            Algorithms::RoundRobin(s) => Iters::RoundRobin(s.iter(flow)),
            Algorithms::SmoothWeighted(s) => Iters::SmoothWeighted(s.iter(flow)),
            Algorithms::Random(s) => Iters::Random(s.iter(flow)),
            Algorithms::LeastConn(s) => Iters::LeastConn(s.iter(flow)),
            Algorithms::TwoChoices(s) => Iters::TwoChoices(s.iter(flow)),
        })
    }
}

/// A flow's choices under its service's algorithm.
pub struct Choices<'a>(Iters<'a>);

enum Iters<'a> {
    Hash(TableWalk<'a>),
    RoundRobin(Rotation<'a>),
    SmoothWeighted(WeightedTurns<'a>),
    Random(Draws<'a>),
    LeastConn(LeastLoaded<'a>),
    TwoChoices(TwoDraws<'a>),
}

impl<'a> Iterator for Choices<'a> {
    type Item = &'a Candidate;

    fn next(&mut self) -> Option<&'a Candidate> {
        match &mut self.0 {
            Iters::Hash(i) => i.next(),
            Iters::RoundRobin(i) => i.next(),
            Iters::SmoothWeighted(i) => i.next(),
            Iters::Random(i) => i.next(),
            Iters::LeastConn(i) => i.next(),
            Iters::TwoChoices(i) => i.next(),
        }
    }
}

#[cfg(test)]
mod tests;

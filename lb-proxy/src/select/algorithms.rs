//! The algorithms themselves, as small functions over candidate indexes.
use std::sync::atomic::{AtomicUsize, Ordering};

use lb_common::consts::{NO_BACKEND, RING_SIZE};
use lb_common::hash::{flow_hash, source_hash};
use rand::Rng;

use super::{Candidate, Flow};
use lb_common::addr::{ip_words, port_be};

/// The XDP path's flow hash of the same 5-tuple.
pub fn flow_hash_of(f: &Flow) -> u32 {
    let (src, _) = ip_words(f.client.ip());
    let (dst, _) = ip_words(f.vip.ip());
    flow_hash(&src, &dst, port_be(f.client.port()), port_be(f.vip.port()), f.proto)
}

pub fn source_hash_of(f: &Flow) -> u32 {
    source_hash(&ip_words(f.client.ip()).0)
}

/// The Maglev slot for `hash`; if its backend is excluded, the next slots in order (the
/// table is a pseudo-random permutation, so this spreads the displaced flows).
pub fn table_walk(table: &[u32], hash: u32, allowed: impl Fn(usize) -> bool) -> Option<usize> {
    let start = (hash % RING_SIZE) as usize;
    (0..table.len()).map(|k| table[(start + k) % table.len()]).find(|&id| id != NO_BACKEND && allowed(id as usize)).map(|id| id as usize)
}

/// Each candidate in turn, whatever the weights.
pub fn round_robin(n: usize, cursor: &AtomicUsize, allowed: impl Fn(usize) -> bool) -> Option<usize> {
    (0..n).map(|_| cursor.fetch_add(1, Ordering::Relaxed) % n).find(|&i| allowed(i))
}

/// nginx's smooth weighted round robin: every pick adds each weight to its current value,
/// takes the largest and subtracts the total from it. Weights 5,1,1 give a a b a c a a, not
/// a a a a a b c: no bursts.
pub fn smooth_weighted(c: &[Candidate], current: &mut [i64], allowed: impl Fn(usize) -> bool) -> Option<usize> {
    let mut total = 0i64;
    let mut best: Option<usize> = None;
    for i in (0..c.len()).filter(|&i| allowed(i)) {
        current[i] += c[i].weight as i64;
        total += c[i].weight as i64;
        if best.is_none_or(|b| current[i] > current[b]) {
            best = Some(i);
        }
    }
    let b = best?;
    current[b] -= total;
    Some(b)
}

/// A random candidate, in proportion to weight.
pub fn weighted_random(c: &[Candidate], allowed: impl Fn(usize) -> bool) -> Option<usize> {
    let total: u64 = (0..c.len()).filter(|&i| allowed(i)).map(|i| c[i].weight as u64).sum();
    if total == 0 {
        return None;
    }
    let mut r = rand::thread_rng().gen_range(0..total);
    for i in (0..c.len()).filter(|&i| allowed(i)) {
        let w = c[i].weight as u64;
        if r < w {
            return Some(i);
        }
        r -= w;
    }
    None
}

/// Active connections per unit of weight; lower is better.
fn load(c: &Candidate) -> f64 {
    c.active.load(Ordering::Relaxed) as f64 / c.weight.max(1) as f64
}

/// The least loaded candidate; ties go round robin over the tied ones, so equal backends
/// share evenly whatever sits between them.
pub fn least_conn(c: &[Candidate], cursor: &AtomicUsize, allowed: impl Fn(usize) -> bool) -> Option<usize> {
    let allowed: Vec<usize> = (0..c.len()).filter(|&i| allowed(i)).collect();
    let best = allowed.iter().map(|&i| load(&c[i])).min_by(f64::total_cmp)?;
    let tied: Vec<usize> = allowed.into_iter().filter(|&i| load(&c[i]) == best).collect();
    Some(tied[cursor.fetch_add(1, Ordering::Relaxed) % tied.len()])
}

/// Power of two choices: two random candidates, the less loaded wins.
pub fn two_choices(c: &[Candidate], allowed: impl Fn(usize) -> bool) -> Option<usize> {
    let pool: Vec<usize> = (0..c.len()).filter(|&i| allowed(i)).collect();
    match pool.len() {
        0 => None,
        1 => Some(pool[0]),
        n => {
            let mut rng = rand::thread_rng();
            let a = rng.gen_range(0..n);
            let b = (a + rng.gen_range(1..n)) % n;
            let (a, b) = (pool[a], pool[b]);
            Some(if load(&c[b]) < load(&c[a]) { b } else { a })
        }
    }
}

//! Round-robin sequences for the data path's `LB_SEQ` table: each backend once (round
//! robin), or nginx's smooth weighted round robin unrolled into a fixed sequence that
//! per-CPU cursors walk (weighted round robin without bursts: weights 5,1,1 give
//! a a b a c a a).

/// Smooth weighted round robin over `weights` (indexes into them), one full period: each
/// index appears weight/g times (g the gcd). Periods longer than `max` are scaled down
/// (weights divided by a common factor, rounded, at least 1), so the shares stay close.
pub fn smooth_weighted(weights: &[u32], max: usize) -> Vec<usize> {
    let live: Vec<(usize, u64)> =
        weights.iter().enumerate().filter(|(_, w)| **w > 0).map(|(i, w)| (i, *w as u64)).collect();
    if live.is_empty() {
        return Vec::new();
    }
    let g = live.iter().fold(0, |g, (_, w)| gcd(g, *w));
    let mut w: Vec<(usize, u64)> = live.iter().map(|(i, x)| (*i, x / g)).collect();
    let total: u64 = w.iter().map(|(_, x)| x).sum();
    if total as usize > max {
        let scale = total as f64 / max as f64;
        for (_, x) in &mut w {
            *x = ((*x as f64 / scale).floor() as u64).max(1);
        }
    }
    let total: i64 = w.iter().map(|(_, x)| *x as i64).sum();
    let mut current = vec![0i64; w.len()];
    let mut seq = Vec::with_capacity(total as usize);
    for _ in 0..total.min(max as i64) {
        let mut best = 0;
        for (k, (_, x)) in w.iter().enumerate() {
            current[k] += *x as i64;
            if current[k] > current[best] {
                best = k;
            }
        }
        current[best] -= total;
        seq.push(w[best].0);
    }
    seq
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smooth_sequence_spreads_the_heavy_backend_and_keeps_exact_shares() {
        assert_eq!(smooth_weighted(&[5, 1, 1], 1024), vec![0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(smooth_weighted(&[2, 2], 1024), vec![0, 1], "reduced by the gcd");
        assert_eq!(smooth_weighted(&[0, 3], 1024), vec![1]);
        assert!(smooth_weighted(&[0, 0], 1024).is_empty());
    }

    #[test]
    fn long_periods_are_scaled_to_fit_with_shares_close() {
        let seq = smooth_weighted(&[1000, 3001], 1024);
        assert!(seq.len() <= 1024);
        let share = seq.iter().filter(|&&i| i == 0).count() as f64 / seq.len() as f64;
        assert!((share - 1000.0 / 4001.0).abs() < 0.01, "{share}");
    }
}

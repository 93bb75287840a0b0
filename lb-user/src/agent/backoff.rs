//! Exponential backoff with jitter, for retrying an unreachable LB.
//!
//! The base delay doubles from `start` up to `cap`; each wait is the base minus up to a
//! quarter of it, at random. The jitter keeps a fleet of agents that lost the LB together
//! from hammering it in lock-step when it comes back, and never lets a wait exceed `cap`.
use std::time::Duration;

use rand::Rng;

/// First retry after about this long.
pub const RETRY_START: Duration = Duration::from_millis(200);
/// Never wait longer than this between attempts.
pub const RETRY_CAP: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub struct Backoff {
    start: Duration,
    cap: Duration,
    base: Duration,
}

impl Backoff {
    pub fn new(start: Duration, cap: Duration) -> Backoff {
        Backoff { start, cap, base: start.min(cap) }
    }

    /// The wait before the next attempt; each call doubles the base for the following one.
    pub fn next_delay(&mut self) -> Duration {
        self.next_delay_with(rand::thread_rng().gen_range(0.0..=1.0))
    }

    /// As [`next_delay`](Self::next_delay), with the random draw `jitter` in 0..=1 given.
    pub fn next_delay_with(&mut self, jitter: f64) -> Duration {
        let base = self.base;
        self.base = base.saturating_mul(2).min(self.cap);
        base.mul_f64(1.0 - jitter.clamp(0.0, 1.0) / 4.0)
    }

    /// After a success: the next failure starts from `start` again.
    pub fn reset(&mut self) {
        self.base = self.start.min(self.cap);
    }
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff::new(RETRY_START, RETRY_CAP)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn delays_double_from_start_up_to_the_cap() {
        let mut backoff = Backoff::default();
        let delays: Vec<_> = (0..8).map(|_| backoff.next_delay_with(0.0)).collect();
        assert_eq!(delays, [ms(200), ms(400), ms(800), ms(1600), ms(3200), ms(5000), ms(5000), ms(5000)]);
    }

    #[test]
    fn jitter_takes_off_at_most_a_quarter_and_never_exceeds_the_cap() {
        let mut backoff = Backoff::default();
        assert_eq!(backoff.next_delay_with(1.0), ms(150));
        for _ in 0..100 {
            let delay = backoff.next_delay();
            assert!(delay >= ms(300) && delay <= RETRY_CAP, "{delay:?}");
        }
    }

    #[test]
    fn reset_starts_over() {
        let mut backoff = Backoff::default();
        backoff.next_delay_with(0.0);
        backoff.next_delay_with(0.0);
        backoff.reset();
        assert_eq!(backoff.next_delay_with(0.0), ms(200));
    }
}

//! Circuit breakers: passive ejection of backends whose new flows fail, from what the data
//! path saw (XDP: SYNs refused or left unanswered; proxy: connect failures, timeouts,
//! resets, 5xx), not only from the active health check.
//!
//! Closed → (consecutive failures) → Open for an ejection time that doubles with each
//! ejection in a row, up to the maximum → HalfOpen: one trial flow → success: Closed;
//! failure: Open again, longer. Outcomes arrive in polls (every 100 ms); within one poll
//! the order is unknown, so a poll with any success ends a failure streak.
use std::time::{Duration, Instant};

use lb_config::desired::Circuit;
use lb_config::CircuitBreaker;

/// A half-open backend whose trial flow brought no outcome within this gets another trial
/// (no traffic came, or the trial flow went nowhere).
pub const TRIAL_WINDOW: Duration = Duration::from_secs(3);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen { armed_at: Instant },
}

/// What changed, for the log and the tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Ejected(Duration),
    HalfOpen,
    Closed,
    /// Still half-open: arm another trial.
    Rearm,
}

#[derive(Clone, Debug)]
pub struct Breaker {
    phase: Phase,
    streak: u32,
    /// Ejections in a row (each doubles the next one); reset when the breaker closes.
    in_row: u32,
    pub ejections_total: u64,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker { phase: Phase::Closed, streak: 0, in_row: 0, ejections_total: 0 }
    }
}

impl Breaker {
    pub fn circuit(&self) -> Circuit {
        match self.phase {
            Phase::Closed => Circuit::Closed,
            Phase::Open { .. } => Circuit::Open,
            Phase::HalfOpen { .. } => Circuit::HalfOpen,
        }
    }

    /// A breaker the state file remembered: open until `until` (then half-open, as usual),
    /// after `in_row` ejections in a row.
    pub fn reopened(until: Instant, in_row: u32) -> Self {
        Breaker { phase: Phase::Open { until }, streak: 0, in_row, ejections_total: 0 }
    }

    /// What the state file keeps of a breaker that is not closed: how long its ejection
    /// still runs (zero when half-open: a restart goes on with a trial) and the ejections
    /// in a row.
    pub fn saved(&self, now: Instant) -> Option<(Duration, u32)> {
        match self.phase {
            Phase::Closed => None,
            Phase::Open { until } => Some((until.saturating_duration_since(now), self.in_row)),
            Phase::HalfOpen { .. } => Some((Duration::ZERO, self.in_row)),
        }
    }

    /// Counts against `max_ejected_percent` while not closed.
    pub fn ejected(&self) -> bool {
        self.phase != Phase::Closed
    }

    /// One poll's outcomes. `may_eject`: ejecting one more backend of the service stays
    /// within `max_ejected_percent` (a half-open backend is already counted).
    pub fn observe(
        &mut self,
        succeeded: u64,
        failed: u64,
        cfg: &CircuitBreaker,
        may_eject: bool,
        now: Instant,
    ) -> Option<Change> {
        match self.phase {
            Phase::Closed => {
                if succeeded > 0 {
                    self.streak = 0;
                    return None;
                }
                self.streak = self.streak.saturating_add(failed.min(u32::MAX as u64) as u32);
                if cfg.consecutive_failures > 0 && self.streak >= cfg.consecutive_failures && may_eject {
                    return Some(self.eject(cfg, now));
                }
                None
            }
            Phase::Open { .. } => None,
            Phase::HalfOpen { .. } if failed > 0 => Some(self.eject(cfg, now)),
            Phase::HalfOpen { .. } if succeeded > 0 => Some(self.close()),
            Phase::HalfOpen { .. } => None,
        }
    }

    /// The clock: an ejection that ran out goes half-open; a trial without outcome is
    /// armed again.
    pub fn tick(&mut self, now: Instant) -> Option<Change> {
        match self.phase {
            Phase::Open { until } if now >= until => {
                self.phase = Phase::HalfOpen { armed_at: now };
                Some(Change::HalfOpen)
            }
            Phase::HalfOpen { armed_at } if now.duration_since(armed_at) >= TRIAL_WINDOW => {
                self.phase = Phase::HalfOpen { armed_at: now };
                Some(Change::Rearm)
            }
            _ => None,
        }
    }

    /// The active health check saw the backend come back: trust it (as Envoy does by
    /// default), so a backend that was both down and ejected rejoins when its checks pass.
    pub fn health_recovered(&mut self) -> Option<Change> {
        if self.phase == Phase::Closed {
            return None;
        }
        Some(self.close())
    }

    fn eject(&mut self, cfg: &CircuitBreaker, now: Instant) -> Change {
        let time = ejection_time(cfg, self.in_row);
        self.in_row = self.in_row.saturating_add(1);
        self.ejections_total += 1;
        self.streak = 0;
        self.phase = Phase::Open { until: now + time };
        Change::Ejected(time)
    }

    fn close(&mut self) -> Change {
        self.phase = Phase::Closed;
        self.streak = 0;
        self.in_row = 0;
        Change::Closed
    }
}

/// base × 2^n, at most max.
pub fn ejection_time(cfg: &CircuitBreaker, n: u32) -> Duration {
    let factor = 1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX);
    cfg.base_ejection.checked_mul(factor).unwrap_or(cfg.max_ejection).min(cfg.max_ejection)
}

/// May one more of `total` backends be ejected while `ejected` already are?
pub fn within_percent(ejected: usize, total: usize, percent: u32) -> bool {
    (ejected + 1) * 100 <= total * percent as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> CircuitBreaker {
        CircuitBreaker {
            consecutive_failures: 3,
            base_ejection: Duration::from_secs(1),
            max_ejection: Duration::from_secs(5),
            ..Default::default()
        }
    }

    #[test]
    fn consecutive_failures_eject_and_a_success_ends_the_streak() {
        let (c, now) = (cfg(), Instant::now());
        let mut b = Breaker::default();
        assert_eq!(b.observe(0, 2, &c, true, now), None);
        assert_eq!(b.observe(1, 0, &c, true, now), None, "a success resets the streak");
        assert_eq!(b.observe(0, 2, &c, true, now), None);
        assert_eq!(b.observe(0, 1, &c, true, now), Some(Change::Ejected(Duration::from_secs(1))));
        assert_eq!(b.circuit(), Circuit::Open);
        assert_eq!(b.ejections_total, 1);
    }

    #[test]
    fn a_poll_with_successes_and_failures_counts_as_success() {
        let (c, now) = (cfg(), Instant::now());
        let mut b = Breaker::default();
        assert_eq!(b.observe(1, 10, &c, true, now), None);
        assert_eq!(b.circuit(), Circuit::Closed);
    }

    #[test]
    fn no_ejection_beyond_the_percentage_until_there_is_room() {
        let (c, now) = (cfg(), Instant::now());
        let mut b = Breaker::default();
        assert_eq!(b.observe(0, 5, &c, false, now), None);
        assert_eq!(
            b.observe(0, 1, &c, true, now),
            Some(Change::Ejected(Duration::from_secs(1))),
            "the streak was kept"
        );
    }

    #[test]
    fn zero_consecutive_failures_never_ejects() {
        let c = CircuitBreaker { consecutive_failures: 0, ..cfg() };
        let mut b = Breaker::default();
        assert_eq!(b.observe(0, 1000, &c, true, Instant::now()), None);
    }

    #[test]
    fn half_open_trial_closes_on_success_and_backs_off_on_failure() {
        let (c, t0) = (cfg(), Instant::now());
        let mut b = Breaker::default();
        b.observe(0, 3, &c, true, t0);
        assert_eq!(b.tick(t0 + Duration::from_millis(999)), None);
        assert_eq!(b.tick(t0 + Duration::from_secs(1)), Some(Change::HalfOpen));
        assert_eq!(b.circuit(), Circuit::HalfOpen);
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(b.observe(0, 1, &c, false, t1), Some(Change::Ejected(Duration::from_secs(2))), "twice as long");
        assert_eq!(b.tick(t1 + Duration::from_secs(2)), Some(Change::HalfOpen));
        assert_eq!(b.observe(1, 0, &c, false, t1), Some(Change::Closed));
        assert_eq!(b.circuit(), Circuit::Closed);
        b.observe(0, 3, &c, true, t1);
        assert_eq!(b.ejections_total, 3);
        assert_eq!(b.tick(t1 + Duration::from_secs(1)), Some(Change::HalfOpen), "closing reset the back-off");
    }

    #[test]
    fn a_trial_without_outcome_is_armed_again() {
        let (c, t0) = (cfg(), Instant::now());
        let mut b = Breaker::default();
        b.observe(0, 3, &c, true, t0);
        b.tick(t0 + Duration::from_secs(1));
        assert_eq!(b.tick(t0 + Duration::from_secs(1) + TRIAL_WINDOW), Some(Change::Rearm));
    }

    #[test]
    fn health_recovery_closes_an_open_breaker() {
        let (c, t0) = (cfg(), Instant::now());
        let mut b = Breaker::default();
        assert_eq!(b.health_recovered(), None);
        b.observe(0, 3, &c, true, t0);
        assert_eq!(b.health_recovered(), Some(Change::Closed));
    }

    #[test]
    fn a_remembered_ejection_runs_out_then_tries_and_keeps_doubling() {
        let (c, t0) = (cfg(), Instant::now());
        let mut b = Breaker::reopened(t0 + Duration::from_secs(2), 1);
        assert_eq!(b.circuit(), Circuit::Open);
        assert_eq!(b.saved(t0), Some((Duration::from_secs(2), 1)));
        assert_eq!(b.tick(t0 + Duration::from_secs(2)), Some(Change::HalfOpen));
        assert_eq!(b.saved(t0), Some((Duration::ZERO, 1)), "half-open: a trial at once after a restart");
        assert_eq!(b.observe(0, 1, &c, false, t0), Some(Change::Ejected(Duration::from_secs(2))), "second in a row");
        b.health_recovered();
        assert_eq!(b.saved(t0), None, "closed: nothing to remember");
    }

    #[test]
    fn ejection_time_doubles_up_to_the_maximum() {
        let c = cfg();
        let secs: Vec<u64> = (0..6).map(|n| ejection_time(&c, n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 5, 5, 5]);
        assert_eq!(ejection_time(&c, 1000), Duration::from_secs(5));
    }

    #[test]
    fn the_percentage_is_never_exceeded() {
        assert!(within_percent(0, 3, 50));
        assert!(!within_percent(1, 3, 50), "two of three is 67%");
        assert!(!within_percent(0, 3, 10), "one of three is already 33%");
        assert!(within_percent(2, 3, 100));
        assert!(!within_percent(3, 3, 100));
    }
}

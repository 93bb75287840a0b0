//! Token buckets for new flows, kept as "credit in nanoseconds": each new flow costs
//! `1e9 / rate` ns of credit, credit grows by the time that passes, up to `burst` flows'
//! worth. No division and no floating point on the packet path: the daemon turns rates
//! into costs once, when it writes the limits.

/// A bucket as it sits in a map (`LB_SERVICE_BUCKETS`, `LB_SOURCE_BUCKETS`). An all-zero
/// bucket is full: its first refill sees the whole uptime pass.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bucket {
    pub credit_ns: u64,
    pub last_ns: u64,
}

/// One bucket's settings: cost of a new flow and the most credit it may hold.
/// `cost_ns == 0`: unlimited.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limit {
    pub cost_ns: u64,
    pub capacity_ns: u64,
}

/// A service's limits, indexed by service id in `LB_RATE_LIMITS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateLimit {
    pub service: Limit,
    pub per_source: Limit,
}

impl Limit {
    /// `rate` new flows per second, at most `burst` at once.
    pub const fn new(rate: u32, burst: u32) -> Self {
        if rate == 0 {
            return Limit { cost_ns: 0, capacity_ns: 0 };
        }
        let cost_ns = 1_000_000_000 / rate as u64;
        Limit { cost_ns, capacity_ns: cost_ns * burst as u64 }
    }

    pub const fn unlimited(&self) -> bool {
        self.cost_ns == 0
    }
}

impl Bucket {
    /// A new bucket, full.
    pub const fn full(limit: &Limit, now_ns: u64) -> Self {
        Bucket { credit_ns: limit.capacity_ns, last_ns: now_ns }
    }

    /// Refill for the time since the last call, then take one new flow's cost if there is
    /// enough credit. A clock that seems to run backwards (another CPU stored a later
    /// `last_ns`) refills nothing.
    #[inline(always)]
    pub fn take(&mut self, limit: &Limit, now_ns: u64) -> bool {
        let elapsed = now_ns.saturating_sub(self.last_ns);
        let credit = self.credit_ns.saturating_add(elapsed);
        self.credit_ns = if credit > limit.capacity_ns { limit.capacity_ns } else { credit };
        if now_ns > self.last_ns {
            self.last_ns = now_ns;
        }
        if self.credit_ns >= limit.cost_ns {
            self.credit_ns -= limit.cost_ns;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEC: u64 = 1_000_000_000;

    fn admitted(limit: &Limit, arrivals: impl Iterator<Item = u64>) -> u64 {
        let mut b = Bucket::full(limit, 0);
        arrivals.filter(|&t| b.take(limit, t)).count() as u64
    }

    #[test]
    fn a_full_bucket_admits_its_burst_at_once_and_then_refuses() {
        let limit = Limit::new(10, 5);
        assert_eq!(admitted(&limit, std::iter::repeat_n(1, 100)), 5);
    }

    #[test]
    fn an_all_zero_bucket_counts_as_full() {
        let limit = Limit::new(10, 3);
        let mut b = Bucket::default();
        assert!((0..3).all(|_| b.take(&limit, 5 * SEC)));
        assert!(!b.take(&limit, 5 * SEC));
    }

    #[test]
    fn credit_comes_back_at_the_rate() {
        let limit = Limit::new(10, 1);
        let mut b = Bucket::full(&limit, 0);
        assert!(b.take(&limit, 0));
        assert!(!b.take(&limit, SEC / 10 - 1));
        assert!(b.take(&limit, SEC / 10));
    }

    #[test]
    fn a_clock_going_backwards_neither_refills_nor_panics() {
        let limit = Limit::new(1, 1);
        let mut b = Bucket::full(&limit, 10 * SEC);
        assert!(b.take(&limit, 10 * SEC));
        assert!(!b.take(&limit, 5 * SEC));
        assert_eq!(b.last_ns, 10 * SEC);
    }

    #[test]
    fn rate_zero_is_unlimited() {
        let limit = Limit::new(0, 0);
        assert!(limit.unlimited());
        assert_eq!(admitted(&limit, std::iter::repeat_n(0, 1000)), 1000);
    }

    proptest! {
        /// Over any span, a flood admits at most burst + rate × span flows (plus one), and
        /// at least burst + span / (cost + gap): arrivals are discrete, so once the bucket
        /// has refilled to its cap a new flow may wait up to one gap for the next arrival,
        /// and credit beyond the cap is not kept.
        #[test]
        fn a_flood_gets_burst_plus_rate_times_time(rate in 1u32..5000, burst in 1u32..500, span_ms in 1u64..5000, gap_us in 1u64..2000) {
            let limit = Limit::new(rate, burst);
            let end = span_ms * 1_000_000;
            let gap = gap_us * 1000;
            let n = admitted(&limit, (0..).map(|i| i * gap).take_while(|&t| t <= end));
            let offered = end / gap + 1;
            let most = (burst as u64 + end / limit.cost_ns).min(offered);
            let least = (burst as u64 + end / (limit.cost_ns + gap)).min(offered);
            prop_assert!(n <= most + 1 && n + 1 >= least, "admitted {n}, expected {least}..={most}");
        }
    }
}

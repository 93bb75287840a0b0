//! Traffic management keys of a service that shape how new flows are shared out over time:
//! `slow_start` (a backend that joins ramps up its share) and `persistence_timeout` (a
//! client keeps its backend across connections). The model and the checks of their values.
use std::time::Duration;

use super::duration::format_duration;
use super::enums::Algorithm;
use super::schema::TextOrNumber;
use super::validate::positive_duration;

/// Longest `slow_start`: a ramp longer than this keeps a recovered backend under-used for
/// longer than any warm-up (JIT, caches, connection pools) takes.
pub const MAX_SLOW_START: Duration = Duration::from_secs(3600);
/// Longest `persistence_timeout` (IPVS allows much more; a day covers every session).
pub const MAX_PERSISTENCE_TIMEOUT: Duration = Duration::from_secs(86_400);
/// Shortest `persistence_timeout`: the XDP path keeps it in milliseconds, and a client's
/// next connection rarely comes within less.
pub const MIN_PERSISTENCE_TIMEOUT: Duration = Duration::from_secs(1);
/// The share a ramp starts from: a backend just back takes this share of its weight at
/// once (as Envoy's default `min_weight_percent`), then linearly more up to 100%.
pub const SLOW_START_MIN_PERCENT: u32 = 10;

/// The traffic-shaping settings of one service; both off unless written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// `slow_start`: a backend that joins the rotation (added, registered, back up, back
    /// from drain or maintenance, its circuit closed) ramps its share of new flows over this
    /// window. `None`: it takes its full share at once.
    pub slow_start: Option<Duration>,
    /// `persistence_timeout`: a client (source address) keeps the backend of its last new
    /// flow for new flows that start within this of the previous one. `None`: every new
    /// flow is balanced on its own.
    pub persistence_timeout: Option<Duration>,
}

/// The share (percent, `SLOW_START_MIN_PERCENT` to 100) of its weight a backend takes
/// `elapsed` into a ramp of `window`.
pub fn ramp_percent(elapsed: Duration, window: Duration) -> u32 {
    if window.is_zero() || elapsed >= window {
        return 100;
    }
    let linear = (elapsed.as_secs_f64() / window.as_secs_f64() * 100.0) as u32;
    linear.clamp(SLOW_START_MIN_PERCENT, 100)
}

pub(super) fn slow_start(value: &TextOrNumber) -> Result<Duration, String> {
    let window = positive_duration(value, "slow_start")?;
    if window > MAX_SLOW_START {
        return Err(format!(
            "slow_start {} is too long; the maximum is {}",
            format_duration(window),
            format_duration(MAX_SLOW_START)
        ));
    }
    Ok(window)
}

pub(super) fn persistence_timeout(value: &TextOrNumber) -> Result<Duration, String> {
    let timeout = positive_duration(value, "persistence_timeout")?;
    if !(MIN_PERSISTENCE_TIMEOUT..=MAX_PERSISTENCE_TIMEOUT).contains(&timeout) {
        return Err(format!(
            "persistence_timeout {} is out of range; it must be {} to {}",
            format_duration(timeout),
            format_duration(MIN_PERSISTENCE_TIMEOUT),
            format_duration(MAX_PERSISTENCE_TIMEOUT)
        ));
    }
    Ok(timeout)
}

/// `source_hash` already sends a client to one backend for as long as the backends stay
/// the same; persistence on top would only hide that.
pub(super) fn persistence_fits_algorithm(algorithm: Algorithm) -> Result<(), String> {
    if algorithm == Algorithm::SourceHash {
        return Err("persistence_timeout does nothing with algorithm \"source_hash\", which already keeps \
                    each client on one backend; remove it or choose another algorithm"
            .to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ramp_starts_at_the_floor_and_grows_linearly_to_the_full_weight() {
        let w = Duration::from_secs(30);
        assert_eq!(ramp_percent(Duration::ZERO, w), SLOW_START_MIN_PERCENT);
        assert_eq!(ramp_percent(Duration::from_secs(1), w), SLOW_START_MIN_PERCENT);
        assert_eq!(ramp_percent(Duration::from_secs(15), w), 50);
        assert_eq!(ramp_percent(Duration::from_secs(27), w), 90);
        assert_eq!(ramp_percent(w, w), 100);
        assert_eq!(ramp_percent(Duration::from_secs(99), w), 100);
        assert_eq!(ramp_percent(Duration::from_secs(1), Duration::ZERO), 100, "no window: full at once");
    }
}

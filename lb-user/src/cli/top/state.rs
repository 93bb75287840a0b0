//! What `lb top` knows between two frames: the last two good samples (their difference is
//! the rates), the error of the last refresh if it failed, and the view the keys set.
use std::time::Duration;

use super::keys::View;
use super::sample::Sample;

#[derive(Debug)]
pub struct State {
    pub interval: Duration,
    pub view: View,
    /// The newest good sample, and the one before it.
    pub last: Option<Sample>,
    pub prev: Option<Sample>,
    /// Why the newest refresh failed; cleared by the next good one. The rows stay those of
    /// the last good sample meanwhile.
    pub error: Option<String>,
}

impl State {
    pub fn new(interval: Duration) -> Self {
        State { interval, view: View::default(), last: None, prev: None, error: None }
    }

    /// Takes a refresh's result.
    pub fn update(&mut self, refresh: Result<Sample, String>) {
        match refresh {
            Ok(sample) => {
                self.prev = self.last.replace(sample);
                self.error = None;
            }
            Err(e) => self.error = Some(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::top::rates::tests::sample;
    use std::time::Instant;

    #[test]
    fn a_failed_refresh_keeps_the_samples_and_the_next_good_one_clears_it() {
        let t0 = Instant::now();
        let mut s = State::new(Duration::from_secs(1));
        s.update(Ok(sample("xdp", t0, vec![])));
        assert!(s.prev.is_none() && s.last.is_some());
        s.update(Err("maps gone".into()));
        assert_eq!(s.error.as_deref(), Some("maps gone"));
        assert_eq!(s.last.as_ref().map(|l| l.taken), Some(t0), "the last good sample stays");
        let t2 = t0 + Duration::from_secs(2);
        s.update(Ok(sample("xdp", t2, vec![])));
        assert_eq!(s.error, None);
        assert_eq!((s.prev.as_ref().map(|p| p.taken), s.last.as_ref().map(|l| l.taken)), (Some(t0), Some(t2)));
    }
}

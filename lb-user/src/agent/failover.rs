//! Several balancers for one agent (`lb agent --api URL1,URL2,...`): a fleet shares its
//! registrations through etcd, so any node takes them. Requests go to the balancer that
//! answered last; one that cannot be reached, or answers 5xx, hands the same request to
//! the next in the list (wrapping around), each tried at most once per request. Any other
//! answer, a 404 included (the agent then registers again), is the fleet's answer.
use std::sync::atomic::{AtomicUsize, Ordering};

use super::client::{ApiError, ApiUrl};

#[derive(Debug)]
pub struct Balancers {
    urls: Vec<ApiUrl>,
    /// The one that answered last: tried first.
    current: AtomicUsize,
}

impl Balancers {
    /// `urls` must not be empty (the CLI requires at least one).
    pub fn new(urls: Vec<ApiUrl>) -> Self {
        assert!(!urls.is_empty(), "at least one balancer URL");
        Balancers { urls, current: AtomicUsize::new(0) }
    }

    /// The balancer tried first.
    pub fn current(&self) -> &ApiUrl {
        &self.urls[self.current.load(Ordering::Relaxed) % self.urls.len()]
    }

    pub fn len(&self) -> usize {
        self.urls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.urls.is_empty()
    }

    /// Send with `attempt` to each balancer in turn, from the current one, until one gives
    /// an answer that is not "unreachable or 5xx"; that one becomes the current one. When
    /// none does, the last failure is returned (the caller backs off as for one balancer).
    pub fn try_in_turn<T>(&self, mut attempt: impl FnMut(&ApiUrl) -> Result<T, ApiError>) -> Result<T, ApiError> {
        let first = self.current.load(Ordering::Relaxed);
        let mut last = None;
        for step in 0..self.urls.len() {
            let i = (first + step) % self.urls.len();
            match attempt(&self.urls[i]) {
                Err(e) if moves_on(&e) => {
                    if self.urls.len() > 1 {
                        tracing::warn!(api = %self.urls[i], "{e}; trying the next balancer");
                    }
                    last = Some(e);
                }
                answer => {
                    self.current.store(i, Ordering::Relaxed);
                    return answer;
                }
            }
        }
        Err(last.expect("at least one balancer was tried"))
    }
}

/// The balancer could not act on the request: another one may.
fn moves_on(e: &ApiError) -> bool {
    match e {
        ApiError::Unreachable { .. } => true,
        ApiError::Status { status, .. } => *status >= 500,
        ApiError::Invalid { .. } => false,
    }
}

impl From<ApiUrl> for Balancers {
    fn from(url: ApiUrl) -> Self {
        Balancers::new(vec![url])
    }
}

impl From<Vec<ApiUrl>> for Balancers {
    fn from(urls: Vec<ApiUrl>) -> Self {
        Balancers::new(urls)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    fn balancers(n: usize) -> Balancers {
        Balancers::new((1..=n).map(|i| format!("http://10.61.0.1{i}:9100").parse().unwrap()).collect())
    }

    fn unreachable() -> ApiError {
        ApiError::Unreachable { method: "PUT", url: String::new(), detail: "Connection refused".into() }
    }

    fn status(status: u16) -> ApiError {
        ApiError::Status {
            method: "PUT",
            url: String::new(),
            status,
            reason: String::new(),
            message: String::new(),
            hint: String::new(),
        }
    }

    /// Runs one request where balancer `i` (1-based) answers `answers(i)`; returns the
    /// balancers asked, in order, and the outcome's status (200 for success, 0 unreachable).
    fn request(b: &Balancers, answers: impl Fn(usize) -> Result<(), ApiError>) -> (Vec<usize>, u16) {
        let asked = RefCell::new(Vec::new());
        let outcome = b.try_in_turn(|url| {
            let host = url.as_str().trim_end_matches(":9100");
            let i = host.chars().last().and_then(|c| c.to_digit(10)).unwrap() as usize;
            asked.borrow_mut().push(i);
            answers(i)
        });
        let code = match outcome {
            Ok(()) => 200,
            Err(e) => e.status().unwrap_or(0),
        };
        (asked.into_inner(), code)
    }

    #[test]
    fn an_unreachable_or_failing_balancer_hands_the_request_to_the_next() {
        let b = balancers(3);
        assert_eq!(request(&b, |_| Ok(())), (vec![1], 200), "the first one answers");
        assert_eq!(request(&b, |i| if i == 1 { Err(unreachable()) } else { Ok(()) }), (vec![1, 2], 200));
        assert_eq!(b.current().as_str(), "http://10.61.0.12:9100", "the one that answered stays the first asked");
        assert_eq!(request(&b, |_| Ok(())), (vec![2], 200));
        assert_eq!(request(&b, |i| if i == 3 { Ok(()) } else { Err(status(503)) }), (vec![2, 3], 200), "5xx moves on");
        assert_eq!(
            request(&b, |i| if i == 1 { Ok(()) } else { Err(unreachable()) }),
            (vec![3, 1], 200),
            "wraps around"
        );
    }

    #[test]
    fn a_404_or_a_4xx_is_the_answer_and_no_balancer_is_asked_twice() {
        let b = balancers(3);
        assert_eq!(request(&b, |_| Err(status(404))), (vec![1], 404), "404: the agent registers again, here");
        assert_eq!(request(&b, |i| if i == 1 { Err(unreachable()) } else { Err(status(400)) }), (vec![1, 2], 400));
        assert_eq!(request(&b, |_| Err(status(503))), (vec![2, 3, 1], 503), "all failing: each once, the last failure");
        assert_eq!(request(&b, |_| Err(unreachable())), (vec![2, 3, 1], 0));
        assert_eq!(b.current().as_str(), "http://10.61.0.12:9100", "nobody answered: the current one stays");
    }
}

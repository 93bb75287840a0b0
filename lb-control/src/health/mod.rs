//! Active health checks: one task per backend probes it every `interval` (with jitter, so a
//! thousand backends are not probed in the same millisecond) and reports each result to the
//! controller, whose `Tracker` turns runs of results into health changes.
//!
//! One module per check type: `tcp` (connect), `http` (GET and the status line, over any
//! stream), `https` (the same over TLS), `udp` (a datagram and its reply) and `agent`
//! (HAProxy's agent-check line).
mod agent;
mod http;
mod https;
mod tcp;
mod udp;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::mpsc;

use crate::tunnel_check::Target;
use lb_config::desired::Health;
use lb_config::{HealthCheck, HealthCheckType};

pub use agent::{parse_agent_line, AgentHealth, AgentState, AgentWords, MAX_AGENT_LINE};
pub use http::parse_status_line;

/// One probe's outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckResult {
    pub ok: bool,
    /// The probe could not be made for a reason of this host's own (out of descriptors,
    /// buffers or memory): it says nothing about the backend, so it is not counted against
    /// it (the controller logs it and counts it in `lb_health_check_local_errors_total`).
    pub local: bool,
    pub detail: String,
    pub duration: Duration,
    pub finished: Instant,
    /// What an `agent` check's agent said (also when it said `down`); `None` for other
    /// types and when no line was read.
    pub agent: Option<AgentWords>,
}

/// A result on its way to the controller.
#[derive(Debug)]
pub struct Report {
    pub service: String,
    pub address: SocketAddr,
    /// The id the controller gave the checker that sent it.
    pub checker: u64,
    pub result: CheckResult,
}

/// Consecutive results → health. `Unknown` (never checked) counts as up for traffic; it
/// becomes `Up` after `healthy` successes in a row and `Down` after `unhealthy` failures.
#[derive(Clone, Debug, PartialEq)]
pub struct Tracker {
    pub health: Health,
    successes: u32,
    failures: u32,
}

impl Default for Tracker {
    fn default() -> Self {
        Self { health: Health::Unknown, successes: 0, failures: 0 }
    }
}

impl Tracker {
    /// A backend the state file remembered as down: it stays down until its checker counts
    /// `healthy` successes in a row, as if the daemon had not restarted.
    pub fn remembered_down() -> Self {
        Self { health: Health::Down, successes: 0, failures: 0 }
    }

    /// Record one result; `Some(new)` when the health changed.
    pub fn record(&mut self, ok: bool, healthy: u32, unhealthy: u32) -> Option<Health> {
        if ok {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
        } else {
            self.failures = self.failures.saturating_add(1);
            self.successes = 0;
        }
        let next = if ok && self.successes >= healthy {
            Health::Up
        } else if !ok && self.failures >= unhealthy {
            Health::Down
        } else {
            self.health
        };
        (next != self.health).then(|| {
            self.health = next;
            next
        })
    }
}

/// Probe once, bounded by the check's `timeout` whatever the type. `target` says where
/// to connect: the backend, or the VIP through the tunnel (`tunnel_check`); an `agent`
/// check always asks the backend's own address, at `agent_port`.
pub async fn probe(check: &HealthCheck, target: &Target) -> CheckResult {
    let start = Instant::now();
    let outcome = tokio::time::timeout(check.timeout, attempt(check, target)).await;
    let (ok, local, detail, agent) = match outcome {
        Ok(Ok(Passed { detail, agent })) => (true, false, detail, agent),
        Ok(Err(Failed::Backend(detail))) => (false, false, detail, None),
        Ok(Err(Failed::Agent(detail, words))) => (false, false, detail, Some(words)),
        Ok(Err(Failed::Local(detail))) => (false, true, detail, None),
        Err(_) => (
            false,
            false,
            format!("timeout after {}{}", lb_config::format_duration(check.timeout), target.timeout_hint()),
            None,
        ),
    };
    CheckResult { ok, local, detail, duration: start.elapsed(), finished: Instant::now(), agent }
}

/// A passed probe: what to show, and what an agent said.
struct Passed {
    detail: String,
    agent: Option<AgentWords>,
}

impl From<String> for Passed {
    fn from(detail: String) -> Self {
        Passed { detail, agent: None }
    }
}

/// Why a probe failed: the backend's doing, or this host's.
enum Failed {
    Backend(String),
    /// The agent answered, and said the backend is down.
    Agent(String, AgentWords),
    Local(String),
}

impl From<String> for Failed {
    fn from(detail: String) -> Self {
        Failed::Backend(detail)
    }
}

/// Errors that come from this host running short (descriptors, kernel buffers, memory),
/// whichever backend the probe was for.
pub fn is_local_error(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
}

/// A failed `connect` (which also creates the socket): local or the backend's.
fn connect_failed(target: &Target, e: std::io::Error) -> Failed {
    if is_local_error(&e) {
        Failed::Local(format!("local: cannot open a socket: {e}"))
    } else {
        Failed::Backend(target.connect_failure(&e))
    }
}

async fn attempt(check: &HealthCheck, target: &Target) -> Result<Passed, Failed> {
    match check.kind {
        // `none` never gets a checker; a connect is the harmless answer if one did.
        HealthCheckType::Tcp | HealthCheckType::None => tcp::attempt(target).await.map(Passed::from),
        HealthCheckType::Http => http::attempt(check, target).await.map(Passed::from),
        HealthCheckType::Https => https::attempt(check, target).await.map(Passed::from),
        HealthCheckType::Udp => udp::attempt(check, target).await.map(Passed::from),
        HealthCheckType::Agent => agent::attempt(check, target).await,
    }
}

/// The task checking one backend (`address`, reached at `target`) until the controller
/// drops it (aborts the task) or the channel closes.
pub async fn run(
    check: HealthCheck,
    service: String,
    address: SocketAddr,
    target: Target,
    checker: u64,
    reports: mpsc::Sender<Report>,
) {
    // Start at a random point in the first interval: checks spread out instead of bursting.
    let first = rand::thread_rng().gen_range(0.0..1.0) * check.interval.as_secs_f64().min(0.5);
    tokio::time::sleep(Duration::from_secs_f64(first)).await;
    loop {
        let result = probe(&check, &target).await;
        if reports.send(Report { service: service.clone(), address, checker, result }).await.is_err() {
            return;
        }
        let jitter = rand::thread_rng().gen_range(0.9..1.1);
        tokio::time::sleep(check.interval.mul_f64(jitter)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn thresholds_turn_runs_of_results_into_health_changes() {
        let mut t = Tracker::default();
        assert_eq!(t.record(false, 2, 3), None);
        assert_eq!(t.record(false, 2, 3), None);
        assert_eq!(t.record(true, 2, 3), None, "a success resets the failure run");
        assert_eq!(t.record(true, 2, 3), Some(Health::Up));
        assert_eq!(t.record(false, 2, 3), None);
        assert_eq!(t.record(false, 2, 3), None);
        assert_eq!(t.record(false, 2, 3), Some(Health::Down));
        assert_eq!(t.record(false, 2, 3), None, "no repeated change");
        assert_eq!(t.record(true, 2, 3), None);
        assert_eq!(t.record(true, 2, 3), Some(Health::Up));
    }

    #[tokio::test]
    async fn probes_on_loopback_tell_up_from_down() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 256];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await;
            }
        });
        let tcp = HealthCheck::default();
        let addr = Target::Direct(addr);
        assert!(probe(&tcp, &addr).await.ok);
        let http = HealthCheck { kind: HealthCheckType::Http, ..HealthCheck::default() };
        let r = probe(&http, &addr).await;
        assert!(r.ok, "{}", r.detail);
        assert_eq!(r.detail, "HTTP 204");
        let only_200 = HealthCheck { expected_status: "200".parse().unwrap(), ..http };
        assert!(!probe(&only_200, &addr).await.ok);
        // A port nobody listens on.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
        let r = probe(&tcp, &closed.into()).await;
        assert!(!r.ok && !r.local && r.detail.starts_with("connect"), "{}", r.detail);
    }

    #[test]
    fn running_out_of_descriptors_buffers_or_memory_is_local() {
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            assert!(is_local_error(&std::io::Error::from_raw_os_error(errno)), "{errno}");
        }
        for kind in [std::io::ErrorKind::ConnectionRefused, std::io::ErrorKind::TimedOut] {
            assert!(!is_local_error(&std::io::Error::from(kind)), "{kind:?} is the backend's");
        }
        let direct = Target::Direct("127.0.0.1:1".parse().unwrap());
        assert!(matches!(connect_failed(&direct, std::io::Error::from_raw_os_error(libc::EMFILE)), Failed::Local(_)));
    }
}

#[cfg(test)]
mod loopback_tests;

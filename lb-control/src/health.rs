//! Active health checks: one task per backend probes it every `interval` (with jitter, so a
//! thousand backends are not probed in the same millisecond) and reports each result to the
//! controller, whose `Tracker` turns runs of results into health changes.
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::tunnel_check::Target;
use lb_config::desired::Health;
use lb_config::{HealthCheck, HealthCheckType};

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

/// Probe once: `tcp` connects; `http` sends a GET and checks the status line. `target`
/// says where to connect: the backend, or the VIP through the tunnel (`tunnel_check`).
pub async fn probe(check: &HealthCheck, target: &Target) -> CheckResult {
    let start = Instant::now();
    let outcome = tokio::time::timeout(check.timeout, attempt(check, target)).await;
    let (ok, local, detail) = match outcome {
        Ok(Ok(detail)) => (true, false, detail),
        Ok(Err(Failed::Backend(detail))) => (false, false, detail),
        Ok(Err(Failed::Local(detail))) => (false, true, detail),
        Err(_) => (
            false,
            false,
            format!("timeout after {}{}", lb_config::format_duration(check.timeout), target.timeout_hint()),
        ),
    };
    CheckResult { ok, local, detail, duration: start.elapsed(), finished: Instant::now() }
}

/// Why a probe failed: the backend's doing, or this host's.
enum Failed {
    Backend(String),
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

async fn attempt(check: &HealthCheck, target: &Target) -> Result<String, Failed> {
    let address = target.address();
    let mut stream = target.connect().await.map_err(|e| connect_failed(target, e))?;
    if check.kind != HealthCheckType::Http {
        return Ok("connected".into());
    }
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {address}\r\nUser-Agent: lb-health-check\r\nConnection: close\r\n\r\n",
        check.path
    );
    stream.write_all(request.as_bytes()).await.map_err(|e| format!("send: {e}"))?;
    let status = read_status(&mut stream).await?;
    if check.expected_status.contains(status) {
        Ok(format!("HTTP {status}"))
    } else {
        Err(Failed::Backend(format!("HTTP {status}, expected {}", check.expected_status)))
    }
}

/// The status code of an HTTP/1.x response's first line.
async fn read_status(stream: &mut TcpStream) -> Result<u16, String> {
    let mut buf = Vec::with_capacity(64);
    let mut chunk = [0u8; 64];
    while !buf.contains(&b'\n') && buf.len() < 1024 {
        let n = stream.read(&mut chunk).await.map_err(|e| format!("receive: {e}"))?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    parse_status_line(&buf).ok_or_else(|| "not an HTTP response".to_string())
}

pub fn parse_status_line(buf: &[u8]) -> Option<u16> {
    let line = buf.split(|&b| b == b'\n').next()?;
    let text = std::str::from_utf8(line).ok()?;
    let mut parts = text.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/1."))?;
    parts.next()?.parse().ok().filter(|c| (100..=599).contains(c))
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

    #[test]
    fn status_lines_parse_and_garbage_does_not() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(parse_status_line(b"HTTP/1.0 503 Service Unavailable\r\n"), Some(503));
        assert_eq!(parse_status_line(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 999 what\r\n"), None);
        assert_eq!(parse_status_line(b""), None);
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

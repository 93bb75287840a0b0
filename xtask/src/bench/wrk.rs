//! Load from the client namespace with wrk, and its report (`--latency`) parsed.
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use testenv::CLIENT_NS;

/// Client connections: enough to keep two cores busy, few enough that 32 × the new
/// connections of a run stay far inside every SNAT and ephemeral port range.
pub const CONNECTIONS: u32 = 32;
const THREADS: u32 = 2;

/// What wrk measured in one run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WrkResult {
    pub requests: u64,
    pub seconds: f64,
    pub requests_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: WrkErrors,
}

/// wrk's error counts, each kind apart: "Socket errors: connect N, read N, write N,
/// timeout N" and "Non-2xx or 3xx responses: N".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WrkErrors {
    /// connect() failed (refused, reset, unreachable).
    pub connect: u64,
    /// A read failed, or the server closed the connection in the middle of a response.
    pub read: u64,
    /// Sending the request failed.
    pub write: u64,
    /// A request older than `--timeout` (2 s), counted by wrk's periodic sweep.
    pub timeout: u64,
    /// Answers with status ≥ 400 (wrk's "Non-2xx or 3xx responses").
    pub non_2xx: u64,
}

/// A run's errors split by who made them: the balancer (`real`) or the load generator's
/// own (`harness`). The rule (docs/benchmarks.md, "Errors"): non-2xx answers, connect
/// errors and timeouts are always real; read and write errors are the harness's up to what
/// the direct row (no balancer at all) shows under the same load, and real beyond.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Classified {
    pub real: u64,
    pub harness: u64,
}

impl std::ops::Add for WrkErrors {
    type Output = WrkErrors;
    fn add(self, o: WrkErrors) -> WrkErrors {
        WrkErrors {
            connect: self.connect + o.connect,
            read: self.read + o.read,
            write: self.write + o.write,
            timeout: self.timeout + o.timeout,
            non_2xx: self.non_2xx + o.non_2xx,
        }
    }
}

impl WrkErrors {
    pub fn total(&self) -> u64 {
        self.connect + self.read + self.write + self.timeout + self.non_2xx
    }

    /// The largest count of each kind (the direct row's worst round: what the harness
    /// alone can make).
    pub fn max(self, o: WrkErrors) -> WrkErrors {
        WrkErrors {
            connect: self.connect.max(o.connect),
            read: self.read.max(o.read),
            write: self.write.max(o.write),
            timeout: self.timeout.max(o.timeout),
            non_2xx: self.non_2xx.max(o.non_2xx),
        }
    }

    /// Splits these errors (one run) against `harness`, what direct showed under the
    /// same load (its worst run).
    pub fn classify(&self, harness: &WrkErrors) -> Classified {
        let read = self.read.min(harness.read);
        let write = self.write.min(harness.write);
        Classified { real: self.total() - read - write, harness: read + write }
    }
}

/// Keep-alive requests (`close: false`) or one request per connection (`close: true`:
/// `Connection: close`, the server closes and wrk reconnects: new connections/s).
pub fn run(url: &str, duration: Duration, close: bool) -> Result<WrkResult> {
    let secs = format!("{}s", duration.as_secs().max(1));
    let threads = format!("-t{THREADS}");
    let conns = format!("-c{CONNECTIONS}");
    // `timeout` bounds the run even if wrk hangs on a dead target.
    let limit = (duration.as_secs() + 20).to_string();
    let mut args = vec!["timeout", &limit, "wrk", &threads, &conns, "-d", &secs, "--latency", "--timeout", "2s"];
    if close {
        args.extend(["-H", "Connection: close"]);
    }
    args.push(url);
    let out = testenv::exec(CLIENT_NS, &args)?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("wrk {url} failed ({}): {}{}", out.status, text, String::from_utf8_lossy(&out.stderr));
    }
    parse(&text).with_context(|| format!("parsing wrk's report for {url}:\n{text}"))
}

pub fn parse(text: &str) -> Result<WrkResult> {
    let mut r = WrkResult::default();
    let mut in_distribution = false;
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        if line.starts_with("Latency Distribution") {
            in_distribution = true;
        } else if in_distribution && words.len() == 2 && words[0].ends_with('%') {
            let ms = duration_ms(words[1])?;
            match words[0] {
                "50%" => r.p50_ms = ms,
                "99%" => r.p99_ms = ms,
                _ => {}
            }
        } else if words.len() >= 4 && words[1] == "requests" && words[2] == "in" {
            in_distribution = false;
            r.requests = words[0].parse().context("request count")?;
            r.seconds = duration_ms(words[3].trim_end_matches(','))? / 1e3;
        } else if let Some(v) = line.strip_prefix("Requests/sec:") {
            r.requests_per_sec = v.trim().parse().context("Requests/sec")?;
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            r.errors.non_2xx = v.trim().parse().context("Non-2xx count")?;
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            socket_errors(v, &mut r.errors)?;
        }
    }
    if r.seconds == 0.0 {
        bail!("no \"N requests in T\" line");
    }
    Ok(r)
}

/// "connect 0, read 3, write 0, timeout 1": each kind by its name.
fn socket_errors(text: &str, errors: &mut WrkErrors) -> Result<()> {
    for part in text.split(',') {
        let (kind, n) = part.trim().split_once(' ').with_context(|| format!("socket errors {part:?}"))?;
        let n: u64 = n.trim().parse().with_context(|| format!("socket errors {part:?}"))?;
        match kind {
            "connect" => errors.connect = n,
            "read" => errors.read = n,
            "write" => errors.write = n,
            "timeout" => errors.timeout = n,
            _ => bail!("unknown kind of socket error {kind:?}"),
        }
    }
    Ok(())
}

/// wrk prints durations as `812.00us`, `1.23ms`, `2.00s` or `1.00m`.
fn duration_ms(text: &str) -> Result<f64> {
    let (number, factor) = if let Some(n) = text.strip_suffix("us") {
        (n, 1e-3)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1e3)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60e3)
    } else {
        bail!("duration without a unit: {text:?}");
    };
    Ok(number.parse::<f64>().with_context(|| format!("duration {text:?}"))? * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "Running 3s test @ http://172.20.0.100/
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   812.34us    1.02ms  20.11ms   91.00%
    Req/Sec    20.51k     1.20k   23.00k    70.00%
  Latency Distribution
     50%  612.00us
     75%    0.91ms
     90%    1.40ms
     99%    5.02ms
  122345 requests in 3.00s, 30.11MB read
  Socket errors: connect 0, read 3, write 0, timeout 1
  Non-2xx or 3xx responses: 2
Requests/sec:  40781.67
Transfer/sec:     10.04MB
";

    #[test]
    fn parses_throughput_latency_and_errors() {
        let r = parse(REPORT).unwrap();
        assert_eq!(r.requests, 122345);
        assert_eq!(r.seconds, 3.0);
        assert_eq!(r.requests_per_sec, 40781.67);
        assert!((r.p50_ms - 0.612).abs() < 1e-9);
        assert_eq!(r.p99_ms, 5.02);
        assert_eq!(r.errors, WrkErrors { connect: 0, read: 3, write: 0, timeout: 1, non_2xx: 2 });
    }

    #[test]
    fn each_kind_of_socket_error_is_kept_apart() {
        let r =
            parse(&REPORT.replace("connect 0, read 3, write 0, timeout 1", "connect 7, read 0, write 5, timeout 0"))
                .unwrap();
        assert_eq!(r.errors, WrkErrors { connect: 7, read: 0, write: 5, timeout: 0, non_2xx: 2 });
        // No error lines: nothing counted.
        let clean = parse(
            &REPORT
                .replace("  Socket errors: connect 0, read 3, write 0, timeout 1\n", "")
                .replace("  Non-2xx or 3xx responses: 2\n", ""),
        )
        .unwrap();
        assert_eq!(clean.errors, WrkErrors::default());
        assert!(parse(&REPORT.replace("timeout 1", "reset 1")).is_err(), "an unknown kind is not silently summed");
    }

    #[test]
    fn read_and_write_errors_up_to_direct_are_the_harness() {
        let direct = WrkErrors { read: 2, write: 1, ..Default::default() };
        let within = WrkErrors { read: 1, write: 1, ..Default::default() };
        assert_eq!(within.classify(&direct), Classified { real: 0, harness: 2 });
        // Beyond what direct shows, the balancer made them.
        let beyond = WrkErrors { read: 5, ..Default::default() };
        assert_eq!(beyond.classify(&direct), Classified { real: 3, harness: 2 });
    }

    #[test]
    fn connect_errors_timeouts_and_bad_answers_are_always_real() {
        // Even when direct had them too: a balancer must not fail a connect or an answer.
        let direct = WrkErrors { connect: 3, timeout: 3, non_2xx: 3, ..Default::default() };
        let row = WrkErrors { connect: 1, timeout: 2, non_2xx: 4, read: 1, ..Default::default() };
        assert_eq!(row.classify(&direct), Classified { real: 8, harness: 0 });
    }

    #[test]
    fn a_report_without_a_count_is_an_error() {
        assert!(parse("Running 3s test\n").is_err());
    }
}

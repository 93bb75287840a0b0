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
    /// connect + read + write + timeout errors.
    pub socket_errors: u64,
    pub non_2xx: u64,
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
            r.non_2xx = v.trim().parse().context("Non-2xx count")?;
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            r.socket_errors = v.split(',').filter_map(|p| p.split_whitespace().nth(1)?.parse::<u64>().ok()).sum();
        }
    }
    if r.seconds == 0.0 {
        bail!("no \"N requests in T\" line");
    }
    Ok(r)
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
        assert_eq!(r.socket_errors, 4);
        assert_eq!(r.non_2xx, 2);
    }

    #[test]
    fn a_report_without_a_count_is_an_error() {
        assert!(parse("Running 3s test\n").is_err());
    }
}

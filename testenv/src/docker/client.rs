//! Requests from the client container to the VIP, through the lb container's XDP program:
//! `testenv/docker/client.py` run with `docker exec`, one line per request.

use super::{CLIENT_CONTAINER, VIP};
use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Per request: the script's own limit, so a lost flow costs this long at most.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// One request: when it started (on this host's clock) and the server that answered (its
/// `X-Server` header) or why it failed.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub started: Instant,
    pub result: Result<String, String>,
}

/// Requests running in the client container while the caller does something else.
pub struct ClientLoop {
    child: Child,
    reader: JoinHandle<Result<Vec<Outcome>>>,
    count: usize,
}

impl ClientLoop {
    /// Starts `count` requests to `http://VIP/`, `interval` apart, each on a new connection
    /// (a new flow); returns once the script runs.
    pub fn start(count: usize, interval: Duration) -> Result<ClientLoop> {
        let url = format!("http://{VIP}/");
        let count_s = count.to_string();
        let interval_s = format!("{:.3}", interval.as_secs_f64());
        let timeout_s = format!("{:.3}", REQUEST_TIMEOUT.as_secs_f64());
        let mut child = Command::new("docker")
            .args(["exec", CLIENT_CONTAINER, "python", "/app/client.py", &url, &count_s, &interval_s, &timeout_s])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("docker exec of the client script")?;
        let stdout = child.stdout.take().context("client stdout")?;
        let (ready_tx, ready_rx) = mpsc::channel();
        let reader = std::thread::spawn(move || read_outcomes(BufReader::new(stdout), ready_tx));
        // The script's first line: its clock starts, ours is read at the same moment.
        if ready_rx.recv_timeout(Duration::from_secs(15)).is_err() {
            let _ = child.kill();
            bail!("the client script in {CLIENT_CONTAINER} did not start within 15 s");
        }
        Ok(ClientLoop { child, reader, count })
    }

    /// Waits for every request and returns their outcomes, in order.
    pub fn finish(mut self) -> Result<Vec<Outcome>> {
        let status = self.child.wait()?;
        let outcomes = self.reader.join().map_err(|_| anyhow::anyhow!("client reader panicked"))??;
        if !status.success() || outcomes.len() != self.count {
            let mut stderr = String::new();
            if let Some(mut pipe) = self.child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
            }
            bail!("client script ended ({status}) after {} of {} requests: {stderr}", outcomes.len(), self.count);
        }
        Ok(outcomes)
    }
}

/// `count` requests, `interval` apart, to the end.
pub fn requests(count: usize, interval: Duration) -> Result<Vec<Outcome>> {
    ClientLoop::start(count, interval)?.finish()
}

/// Reads `start`, then `<seconds> ok <server>` or `<seconds> fail <reason>` lines.
fn read_outcomes(stdout: impl BufRead, ready: mpsc::Sender<()>) -> Result<Vec<Outcome>> {
    let mut lines = stdout.lines();
    match lines.next() {
        Some(Ok(line)) if line == "start" => {}
        other => bail!("the client script's first line is not `start`: {other:?}"),
    }
    let base = Instant::now();
    let _ = ready.send(());
    let mut outcomes = Vec::new();
    for line in lines {
        outcomes.push(parse(base, &line?)?);
    }
    Ok(outcomes)
}

fn parse(base: Instant, line: &str) -> Result<Outcome> {
    let mut parts = line.splitn(3, ' ');
    let (Some(at), Some(kind), rest) = (parts.next(), parts.next(), parts.next().unwrap_or("")) else {
        bail!("unreadable client line {line:?}");
    };
    let at: f64 = at.parse().with_context(|| format!("the time in client line {line:?}"))?;
    let result = match kind {
        "ok" => Ok(rest.to_string()),
        "fail" => Err(rest.to_string()),
        _ => bail!("unreadable client line {line:?}"),
    };
    Ok(Outcome { started: base + Duration::from_secs_f64(at), result })
}

#[cfg(test)]
mod tests {
    use super::parse;
    use std::time::{Duration, Instant};

    #[test]
    fn client_lines_are_read_as_outcomes() {
        let base = Instant::now();
        let ok = parse(base, "1.250 ok Server2").unwrap();
        assert_eq!(ok.result, Ok("Server2".to_string()));
        assert_eq!(ok.started - base, Duration::from_millis(1250));
        let fail = parse(base, "0.000 fail URLError: <urlopen error timed out>").unwrap();
        assert_eq!(fail.result, Err("URLError: <urlopen error timed out>".to_string()));
        assert!(parse(base, "garbage").is_err());
        assert!(parse(base, "1.0 maybe Server1").is_err());
    }
}

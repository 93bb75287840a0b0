//! `type = "agent"`: HAProxy's agent-check. The checker connects to `agent_port` on the
//! backend's own address (never through the tunnel: `controller::checks` gives agent checks
//! direct targets), reads one line (at most [`MAX_AGENT_LINE`] bytes, within the
//! check's `timeout`) and parses its words, separated by commas, spaces or tabs, case
//! ignored, anything after `#` a comment:
//!
//! - `up` / `down`, `fail`, `stopped`: the check passes / fails (thresholds as for any check);
//! - `ready` / `drain` / `maint`: the agent's admin state for the backend (`ready` ends
//!   the other two);
//! - `NN%`: the share of the backend's weight it should get (0-100; more counts as 100).
//!
//! A line with none of these fails the check. A line without `up` or `down` passes: the
//! agent answered. Words the agent sends that `lb` does not know are ignored and named in
//! the check's detail.
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

use super::{Failed, Passed};
use crate::tunnel_check::Target;
use lb_config::HealthCheck;

/// The longest line read; the agent's answer is a few words.
pub const MAX_AGENT_LINE: usize = 512;

/// What the agent says about health, when it says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentHealth {
    Up,
    Down,
}

/// The admin state the agent asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AgentState {
    Ready,
    Drain,
    Maint,
}

/// One line's words; each `None` when the line did not say it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentWords {
    pub health: Option<AgentHealth>,
    pub state: Option<AgentState>,
    pub weight_percent: Option<u32>,
    /// Words not understood, as sent (for the detail).
    pub unknown: Vec<String>,
}

impl AgentWords {
    fn said_anything(&self) -> bool {
        self.health.is_some() || self.state.is_some() || self.weight_percent.is_some()
    }
}

pub(super) async fn attempt(check: &HealthCheck, target: &Target) -> Result<Passed, Failed> {
    let at = std::net::SocketAddr::new(target.address().ip(), check.agent_port);
    let mut stream = tokio::net::TcpStream::connect(at).await.map_err(|e| agent_connect_failed(at, e))?;
    let line = read_line(&mut stream).await?;
    let words = parse_agent_line(&line);
    if !words.said_anything() {
        return Err(Failed::Backend(format!("agent at {at} said nothing known: {:?}", line.trim())));
    }
    let detail = format!("agent: {}", line.trim());
    match words.health {
        Some(AgentHealth::Down) => Err(Failed::Agent(detail, words)),
        _ => Ok(Passed { detail, agent: Some(words) }),
    }
}

fn agent_connect_failed(at: std::net::SocketAddr, e: std::io::Error) -> Failed {
    if super::is_local_error(&e) {
        Failed::Local(format!("local: cannot open a socket: {e}"))
    } else {
        Failed::Backend(format!("agent connect {at}: {e}"))
    }
}

/// Up to the first newline, the end of the stream, or [`MAX_AGENT_LINE`] bytes.
async fn read_line(stream: &mut tokio::net::TcpStream) -> Result<String, Failed> {
    let mut buf = Vec::with_capacity(64);
    let mut chunk = [0u8; 128];
    while !buf.contains(&b'\n') && buf.len() < MAX_AGENT_LINE {
        let n = stream.read(&mut chunk).await.map_err(|e| format!("agent receive: {e}"))?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    buf.truncate(MAX_AGENT_LINE);
    let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
    Ok(String::from_utf8_lossy(line).into_owned())
}

/// The words of one agent line (see the module's doc). Later words win over earlier ones
/// of the same kind.
pub fn parse_agent_line(line: &str) -> AgentWords {
    let mut words = AgentWords::default();
    let text = line.split('#').next().unwrap_or_default();
    for word in text.split([',', ' ', '\t', '\r', '\n']).filter(|w| !w.is_empty()) {
        match word.to_ascii_lowercase().as_str() {
            "up" => words.health = Some(AgentHealth::Up),
            "down" | "fail" | "stopped" => words.health = Some(AgentHealth::Down),
            "ready" => words.state = Some(AgentState::Ready),
            "drain" => words.state = Some(AgentState::Drain),
            "maint" => words.state = Some(AgentState::Maint),
            w => match percent(w) {
                Some(p) => words.weight_percent = Some(p),
                None => words.unknown.push(word.to_string()),
            },
        }
    }
    words
}

/// `NN%`, at most 100 (an agent may lower its backend's share of the operator's weight,
/// not raise it).
fn percent(word: &str) -> Option<u32> {
    let digits = word.strip_suffix('%')?;
    if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u32>().ok().map(|p| p.min(100))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_words_parse_alone_and_combined() {
        let w = parse_agent_line("up 50%\n");
        assert_eq!((w.health, w.state, w.weight_percent), (Some(AgentHealth::Up), None, Some(50)));
        let w = parse_agent_line("DRAIN,75%");
        assert_eq!((w.health, w.state, w.weight_percent), (None, Some(AgentState::Drain), Some(75)));
        for down in ["down", "fail", "stopped", "down#disk full"] {
            assert_eq!(parse_agent_line(down).health, Some(AgentHealth::Down), "{down}");
        }
        assert_eq!(parse_agent_line("maint").state, Some(AgentState::Maint));
        assert_eq!(parse_agent_line("ready up").state, Some(AgentState::Ready));
        assert_eq!(parse_agent_line("250%").weight_percent, Some(100), "capped at the operator's weight");
        assert_eq!(parse_agent_line("0%").weight_percent, Some(0));
        let w = parse_agent_line("up # maint 10%");
        assert_eq!((w.state, w.weight_percent), (None, None), "a comment says nothing");
        let w = parse_agent_line("hello %, -5% 1e3% up");
        assert_eq!(w.unknown, ["hello", "%", "-5%", "1e3%"]);
        assert_eq!(w.health, Some(AgentHealth::Up));
        assert!(!parse_agent_line("").said_anything());
        assert!(!parse_agent_line("\u{fffd}\u{fffd} what").said_anything());
    }
}

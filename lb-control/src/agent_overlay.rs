//! What backends' agents (`type = "agent"` health checks, HAProxy's agent-check) ask of
//! the desired state, beside their health: an admin state (`drain`, `maint`, until the
//! agent says `ready`) and a share of the backend's weight (`NN%`).
//!
//! An admin state set through the API wins over the agent's: the operator's word is the
//! last. Without one, the stricter of the config's state and the agent's holds (`maint`
//! over `drain` over `ready`). The share scales the weight the other sources gave (0%
//! leaves the backend with weight 0: no new flows, its flows kept, as `drain`); at least 1
//! for any share above 0, so a small share never takes a backend out.
//!
//! A report lives as long as the backend's agent checker: a reload that changes or removes
//! the check forgets what the agent said.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::health::{AgentState, AgentWords};
use lb_config::desired::{BackendKey, DesiredService};
use lb_config::{AdminState, Config};

/// What one backend's agent asks for now; `None`: nothing (or `ready`, `100%`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AgentReport {
    /// `drain` or `maint` (never `ready`, which clears it).
    pub state: Option<AgentState>,
    /// `0`-`100`.
    pub weight_percent: Option<u32>,
    /// The check it was said under: it counts only while the service's configured check is
    /// this one (a reload that changes the check reconciles before the checker is
    /// replaced, and must already ignore it, as `health_map` ignores the old results).
    #[serde(skip)]
    pub check: lb_config::HealthCheck,
}

/// Per backend, the reports of the agents that said something.
pub type AgentReports = BTreeMap<BackendKey, AgentReport>;

impl AgentReport {
    /// Takes in one line's words; true when the report changed. Words not said leave
    /// what an earlier line said.
    pub fn merge(&mut self, words: &AgentWords) -> bool {
        let before = self.clone();
        match words.state {
            Some(AgentState::Ready) => self.state = None,
            Some(state) => self.state = Some(state),
            None => {}
        }
        if let Some(p) = words.weight_percent {
            self.weight_percent = (p < 100).then_some(p);
        }
        *self != before
    }

    /// [`merge`](Self::merge), under `check`: a report from another check starts afresh.
    pub fn merge_under(&mut self, words: &AgentWords, check: &lb_config::HealthCheck) -> bool {
        if self.check != *check {
            *self = AgentReport { check: check.clone(), ..AgentReport::default() };
        }
        self.merge(words)
    }

    pub fn is_empty(&self) -> bool {
        self.state.is_none() && self.weight_percent.is_none()
    }
}

/// Applies the agents' reports to one service's backends (see the module's doc);
/// `api_states` are the admin states set through the API.
pub fn apply(
    s: &mut DesiredService,
    cfg: &Config,
    reports: &AgentReports,
    api_states: &BTreeMap<BackendKey, AdminState>,
) {
    let Some(check) = cfg.services.iter().find(|c| c.name == s.name).map(|c| &c.health_check) else { return };
    for b in &mut s.backends {
        let key = BackendKey::new(&s.name, b.address);
        let Some(report) = reports.get(&key).filter(|r| r.check == *check) else { continue };
        if let Some(percent) = report.weight_percent {
            b.weight = scaled(b.weight, percent);
        }
        if let (Some(state), false) = (report.state, api_states.contains_key(&key)) {
            b.state = stricter(b.state, admin(state));
        }
    }
}

/// `weight × percent / 100`, at least 1 unless either is 0.
fn scaled(weight: u32, percent: u32) -> u32 {
    if weight == 0 || percent == 0 {
        return 0;
    }
    let w = (u64::from(weight) * u64::from(percent.min(100)) / 100).max(1);
    u32::try_from(w).unwrap_or(weight)
}

fn admin(state: AgentState) -> AdminState {
    match state {
        AgentState::Ready => AdminState::Ready,
        AgentState::Drain => AdminState::Drain,
        AgentState::Maint => AdminState::Maint,
    }
}

fn stricter(a: AdminState, b: AdminState) -> AdminState {
    let rank = |s: AdminState| match s {
        AdminState::Ready => 0,
        AdminState::Drain => 1,
        AdminState::Maint => 2,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::parse_agent_line;
    use crate::test_config::{WebService, SERVICE};
    use lb_config::desired::Desired;

    /// Three backends: weight 10, weight 10 draining, weight 3.
    fn config() -> Config {
        WebService::new()
            .backend("10.0.0.11:80", &["weight = 10"])
            .backend("10.0.0.12:80", &["weight = 10", "state = \"drain\""])
            .backend("10.0.0.13:80", &["weight = 3"])
            .config()
    }

    fn key(n: u8) -> BackendKey {
        BackendKey::new(SERVICE, std::net::SocketAddr::from(([10, 0, 0, 10 + n], 80)))
    }

    /// The agents' reports and the API's states.
    #[derive(Default)]
    struct Sources {
        agent: AgentReports,
        states: BTreeMap<BackendKey, AdminState>,
    }

    /// Under the check `config()` configures.
    fn said(reg: &mut Sources, n: u8, line: &str) -> bool {
        reg.agent.entry(key(n)).or_default().merge_under(&parse_agent_line(line), &lb_config::HealthCheck::default())
    }

    fn overlaid(cfg: &Config, reg: &Sources) -> DesiredService {
        let mut s = Desired::from_config(cfg).services.remove(0);
        apply(&mut s, cfg, &reg.agent, &reg.states);
        s
    }

    /// (weight, state) of each backend after the overlay.
    fn backends(cfg: &Config, reg: &Sources) -> Vec<(u32, AdminState)> {
        overlaid(cfg, reg).backends.iter().map(|b| (b.weight, b.state)).collect()
    }

    #[test]
    fn agents_drain_maint_and_scale_their_backends_until_they_say_otherwise() {
        let cfg = config();
        let mut reg = Sources::default();
        let untouched = backends(&cfg, &reg);
        assert_eq!(untouched, [(10, AdminState::Ready), (10, AdminState::Drain), (3, AdminState::Ready)]);
        assert!(said(&mut reg, 1, "up 50%"));
        assert!(!said(&mut reg, 2, "ready"), "ready on nothing changes nothing");
        assert!(said(&mut reg, 3, "drain 10%"));
        assert_eq!(
            backends(&cfg, &reg),
            [(5, AdminState::Ready), (10, AdminState::Drain), (1, AdminState::Drain)],
            "ready does not undo the config's drain; a small share keeps weight 1"
        );
        assert!(!said(&mut reg, 1, "up"), "words not said leave the report");
        assert!(said(&mut reg, 1, "maint"));
        assert_eq!(backends(&cfg, &reg)[0], (5, AdminState::Maint));
        assert!(said(&mut reg, 1, "ready 100%"));
        assert_eq!(backends(&cfg, &reg)[0], (10, AdminState::Ready), "ready and 100% end both");
        assert!(said(&mut reg, 1, "0%"));
        let zero = overlaid(&cfg, &reg).backends[0].clone();
        assert!(zero.weight == 0 && !zero.in_rotation() && zero.keeps_flows(), "0% behaves as drain");
    }

    #[test]
    fn the_api_state_wins_over_the_agent() {
        let cfg = config();
        let mut reg = Sources::default();
        said(&mut reg, 1, "maint 50%");
        reg.states.insert(key(1), AdminState::Ready);
        assert_eq!(backends(&cfg, &reg)[0], (5, AdminState::Ready), "the API's ready holds; the share still applies");
        reg.states.remove(&key(1));
        assert_eq!(backends(&cfg, &reg)[0], (5, AdminState::Maint));
    }

    #[test]
    fn shares_scale_without_overflow() {
        assert_eq!(scaled(u32::MAX, 99), (u64::from(u32::MAX) * 99 / 100) as u32);
        assert_eq!((scaled(7, 0), scaled(0, 50), scaled(1, 1), scaled(200, 150)), (0, 0, 1, 200));
    }
}

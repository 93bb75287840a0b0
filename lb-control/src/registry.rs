//! Registrations from agents: a backend with a lease that heartbeats renew and that runs
//! out if they stop. Registrations and admin states set through the API are kept in the
//! state file, so a restarted daemon still knows them; a loaded lease starts afresh, which
//! gives agents one TTL to find the new daemon.
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::registration_guard::RegistrationGuard;
use crate::state_file::{self, SavedBackend, SavedEjection, SavedRegistration, SavedState, SavedWeight, StateFile};
use lb_config::{AdminState, Config, Forwarding, MAX_BACKENDS};

pub use lb_config::desired::BackendKey;

/// Why a registration does not fit the config: the register call refuses it, and a reload
/// (or a start) drops one that stopped fitting.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Misfit {
    #[error("no service named {0}")]
    NoService(String),
    #[error("{0}")]
    Mismatch(String),
    /// The address is one registrations may not name (see `registration_guard`).
    #[error("{0}")]
    Refused(String),
    /// The data path has no room left for another backend.
    #[error("{0}")]
    OverCapacity(String),
}

/// May a backend at `address` serve the service with this VIP and forwarding? The rules
/// the config applies to its own backends: the VIP's address family (the data path
/// translates within one family), and with `dsr` the VIP's port (the backend answers on
/// the VIP it holds on loopback).
pub fn fits_service(name: &str, vip: SocketAddr, forwarding: Forwarding, address: SocketAddr) -> Result<(), Misfit> {
    if forwarding.family_misfit(vip, address).is_some() {
        return Err(Misfit::Mismatch(format!("{address} is not of the address family of {name}'s VIP {vip}")));
    }
    if forwarding.is_direct_return() && address.port() != vip.port() {
        return Err(Misfit::Mismatch(format!(
            "{} backends hold the VIP on loopback, so the port must be the VIP's ({})",
            forwarding.as_str(),
            vip.port()
        )));
    }
    Ok(())
}

/// [`fits_service`] for the service `key` names in `cfg`, which must exist.
pub fn fits(cfg: &Config, key: &BackendKey) -> Result<(), Misfit> {
    let s =
        cfg.services.iter().find(|s| s.name == key.service).ok_or_else(|| Misfit::NoService(key.service.clone()))?;
    fits_service(&s.name, s.vip, s.forwarding, key.address)
}

/// [`fits`], then the address rules of `guard`.
pub fn admissible(cfg: &Config, guard: &RegistrationGuard, key: &BackendKey) -> Result<(), Misfit> {
    fits(cfg, key)?;
    guard.check(&key.service, key.address).map_err(Misfit::Refused)
}

/// Why `key` finds no room: the cap, and what counts towards it.
pub fn over_capacity(key: &BackendKey) -> String {
    format!(
        "cannot add backend {} to service {}: the data path holds at most {MAX_BACKENDS} backends, configured, \
         registered and draining after removal counted together, and all are in use",
        key.address, key.service
    )
}

#[derive(Clone, Debug, PartialEq)]
pub struct Registration {
    pub weight: u32,
    pub ttl: Duration,
    pub expires_at: Instant,
}

#[derive(Default, Debug)]
pub struct Registry {
    pub registrations: BTreeMap<BackendKey, Registration>,
    /// Admin states set through the API; they win over the config's `state`.
    pub states: BTreeMap<BackendKey, AdminState>,
    /// Weights set through the API (`lb backend set-weight`); they win over the config's
    /// and the registration's weight until cleared.
    pub weights: BTreeMap<BackendKey, u32>,
    /// What the daemon knew of its backends' health when it last wrote the state file
    /// (kept there so that a restart does not put a failing backend back into rotation).
    pub remembered: Remembered,
    /// What backends' agents (`type = "agent"` checks) ask for; not saved: the agents
    /// say it again at the next check.
    pub agent: crate::agent_overlay::AgentReports,
    path: Option<PathBuf>,
}

/// Health and ejections as last saved: backends that were down, and open or half-open
/// circuit breakers with the wall-clock end of their ejection.
#[derive(Default, Debug, Clone, PartialEq)]
pub struct Remembered {
    pub down: Vec<SavedBackend>,
    pub ejections: Vec<SavedEjection>,
}

impl Registry {
    /// Load the state file (a missing file is an empty registry; one that does not parse
    /// is moved aside with a loud warning, see `state_file`).
    pub fn load(path: &Path, now: Instant) -> Result<Self> {
        let mut r = Registry { path: Some(path.to_path_buf()), ..Default::default() };
        let file = state_file::read(path)?;
        for s in file.registrations {
            let ttl = Duration::from_millis(s.ttl_ms);
            r.registrations.insert(
                BackendKey::new(s.service, s.address),
                Registration { weight: s.weight, ttl, expires_at: now + ttl },
            );
        }
        for s in file.states {
            r.states.insert(BackendKey::new(s.service, s.address), s.state);
        }
        for w in file.weights {
            r.weights.insert(BackendKey::new(w.service, w.address), w.weight);
        }
        r.remembered = Remembered { down: file.down, ejections: file.ejections };
        Ok(r)
    }

    /// Write the state file durably (see `state_file`).
    pub fn save(&self) -> Result<()> {
        let Some(path) = &self.path else { return Ok(()) };
        let file = StateFile {
            registrations: self
                .registrations
                .iter()
                .map(|(BackendKey { service, address }, r)| SavedRegistration {
                    service: service.clone(),
                    address: *address,
                    weight: r.weight,
                    ttl_ms: r.ttl.as_millis() as u64,
                })
                .collect(),
            states: self
                .states
                .iter()
                .map(|(BackendKey { service, address }, s)| SavedState {
                    service: service.clone(),
                    address: *address,
                    state: *s,
                })
                .collect(),
            weights: self
                .weights
                .iter()
                .map(|(BackendKey { service, address }, w)| SavedWeight {
                    service: service.clone(),
                    address: *address,
                    weight: *w,
                })
                .collect(),
            down: self.remembered.down.clone(),
            ejections: self.remembered.ejections.clone(),
        };
        state_file::write(path, &file)
    }

    /// Register or renew; true when the backend was not registered before.
    pub fn register(&mut self, key: BackendKey, weight: u32, ttl: Duration, now: Instant) -> bool {
        self.registrations.insert(key, Registration { weight, ttl, expires_at: now + ttl }).is_none()
    }

    pub fn heartbeat(&mut self, key: &BackendKey, now: Instant) -> bool {
        match self.registrations.get_mut(key) {
            Some(r) => {
                r.expires_at = now + r.ttl;
                true
            }
            None => false,
        }
    }

    pub fn remove(&mut self, key: &BackendKey) -> bool {
        self.registrations.remove(key).is_some()
    }

    /// Drop every registration that does not fit `cfg` (its service is gone, or no longer
    /// takes its address) or whose address `guard` refuses; returns them, with the reason,
    /// so that they can be logged, or put back if `cfg` is not applied after all.
    pub fn drop_misfits(&mut self, cfg: &Config, guard: &RegistrationGuard) -> Vec<(BackendKey, Registration, Misfit)> {
        let misfits: Vec<(BackendKey, Misfit)> = self
            .registrations
            .keys()
            .filter_map(|k| admissible(cfg, guard, k).err().map(|why| (k.clone(), why)))
            .collect();
        self.remove_all(misfits)
    }

    /// What a start leaves out of what the state file held: registrations that do not fit
    /// `cfg` or that `guard` refuses, and those past the backend cap (the config's backends
    /// come first, then registrations in key order). The start's tables and the controller
    /// that takes over both use this, so the data path never holds one of them.
    pub fn refused_at_start(&self, cfg: &Config, guard: &RegistrationGuard) -> BTreeMap<BackendKey, Misfit> {
        let mut refused = BTreeMap::new();
        let mut slots: BTreeSet<(String, SocketAddr)> =
            cfg.services.iter().flat_map(|s| s.backends.iter().map(|b| (s.name.clone(), b.address))).collect();
        for key in self.registrations.keys() {
            if let Err(why) = admissible(cfg, guard, key) {
                refused.insert(key.clone(), why);
            } else if slots.len() >= MAX_BACKENDS && !slots.contains(&(key.service.clone(), key.address)) {
                refused.insert(key.clone(), Misfit::OverCapacity(over_capacity(key)));
            } else {
                slots.insert((key.service.clone(), key.address));
            }
        }
        refused
    }

    /// Drop [`refused_at_start`](Self::refused_at_start)'s registrations.
    pub fn drop_refused_at_start(
        &mut self,
        cfg: &Config,
        guard: &RegistrationGuard,
    ) -> Vec<(BackendKey, Registration, Misfit)> {
        let refused = self.refused_at_start(cfg, guard);
        self.remove_all(refused.into_iter().collect())
    }

    fn remove_all(&mut self, keys: Vec<(BackendKey, Misfit)>) -> Vec<(BackendKey, Registration, Misfit)> {
        keys.into_iter().filter_map(|(k, why)| self.registrations.remove(&k).map(|r| (k, r, why))).collect()
    }

    /// Drop every lease that ran out; returns their keys.
    pub fn expire(&mut self, now: Instant) -> Vec<BackendKey> {
        let gone: Vec<BackendKey> =
            self.registrations.iter().filter(|(_, r)| r.expires_at <= now).map(|(k, _)| k.clone()).collect();
        for k in &gone {
            self.registrations.remove(k);
        }
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(a: &str) -> BackendKey {
        BackendKey::new("web", a.parse().unwrap())
    }

    #[test]
    fn leases_run_out_unless_heartbeats_renew_them() {
        let t0 = Instant::now();
        let mut r = Registry::default();
        assert!(r.register(key("10.0.0.1:80"), 1, Duration::from_secs(10), t0));
        assert!(!r.register(key("10.0.0.1:80"), 2, Duration::from_secs(10), t0), "renewal, not new");
        r.register(key("10.0.0.2:80"), 1, Duration::from_secs(10), t0);
        assert!(r.heartbeat(&key("10.0.0.1:80"), t0 + Duration::from_secs(8)));
        assert!(!r.heartbeat(&key("10.0.0.9:80"), t0), "unknown backend");
        assert_eq!(r.expire(t0 + Duration::from_secs(11)), vec![key("10.0.0.2:80")]);
        assert_eq!(r.expire(t0 + Duration::from_secs(19)), vec![key("10.0.0.1:80")]);
    }

    #[test]
    fn registrations_and_states_survive_a_restart_through_the_state_file() {
        let dir = std::env::temp_dir().join(format!("lb-registry-{}", std::process::id()));
        let path = dir.join("state.json");
        let t0 = Instant::now();
        let mut r = Registry::load(&path, t0).unwrap();
        r.register(key("[fd00::1]:80"), 3, Duration::from_secs(5), t0);
        r.states.insert(key("10.0.0.1:80"), AdminState::Maint);
        r.save().unwrap();
        let later = t0 + Duration::from_secs(60);
        let back = Registry::load(&path, later).unwrap();
        let reg = &back.registrations[&key("[fd00::1]:80")];
        assert_eq!((reg.weight, reg.ttl), (3, Duration::from_secs(5)));
        assert_eq!(reg.expires_at, later + Duration::from_secs(5), "a fresh lease after a restart");
        assert_eq!(back.states[&key("10.0.0.1:80")], AdminState::Maint);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn registrations_that_stop_fitting_the_config_are_dropped_with_their_reason() {
        let cfg = Config::from_str(
            "[[service]]\nname = \"web\"\nvip = \"10.0.0.100:80\"\nforwarding = \"dsr\"\n\
             [[service]]\nname = \"v6\"\nvip = \"[fd00::100]:80\"\n",
            "t.toml",
        )
        .unwrap();
        let t0 = Instant::now();
        let mut r = Registry::default();
        let ttl = Duration::from_secs(10);
        for (service, address) in [
            ("web", "10.0.0.1:80"),
            ("web", "10.0.0.2:8080"),
            ("web", "[fd00::1]:80"),
            ("v6", "[fd00::1]:8080"),
            ("v6", "10.0.0.1:80"),
            ("gone", "10.0.0.1:80"),
        ] {
            r.register(BackendKey::new(service, address.parse().unwrap()), 1, ttl, t0);
        }
        let dropped: Vec<(String, String)> = r
            .drop_misfits(&cfg, &RegistrationGuard::new(&cfg, []))
            .into_iter()
            .map(|(k, _, why)| (k.to_string(), why.to_string()))
            .collect();
        assert_eq!(
            dropped,
            [
                ("gone 10.0.0.1:80".to_string(), "no service named gone".to_string()),
                ("v6 10.0.0.1:80".into(), "10.0.0.1:80 is not of the address family of v6's VIP [fd00::100]:80".into()),
                (
                    "web 10.0.0.2:8080".into(),
                    "dsr backends hold the VIP on loopback, so the port must be the VIP's (80)".into()
                ),
                (
                    "web [fd00::1]:80".into(),
                    "[fd00::1]:80 is not of the address family of web's VIP 10.0.0.100:80".into()
                ),
            ]
        );
        let kept: Vec<String> = r.registrations.keys().map(ToString::to_string).collect();
        assert_eq!(kept, ["v6 [fd00::1]:8080", "web 10.0.0.1:80"]);
        assert!(r.drop_misfits(&cfg, &RegistrationGuard::new(&cfg, [])).is_empty(), "nothing left to drop");
    }

    #[test]
    fn a_start_refuses_persisted_registrations_the_guard_refuses_and_those_past_the_cap() {
        let configured: String = (0..MAX_BACKENDS - 2)
            .map(|i| format!("[[service.backend]]\naddress = \"10.1.{}.{}:80\"\n", i / 250, i % 250 + 1))
            .collect();
        let cfg =
            Config::from_str(&format!("[[service]]\nname = \"web\"\nvip = \"10.0.0.100:80\"\n{configured}"), "t.toml")
                .unwrap();
        let guard = RegistrationGuard::new(&cfg, ["10.0.0.10".parse().unwrap()]);
        let t0 = Instant::now();
        let mut r = Registry::default();
        let ttl = Duration::from_secs(10);
        for address in ["10.0.0.10:80", "10.0.0.100:80", "10.1.0.1:80", "10.2.0.1:80", "10.2.0.2:80", "10.2.0.3:80"] {
            r.register(key(address), 1, ttl, t0);
        }
        let refused: Vec<(String, String)> = r
            .refused_at_start(&cfg, &guard)
            .into_iter()
            .map(|(k, why)| (k.address.to_string(), why.to_string()))
            .collect();
        let reasons: Vec<(&str, bool)> = refused
            .iter()
            .map(|(a, why)| {
                let cap = format!("at most {MAX_BACKENDS}");
                (a.as_str(), why.contains("own address") || why.contains("VIP") || why.contains(&cap))
            })
            .collect();
        assert_eq!(
            reasons,
            [("10.0.0.10:80", true), ("10.0.0.100:80", true), ("10.2.0.3:80", true)],
            "the LB's address, the VIP, and the third new backend past the cap (the configured one takes no room): {refused:?}"
        );
        let dropped = r.drop_refused_at_start(&cfg, &guard);
        assert_eq!(dropped.len(), 3);
        let kept: Vec<String> = r.registrations.keys().map(|k| k.address.to_string()).collect();
        assert_eq!(kept, ["10.1.0.1:80", "10.2.0.1:80", "10.2.0.2:80"]);
    }

    #[test]
    fn a_broken_state_file_is_moved_aside_and_the_registry_starts_empty() {
        let dir = std::env::temp_dir().join(format!("lb-registry-bad-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.json");
        std::fs::write(&path, "{not json").unwrap();
        let r = Registry::load(&path, Instant::now()).expect("a broken state file does not stop a start");
        assert!(r.registrations.is_empty() && r.states.is_empty());
        assert!(!path.exists(), "moved aside");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "kept, under another name");
        let _ = std::fs::remove_dir_all(dir);
    }
}

//! Merging the sources into the desired state. A backend is present while any source names
//! it: the config file or a live registration. The config wins on weight when both name a
//! backend, and a weight set through the API wins over both; an admin state set through the
//! API wins over the config's; health comes from
//! the checker. A registration that does not fit its service (see `registry::fits`) is
//! left out, so a state file older than the config cannot put one in.
use std::collections::{BTreeMap, HashMap};

use super::registry::{fits_service, BackendKey, Registry};
use lb_config::desired::{Circuit, Desired, DesiredBackend, DesiredService, Health, SOURCE_REGISTRATION};
use lb_config::Config;

pub fn desired(cfg: &Config, registry: &Registry, health: &HashMap<BackendKey, Health>) -> Desired {
    desired_without(cfg, registry, health, &BTreeMap::<BackendKey, ()>::new())
}

/// [`desired`], leaving out the registrations in `refused` (a start's: see
/// `Registry::refused_at_start`).
pub fn desired_without<V>(
    cfg: &Config,
    registry: &Registry,
    health: &HashMap<BackendKey, Health>,
    refused: &BTreeMap<BackendKey, V>,
) -> Desired {
    let mut desired = Desired::from_config(cfg);
    for s in &mut desired.services {
        add_registrations(s, registry, refused);
        for b in &mut s.backends {
            let key = BackendKey::new(&s.name, b.address);
            if let Some(state) = registry.states.get(&key) {
                b.state = *state;
            }
            if let Some(weight) = registry.weights.get(&key) {
                b.weight = *weight;
            }
            if let Some(h) = health.get(&key) {
                b.health = *h;
            }
        }
        crate::agent_overlay::apply(s, cfg, &registry.agent, &registry.states);
    }
    desired
}

/// Registered backends join the service; one the config names too keeps the config's
/// weight and gains the registration as a source.
fn add_registrations<V>(s: &mut DesiredService, registry: &Registry, refused: &BTreeMap<BackendKey, V>) {
    for (key, reg) in &registry.registrations {
        if key.service != s.name
            || refused.contains_key(key)
            || fits_service(&s.name, s.vip, s.forwarding, key.address).is_err()
        {
            continue;
        }
        match s.backends.iter_mut().find(|b| b.address == key.address) {
            Some(b) => b.sources |= SOURCE_REGISTRATION,
            None => s.backends.push(DesiredBackend {
                address: key.address,
                weight: reg.weight,
                state: lb_config::AdminState::Ready,
                health: Health::Unknown,
                sources: SOURCE_REGISTRATION,
                circuit: Circuit::Closed,
                ramp: None,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_config::WebService;
    use lb_config::desired::SOURCE_CONFIG;
    use lb_config::AdminState;
    use std::time::{Duration, Instant};

    /// Two configured backends: 10.0.0.11 of weight 5 and 10.0.0.12.
    fn configured(service: WebService) -> Config {
        service.backend("10.0.0.11:80", &["weight = 5"]).backend("10.0.0.12:80", &[]).config()
    }

    #[test]
    fn a_backend_is_there_while_any_source_names_it() {
        let cfg = configured(WebService::new());
        let mut reg = Registry::default();
        let now = Instant::now();
        reg.register(BackendKey::new("web", "10.0.0.11:80".parse().unwrap()), 1, Duration::from_secs(10), now);
        reg.register(BackendKey::new("web", "10.0.0.13:80".parse().unwrap()), 2, Duration::from_secs(10), now);
        reg.register(BackendKey::new("other", "10.0.0.14:80".parse().unwrap()), 2, Duration::from_secs(10), now);
        reg.states.insert(BackendKey::new("web", "10.0.0.12:80".parse().unwrap()), AdminState::Drain);
        reg.weights.insert(BackendKey::new("web", "10.0.0.12:80".parse().unwrap()), 7);
        reg.weights.insert(BackendKey::new("web", "10.0.0.13:80".parse().unwrap()), 0);
        let mut health = HashMap::new();
        health.insert(BackendKey::new("web", "10.0.0.13:80".parse().unwrap()), Health::Down);
        let d = desired(&cfg, &reg, &health);
        let b = &d.services[0].backends;
        assert_eq!(b.len(), 3);
        assert_eq!((b[0].weight, b[0].sources), (5, SOURCE_CONFIG | SOURCE_REGISTRATION), "config wins on weight");
        assert_eq!((b[1].state, b[1].weight), (AdminState::Drain, 7), "the API's state and weight win");
        assert_eq!(
            (b[2].weight, b[2].sources, b[2].health),
            (0, SOURCE_REGISTRATION, Health::Down),
            "over a registration's too"
        );
        assert!(!b[2].in_rotation());
    }

    #[test]
    fn a_registration_that_does_not_fit_its_service_is_left_out() {
        let cfg = configured(WebService::new().setting("forwarding = \"dsr\""));
        let mut reg = Registry::default();
        let now = Instant::now();
        for address in ["10.0.0.13:80", "10.0.0.14:8080", "[fd00::14]:80"] {
            reg.register(BackendKey::new("web", address.parse().unwrap()), 1, Duration::from_secs(10), now);
        }
        let d = desired(&cfg, &reg, &HashMap::new());
        let addresses: Vec<String> = d.services[0].backends.iter().map(|b| b.address.to_string()).collect();
        assert_eq!(addresses, ["10.0.0.11:80", "10.0.0.12:80", "10.0.0.13:80"], "the dsr port and the family hold");
    }
}

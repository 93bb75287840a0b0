//! Merging the sources into the desired state. A backend is present while any source names
//! it: the config file or a live registration. The config wins on weight when both name a
//! backend; an admin state set through the API wins over the config's; health comes from
//! the checker.
use std::collections::HashMap;

use super::registry::{BackendKey, Registry};
use crate::config::Config;
use crate::state::{Circuit, Desired, DesiredBackend, DesiredService, Health, SOURCE_CONFIG, SOURCE_REGISTRATION};

pub fn desired(cfg: &Config, registry: &Registry, health: &HashMap<BackendKey, Health>) -> Desired {
    let services = cfg
        .services
        .iter()
        .map(|s| {
            let mut backends: Vec<DesiredBackend> = s
                .backends
                .iter()
                .map(|b| DesiredBackend { address: b.address, weight: b.weight, state: b.state, health: Health::Unknown, sources: SOURCE_CONFIG, circuit: Circuit::Closed })
                .collect();
            for ((service, address), reg) in &registry.registrations {
                if service != &s.name {
                    continue;
                }
                match backends.iter_mut().find(|b| b.address == *address) {
                    Some(b) => b.sources |= SOURCE_REGISTRATION,
                    None => backends.push(DesiredBackend {
                        address: *address,
                        weight: reg.weight,
                        state: crate::config::AdminState::Ready,
                        health: Health::Unknown,
                        sources: SOURCE_REGISTRATION,
                        circuit: Circuit::Closed,
                    }),
                }
            }
            for b in &mut backends {
                let key = (s.name.clone(), b.address);
                if let Some(state) = registry.states.get(&key) {
                    b.state = *state;
                }
                if let Some(h) = health.get(&key) {
                    b.health = *h;
                }
            }
            DesiredService {
                name: s.name.clone(),
                vip: s.vip,
                protocol: s.protocol,
                algorithm: s.algorithm,
                forwarding: s.forwarding,
                rate_limit: s.rate_limit,
                backends,
            }
        })
        .collect();
    Desired { services }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AdminState;
    use std::time::{Duration, Instant};

    const CFG: &str = r#"
[[service]]
name = "web"
vip = "10.0.0.100:80"
[[service.backend]]
address = "10.0.0.11:80"
weight = 5
[[service.backend]]
address = "10.0.0.12:80"
"#;

    #[test]
    fn a_backend_is_there_while_any_source_names_it() {
        let cfg = Config::from_str(CFG, "t.toml").unwrap();
        let mut reg = Registry::default();
        let now = Instant::now();
        reg.register(("web".into(), "10.0.0.11:80".parse().unwrap()), 1, Duration::from_secs(10), now);
        reg.register(("web".into(), "10.0.0.13:80".parse().unwrap()), 2, Duration::from_secs(10), now);
        reg.register(("other".into(), "10.0.0.14:80".parse().unwrap()), 2, Duration::from_secs(10), now);
        reg.states.insert(("web".into(), "10.0.0.12:80".parse().unwrap()), AdminState::Drain);
        let mut health = HashMap::new();
        health.insert(("web".into(), "10.0.0.13:80".parse().unwrap()), Health::Down);
        let d = desired(&cfg, &reg, &health);
        let b = &d.services[0].backends;
        assert_eq!(b.len(), 3);
        assert_eq!((b[0].weight, b[0].sources), (5, SOURCE_CONFIG | SOURCE_REGISTRATION), "config wins on weight");
        assert_eq!(b[1].state, AdminState::Drain, "the API's state wins");
        assert_eq!((b[2].weight, b[2].sources, b[2].health), (2, SOURCE_REGISTRATION, Health::Down));
        assert!(!b[2].in_rotation());
    }
}

//! Random sequences of changes to a desired state, shared by the host property test
//! (on the model of the maps) and the packet layer's run of the same sequences on the real
//! maps: a `Step` changes the `World` (services renamed, VIPs swapped and moved across
//! families and protocols, services and backends added and removed up to the caps,
//! algorithms, forwarding, rate limits, weights, states, health, circuits, neighbours,
//! registrations, settings) or restarts the daemon, and may ask for a failed write first.
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestRng, TestRunner};

use super::*;
use lb_config::desired::{Circuit, Health, SOURCE_CONFIG, SOURCE_REGISTRATION, SOURCE_RETIRING};
use lb_config::{AdminState, Algorithm, Forwarding, Protocol};

/// The services the model and a default load hold tables for (`max_services` by default).
const MAX_SERVICES: usize = lb_common::consts::DEFAULT_MAX_SERVICES as usize;
const MAX_BACKENDS: usize = lb_common::consts::MAX_BACKENDS as usize;
const PORTS: [u16; 4] = [80, 81, 443, 53];

#[derive(Clone, Debug)]
pub enum Change {
    Add { count: u8, v6: bool, udp: bool, backends: u8 },
    Remove(Index),
    Rename(Index),
    SwapNames(Index, Index),
    SwapVips(Index, Index),
    MoveVip(Index, bool),
    Protocol(Index),
    Algorithm(Index, Index),
    Forwarding(Index),
    RateLimit(Index, u32),
    AddBackends(Index, u8, bool),
    RemoveBackends(Index, u8),
    Backend { service: Index, backend: Index, weight: u8, state: Index, health: Index, circuit: Index, source: u8 },
    Health(Index, Index),
    Neighbour(Index, Index),
    OwnAddress(Index),
    Settings(u8),
    FillServices,
    FillBackends,
    ReplaceAll(u8),
    RenameAll,
    Restart,
}

#[derive(Clone, Debug)]
pub struct Step {
    pub change: Change,
    /// Make this step's write fail at this share (per mille) of its writes first.
    pub fail: Option<u16>,
}

fn change() -> impl Strategy<Value = Change> {
    let i = any::<Index>;
    prop_oneof![
        6 => (1..4u8, any::<bool>(), any::<bool>(), 0..6u8)
            .prop_map(|(count, v6, udp, backends)| Change::Add { count, v6, udp, backends }),
        3 => i().prop_map(Change::Remove),
        3 => i().prop_map(Change::Rename),
        2 => (i(), i()).prop_map(|(a, b)| Change::SwapNames(a, b)),
        3 => (i(), i()).prop_map(|(a, b)| Change::SwapVips(a, b)),
        2 => (i(), any::<bool>()).prop_map(|(s, v6)| Change::MoveVip(s, v6)),
        2 => i().prop_map(Change::Protocol),
        2 => (i(), i()).prop_map(|(s, a)| Change::Algorithm(s, a)),
        2 => i().prop_map(Change::Forwarding),
        1 => (i(), 0..3u32).prop_map(|(s, r)| Change::RateLimit(s, r)),
        4 => (i(), 1..6u8, any::<bool>()).prop_map(|(s, n, r)| Change::AddBackends(s, n, r)),
        3 => (i(), 1..4u8).prop_map(|(s, n)| Change::RemoveBackends(s, n)),
        5 => (i(), i(), 0..8u8, i(), i(), i(), 0..4u8).prop_map(|(service, backend, weight, state, health, circuit, source)| {
            Change::Backend { service, backend, weight, state, health, circuit, source }
        }),
        2 => (i(), i()).prop_map(|(s, h)| Change::Health(s, h)),
        2 => (i(), i()).prop_map(|(s, b)| Change::Neighbour(s, b)),
        1 => i().prop_map(Change::OwnAddress),
        1 => any::<u8>().prop_map(Change::Settings),
        1 => Just(Change::FillServices),
        1 => Just(Change::FillBackends),
        1 => (1..=128u8).prop_map(Change::ReplaceAll),
        1 => Just(Change::RenameAll),
        2 => Just(Change::Restart),
    ]
}

pub fn step() -> impl Strategy<Value = Step> {
    (change(), prop::option::weighted(0.12, 0..1000u16)).prop_map(|(change, fail)| Step { change, fail })
}

/// Fresh names and addresses for one sequence.
#[derive(Default)]
pub struct Fresh {
    names: u32,
    vips: u32,
    backends: u32,
}

impl Fresh {
    fn name(&mut self) -> String {
        self.names += 1;
        format!("s{}", self.names)
    }

    /// A VIP (address, port, protocol) no service has: addresses from a small pool, so that
    /// VIPs share addresses.
    fn vip(&mut self, w: &World, v6: bool, protocol: Protocol) -> Option<std::net::SocketAddr> {
        for _ in 0..64 {
            self.vips += 1;
            let vip = vip_address(self.vips % 48, v6, PORTS[(self.vips / 48) as usize % PORTS.len()]);
            if !w.desired.services.iter().any(|s| s.vip == vip && s.protocol == protocol) {
                return Some(vip);
            }
        }
        None
    }

    fn backend(&mut self, v6: bool, port: u16) -> std::net::SocketAddr {
        self.backends += 1;
        backend_address(self.backends % 9000, v6, port)
    }
}

fn pick<'a, T>(list: &'a mut [T], i: &Index) -> Option<&'a mut T> {
    if list.is_empty() {
        None
    } else {
        let n = i.index(list.len());
        list.get_mut(n)
    }
}

/// Add `n` backends to service `s` (dsr-valid: on the VIP's port, of its family).
fn add_backends(w: &mut World, fresh: &mut Fresh, s: usize, n: usize, sources: u8) {
    for _ in 0..n {
        if w.backends() >= MAX_BACKENDS {
            return;
        }
        let vip = w.desired.services[s].vip;
        let address = fresh.backend(vip.is_ipv6(), vip.port());
        let list = &mut w.desired.services[s].backends;
        if !list.iter().any(|b| b.address == address) {
            list.push(lb_config::desired::DesiredBackend { sources, ..backend(address) });
        }
    }
}

fn add_service(w: &mut World, fresh: &mut Fresh, v6: bool, protocol: Protocol, backends: usize) -> bool {
    if w.desired.services.len() >= MAX_SERVICES {
        return false;
    }
    let Some(vip) = fresh.vip(w, v6, protocol) else { return false };
    let name = fresh.name();
    w.desired.services.push(service(&name, vip, protocol, Vec::new()));
    let s = w.desired.services.len() - 1;
    add_backends(w, fresh, s, backends, SOURCE_CONFIG);
    true
}

/// Give service `s` a new VIP, keeping its backends' addresses (moved to the VIP's port)
/// unless the family changes.
fn set_vip(w: &mut World, fresh: &mut Fresh, s: usize, vip: std::net::SocketAddr) {
    let same_family = w.desired.services[s].vip.is_ipv6() == vip.is_ipv6();
    let old: Vec<_> = std::mem::take(&mut w.desired.services[s].backends);
    w.desired.services[s].vip = vip;
    if same_family {
        for mut b in old {
            b.address.set_port(vip.port());
            if !w.desired.services[s].backends.iter().any(|o| o.address == b.address) {
                w.desired.services[s].backends.push(b);
            }
        }
    } else {
        add_backends(w, fresh, s, old.len(), SOURCE_CONFIG);
    }
}

/// What `apply` leaves for the caller to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Then {
    Reconcile,
    /// Restart the daemon (it adopts the maps), then reconcile.
    Restart,
}

/// Change `w` as `change` says.
pub fn apply(w: &mut World, fresh: &mut Fresh, change: &Change) -> Then {
    let n = w.desired.services.len();
    let idx = |i: &Index| if n == 0 { None } else { Some(i.index(n)) };
    match change {
        Change::Add { count, v6, udp, backends } => {
            let protocol = if *udp { Protocol::Udp } else { Protocol::Tcp };
            for _ in 0..*count {
                add_service(w, fresh, *v6, protocol, *backends as usize);
            }
        }
        Change::Remove(i) => {
            if let Some(s) = idx(i) {
                w.desired.services.remove(s);
            }
        }
        Change::Rename(i) => {
            if let Some(s) = idx(i) {
                w.desired.services[s].name = fresh.name();
            }
        }
        Change::SwapNames(a, b) => {
            if let (Some(a), Some(b)) = (idx(a), idx(b)) {
                let name = w.desired.services[a].name.clone();
                w.desired.services[a].name = std::mem::replace(&mut w.desired.services[b].name, name);
            }
        }
        Change::SwapVips(a, b) => {
            if let (Some(a), Some(b)) = (idx(a), idx(b)) {
                let (va, vb) = (w.desired.services[a].vip, w.desired.services[b].vip);
                let (pa, pb) = (w.desired.services[a].protocol, w.desired.services[b].protocol);
                // Swap VIPs and protocols together, so the keys stay unique.
                w.desired.services[a].protocol = pb;
                w.desired.services[b].protocol = pa;
                set_vip(w, fresh, a, vb);
                set_vip(w, fresh, b, va);
            }
        }
        Change::MoveVip(i, v6) => {
            if let Some(s) = idx(i) {
                let protocol = w.desired.services[s].protocol;
                if let Some(vip) = fresh.vip(w, *v6, protocol) {
                    set_vip(w, fresh, s, vip);
                }
            }
        }
        Change::Protocol(i) => {
            if let Some(s) = idx(i) {
                let svc = &w.desired.services[s];
                let other = if svc.protocol == Protocol::Tcp { Protocol::Udp } else { Protocol::Tcp };
                if !w.desired.services.iter().any(|o| o.vip == svc.vip && o.protocol == other) {
                    w.desired.services[s].protocol = other;
                }
            }
        }
        Change::Algorithm(i, a) => {
            if let Some(s) = idx(i) {
                w.desired.services[s].algorithm = Algorithm::ALL[a.index(Algorithm::ALL.len())];
            }
        }
        Change::Forwarding(i) => {
            if let Some(s) = idx(i) {
                let f = &mut w.desired.services[s].forwarding;
                *f = if *f == Forwarding::Nat { Forwarding::Dsr } else { Forwarding::Nat };
            }
        }
        Change::RateLimit(i, r) => {
            if let Some(s) = idx(i) {
                let l = &mut w.desired.services[s].rate_limit;
                l.new_flows_per_second = r * 1000;
                l.burst = r * 100;
                l.per_source_new_flows_per_second = r * 10;
                l.per_source_burst = *r;
                // The source lists change with the limits: none, a deny list, or an allow
                // list with a deny inside it (`LB_ACL` rows written and retired by the writer).
                let prefixes = |list: &[&str]| list.iter().map(|c| c.parse().unwrap()).collect();
                w.desired.services[s].acl = match r {
                    0 => Default::default(),
                    1 => lb_config::SourceAcl { allow: vec![], deny: prefixes(&["192.0.2.0/24", "fd00:1::/32"]) },
                    _ => lb_config::SourceAcl { allow: prefixes(&["10.0.0.0/8"]), deny: prefixes(&["10.1.0.0/16"]) },
                };
            }
        }
        Change::AddBackends(i, count, registered) => {
            if let Some(s) = idx(i) {
                let sources = if *registered { SOURCE_REGISTRATION } else { SOURCE_CONFIG };
                add_backends(w, fresh, s, *count as usize, sources);
            }
        }
        Change::RemoveBackends(i, count) => {
            if let Some(s) = idx(i) {
                let list = &mut w.desired.services[s].backends;
                let keep = list.len().saturating_sub(*count as usize);
                list.truncate(keep);
            }
        }
        Change::Backend { service, backend, weight, state, health, circuit, source } => {
            if let Some(s) = idx(service) {
                if let Some(b) = pick(&mut w.desired.services[s].backends, backend) {
                    b.weight = [0, 1, 1, 1, 2, 3, 7, 100][*weight as usize % 8];
                    b.state = AdminState::ALL[state.index(AdminState::ALL.len())];
                    b.health = [Health::Unknown, Health::Up, Health::Down][health.index(3)];
                    b.circuit = [Circuit::Closed, Circuit::Open, Circuit::HalfOpen][circuit.index(3)];
                    b.sources =
                        [SOURCE_CONFIG, SOURCE_REGISTRATION, SOURCE_CONFIG | SOURCE_REGISTRATION, SOURCE_RETIRING]
                            [*source as usize % 4];
                    if b.sources == SOURCE_RETIRING {
                        b.state = AdminState::Drain;
                    }
                }
            }
        }
        Change::Health(i, h) => {
            if let Some(s) = idx(i) {
                let health = [Health::Unknown, Health::Up, Health::Down][h.index(3)];
                w.desired.services[s].backends.iter_mut().for_each(|b| b.health = health);
            }
        }
        Change::Neighbour(i, b) => {
            if let Some(s) = idx(i) {
                if let Some(b) = pick(&mut w.desired.services[s].backends, b) {
                    let ip = b.address.ip();
                    if !w.unresolved.remove(&ip) {
                        w.unresolved.insert(ip);
                    }
                }
            }
        }
        Change::OwnAddress(i) => {
            if let Some(s) = idx(i) {
                let ip = w.desired.services[s].vip.ip();
                if !w.own.remove(&ip) {
                    w.own.insert(ip);
                }
            }
        }
        Change::Settings(v) => w.global = settings(*v),
        Change::FillServices => {
            let mut v6 = false;
            while w.desired.services.len() < MAX_SERVICES {
                v6 = !v6;
                let backends = if w.backends() + 2 <= MAX_BACKENDS { 2 } else { 0 };
                if !add_service(w, fresh, v6, Protocol::Tcp, backends)
                    && !add_service(w, fresh, v6, Protocol::Udp, backends)
                {
                    break;
                }
            }
        }
        Change::FillBackends => {
            if w.desired.services.is_empty() {
                add_service(w, fresh, false, Protocol::Tcp, 0);
            }
            let mut s = 0;
            while w.backends() < MAX_BACKENDS {
                let before = w.backends();
                add_backends(w, fresh, s % w.desired.services.len(), 16, SOURCE_CONFIG);
                s += 1;
                if w.backends() == before && s > w.desired.services.len() {
                    break;
                }
            }
        }
        Change::ReplaceAll(count) => {
            let old = std::mem::take(&mut w.desired.services);
            let per = (MAX_BACKENDS / *count as usize).min(3);
            for k in 0..*count as usize {
                let udp = old.get(k).is_some_and(|s| s.protocol == Protocol::Udp);
                add_service(w, fresh, k % 3 == 1, if udp { Protocol::Udp } else { Protocol::Tcp }, per);
            }
        }
        Change::RenameAll => {
            for s in 0..n {
                w.desired.services[s].name = fresh.name();
            }
        }
        Change::Restart => return Then::Restart,
    }
    Then::Reconcile
}

/// A runner for `cases` sequences: by default a fixed set (the same on every run, so a red
/// run is reproducible); with `PROPTEST_CASES=N`, N fresh random ones.
pub fn runner(default_cases: u32) -> (TestRunner, u32) {
    let explore: Option<u32> = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok());
    let cases = explore.unwrap_or(default_cases);
    let config = Config { cases, failure_persistence: None, max_shrink_iters: 256, ..Config::default() };
    let runner = match explore {
        Some(_) => TestRunner::new(config),
        None => {
            let rng = TestRng::deterministic_rng(config.rng_algorithm);
            TestRunner::new_with_rng(config, rng)
        }
    };
    (runner, cases)
}

/// Sequences of 1 to 40 steps.
pub fn sequence() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(step(), 1..=40)
}

//! The reconcile invariant as a model-based property test (host, no root): random
//! sequences of desired states drive one long-lived daemon's writer against an in-memory
//! model of the maps, and after every step its maps must be those a fresh start on that
//! step's state writes (compared by VIP, service name and backend address; ids and table
//! generations may differ), its mirror must be the maps, and no write on the way may break
//! a promise the model watches (see `testkit::model`). The steps rename services, swap
//! and move VIPs across families and protocols, add and remove services and backends up
//! to the caps (128 services, 4096 backends), change algorithms, forwarding, rate limits,
//! weights, states, health, circuits and neighbours, register backends, restart the
//! daemon (adoption), and make some writes fail halfway, after which the maps must be
//! exactly as before and the next try must go through.
//!
//! `PROPTEST_CASES` sets the number of sequences (default 16, up to 40 steps each); the
//! test prints how many steps it ran.
mod support;

use std::sync::atomic::{AtomicUsize, Ordering};

use lb_config::desired::{Circuit, Health, SOURCE_CONFIG, SOURCE_REGISTRATION, SOURCE_RETIRING};
use lb_config::{AdminState, Algorithm, Forwarding, Protocol};
use lb_xdp::store::MapStore;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestRunner};
use support::*;

const MAX_SERVICES: usize = lb_common::consts::MAX_SERVICES as usize;
const MAX_BACKENDS: usize = lb_common::consts::MAX_BACKENDS as usize;
const PORTS: [u16; 4] = [80, 81, 443, 53];

#[derive(Clone, Debug)]
enum Change {
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
struct Step {
    change: Change,
    /// Make this step's write fail at this share (per mille) of its writes first.
    fail: Option<u16>,
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

fn step() -> impl Strategy<Value = Step> {
    (change(), prop::option::weighted(0.12, 0..1000u16)).prop_map(|(change, fail)| Step { change, fail })
}

/// Fresh names and addresses for one sequence.
#[derive(Default)]
struct Fresh {
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

fn apply(w: &mut World, fresh: &mut Fresh, change: &Change, daemon: &mut Daemon) {
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
        Change::Restart => daemon.restart(),
    }
}

static STEPS: AtomicUsize = AtomicUsize::new(0);
static FAILED_WRITES: AtomicUsize = AtomicUsize::new(0);

/// Make the next write fail at `per_mille` of the writes it needs: it must fail, say so,
/// and leave the maps exactly as they were.
fn fail_once(d: &mut Daemon, w: &World, per_mille: u16, what: &str) {
    let mut probe = Daemon { writer: d.writer.clone(), ids: d.ids.clone() };
    let start = probe.writer.maps.writes;
    probe.reconcile(w).unwrap_or_else(|e| panic!("{what}: the probe failed: {e:#}"));
    let needed = probe.writer.maps.writes - start;
    if needed == 0 {
        return;
    }
    let before = exact(&d.writer.maps);
    let vips_before = d.writer.maps.vips().unwrap().len();
    d.writer.maps.fail_at.insert(d.writer.maps.writes + needed * per_mille as usize / 1000);
    let e = d.reconcile(w).expect_err("a write with a failure injected went through");
    assert!(format!("{e:#}").contains("the data path is unchanged"), "{what}: {e:#}");
    let diffs = exact(&d.writer.maps).differences(&before);
    assert!(diffs.is_empty(), "{what}: the failed write left the maps changed:\n{}", diffs.join("\n"));
    assert_eq!(d.writer.maps.vips().unwrap().len(), vips_before);
    d.writer.check_mirror().unwrap_or_else(|e| panic!("{what}: after the rollback the mirror is not the maps: {e:#}"));
    assert!(d.writer.maps.violations.is_empty(), "{what}: {:?}", d.writer.maps.violations);
    FAILED_WRITES.fetch_add(1, Ordering::Relaxed);
}

fn run(steps: &[Step]) {
    let mut w = World::default();
    let mut fresh = Fresh::default();
    let mut d = Daemon::default();
    for (n, step) in steps.iter().enumerate() {
        apply(&mut w, &mut fresh, &step.change, &mut d);
        let what =
            format!("step {n} ({:?}; {} services, {} backends)", step.change, w.desired.services.len(), w.backends());
        if let Some(per_mille) = step.fail {
            fail_once(&mut d, &w, per_mille, &what);
        }
        d.reconcile(&w).unwrap_or_else(|e| panic!("{what}: the reconcile failed: {e:#}"));
        assert_like_fresh(&d, &w, &what);
        STEPS.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn reconciled_maps_equal_a_fresh_start_after_every_step() {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(16);
    let config = Config { cases, failure_persistence: None, max_shrink_iters: 256, ..Config::default() };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&prop::collection::vec(step(), 1..=40), |steps| {
        run(&steps);
        Ok(())
    });
    println!(
        "reconcile property: {cases} sequences, {} steps checked against a fresh start, {} of them after a failed \
         and rolled back write",
        STEPS.load(Ordering::Relaxed),
        FAILED_WRITES.load(Ordering::Relaxed)
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}

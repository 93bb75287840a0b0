//! The writer's own promises on the in-memory model of the maps (host, no root): a plan
//! that contradicts itself is refused before anything is written, and a write touches only
//! the rows and table slots that change.
use lb_common::maps::GlobalConfig;
use lb_config::desired::{Circuit, Desired, DesiredBackend, DesiredService, Health, SOURCE_CONFIG};
use lb_config::{AdminState, Algorithm, Forwarding, Protocol};
use lb_xdp::plan::{plan, HostFacts, Ids, Plan};
use lb_xdp::store::MapStore;
use lb_xdp::testkit::model::ModelMaps;
use lb_xdp::writer::Writer;

fn desired(services: &[(&str, &str, &[&str])]) -> (Desired, HostFacts) {
    let mut facts = HostFacts::default();
    let services = services
        .iter()
        .map(|(name, vip, backends)| DesiredService {
            name: name.to_string(),
            vip: vip.parse().unwrap(),
            protocol: Protocol::Tcp,
            algorithm: Algorithm::Maglev,
            forwarding: Forwarding::Nat,
            rate_limit: Default::default(),
            acl: Default::default(),
            proxy_mode: Default::default(),
            pool: Default::default(),
            max_connections: 0,
            connection_caps: Default::default(),
            traffic: Default::default(),
            proxy_options: Default::default(),
            backends: backends
                .iter()
                .map(|b| {
                    let address: std::net::SocketAddr = b.parse().unwrap();
                    facts.neighbours.insert(address.ip(), [2, 0, 0, 0, 0, 1]);
                    DesiredBackend {
                        address,
                        weight: 1,
                        state: AdminState::Ready,
                        health: Health::Unknown,
                        sources: SOURCE_CONFIG,
                        circuit: Circuit::Closed,
                        ramp: None,
                    }
                })
                .collect(),
        })
        .collect();
    (Desired { services, settings: Default::default() }, facts)
}

fn two() -> Plan {
    let (d, facts) =
        desired(&[("web", "10.0.0.1:80", &["10.1.0.1:80", "10.1.0.2:80"]), ("api", "10.0.0.2:80", &["10.1.0.3:80"])]);
    plan(&d, GlobalConfig { configured: 1, ..Default::default() }, &facts, &mut Ids::default()).unwrap()
}

#[test]
fn an_inconsistent_plan_is_refused_before_anything_is_written() {
    let good = two();
    let mut foreign = good.clone();
    let api_backend = foreign.backends.iter().find(|b| b.info.service_id == foreign.services[1].id).unwrap().id;
    foreign.services[0].table[7] = api_backend;
    let mut twice = good.clone();
    twice.services[1].vip = twice.services[0].vip;
    let mut short = good.clone();
    short.services[0].table.pop();
    let mut orphan = good.clone();
    let mut stray = orphan.backends[0].clone();
    (stray.id, stray.info.service_id) = (50, 99);
    orphan.backends.push(stray);
    for (bad, why) in [
        (foreign, "not one of its backends"),
        (twice, "is given twice"),
        (short, "65536 slots"),
        (orphan, "which the plan does not have"),
    ] {
        let mut w = Writer::new(ModelMaps::new());
        let e = w.apply(&bad).expect_err(why);
        assert!(format!("{e:#}").contains(why), "{e:#}");
        assert!(format!("{e:#}").contains("nothing was written"), "{e:#}");
        assert_eq!(w.maps.writes, 0, "{why}: written anyway");
    }
}

#[test]
fn the_same_plan_again_writes_only_the_trials_and_a_change_only_its_rows() {
    let p = two();
    let mut w = Writer::new(ModelMaps::new());
    w.apply(&p).unwrap();
    let first = w.maps.writes;
    w.apply(&p).unwrap();
    assert_eq!(w.maps.writes - first, p.services.len(), "one trial re-armed per service, nothing else");
    // One backend drained: its row, then its service's ring and sequence into the other
    // generation, and the flip (plus the trials).
    let mut drained = p.clone();
    let id = drained.services[0].id;
    let gone = drained.backends[0].id;
    drained.backends[0].meta.state = 1;
    let other = drained.backends[1].id;
    for slot in drained.services[0].table.iter_mut().filter(|s| **s == gone) {
        *slot = other;
    }
    drained.services[0].sequence.retain(|&b| b != gone);
    drained.services[0].info.seq_len = drained.services[0].sequence.len() as u32;
    let before = w.maps.writes;
    w.apply(&drained).unwrap();
    assert_eq!(w.maps.writes - before, 1 + 2 + 1 + 2, "backend meta, ring + seq, flip, two trials");
    let live = w.maps.vips().unwrap().into_iter().find(|(_, i)| i.service_id == id).unwrap().1;
    assert_eq!(live.ring_gen, 1, "the other generation is live");
    w.check_mirror().unwrap();
}

#[test]
fn an_id_with_a_new_holder_counts_from_zero_and_one_kept_keeps_its_counts() {
    let p = two();
    let mut w = Writer::new(ModelMaps::new());
    w.apply(&p).unwrap();
    let all_backends: std::collections::BTreeSet<u32> = p.backends.iter().map(|b| b.id).collect();
    let all_services: std::collections::BTreeSet<u32> = p.services.iter().map(|s| s.id).collect();
    // Traffic counted on every id; the same plan again and a weight-free change keep it.
    w.maps.counted_backends = all_backends.clone();
    w.maps.counted_services = all_services.clone();
    let mut drained = p.clone();
    drained.backends[0].meta.state = 1;
    w.apply(&drained).unwrap();
    assert_eq!(w.maps.counted_backends, all_backends, "a backend that stays keeps its counts");
    assert_eq!(w.maps.counted_services, all_services, "a service that stays keeps its counts");
    // Backend id 0 passes to another address, and the second service's id to another VIP.
    let mut moved = p.clone();
    let b = moved.backends[0].id;
    moved.backends[0].address = "10.1.0.9:80".parse().unwrap();
    moved.backends[0].info.addr = lb_common::addr::ip_words("10.1.0.9".parse().unwrap()).0;
    let s = moved.services[1].id;
    let vip = lb_common::addr::vip_key("10.0.0.7:80".parse().unwrap(), lb_common::consts::PROTO_TCP);
    moved.services[1].vip = vip;
    moved.services[1].meta.vip = vip;
    w.apply(&moved).unwrap();
    assert!(!w.maps.counted_backends.contains(&b), "the new holder of backend id {b} starts at zero");
    assert_eq!(w.maps.counted_backends.len(), all_backends.len() - 1, "the others keep theirs");
    assert!(!w.maps.counted_services.contains(&s), "the new holder of service id {s} starts at zero");
    assert_eq!(w.maps.counted_services.len(), all_services.len() - 1);
    w.check_mirror().unwrap();
}

//! The reconcile invariant on the real maps of the loaded XDP object: fixed sequences of
//! configs, issue 16's among them (a rename, through a restart too; a VIP swap; 61
//! services reloaded as 121 others), are reconciled into one long-lived harness. After
//! each step every map the writer owns is read back from the kernel and compared with what
//! a fresh start on the same config writes (on the maps' model, `testkit::harness::
//! fresh_view`: a program load per step would cost its verification; compared by VIP,
//! service name and backend address: ids and table generations may differ), the writer's
//! mirror with the maps, and a new flow to every VIP must leave with XDP_TX towards one of
//! its own service's backends.
//! Root only: `cargo xtask test` runs them (`--ignored`).
use std::fmt::Write as _;
use std::net::SocketAddr;

use lb_xdp::plan::HostFacts;
use lb_xdp::testkit::frame;
use lb_xdp::testkit::harness::*;
use lb_xdp::testkit::packet::*;
use lb_xdp::testkit::view::View;

#[derive(Clone, Debug)]
struct Svc {
    name: String,
    vip: SocketAddr,
    udp: bool,
    algorithm: &'static str,
    dsr: bool,
    /// (address, weight)
    backends: Vec<(SocketAddr, u32)>,
}

fn svc(name: &str, vip: &str, backends: &[&str]) -> Svc {
    Svc {
        name: name.to_string(),
        vip: vip.parse().unwrap(),
        udp: false,
        algorithm: "maglev",
        dsr: false,
        backends: backends.iter().map(|b| (b.parse().unwrap(), 1)).collect(),
    }
}

/// The config for `services`, with the fixtures' daemon settings.
fn config(services: &[Svc]) -> String {
    let mut t = String::from(
        "[daemon]\ninterface = \"eth0\"\nsnat_ipv4 = \"172.20.0.10\"\nsnat_ipv6 = \"fd00:20::10\"\nflow_table_size = 4096\n",
    );
    for s in services {
        let protocol = if s.udp { "udp" } else { "tcp" };
        let forwarding = if s.dsr { "dsr" } else { "nat" };
        let _ = write!(
            t,
            "\n[[service]]\nname = \"{}\"\nvip = \"{}\"\nprotocol = \"{protocol}\"\nalgorithm = \"{}\"\nforwarding = \"{forwarding}\"\n",
            s.name, s.vip, s.algorithm
        );
        for (address, weight) in &s.backends {
            let _ = write!(t, "[[service.backend]]\naddress = \"{address}\"\nweight = {weight}\n");
        }
    }
    t
}

/// Every backend of every step resolved, with the MAC `mac_of` expects.
fn facts(steps: &[Step]) -> HostFacts {
    let mut f = HostFacts::default();
    for step in steps {
        for s in &step.services {
            for (b, _) in &s.backends {
                f.neighbours.insert(b.ip(), mac_of(b.ip()));
            }
        }
    }
    f.own_addresses = ["172.20.0.10", "fd00:20::10"].iter().map(|a| a.parse().unwrap()).collect();
    f
}

struct Step {
    what: String,
    services: Vec<Svc>,
    /// Start a new daemon on the pinned maps for this step (it adopts them).
    restart: bool,
}

fn step(what: &str, services: Vec<Svc>) -> Step {
    Step { what: what.to_string(), services, restart: false }
}

fn restart(what: &str, services: Vec<Svc>) -> Step {
    Step { what: what.to_string(), services, restart: true }
}

/// Where a frame goes: its destination MAC and IP:port.
fn destination(frame: &[u8]) -> ([u8; 6], SocketAddr) {
    (frame[0..6].try_into().unwrap(), frame::destination(frame))
}

/// A new flow to each service's VIP leaves with XDP_TX towards one of its backends: for
/// maglev services exactly the frame its table gives.
fn assert_forwarded(h: &Harness, services: &[Svc], client_port: u16, what: &str) {
    for s in services {
        let client = if s.vip.is_ipv4() { "172.20.0.2" } else { "fd00:20::2" };
        let client = SocketAddr::new(client.parse().unwrap(), client_port);
        let pkt = if s.udp {
            Pkt::udp(&client.to_string(), &s.vip.to_string())
        } else {
            Pkt::tcp(&client.to_string(), &s.vip.to_string(), SYN)
        };
        let (action, out) = h.run(&pkt.bytes());
        assert_eq!(action, XDP_TX, "{what}: a new flow to {} ({}) was not forwarded", s.vip, s.name);
        let (mac, to) = destination(&out);
        let backends: Vec<SocketAddr> = s.backends.iter().map(|b| b.0).collect();
        if s.dsr {
            assert_eq!(to, s.vip, "{what}: dsr changed the destination");
            assert!(
                backends.iter().any(|b| mac_of(b.ip()) == mac),
                "{what}: {} sent to MAC {mac:02x?}, none of {backends:?}",
                s.name
            );
        } else {
            assert!(backends.contains(&to), "{what}: {} sent to {to}, not one of {backends:?}", s.name);
            assert_eq!(mac, mac_of(to.ip()), "{what}: {} sent to {to} via the wrong MAC", s.name);
        }
        if s.algorithm == "maglev" && !s.dsr {
            let (want, _, _) = natted(&pkt, h);
            assert_eq!(hex(&out), hex(&want.bytes()), "{what}: {} not the frame its table gives", s.name);
        }
    }
}

/// Run `steps` in one harness; after each, compare with a fresh start and send packets.
/// Returns the number of steps checked.
fn run(steps: &[Step]) -> usize {
    let facts = facts(steps);
    let mut h = Harness::with_facts(&config(&steps[0].services), facts.clone());
    for (n, step) in steps.iter().enumerate() {
        let what = format!("step {n} ({})", step.what);
        let toml = config(&step.services);
        if step.restart {
            h.restart(&toml);
        } else if n > 0 {
            h.try_reload(&toml).unwrap_or_else(|e| panic!("{what}: the reload failed: {e:#}"));
        }
        let (got, mirror) = read_back(h.writer());
        let diffs = got.differences(&fresh_view(&toml, &facts), 12);
        assert!(diffs.is_empty(), "{what}: the maps differ from a fresh start's:\n{}", diffs.join("\n"));
        assert!(got.strays.is_empty(), "{what}: {:?}", got.strays);
        mirror.unwrap_or_else(|e| panic!("{what}: the writer's mirror is not the maps: {e:#}"));
        assert_forwarded(&h, &step.services, 40_000 + n as u16, &what);
    }
    steps.len()
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_renamed_service_keeps_its_vip_on_reload_and_on_restart() {
    let web = svc("web", "172.20.0.100:80", &["172.20.0.11:80", "172.20.0.12:80"]);
    let dns = Svc { udp: true, ..svc("dns", "172.20.0.100:53", &["172.20.0.11:53", "172.20.0.13:53"]) };
    let renamed = |name: &str| Svc { name: name.to_string(), ..web.clone() };
    run(&[
        step("start", vec![web.clone(), dns.clone()]),
        step("web renamed www", vec![renamed("www"), dns.clone()]),
        restart("a restart with www renamed front", vec![renamed("front"), dns.clone()]),
        step("both renamed", vec![renamed("web"), Svc { name: "resolver".into(), ..dns.clone() }]),
    ]);
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn swapped_vips_both_answer() {
    let a = svc("a", "172.20.0.100:80", &["172.20.0.11:80", "172.20.0.12:80"]);
    let b = svc("b", "172.20.0.100:81", &["172.20.0.13:80", "172.20.0.14:80"]);
    let on = |s: &Svc, vip: &str| Svc { vip: vip.parse().unwrap(), ..s.clone() };
    run(&[
        step("a:80 b:81", vec![a.clone(), b.clone()]),
        step("a:81 b:80", vec![on(&a, "172.20.0.100:81"), on(&b, "172.20.0.100:80")]),
        restart("a restart, swapped back", vec![a.clone(), b.clone()]),
        step("a on b's VIP, b on a new one", vec![on(&a, "172.20.0.100:81"), on(&b, "172.20.0.101:80")]),
    ]);
}

/// `n` services `prefix{i}` on VIPs 172.20.{vip_net}.{i} (every third on IPv6), two
/// backends each.
fn many(prefix: &str, n: u32, vip_net: u32) -> Vec<Svc> {
    (0..n)
        .map(|i| {
            let v6 = i % 3 == 2;
            let vip =
                if v6 { format!("[fd00:20::{vip_net}:{i:x}]:80") } else { format!("172.20.{vip_net}.{}:80", i + 1) };
            let backends: Vec<String> = (0..2u32)
                .map(|b| {
                    let host = 0x11 + (i * 2 + b) % 0xe0;
                    if v6 {
                        format!("[fd00:20::{:x}:{host:x}]:80", 0x100 + i / 100)
                    } else {
                        format!("172.20.{}.{host}:80", 100 + i / 100)
                    }
                })
                .collect();
            svc(&format!("{prefix}{i}"), &vip, &backends.iter().map(String::as_str).collect::<Vec<_>>())
        })
        .collect()
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn sixty_one_services_reloaded_as_121_others_all_answer() {
    let old = many("old", 61, 1);
    run(&[
        step("61 services", old.clone()),
        step("121 other services on other VIPs", many("new", 121, 2)),
        step("61 again, renamed, on the first VIPs", many("again", 61, 1)),
        step("121 on the first VIPs: renamed and more", many("more", 121, 1)),
        restart("a restart with the first 61", old),
    ]);
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn families_protocols_algorithms_forwarding_and_backends_change_under_one_daemon() {
    let web = svc("web", "172.20.0.100:80", &["172.20.0.11:80", "172.20.0.12:80", "172.20.0.13:80"]);
    let web6 = svc("web6", "[fd00:20::100]:80", &["[fd00:20::11]:80", "[fd00:20::12]:80"]);
    let mut s1 = vec![web.clone(), web6.clone()];
    let mut s2 = s1.clone();
    s2[0].udp = true;
    s2[1].dsr = true;
    s2[1].backends.push(("[fd00:20::13]:80".parse().unwrap(), 3));
    let mut s3 = s2.clone();
    // web moves to IPv6, web6 to IPv4: new backends of the new families.
    s3[0].vip = "[fd00:20::102]:80".parse().unwrap();
    s3[0].backends = vec![("[fd00:20::14]:80".parse().unwrap(), 1), ("[fd00:20::15]:80".parse().unwrap(), 2)];
    s3[1].vip = "172.20.0.102:80".parse().unwrap();
    s3[1].backends = vec![("172.20.0.14:80".parse().unwrap(), 1)];
    let mut s4 = s3.clone();
    s4[0].algorithm = "round_robin";
    s4[1].algorithm = "weighted_round_robin";
    s4[1].dsr = false;
    s4[1].backends.push(("172.20.0.15:80".parse().unwrap(), 5));
    s4.push(svc("api", "172.20.0.100:80", &["172.20.0.16:80"]));
    let mut s5 = s4.clone();
    s5[0].algorithm = "least_conn";
    s5[1].algorithm = "source_hash";
    s5[0].backends.remove(0);
    s5[2].backends = vec![("172.20.0.11:80".parse().unwrap(), 1), ("172.20.0.12:80".parse().unwrap(), 1)];
    let mut s6 = s5.clone();
    let name = s6[0].name.clone();
    s6[0].name = s6[1].name.clone();
    s6[1].name = name;
    s1.push(svc("seed", "172.20.0.10:8080", &["172.20.0.13:80"]));
    run(&[
        step("web and web6", s1),
        step("web udp, web6 dsr with a third backend", s2),
        step("web to IPv6, web6 to IPv4", s3),
        step("round robins, nat again, api on web's old VIP", s4),
        restart("a restart", s5.clone()),
        step("least_conn and source_hash, backends replaced", s5),
        step("web and web6 swap names", s6),
    ]);
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_write_the_kernel_refuses_is_rolled_back_and_the_next_one_repairs() {
    let two = vec![
        svc("web", "172.20.0.100:80", &["172.20.0.11:80", "172.20.0.12:80"]),
        svc("api", "172.20.0.101:80", &["172.20.0.13:80"]),
    ];
    let mut three = two.clone();
    three.push(svc("new", "172.20.0.102:80", &["172.20.0.14:80"]));
    let steps = [step("two", two.clone()), step("three", three.clone())];
    let mut h = Harness::with_facts(&config(&two), facts(&steps));
    // Someone else fills LB_VIPS to the brim behind the writer's back.
    let mut other = lb_xdp::maps::Maps::open_pinned(h.pin_path()).expect("open the pins");
    let mut port = 1000u16;
    while other.vips.iter().count() < lb_common::consts::MAX_SERVICES as usize {
        let key = lb_common::addr::vip_key(format!("10.9.9.9:{port}").parse().unwrap(), TCP);
        other.vips.insert(key, lb_common::maps::VipInfo { service_id: 127, ..Default::default() }, 0).unwrap();
        port += 1;
    }
    drop(other);
    let before = View::read(h.maps()).unwrap();
    let e = h.try_reload(&config(&three)).expect_err("LB_VIPS is full: the new VIP cannot be put");
    let message = format!("{e:#}");
    assert!(message.contains("the data path is unchanged"), "{message}");
    assert!(message.contains("Argument list too long"), "{message}");
    assert_eq!(View::read(h.maps()).unwrap(), before, "the failed write left the maps changed");
    h.writer().check_mirror().expect("the mirror was read back");
    assert_forwarded(&h, &two, 41_000, "after the failed write");
    // The read back taught the writer the strangers: the next write retires them first.
    h.try_reload(&config(&three)).unwrap_or_else(|e| panic!("the next reload failed: {e:#}"));
    let diffs = View::read(h.maps()).unwrap().differences(&fresh_view(&config(&three), &facts(&steps)), 12);
    assert!(diffs.is_empty(), "after the repair: {}", diffs.join("\n"));
    assert_forwarded(&h, &three, 41_001, "after the repair");
}

/// Ids go by VIP: a renamed service keeps its backends' ids, so a live flow stays
/// established on its backend instead of starting over as a new flow.
#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_flow_stays_established_across_a_rename() {
    let web = svc("web", "172.20.0.100:80", &["172.20.0.11:80", "172.20.0.12:80", "172.20.0.13:80"]);
    let www = Svc { name: "www".into(), ..web.clone() };
    let steps = [step("web", vec![web.clone()]), step("www", vec![www.clone()])];
    let mut h = Harness::with_facts(&config(&steps[0].services), facts(&steps));
    let syn = Pkt::tcp("172.20.0.2:45000", "172.20.0.100:80", SYN);
    let (action, first) = h.run(&syn.bytes());
    assert_eq!(action, XDP_TX);
    h.reload(&config(&steps[1].services));
    let mut data = Pkt::tcp("172.20.0.2:45000", "172.20.0.100:80", ACK);
    data.payload = b"more".to_vec();
    let (action, next) = h.run(&data.bytes());
    assert_eq!(action, XDP_TX);
    assert_eq!(destination(&next), destination(&first), "the flow moved");
    let rows = lb_xdp::inspect::backends(h.maps()).unwrap();
    assert_eq!(rows.iter().map(|r| r.new_flows).sum::<u64>(), 1, "the packet after the rename started a new flow");
    assert!(rows.iter().all(|r| r.service == "www"), "{rows:?}");
}

//! The userspace proxy on loopback, against real tokio backends: l4 TCP, UDP sessions and the
//! HTTP mode's keep-alive pool; every algorithm's placement; half-close, resets, refused and
//! never-accepting backends; reconcile and graceful shutdown; protection (rate limits,
//! max_connections, passive outcomes, half-open trials). Every test ends by checking
//! that the proxy's task tracker is back to zero and the process has no more file
//! descriptors than when the test began. Tests run one at a time (`SERIAL`) so that those
//! fd counts are the test's own. No root; every wait is bounded.
//!
//! The harness (runtime, leak checks, config text, test backends and clients) is in
//! `common/proxy_harness.rs`.
mod common;

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::proxy_harness::*;
use lb_config::desired::{Circuit, Desired, Health};
use lb_config::{AdminState, Algorithm};
use lb_proxy::select::{Candidate, Flow, Selection, Selector};
use lb_proxy::{ProxyDataplane, TaskKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::task::JoinSet;

// ---------------------------------------------------------------------------------------
// L4 TCP: placement

#[test]
fn l4_connections_reach_every_backend() {
    run(async {
        let fds = fd_count();
        let servers = vec![tagged_echo("Server1").await, tagged_echo("Server2").await, tagged_echo("Server3").await];
        let vip = vip_tcp();
        let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
        let cfg = config("", &service("web", vip, "algorithm = \"random\"", &w1(&addrs)));
        let dp = start(&cfg);
        let mut seen = BTreeSet::new();
        for _ in 0..60 {
            seen.insert(ask_name(vip).await);
        }
        assert_eq!(seen, ["Server1", "Server2", "Server3"].iter().map(|s| s.to_string()).collect());
        let stats = dp.stats();
        let total: u64 = addrs.iter().map(|a| stats.backend("web", *a).unwrap().connections_total).sum();
        assert_eq!(total, 60);
        finish(dp, servers, fds).await;
    });
}

#[test]
fn round_robin_is_exact_over_300_connections() {
    run(async {
        let fds = fd_count();
        let servers = vec![tagged_echo("a").await, tagged_echo("b").await, tagged_echo("c").await];
        let vip = vip_tcp();
        // Weights are ignored by round_robin.
        let backends = vec![(servers[0].addr, 1), (servers[1].addr, 5), (servers[2].addr, 1)];
        let dp = start(&config("", &service("web", vip, "algorithm = \"round_robin\"", &backends)));
        let mut names = Vec::new();
        for _ in 0..300 {
            names.push(ask_name(vip).await);
        }
        let counts = count(names);
        assert_eq!(counts.values().copied().collect::<Vec<_>>(), vec![100, 100, 100], "{counts:?}");
        for s in &servers {
            assert_eq!(s.accepted.load(Ordering::SeqCst), 100);
        }
        finish(dp, servers, fds).await;
    });
}

#[test]
fn weighted_round_robin_follows_the_weights_within_two_percent() {
    run(async {
        let fds = fd_count();
        let servers = vec![tagged_echo("a").await, tagged_echo("b").await, tagged_echo("c").await];
        let vip = vip_tcp();
        let weights = [5u32, 3, 2];
        let backends: Vec<(SocketAddr, u32)> = servers.iter().zip(weights).map(|(s, w)| (s.addr, w)).collect();
        let dp = start(&config("", &service("web", vip, "algorithm = \"weighted_round_robin\"", &backends)));
        let n = 400;
        let mut names = Vec::new();
        for _ in 0..n {
            names.push(ask_name(vip).await);
        }
        let counts = count(names);
        for (s, w) in servers.iter().zip(weights) {
            let share = counts.get(&s.name).copied().unwrap_or(0) as f64 / n as f64;
            let want = w as f64 / 10.0;
            assert!((share - want).abs() <= 0.02, "{}: share {share}, weight share {want} ({counts:?})", s.name);
        }
        finish(dp, servers, fds).await;
    });
}

#[test]
fn least_conn_sends_new_connections_away_from_a_backend_holding_long_lived_ones() {
    run(async {
        let fds = fd_count();
        let servers = vec![tagged_echo("busy").await, tagged_echo("b").await, tagged_echo("c").await];
        let vip = vip_tcp();
        // First only "busy" is there: five long-lived connections land on it.
        let one = config("", &service("web", vip, "algorithm = \"least_conn\"", &w1(&[servers[0].addr])));
        let mut dp = start(&one);
        let mut held = Vec::new();
        for _ in 0..5 {
            let mut s = within(Duration::from_secs(5), "connect", TcpStream::connect(vip)).await.unwrap();
            let mut name = [0u8; 5];
            within(Duration::from_secs(5), "name", s.read_exact(&mut name)).await.unwrap();
            assert_eq!(&name, b"busy\n");
            held.push(s);
        }
        let stats = dp.stats();
        assert_eq!(stats.backend("web", servers[0].addr).unwrap().active, 5);
        // Now all three: new short connections go to the two idle backends only.
        let all = config(
            "",
            &service(
                "web",
                vip,
                "algorithm = \"least_conn\"",
                &w1(&[servers[0].addr, servers[1].addr, servers[2].addr]),
            ),
        );
        dp.reconcile(&Desired::from_config(&all)).unwrap();
        let mut names = Vec::new();
        for _ in 0..30 {
            names.push(ask_name(vip).await);
        }
        let counts = count(names);
        assert_eq!(counts.get("busy"), None, "{counts:?}");
        assert!(counts.contains_key("b") && counts.contains_key("c"), "ties are shared: {counts:?}");
        // The held connections still work (they kept their backend through the reconcile).
        for s in &mut held {
            within(Duration::from_secs(5), "echo", s.write_all(b"x")).await.unwrap();
            let mut b = [0u8; 1];
            within(Duration::from_secs(5), "echo", s.read_exact(&mut b)).await.unwrap();
        }
        // The metric and the selector's view are one number.
        let text = stats.render_metrics();
        let busy =
            format!("lb_backend_active_flows{{service=\"web\",backend=\"{}\",path=\"proxy\"}} 5", servers[0].addr);
        assert!(text.contains(&busy), "{text}");
        drop(held);
        finish(dp, servers, fds).await;
    });
}

/// The selector's first choice for this flow: what the proxy must have used.
fn expected_backend(algorithm: Algorithm, backends: &[SocketAddr], client: SocketAddr, vip: SocketAddr) -> SocketAddr {
    let candidates =
        backends.iter().map(|a| Candidate { address: *a, weight: 1, active: Arc::new(AtomicU64::new(0)) }).collect();
    Selector::new(algorithm, candidates).iter(&Flow { client, vip, proto: 6 }).next().unwrap().address
}

#[test]
fn source_hash_keeps_each_client_ip_on_one_backend() {
    run(async {
        let fds = fd_count();
        let servers = vec![tagged_echo("a").await, tagged_echo("b").await, tagged_echo("c").await];
        let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
        let by_name: HashMap<String, SocketAddr> = servers.iter().map(|s| (s.name.clone(), s.addr)).collect();
        let vip = vip_tcp();
        let dp = start(&config("", &service("web", vip, "algorithm = \"source_hash\"", &w1(&addrs))));
        let mut used = BTreeSet::new();
        for host in 2..22u8 {
            let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, host));
            let mut names = BTreeSet::new();
            for _ in 0..5 {
                let s = connect_from(SocketAddr::new(ip, 0), vip).await;
                let local = s.local_addr().unwrap();
                let name = read_name(s).await;
                assert_eq!(
                    by_name[&name],
                    expected_backend(Algorithm::SourceHash, &addrs, local, vip),
                    "client {local}"
                );
                names.insert(name);
            }
            assert_eq!(names.len(), 1, "client {ip} moved between backends: {names:?}");
            used.extend(names);
        }
        assert!(used.len() >= 2, "20 client addresses all hashed to {used:?}");
        finish(dp, servers, fds).await;
    });
}

#[test]
fn maglev_places_each_flow_where_the_xdp_path_would() {
    run(async {
        let fds = fd_count();
        let servers = vec![tagged_echo("a").await, tagged_echo("b").await, tagged_echo("c").await];
        let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
        let by_name: HashMap<String, SocketAddr> = servers.iter().map(|s| (s.name.clone(), s.addr)).collect();
        let vip = vip_tcp();
        let dp = start(&config("", &service("web", vip, "", &w1(&addrs))));
        let mut used = BTreeSet::new();
        for _ in 0..40 {
            let s = within(Duration::from_secs(5), "connect", TcpStream::connect(vip)).await.unwrap();
            let local = s.local_addr().unwrap();
            let name = read_name(s).await;
            assert_eq!(
                by_name[&name],
                expected_backend(Algorithm::Maglev, &addrs, local, vip),
                "flow {local} -> {vip}"
            );
            used.insert(name);
        }
        assert_eq!(used.len(), 3);
        finish(dp, servers, fds).await;
    });
}

// ---------------------------------------------------------------------------------------
// L4 TCP: connection behaviour

#[test]
fn half_closed_client_still_receives_the_whole_echo() {
    run(async {
        let fds = fd_count();
        let servers = vec![tagged_echo("echo").await];
        let vip = vip_tcp();
        let dp = start(&config("", &service("web", vip, "", &w1(&[servers[0].addr]))));
        let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let s = within(Duration::from_secs(5), "connect", TcpStream::connect(vip)).await.unwrap();
        let (mut r, mut w) = s.into_split();
        let sent = payload.clone();
        let writer = tokio::spawn(async move {
            w.write_all(&sent).await.unwrap();
            // Half-close: no more to send, but the answer is still wanted.
            w.shutdown().await.unwrap();
            w
        });
        let mut got = Vec::new();
        within(Duration::from_secs(10), "read the echo to EOF", r.read_to_end(&mut got)).await.unwrap();
        let _w = within(Duration::from_secs(5), "writer", writer).await.unwrap();
        assert_eq!(&got[..5], b"echo\n");
        assert_eq!(got.len() - 5, payload.len());
        assert!(got[5..] == payload[..], "echo differs");
        let stats = dp.stats();
        let c = stats.backend("web", servers[0].addr).unwrap();
        assert_eq!(c.bytes_in, payload.len() as u64);
        assert_eq!(c.bytes_out, payload.len() as u64 + 5);
        drop((r, _w));
        finish(dp, servers, fds).await;
    });
}

#[test]
fn backend_reset_mid_stream_closes_the_client_connection() {
    run(async {
        let fds = fd_count();
        let servers = vec![resetting_backend().await];
        let vip = vip_tcp();
        let dp = start(&config("", &service("web", vip, "", &w1(&[servers[0].addr]))));
        let mut s = within(Duration::from_secs(5), "connect", TcpStream::connect(vip)).await.unwrap();
        s.write_all(b"hello").await.unwrap();
        let t = Instant::now();
        let end = within(Duration::from_secs(3), "the client sees the reset", async {
            let mut buf = [0u8; 64];
            loop {
                match s.read(&mut buf).await {
                    Ok(0) => return Ok(()),
                    Ok(_) => continue,
                    Err(e) => return Err(e),
                }
            }
        })
        .await;
        assert!(t.elapsed() < Duration::from_secs(2));
        // The backend's RST is passed on as an RST, not turned into a clean end.
        assert_eq!(end.map_err(|e| e.kind()), Err(io::ErrorKind::ConnectionReset));
        let stats = dp.stats();
        within(Duration::from_secs(2), "connection task ends", async {
            while stats.tasks().live_of(TaskKind::Connection) > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        drop(s);
        finish(dp, servers, fds).await;
    });
}

#[test]
fn refused_backend_is_skipped_for_the_next_one() {
    run(async {
        let fds = fd_count();
        let servers = vec![tagged_echo("up").await];
        let dead = refused_addr();
        let vip = vip_tcp();
        let dp = start(&config("", &service("web", vip, "algorithm = \"round_robin\"", &w1(&[dead, servers[0].addr]))));
        for _ in 0..10 {
            assert_eq!(ask_name(vip).await, "up");
        }
        let stats = dp.stats();
        let failures = stats.backend("web", dead).unwrap().connect_failures_total;
        assert!(failures >= 5, "{failures} connect failures counted");
        assert_eq!(stats.backend("web", dead).unwrap().connections_total, 0);
        assert_eq!(stats.backend("web", servers[0].addr).unwrap().connections_total, 10);
        finish(dp, servers, fds).await;
    });
}

#[test]
fn never_accepting_backend_times_out_to_the_next_or_closes_the_client() {
    run(async {
        let fds = fd_count();
        let hanging = hanging_backend();
        let servers = vec![tagged_echo("up").await];
        let vip = vip_tcp();
        let lone = vip_tcp();
        let services = service("web", vip, "algorithm = \"round_robin\"", &w1(&[hanging.addr, servers[0].addr]))
            + &service("lone", lone, "", &w1(&[hanging.addr]));
        let dp = start(&config("", &services));
        // Every connection is served, some after one connect timeout (300 ms).
        for _ in 0..4 {
            let t = Instant::now();
            assert_eq!(ask_name(vip).await, "up");
            assert!(t.elapsed() < Duration::from_secs(2));
        }
        let stats = dp.stats();
        assert!(stats.backend("web", hanging.addr).unwrap().connect_failures_total >= 1);
        // No other backend: the client is closed once the connect timeout has passed.
        let mut s = within(Duration::from_secs(5), "connect", TcpStream::connect(lone)).await.unwrap();
        let t = Instant::now();
        let mut buf = [0u8; 16];
        let n = within(Duration::from_secs(3), "client closed", s.read(&mut buf)).await.unwrap_or(0);
        assert_eq!(n, 0);
        let waited = t.elapsed();
        assert!(waited >= Duration::from_millis(250) && waited < Duration::from_secs(2), "closed after {waited:?}");
        drop(s);
        drop(hanging);
        finish(dp, servers, fds).await;
    });
}

#[test]
fn no_backend_closes_the_client_at_once() {
    run(async {
        let fds = fd_count();
        let vip = vip_tcp();
        let dp = start(&config("", &service("web", vip, "", &[])));
        let mut s = within(Duration::from_secs(5), "connect", TcpStream::connect(vip)).await.unwrap();
        let mut buf = [0u8; 16];
        let n = within(Duration::from_secs(2), "client closed", s.read(&mut buf)).await.unwrap_or(0);
        assert_eq!(n, 0);
        drop(s);
        finish(dp, Vec::new(), fds).await;
    });
}

#[test]
fn idle_connection_is_closed_after_tcp_idle_timeout_and_traffic_resets_it() {
    run(async {
        let fds = fd_count();
        let servers = vec![tagged_echo("echo").await];
        let vip = vip_tcp();
        let dp = start(&config("tcp_idle_timeout = \"400ms\"", &service("web", vip, "", &w1(&[servers[0].addr]))));
        let mut s = within(Duration::from_secs(5), "connect", TcpStream::connect(vip)).await.unwrap();
        let mut name = [0u8; 5];
        within(Duration::from_secs(5), "name", s.read_exact(&mut name)).await.unwrap();
        // Traffic every 200 ms keeps it open past the timeout...
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            s.write_all(b"x").await.unwrap();
            let mut b = [0u8; 1];
            within(Duration::from_secs(2), "echo", s.read_exact(&mut b)).await.unwrap();
        }
        // ...silence closes it.
        let t = Instant::now();
        let mut buf = [0u8; 8];
        let _ = within(Duration::from_secs(3), "idle close", s.read(&mut buf)).await;
        assert!(t.elapsed() >= Duration::from_millis(300), "closed after {:?}", t.elapsed());
        drop(s);
        finish(dp, servers, fds).await;
    });
}

// ---------------------------------------------------------------------------------------
// Reconcile

#[test]
fn reconcile_swapping_backends_keeps_existing_connections_and_cuts_removed_ones() {
    run(async {
        let fds = fd_count();
        let servers = vec![tagged_echo("old").await, tagged_echo("new").await];
        let (old, new) = (servers[0].addr, servers[1].addr);
        let vip = vip_tcp();
        let cfg = config("", &service("web", vip, "", &w1(&[old])));
        let mut dp = start(&cfg);
        let mut kept = within(Duration::from_secs(5), "connect", TcpStream::connect(vip)).await.unwrap();
        let mut name = [0u8; 4];
        within(Duration::from_secs(5), "name", kept.read_exact(&mut name)).await.unwrap();
        assert_eq!(&name, b"old\n");

        // "old" drains, "new" joins: the open connection stays on "old", new ones go to "new".
        let swap = config("", &service("web", vip, "", &w1(&[old, new])));
        let mut desired = Desired::from_config(&swap);
        desired.services[0].backends[0].state = AdminState::Drain;
        dp.reconcile(&desired).unwrap();
        for _ in 0..5 {
            assert_eq!(ask_name(vip).await, "new");
        }
        kept.write_all(b"ping").await.unwrap();
        let mut b = [0u8; 4];
        within(Duration::from_secs(2), "echo on the kept connection", kept.read_exact(&mut b)).await.unwrap();
        assert_eq!(&b, b"ping");

        // "old" removed: its connection is closed (the proxy's re-steer).
        let only_new = config("", &service("web", vip, "", &w1(&[new])));
        dp.reconcile(&Desired::from_config(&only_new)).unwrap();
        let mut buf = [0u8; 8];
        let r = within(Duration::from_secs(2), "cut connection closes", kept.read(&mut buf)).await;
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
        drop(kept);
        finish(dp, servers, fds).await;
    });
}

#[test]
fn backend_in_maintenance_or_down_has_its_connections_closed() {
    run(async {
        let fds = fd_count();
        let servers = vec![tagged_echo("a").await];
        let vip = vip_tcp();
        let cfg = config("", &service("web", vip, "", &w1(&[servers[0].addr])));
        let mut dp = start(&cfg);
        for change in ["maint", "down"] {
            let mut s = within(Duration::from_secs(5), "connect", TcpStream::connect(vip)).await.unwrap();
            let mut name = [0u8; 2];
            within(Duration::from_secs(5), "name", s.read_exact(&mut name)).await.unwrap();
            let mut desired = Desired::from_config(&cfg);
            match change {
                "maint" => desired.services[0].backends[0].state = AdminState::Maint,
                _ => desired.services[0].backends[0].health = Health::Down,
            }
            dp.reconcile(&desired).unwrap();
            let mut buf = [0u8; 8];
            let r = within(Duration::from_secs(2), "connection closed", s.read(&mut buf)).await;
            assert!(matches!(r, Ok(0) | Err(_)), "{change}: {r:?}");
            // Back in service: new connections work again.
            dp.reconcile(&Desired::from_config(&cfg)).unwrap();
            assert_eq!(ask_name(vip).await, "a");
        }
        finish(dp, servers, fds).await;
    });
}

#[test]
fn services_added_and_removed_open_and_close_their_listeners() {
    run(async {
        let fds = fd_count();
        let servers = vec![tagged_echo("a").await];
        let (v1, v2) = (vip_tcp(), vip_tcp());
        let one = config("", &service("one", v1, "", &w1(&[servers[0].addr])));
        let mut dp = start(&one);
        assert!(TcpStream::connect(v2).await.is_err());
        let both = config(
            "",
            &(service("one", v1, "", &w1(&[servers[0].addr])) + &service("two", v2, "", &w1(&[servers[0].addr]))),
        );
        dp.reconcile(&Desired::from_config(&both)).unwrap();
        assert_eq!(ask_name(v2).await, "a");
        let two = config("", &service("two", v2, "", &w1(&[servers[0].addr])));
        dp.reconcile(&Desired::from_config(&two)).unwrap();
        within(Duration::from_secs(2), "listener of 'one' closes", async {
            while TcpStream::connect(v1).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert_eq!(ask_name(v2).await, "a");
        finish(dp, servers, fds).await;
    });
}

#[test]
fn vip_change_moves_the_listener_and_keeps_open_connections() {
    run(async {
        let fds = fd_count();
        let servers = vec![tagged_echo("a").await];
        let (v1, v2) = (vip_tcp(), vip_tcp());
        let first = config("", &service("web", v1, "", &w1(&[servers[0].addr])));
        let mut dp = start(&first);
        let mut kept = within(Duration::from_secs(5), "connect", TcpStream::connect(v1)).await.unwrap();
        let mut name = [0u8; 2];
        within(Duration::from_secs(5), "name", kept.read_exact(&mut name)).await.unwrap();
        let moved = config("", &service("web", v2, "", &w1(&[servers[0].addr])));
        dp.reconcile(&Desired::from_config(&moved)).unwrap();
        assert_eq!(dp.listening("web"), Some(v2));
        assert_eq!(ask_name(v2).await, "a");
        within(Duration::from_secs(2), "old listener closes", async {
            while TcpStream::connect(v1).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        kept.write_all(b"still").await.unwrap();
        let mut b = [0u8; 5];
        within(Duration::from_secs(2), "echo on the old VIP's connection", kept.read_exact(&mut b)).await.unwrap();
        assert_eq!(&b, b"still");
        // The backend's counters are one series across the move: the kept connection is
        // the one left once the short one's close has gone through.
        let stats = dp.stats();
        within(Duration::from_secs(2), "one active connection", async {
            while stats.backend("web", servers[0].addr).unwrap().active != 1 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert_eq!(stats.backend("web", servers[0].addr).unwrap().connections_total, 2);
        drop(kept);
        finish(dp, servers, fds).await;
    });
}

#[test]
fn renamed_service_keeps_its_listeners_open_connections_and_counters() {
    run(async {
        let fds = fd_count();
        let servers = vec![tagged_echo("a").await, udp_echo("u").await];
        let (tcp, udp) = (servers[0].addr, servers[1].addr);
        let (vip, vip_udp) = (vip_tcp(), SocketAddr::from((Ipv4Addr::LOCALHOST, free_udp_port())));
        let with_names = |web: &str, dns: &str| {
            config(
                "",
                &(service(web, vip, "", &w1(&[tcp])) + &service(dns, vip_udp, "protocol = \"udp\"", &w1(&[udp]))),
            )
        };
        let mut dp = start(&with_names("web", "dns"));
        let mut kept = within(Duration::from_secs(5), "connect", TcpStream::connect(vip)).await.unwrap();
        let mut name = [0u8; 2];
        within(Duration::from_secs(5), "name", kept.read_exact(&mut name)).await.unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.connect(vip_udp).await.unwrap();
        let ask_udp = |what: &'static str| {
            let client = &client;
            async move {
                client.send(what.as_bytes()).await.unwrap();
                let mut buf = [0u8; 64];
                let n = within(Duration::from_secs(2), "udp reply", client.recv(&mut buf)).await.unwrap();
                String::from_utf8_lossy(&buf[..n]).into_owned()
            }
        };
        assert_eq!(ask_udp("one").await, "u:one");

        // Both renamed, VIPs unchanged: same service, new name.
        dp.reconcile(&Desired::from_config(&with_names("site", "names"))).unwrap();
        assert_eq!((dp.listening("site"), dp.listening("web")), (Some(vip), None));
        echoes(&mut kept, "still here").await;
        assert_eq!(ask_udp("two").await, "u:two", "the UDP session carries on");
        let udp_counts = dp.stats().backend("names", udp).expect("the UDP backend's counters, under the new name");
        assert_eq!((udp_counts.connections_total, udp_counts.bytes_in), (1, 6), "one session across the rename");
        assert_eq!(ask_name(vip).await, "a", "new connections are accepted");
        // One series under the new name: the kept connection, the new one, the open flow.
        let stats = dp.stats();
        assert_eq!(stats.backend("site", tcp).map(|c| c.connections_total), Some(2));
        assert_eq!(stats.backend("web", tcp), None);
        let flows = stats.flows();
        assert!(flows.iter().any(|f| f.service == "site" && f.backend == tcp), "{flows:?}");
        assert!(flows.iter().all(|f| f.service != "web" && f.service != "dns"), "{flows:?}");
        within(Duration::from_secs(2), "the kept connection, counted under its new name", async {
            while stats.tasks().live_connections("site") != 1 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;

        // A rename that also moves the VIP is a new service: the old one's connections go.
        let moved = config("", &service("web", vip_tcp(), "", &w1(&[tcp])));
        dp.reconcile(&Desired::from_config(&moved)).unwrap();
        let mut buf = [0u8; 8];
        let r = within(Duration::from_secs(2), "connection of the removed service closes", kept.read(&mut buf)).await;
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
        drop((kept, client));
        finish(dp, servers, fds).await;
    });
}

#[test]
fn bind_failure_names_the_vip_and_the_os_error() {
    run(async {
        let fds = fd_count();
        // Held without SO_REUSEPORT: the proxy cannot share it.
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let vip = taken.local_addr().unwrap();
        let cfg = config("", &service("web", vip, "", &w1(&[refused_addr()])));
        let err = ProxyDataplane::start(&Desired::from_config(&cfg)).err().expect("bind must fail");
        let text = format!("{err:#}");
        assert!(text.contains(&vip.to_string()) && text.to_lowercase().contains("address"), "{text}");
        // A failed reconcile leaves the running proxy as it was.
        let free = vip_tcp();
        let ok = config("", &service("web", free, "", &[]));
        let mut dp = start(&ok);
        let both = config("", &(service("web", free, "", &[]) + &service("other", vip, "", &[])));
        assert!(dp.reconcile(&Desired::from_config(&both)).is_err());
        assert_eq!(dp.listening("web"), Some(free));
        assert_eq!(dp.listening("other"), None);
        drop(taken);
        finish(dp, Vec::new(), fds).await;
    });
}

#[test]
fn unspecified_vip_serves_on_loopback() {
    run(async {
        let fds = fd_count();
        let servers = vec![tagged_echo("a").await];
        let port = free_tcp_port();
        let vip: SocketAddr = format!("0.0.0.0:{port}").parse().unwrap();
        let dp = start(&config("", &service("web", vip, "", &w1(&[servers[0].addr]))));
        let s = within(Duration::from_secs(5), "connect", TcpStream::connect(("127.0.0.1", port))).await.unwrap();
        let stats = dp.stats();
        assert_eq!(read_name(s).await, "a");
        let s = within(Duration::from_secs(5), "connect", TcpStream::connect(("127.0.0.1", port))).await.unwrap();
        let mut name = [0u8; 2];
        within(Duration::from_secs(5), "name", s.peek(&mut name)).await.unwrap();
        // The first connection's flow leaves once its close has gone through the proxy.
        let flows = within(Duration::from_secs(2), "one flow", async {
            loop {
                let f = stats.flows();
                if f.len() == 1 {
                    return f;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert_eq!(flows[0].vip, SocketAddr::from((Ipv4Addr::LOCALHOST, port)), "the address the client reached");
        assert_eq!(flows[0].backend, servers[0].addr);
        drop(s);
        finish(dp, servers, fds).await;
    });
}

#[test]
fn ipv6_service_and_ipv4_service_share_a_port_on_unspecified_addresses() {
    run(async {
        let fds = fd_count();
        let servers = vec![tagged_echo("four").await, tagged_echo_on("[::1]:0", "six").await];
        let port = free_tcp_port();
        let any4: SocketAddr = format!("0.0.0.0:{port}").parse().unwrap();
        let any6: SocketAddr = format!("[::]:{port}").parse().unwrap();
        // IPV6_V6ONLY: "[::]:port" takes IPv6 only, so "0.0.0.0:port" can be another service.
        let services =
            service("any4", any4, "", &w1(&[servers[0].addr])) + &service("any6", any6, "", &w1(&[servers[1].addr]));
        let dp = start(&config("", &services));
        for _ in 0..5 {
            let s =
                within(Duration::from_secs(5), "connect v4", TcpStream::connect(("127.0.0.1", port))).await.unwrap();
            assert_eq!(read_name(s).await, "four");
            let s = within(Duration::from_secs(5), "connect v6", TcpStream::connect(("::1", port))).await.unwrap();
            assert_eq!(read_name(s).await, "six");
        }
        finish(dp, servers, fds).await;
    });
}

// ---------------------------------------------------------------------------------------
// Shutdown

#[test]
fn shutdown_stops_accepting_and_waits_for_in_flight_connections_up_to_the_drain() {
    run(async {
        let fds = fd_count();
        let servers = vec![tagged_echo("a").await];
        let vip = vip_tcp();
        let dp = start(&config("", &service("web", vip, "", &w1(&[servers[0].addr]))));
        let stats = dp.stats();
        let mut s = within(Duration::from_secs(5), "connect", TcpStream::connect(vip)).await.unwrap();
        let mut name = [0u8; 2];
        within(Duration::from_secs(5), "name", s.read_exact(&mut name)).await.unwrap();

        let t = Instant::now();
        let drain = Duration::from_millis(800);
        let shutdown = tokio::spawn(dp.shutdown(drain));
        tokio::time::sleep(Duration::from_millis(100)).await;
        // No new connections...
        assert!(TcpStream::connect(vip).await.is_err(), "still accepting during shutdown");
        // ...but the open one still works.
        s.write_all(b"x").await.unwrap();
        let mut b = [0u8; 1];
        within(Duration::from_secs(1), "echo while draining", s.read_exact(&mut b)).await.unwrap();
        within(Duration::from_secs(5), "shutdown", shutdown).await.unwrap();
        let took = t.elapsed();
        assert!(took >= drain && took < drain + Duration::from_secs(2), "shutdown took {took:?}");
        // The drain ran out: the connection was closed.
        let mut buf = [0u8; 8];
        let r = within(Duration::from_secs(2), "closed", s.read(&mut buf)).await;
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
        drop(s);
        drop(servers);
        assert_clean(&stats, fds).await;
    });
}

#[test]
fn shutdown_returns_as_soon_as_the_last_connection_ends() {
    run(async {
        let fds = fd_count();
        let servers = vec![tagged_echo("a").await];
        let vip = vip_tcp();
        let dp = start(&config("", &service("web", vip, "", &w1(&[servers[0].addr]))));
        let stats = dp.stats();
        let mut s = within(Duration::from_secs(5), "connect", TcpStream::connect(vip)).await.unwrap();
        let mut name = [0u8; 2];
        within(Duration::from_secs(5), "name", s.read_exact(&mut name)).await.unwrap();
        let t = Instant::now();
        let shutdown = tokio::spawn(dp.shutdown(Duration::from_secs(10)));
        tokio::time::sleep(Duration::from_millis(200)).await;
        s.shutdown().await.unwrap();
        let mut rest = Vec::new();
        within(Duration::from_secs(2), "echo ends", s.read_to_end(&mut rest)).await.unwrap();
        within(Duration::from_secs(3), "shutdown", shutdown).await.unwrap();
        assert!(t.elapsed() < Duration::from_secs(2), "shutdown took {:?}", t.elapsed());
        drop(s);
        drop(servers);
        assert_clean(&stats, fds).await;
    });
}

// ---------------------------------------------------------------------------------------
// UDP

#[test]
fn udp_clients_each_get_their_own_replies() {
    run(async {
        let fds = fd_count();
        let servers = vec![udp_echo("u1").await, udp_echo("u2").await];
        let vip = SocketAddr::from((Ipv4Addr::LOCALHOST, free_udp_port()));
        let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
        let dp =
            start(&config("", &service("dns", vip, "protocol = \"udp\"\nalgorithm = \"round_robin\"", &w1(&addrs))));
        let mut clients = Vec::new();
        for _ in 0..6 {
            let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            c.connect(vip).await.unwrap();
            clients.push(c);
        }
        let mut backend_of = Vec::new();
        for round in 0..10 {
            for (i, c) in clients.iter().enumerate() {
                let msg = format!("client{i}-msg{round}");
                c.send(msg.as_bytes()).await.unwrap();
                let mut buf = [0u8; 256];
                let n = within(Duration::from_secs(2), "udp reply", c.recv(&mut buf)).await.unwrap();
                let reply = String::from_utf8_lossy(&buf[..n]).into_owned();
                let (server, echoed) = reply.split_once(':').unwrap();
                assert_eq!(echoed, msg, "client {i} got someone else's reply");
                if round == 0 {
                    backend_of.push(server.to_string());
                } else {
                    assert_eq!(server, backend_of[i], "client {i} changed backend within its session");
                }
            }
        }
        assert_eq!(count(backend_of.clone()).len(), 2, "round robin over sessions: {backend_of:?}");
        assert_eq!(dp.udp_sessions("dns"), 6);
        let stats = dp.stats();
        assert_eq!(stats.flows().iter().filter(|f| f.protocol == lb_config::Protocol::Udp).count(), 6);
        let total: u64 = addrs.iter().map(|a| stats.backend("dns", *a).unwrap().connections_total).sum();
        assert_eq!(total, 6);
        drop(clients);
        finish(dp, servers, fds).await;
    });
}

#[test]
fn udp_sessions_expire_after_the_idle_timeout() {
    run(async {
        let fds = fd_count();
        let servers = vec![udp_echo("u").await];
        let vip = SocketAddr::from((Ipv4Addr::LOCALHOST, free_udp_port()));
        let dp = start(&config(
            "udp_idle_timeout = \"300ms\"",
            &service("dns", vip, "protocol = \"udp\"", &w1(&[servers[0].addr])),
        ));
        let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        c.connect(vip).await.unwrap();
        let mut buf = [0u8; 64];
        c.send(b"one").await.unwrap();
        within(Duration::from_secs(2), "reply", c.recv(&mut buf)).await.unwrap();
        assert_eq!(dp.udp_sessions("dns"), 1);
        let stats = dp.stats();
        assert_eq!(stats.backend("dns", servers[0].addr).unwrap().active, 1);
        within(Duration::from_secs(3), "session expires", async {
            while dp.udp_sessions("dns") > 0 || stats.tasks().live_of(TaskKind::Session) > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert_eq!(stats.backend("dns", servers[0].addr).unwrap().active, 0);
        // The next datagram opens a new session.
        c.send(b"two").await.unwrap();
        let n = within(Duration::from_secs(2), "reply", c.recv(&mut buf)).await.unwrap();
        assert_eq!(&buf[..n], b"u:two");
        assert_eq!(stats.backend("dns", servers[0].addr).unwrap().connections_total, 2);
        drop(c);
        finish(dp, servers, fds).await;
    });
}

// ---------------------------------------------------------------------------------------
// HTTP mode and the connection pool

#[test]
fn http_keep_alive_client_reuses_pooled_upstream_connections() {
    run(async {
        let fds = fd_count();
        let servers = vec![
            http_backend("h1", HttpOpts::default()).await,
            http_backend("h2", HttpOpts::default()).await,
            http_backend("h3", HttpOpts::default()).await,
        ];
        let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
        let vip = vip_tcp();
        let dp = start(&config("", &http_service("web", vip, "", &addrs)));
        let stats = dp.stats();

        // 200 requests on one client connection.
        let mut client = HttpClient::connect(vip).await;
        let mut names = Vec::new();
        for i in 0..200 {
            let r = client.get(&format!("/one/{i}")).await;
            assert_eq!(r.status, 200, "{r:?}");
            names.push(server_of(&r));
        }
        assert_eq!(count(names).values().copied().collect::<Vec<_>>(), vec![67, 67, 66]);
        drop(client);
        // 200 requests, each on a new client connection.
        for i in 0..200 {
            let mut c = HttpClient::connect(vip).await;
            assert_eq!(c.get(&format!("/new/{i}")).await.status, 200);
        }
        let opened_at_backends: usize = servers.iter().map(|s| s.accepted.load(Ordering::SeqCst)).sum();
        let answered: usize = servers.iter().map(|s| s.requests.load(Ordering::SeqCst)).sum();
        assert_eq!(answered, 400);
        assert!(opened_at_backends <= 12, "{opened_at_backends} upstream connections for 400 requests");
        let svc = stats.service("web").unwrap();
        assert_eq!(svc.pool_requests_total, 400);
        assert_eq!(svc.pool_connections_opened_total as usize, opened_at_backends);
        assert!(svc.reuse_ratio() > 0.95, "{svc:?}");
        for a in &addrs {
            assert!(dp.pool_idle("web", *a) >= 1);
        }
        let text = stats.render_metrics();
        assert!(text.contains("lb_pool_requests_total{service=\"web\"} 400"), "{text}");
        assert!(text.contains("# TYPE lb_pool_reuse_ratio gauge"), "{text}");
        finish(dp, servers, fds).await;
    });
}

#[test]
fn http_adds_x_forwarded_for_and_strips_hop_by_hop_headers_both_ways() {
    run(async {
        let fds = fd_count();
        let servers = vec![http_backend("h1", HttpOpts::default()).await];
        let vip = vip_tcp();
        let dp = start(&config("", &http_service("web", vip, "", &[servers[0].addr])));
        let mut c = HttpClient::connect(vip).await;
        let headers = [
            ("Connection", "keep-alive, X-Secret"),
            ("X-Secret", "hop"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Connection", "keep-alive"),
            ("TE", "trailers"),
            ("Trailer", "X-Checksum"),
            ("Upgrade", "h2c"),
            ("X-Forwarded-For", "10.1.2.3"),
            ("X-End-To-End", "kept"),
        ];
        let r = c.send("GET", "/headers", &headers, "").await.unwrap();
        assert_eq!(r.status, 200);
        let seen = &r.body;
        assert!(seen.contains("x-forwarded-for: 10.1.2.3, 127.0.0.1\n"), "{seen}");
        assert!(seen.contains("x-end-to-end: kept\n"), "{seen}");
        assert!(seen.contains("host: test\n"), "{seen}");
        for gone in ["x-secret", "keep-alive", "proxy-connection", "te:", "trailer", "upgrade", "transfer-encoding"] {
            assert!(!seen.contains(gone), "{gone} reached the backend:\n{seen}");
        }
        // Response side: the backend's hop-by-hop headers stay on its hop.
        for gone in ["x-resp-hop", "keep-alive", "proxy-connection"] {
            assert!(header(&r.headers, gone).is_none(), "{gone} reached the client: {:?}", r.headers);
        }
        assert!(
            header(&r.headers, "connection").is_none_or(|v| !v.to_ascii_lowercase().contains("x-resp-hop")),
            "{:?}",
            r.headers
        );
        assert_eq!(header(&r.headers, "x-server"), Some("h1"));
        // A request with a body goes through too.
        let r = c.send("POST", "/post", &[], "hello body").await.unwrap();
        assert_eq!(r.status, 200);
        assert!(r.body.contains("content-length: 10\n"), "{}", r.body);
        drop(c);
        finish(dp, servers, fds).await;
    });
}

#[test]
fn http_backend_closing_idle_connections_fails_no_request() {
    run(async {
        let fds = fd_count();
        let opts = HttpOpts { idle_close: Some(Duration::from_millis(200)), ..Default::default() };
        let servers = vec![http_backend("h1", opts).await];
        let vip = vip_tcp();
        let dp = start(&config("", &http_service("web", vip, "", &[servers[0].addr])));
        let mut c = HttpClient::connect(vip).await;
        for i in 0..6 {
            let r = c.get(&format!("/spaced/{i}")).await;
            assert_eq!(r.status, 200, "request {i}: {r:?}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        assert_eq!(servers[0].requests.load(Ordering::SeqCst), 6);
        drop(c);
        finish(dp, servers, fds).await;
    });
}

#[test]
fn http_request_on_a_connection_the_backend_just_closed_is_retried_once() {
    run(async {
        let fds = fd_count();
        let opts = HttpOpts { drop_second_request: true, ..Default::default() };
        let servers = vec![http_backend("h1", opts).await];
        let vip = vip_tcp();
        let dp = start(&config("", &http_service("web", vip, "", &[servers[0].addr])));
        let mut c = HttpClient::connect(vip).await;
        // Each request after the first finds a pooled connection that the backend closes on
        // it: a GET (idempotent) is sent again. (A POST whose bytes went out is not:
        // `proxy_limits.rs`.)
        for i in 0..5 {
            let r = c.send("GET", &format!("/r/{i}"), &[], "").await.unwrap();
            assert_eq!(r.status, 200, "GET {i}: {r:?}");
        }
        assert_eq!(servers[0].requests.load(Ordering::SeqCst), 5);
        drop(c);
        finish(dp, servers, fds).await;
    });
}

#[test]
fn http_upgrade_switches_to_a_byte_relay_after_the_backends_101() {
    run(async {
        let fds = fd_count();
        let servers = vec![upgrade_backend("ws").await];
        let vip = vip_tcp();
        let dp = start(&config("", &http_service("web", vip, "", &[servers[0].addr])));
        let mut s = within(Duration::from_secs(5), "connect", TcpStream::connect(vip)).await.unwrap();
        s.write_all(b"GET /chat HTTP/1.1\r\nHost: test\r\nConnection: keep-alive, Upgrade\r\nUpgrade: echo\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let (head, start) =
            within(Duration::from_secs(5), "the 101", read_head(&mut s, &mut buf)).await.expect("a head");
        let (status, headers) = parse_head(&head);
        assert!(status.starts_with("HTTP/1.1 101"), "{head}");
        assert_eq!(header(&headers, "upgrade"), Some("echo"), "{head}");
        assert!(header(&headers, "connection").is_some_and(|c| c.eq_ignore_ascii_case("upgrade")), "{head}");
        // What the backend sent right behind its 101 comes through.
        buf.drain(..start);
        let hello = b"hello from ws\n";
        while buf.len() < hello.len() {
            let mut chunk = [0u8; 64];
            let n = within(Duration::from_secs(2), "the backend's first bytes", s.read(&mut chunk)).await.unwrap();
            assert_ne!(n, 0, "closed after the 101");
            buf.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(&buf[..], hello);
        // From now on bytes, not HTTP, both ways; the connection is one open flow.
        echoes(&mut s, "\u{0}\u{1} not HTTP at all\r\n\r\n").await;
        echoes(&mut s, "GET / HTTP/1.1\r\n\r\n").await;
        let flows = dp.stats().flows();
        assert_eq!(flows.iter().map(|f| f.backend).collect::<Vec<_>>(), vec![servers[0].addr], "{flows:?}");
        assert_eq!(dp.stats().backend("web", servers[0].addr).map(|c| c.active), Some(1), "in use while upgraded");
        // The client's FIN reaches the backend, whose FIN comes back: a clean end.
        s.shutdown().await.unwrap();
        let mut rest = [0u8; 8];
        let r = within(Duration::from_secs(2), "the relay ends", s.read(&mut rest)).await;
        assert!(matches!(r, Ok(0)), "{r:?}");
        drop(s);
        finish(dp, servers, fds).await;
    });
}

#[test]
fn http_upgrade_the_backend_declines_leaves_the_connection_http() {
    run(async {
        let fds = fd_count();
        let servers = vec![http_backend("plain", HttpOpts::default()).await];
        let vip = vip_tcp();
        let dp = start(&config("", &http_service("web", vip, "", &[servers[0].addr])));
        let mut c = HttpClient::connect(vip).await;
        let r = c.send("GET", "/chat", &[("Connection", "Upgrade"), ("Upgrade", "echo")], "").await.unwrap();
        assert_eq!(r.status, 200);
        assert!(r.body.contains("upgrade: echo"), "the switch is asked of the backend:\n{}", r.body);
        assert_eq!(c.get("/next").await.status, 200, "the connection goes on as HTTP");
        drop(c);
        finish(dp, servers, fds).await;
    });
}

#[test]
fn http_answers_503_without_backends_and_502_when_none_answers() {
    run(async {
        let fds = fd_count();
        let (empty, dead) = (vip_tcp(), vip_tcp());
        let down = refused_addr();
        let services = http_service("empty", empty, "", &[]) + &http_service("dead", dead, "", &[down]);
        let dp = start(&config("", &services));
        let mut c = HttpClient::connect(empty).await;
        let r = c.get("/").await;
        assert_eq!(r.status, 503);
        assert!(r.body.contains("empty"), "{}", r.body);
        let mut c2 = HttpClient::connect(dead).await;
        let r = c2.get("/").await;
        assert_eq!(r.status, 502);
        assert_eq!(header(&r.headers, "content-type"), Some("text/plain; charset=utf-8"));
        // The client connection stays usable.
        assert_eq!(c2.get("/again").await.status, 502);
        assert_eq!(dp.stats().backend("dead", down).unwrap().connect_failures_total, 2);
        drop((c, c2));
        finish(dp, Vec::new(), fds).await;
    });
}

#[test]
fn http_pool_honours_max_idle_per_backend_and_idle_timeout() {
    run(async {
        let fds = fd_count();
        let servers = vec![http_backend("h1", HttpOpts::default()).await];
        let vip = vip_tcp();
        let dp = start(&config(
            "",
            &http_service(
                "web",
                vip,
                "pool = { max_idle_per_backend = 2, idle_timeout = \"300ms\" }",
                &[servers[0].addr],
            ),
        ));
        // Eight concurrent clients: eight upstream connections, two kept.
        let mut clients = Vec::new();
        for _ in 0..8 {
            clients.push(HttpClient::connect(vip).await);
        }
        let mut set = JoinSet::new();
        for mut c in clients {
            set.spawn(async move {
                for i in 0..5 {
                    assert_eq!(c.get(&format!("/c/{i}")).await.status, 200);
                }
            });
        }
        within(Duration::from_secs(10), "clients", async {
            while let Some(r) = set.join_next().await {
                r.unwrap();
            }
        })
        .await;
        assert!(dp.pool_idle("web", servers[0].addr) <= 2);
        // Past the idle timeout the pool is empty and the backend's connections closed.
        within(Duration::from_secs(3), "pool empties", async {
            while dp.pool_idle("web", servers[0].addr) > 0 || dp.stats().tasks().live_of(TaskKind::Upstream) > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        finish(dp, servers, fds).await;
    });
}

#[test]
fn http_shutdown_closes_idle_keep_alive_clients_at_once() {
    run(async {
        let fds = fd_count();
        let servers = vec![http_backend("h1", HttpOpts::default()).await];
        let vip = vip_tcp();
        let dp = start(&config("", &http_service("web", vip, "", &[servers[0].addr])));
        let stats = dp.stats();
        let mut c = HttpClient::connect(vip).await;
        assert_eq!(c.get("/").await.status, 200);
        let t = Instant::now();
        within(Duration::from_secs(5), "shutdown", dp.shutdown(Duration::from_secs(10))).await;
        assert!(t.elapsed() < Duration::from_secs(2), "an idle keep-alive client held the drain for {:?}", t.elapsed());
        let mut buf = [0u8; 8];
        let r = within(Duration::from_secs(2), "client closed", c.stream.read(&mut buf)).await;
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
        drop(c);
        drop(servers);
        assert_clean(&stats, fds).await;
    });
}

#[test]
fn http_shutdown_lets_a_request_in_flight_finish() {
    run(async {
        let fds = fd_count();
        let opts = HttpOpts { delay: Some(Duration::from_millis(500)), ..Default::default() };
        let servers = vec![http_backend("slow", opts).await];
        let vip = vip_tcp();
        let dp = start(&config("", &http_service("web", vip, "", &[servers[0].addr])));
        let stats = dp.stats();
        let mut c = HttpClient::connect(vip).await;
        let request = tokio::spawn(async move { c.get("/slow").await.status });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let t = Instant::now();
        within(Duration::from_secs(5), "shutdown", dp.shutdown(Duration::from_secs(5))).await;
        let took = t.elapsed();
        assert_eq!(within(Duration::from_secs(2), "response", request).await.unwrap(), 200);
        assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(3), "shutdown took {took:?}");
        drop(servers);
        assert_clean(&stats, fds).await;
    });
}

#[test]
fn http_pool_with_max_idle_zero_opens_a_connection_per_request() {
    run(async {
        let fds = fd_count();
        let servers = vec![http_backend("h1", HttpOpts::default()).await];
        let vip = vip_tcp();
        let dp =
            start(&config("", &http_service("web", vip, "pool = { max_idle_per_backend = 0 }", &[servers[0].addr])));
        let mut c = HttpClient::connect(vip).await;
        for i in 0..10 {
            assert_eq!(c.get(&format!("/{i}")).await.status, 200);
        }
        let svc = dp.stats().service("web").unwrap();
        assert_eq!((svc.pool_connections_opened_total, svc.pool_requests_total), (10, 10));
        assert_eq!(svc.reuse_ratio(), 0.0);
        assert_eq!(servers[0].accepted.load(Ordering::SeqCst), 10);
        drop(c);
        finish(dp, servers, fds).await;
    });
}

#[test]
fn udp_backend_that_is_not_listening_ends_the_session_and_counts_a_failure() {
    run(async {
        let fds = fd_count();
        let dead = SocketAddr::from((Ipv4Addr::LOCALHOST, free_udp_port()));
        let vip = SocketAddr::from((Ipv4Addr::LOCALHOST, free_udp_port()));
        let dp = start(&config("", &service("dns", vip, "protocol = \"udp\"", &w1(&[dead]))));
        let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        c.connect(vip).await.unwrap();
        let stats = dp.stats();
        within(Duration::from_secs(3), "ICMP port unreachable is seen", async {
            loop {
                let _ = c.send(b"anyone?").await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                if stats.backend("dns", dead).unwrap().connect_failures_total > 0 {
                    break;
                }
            }
        })
        .await;
        within(Duration::from_secs(2), "session ends", async {
            while stats.tasks().live_of(TaskKind::Session) > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        drop(c);
        finish(dp, Vec::new(), fds).await;
    });
}

// ---------------------------------------------------------------------------------------
// Metrics and flows

#[test]
fn metrics_render_every_proxy_family_with_path_proxy() {
    run(async {
        let fds = fd_count();
        let servers = vec![tagged_echo("a").await];
        let vip = vip_tcp();
        let dead = refused_addr();
        let dp = start(&config("", &service("web", vip, "algorithm = \"round_robin\"", &w1(&[servers[0].addr, dead]))));
        let mut open = Vec::new();
        for _ in 0..2 {
            let mut s = within(Duration::from_secs(5), "connect", TcpStream::connect(vip)).await.unwrap();
            let mut name = [0u8; 2];
            within(Duration::from_secs(5), "name", s.read_exact(&mut name)).await.unwrap();
            open.push(s);
        }
        let stats = dp.stats();
        let flows = stats.flows();
        assert_eq!(flows.len(), 2);
        assert!(flows.iter().all(|f| f.vip == vip && f.backend == servers[0].addr && f.service == "web"));
        let json = serde_json::to_value(&flows).unwrap();
        assert_eq!(json[0]["protocol"], "tcp");
        let text = stats.render_metrics();
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
        let value = |metric: &str, backend: SocketAddr| {
            let b = backend.to_string();
            scrape
                .samples
                .iter()
                .find(|s| {
                    s.metric == metric
                        && s.labels.get("backend") == Some(b.as_str())
                        && s.labels.get("path") == Some("proxy")
                        && s.labels.get("service") == Some("web")
                })
                .map(|s| match s.value {
                    prometheus_parse::Value::Counter(v)
                    | prometheus_parse::Value::Gauge(v)
                    | prometheus_parse::Value::Untyped(v) => v,
                    _ => f64::NAN,
                })
        };
        assert_eq!(value("lb_backend_new_flows_total", servers[0].addr), Some(2.0));
        assert_eq!(value("lb_backend_active_flows", servers[0].addr), Some(2.0));
        assert_eq!(value("lb_backend_reply_bytes_total", servers[0].addr), Some(4.0));
        assert_eq!(value("lb_backend_bytes_total", servers[0].addr), Some(0.0));
        assert!(value("lb_backend_connect_failures_total", dead).unwrap() >= 1.0);
        for family in [
            "lb_backend_new_flows_total counter",
            "lb_backend_bytes_total counter",
            "lb_backend_active_flows gauge",
            "lb_backend_connect_failures_total counter",
        ] {
            assert!(text.contains(&format!("# TYPE {family}\n")), "{family}\n{text}");
        }
        drop(open);
        let stats = finish(dp, servers, fds).await;
        assert!(stats.flows().is_empty());
    });
}

// ---------------------------------------------------------------------------------------
// Throughput (report only): cargo test -p lb-user --test proxy -- --ignored --nocapture

#[test]
#[ignore = "a measurement, not a check: run with --ignored --nocapture"]
fn throughput_report() {
    let _serial = serial();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let servers = [http_backend("h1", HttpOpts::default()).await, http_backend("h2", HttpOpts::default()).await, http_backend("h3", HttpOpts::default()).await];
        let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
        let (l4, http) = (vip_tcp(), vip_tcp());
        let services = service("l4", l4, "algorithm = \"round_robin\"", &w1(&addrs)) + &http_service("http", http, "", &addrs);
        let dp = start(&config("", &services));
        let t = Duration::from_secs(3);
        for clients in [1, 32] {
            let direct = hammer(addrs[0], clients, t).await;
            let via_l4 = hammer(l4, clients, t).await;
            let via_http = hammer(http, clients, t).await;
            println!("{clients} keep-alive clients: backend direct {direct:.0} req/s, l4 proxy {via_l4:.0} req/s, http proxy {via_http:.0} req/s");
        }
        let svc = dp.stats().service("http").unwrap();
        println!("http pool: {} upstream connections for {} requests (reuse {:.4})", svc.pool_connections_opened_total, svc.pool_requests_total, svc.reuse_ratio());
        dp.shutdown(Duration::from_secs(2)).await;
    });
}

// ---------------------------------------------------------------------------------------
// Protection: rate limits, max_connections, passive outcomes, half-open trials

#[test]
fn l4_rate_limit_closes_new_connections_beyond_the_burst_and_spares_established_ones() {
    run(async {
        let fds = fd_count();
        let servers = vec![tagged_echo("up").await];
        let vip = vip_tcp();
        let keys = "rate_limit = { new_flows_per_second = 1, burst = 3 }";
        let dp = start(&config("", &service("web", vip, keys, &w1(&[servers[0].addr]))));
        let t = Instant::now();
        let mut admitted = Vec::new();
        for _ in 0..3 {
            let mut s = within(Duration::from_secs(5), "connect", TcpStream::connect(vip)).await.unwrap();
            let mut name = [0u8; 3];
            within(Duration::from_secs(3), "name", s.read_exact(&mut name)).await.unwrap();
            admitted.push(s);
        }
        let mut refused = 0u64;
        for _ in 0..6 {
            // The refusal is an RST right after the accept: it can even fail the connect.
            let closed = match within(Duration::from_secs(5), "connect", TcpStream::connect(vip)).await {
                Ok(s) => closed_without_data(s).await,
                Err(e) => e.kind() == io::ErrorKind::ConnectionReset,
            };
            if closed {
                refused += 1;
            }
        }
        // The bucket refills one flow a second: a slow machine may have earned one more.
        let refill = t.elapsed().as_secs();
        assert!(refused + refill >= 6, "{refused} of 6 refused after {refill} s");
        let c = dp.stats().service("web").unwrap();
        assert_eq!(c.ratelimited_service_total, refused, "the counter is the excess");
        assert_eq!(c.ratelimited_source_total, 0);
        assert_eq!(
            servers[0].accepted.load(Ordering::SeqCst) as u64,
            9 - refused,
            "a refused connection never reaches the backend"
        );
        for (i, s) in admitted.iter_mut().enumerate() {
            echoes(s, &format!("still here {i}\n")).await;
        }
        let metrics = dp.stats().render_metrics();
        assert!(
            metrics.contains(&format!(
                "lb_ratelimited_total{{service=\"web\",scope=\"service\",path=\"proxy\"}} {refused}"
            )),
            "{metrics}"
        );
        assert!(
            metrics.contains("lb_ratelimited_total{service=\"web\",scope=\"source\",path=\"proxy\"} 0"),
            "{metrics}"
        );
        drop(admitted);
        finish(dp, servers, fds).await;
    });
}

#[test]
fn http_rate_limit_per_source_answers_429_and_spares_other_sources_and_open_connections() {
    run(async {
        let fds = fd_count();
        let servers = vec![http_backend("h", HttpOpts::default()).await];
        let vip = vip_tcp();
        let extra = "rate_limit = { per_source_new_flows_per_second = 1, per_source_burst = 2 }";
        let dp = start(&config("", &http_service("web", vip, extra, &[servers[0].addr])));
        let mut open = vec![HttpClient::connect(vip).await, HttpClient::connect(vip).await];
        for c in &mut open {
            assert_eq!(c.get("/").await.status, 200);
        }
        let mut over = HttpClient::connect(vip).await;
        let r = over.get("/").await;
        assert_eq!(r.status, 429, "{r:?}");
        assert_eq!(header(&r.headers, "connection"), Some("close"));
        assert!(r.body.contains("rate limit"), "{}", r.body);
        let mut rest = [0u8; 16];
        assert_eq!(
            within(Duration::from_secs(3), "closed after 429", over.stream.read(&mut rest)).await.unwrap_or(0),
            0
        );
        // Another source has its own bucket; open connections are never limited.
        let other = connect_from(SocketAddr::from(([127, 0, 0, 2], 0)), vip).await;
        let mut other = HttpClient::over(other);
        assert_eq!(other.get("/").await.status, 200);
        for c in &mut open {
            for _ in 0..3 {
                assert_eq!(c.get("/again").await.status, 200);
            }
        }
        let c = dp.stats().service("web").unwrap();
        assert_eq!((c.ratelimited_source_total, c.ratelimited_service_total), (1, 0));
        assert_eq!(servers[0].requests.load(Ordering::SeqCst), 9, "the refused request never went upstream");
        drop((open, over, other));
        finish(dp, servers, fds).await;
    });
}

#[test]
fn udp_rate_limit_drops_only_datagrams_that_would_open_a_session() {
    run(async {
        let fds = fd_count();
        let servers = vec![udp_echo("u").await];
        let vip = SocketAddr::from((Ipv4Addr::LOCALHOST, free_udp_port()));
        let keys = "protocol = \"udp\"\nrate_limit = { per_source_new_flows_per_second = 1, per_source_burst = 1 }";
        let dp = start(&config("", &service("dns", vip, keys, &w1(&[servers[0].addr]))));
        let first = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        first.connect(vip).await.unwrap();
        let second = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        second.connect(vip).await.unwrap();
        let mut buf = [0u8; 64];
        first.send(b"a").await.unwrap();
        within(Duration::from_secs(2), "reply", first.recv(&mut buf)).await.unwrap();
        // Same source, new session: over the limit, dropped.
        second.send(b"b").await.unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(300), second.recv(&mut buf)).await.is_err(),
            "no reply for a limited datagram"
        );
        // The open session is not limited.
        for _ in 0..5 {
            first.send(b"c").await.unwrap();
            within(Duration::from_secs(2), "reply", first.recv(&mut buf)).await.unwrap();
        }
        assert_eq!(dp.stats().service("dns").unwrap().ratelimited_source_total, 1);
        assert_eq!(dp.udp_sessions("dns"), 1);
        drop((first, second));
        finish(dp, servers, fds).await;
    });
}

#[test]
fn l4_max_connections_sends_the_overflow_to_the_next_backend_and_closes_when_all_are_full() {
    run(async {
        let fds = fd_count();
        let servers = vec![tagged_echo("a").await, tagged_echo("b").await];
        let vip = vip_tcp();
        let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
        // source_hash: every connection from 127.0.0.1 wants the same backend.
        let keys = "algorithm = \"source_hash\"\ncircuit_breaker = { max_connections = 1 }";
        let dp = start(&config("", &service("web", vip, keys, &w1(&addrs))));
        let mut first = within(Duration::from_secs(5), "connect", TcpStream::connect(vip)).await.unwrap();
        let mut name = [0u8; 2];
        within(Duration::from_secs(3), "name", first.read_exact(&mut name)).await.unwrap();
        let preferred = String::from_utf8_lossy(&name[..1]).into_owned();
        let mut second = within(Duration::from_secs(5), "connect", TcpStream::connect(vip)).await.unwrap();
        within(Duration::from_secs(3), "name", second.read_exact(&mut name)).await.unwrap();
        assert_ne!(String::from_utf8_lossy(&name[..1]), preferred, "the full backend was skipped for the next one");
        let third = within(Duration::from_secs(5), "connect", TcpStream::connect(vip)).await.unwrap();
        assert!(closed_without_data(third).await, "every backend full: closed");
        assert_eq!(dp.stats().service("web").unwrap().overflow_total, 1);
        assert!(dp.stats().render_metrics().contains("lb_proxy_overflow_total{service=\"web\",path=\"proxy\"} 1"));
        // A slot frees up: its backend takes new connections again.
        drop(first);
        let deadline = Instant::now() + Duration::from_secs(3);
        while addrs.iter().map(|a| dp.stats().backend("web", *a).unwrap().active).sum::<u64>() > 1 {
            assert!(Instant::now() < deadline, "the closed connection was never released");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(ask_name(vip).await, preferred);
        echoes(&mut second, "still served\n").await;
        drop(second);
        finish(dp, servers, fds).await;
    });
}

#[test]
fn http_max_connections_answers_503_when_every_backend_is_busy() {
    run(async {
        let fds = fd_count();
        let slow = HttpOpts { delay: Some(Duration::from_millis(1500)), ..Default::default() };
        let servers = vec![http_backend("s1", slow).await, http_backend("s2", slow).await];
        let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
        let vip = vip_tcp();
        let dp = start(&config("", &http_service("web", vip, "circuit_breaker = { max_connections = 1 }", &addrs)));
        let mut slow_requests = JoinSet::new();
        for _ in 0..2 {
            slow_requests.spawn(async move { HttpClient::connect(vip).await.get("/slow").await });
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while addrs.iter().any(|a| dp.stats().backend("web", *a).unwrap().active < 1) {
            assert!(Instant::now() < deadline, "the two slow requests never were in flight on both backends");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut c = HttpClient::connect(vip).await;
        let r = c.get("/fast").await;
        assert_eq!(r.status, 503, "{r:?}");
        assert!(r.body.contains("max_connections"), "{}", r.body);
        let mut served = Vec::new();
        while let Some(r) = slow_requests.join_next().await {
            let r = r.unwrap();
            assert_eq!(r.status, 200);
            served.push(server_of(&r));
        }
        assert_eq!(count(served).len(), 2, "one slow request on each backend");
        assert_eq!(dp.stats().service("web").unwrap().overflow_total, 1);
        assert_eq!(c.get("/after").await.status, 200, "capacity is back");
        drop(c);
        finish(dp, servers, fds).await;
    });
}

#[test]
fn l4_outcomes_count_refused_connects_and_early_resets_as_failures_and_served_flows_as_successes() {
    run(async {
        let fds = fd_count();
        let servers = vec![tagged_echo("up").await, accept_and_reset_backend().await];
        let (live, rst) = (servers[0].addr, servers[1].addr);
        let dead = refused_addr();
        let vip = vip_tcp();
        let mut dp = start(&config("", &service("web", vip, "algorithm = \"round_robin\"", &w1(&[dead, live, rst]))));
        let mut names = Vec::new();
        for _ in 0..9 {
            // A flow the resetting backend took is reset on the client's side too, which
            // can come before the client's connect has completed.
            match within(Duration::from_secs(5), "connect", TcpStream::connect(vip)).await {
                Ok(s) => names.push(read_name(s).await),
                Err(e) => {
                    assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
                    names.push(String::new());
                }
            }
        }
        // Outcomes of reset flows land when their relay ends: wait for every task to finish.
        let deadline = Instant::now() + Duration::from_secs(3);
        while dp.stats().tasks().live_of(TaskKind::Connection) > 0 {
            assert!(Instant::now() < deadline, "connections still open");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let o = dp.outcomes();
        let (live_ok, live_failed) = outcome_of(&o, "web", live);
        let (rst_ok, rst_failed) = outcome_of(&o, "web", rst);
        let (dead_ok, dead_failed) = outcome_of(&o, "web", dead);
        let served = names.iter().filter(|n| *n == "up").count() as u64;
        assert_eq!((live_ok, live_failed), (served, 0), "{names:?}");
        assert_eq!(rst_ok, 0);
        // Its reset can also land before the proxy's connect completes: then it is a
        // connect failure (and the flow goes to the next backend). Either way, a failure.
        let rst_connect_failures = dp.stats().backend("web", rst).unwrap().connect_failures_total;
        assert_eq!(rst_failed, 9 - served + rst_connect_failures, "every flow the resetting backend took failed");
        assert!(rst_failed >= 1);
        assert_eq!(dead_ok, 0);
        assert_eq!(dead_failed, dp.stats().backend("web", dead).unwrap().connect_failures_total);
        assert!(dead_failed >= 3, "{dead_failed}");
        // Deltas: nothing new since the last call.
        let again = dp.outcomes();
        assert!(again.is_empty(), "{again:?}");
        for _ in 0..2 {
            if let Ok(s) = within(Duration::from_secs(5), "connect", TcpStream::connect(vip)).await {
                read_name(s).await;
            }
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while dp.stats().tasks().live_of(TaskKind::Connection) > 0 {
            assert!(Instant::now() < deadline, "connections still open");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let later = dp.outcomes();
        let total: u64 = later.iter().map(|o| o.succeeded + o.failed).sum();
        assert!(total >= 2, "the two new connections are counted: {later:?}");
        finish(dp, servers, fds).await;
    });
}

#[test]
fn http_outcomes_count_5xx_as_failures() {
    run(async {
        let fds = fd_count();
        let servers = vec![http_backend("ok", HttpOpts::default()).await, failing_http_backend().await];
        let (ok, fail) = (servers[0].addr, servers[1].addr);
        let vip = vip_tcp();
        let mut dp = start(&config("", &http_service("web", vip, "", &[ok, fail])));
        let mut c = HttpClient::connect(vip).await;
        let mut statuses = Vec::new();
        for _ in 0..6 {
            statuses.push(c.get("/").await.status);
        }
        assert_eq!(statuses.iter().filter(|s| **s == 500).count(), 3, "{statuses:?}");
        let o = dp.outcomes();
        assert_eq!(outcome_of(&o, "web", ok), (3, 0));
        assert_eq!(outcome_of(&o, "web", fail), (0, 3));
        drop(c);
        finish(dp, servers, fds).await;
    });
}

#[test]
fn a_half_open_backend_gets_exactly_one_new_flow_per_reconcile() {
    run(async {
        let fds = fd_count();
        let servers = vec![tagged_echo("a").await, tagged_echo("b").await];
        let vip = vip_tcp();
        let cfg =
            config("", &service("web", vip, "algorithm = \"round_robin\"", &w1(&[servers[0].addr, servers[1].addr])));
        let mut dp = start(&cfg);
        let mut desired = Desired::from_config(&cfg);
        desired.services[0].backends[1].circuit = Circuit::HalfOpen;
        for round in 0..2 {
            dp.reconcile(&desired).unwrap();
            let names: Vec<String> = {
                let mut v = Vec::new();
                for _ in 0..6 {
                    v.push(ask_name(vip).await);
                }
                v
            };
            assert_eq!(names.iter().filter(|n| *n == "b").count(), 1, "round {round}: {names:?}");
            assert_eq!(names[0], "b", "round {round}: the first new flow is the trial");
        }
        // Open: no trial at all.
        desired.services[0].backends[1].circuit = Circuit::Open;
        dp.reconcile(&desired).unwrap();
        for _ in 0..4 {
            assert_eq!(ask_name(vip).await, "a");
        }
        let o = dp.outcomes();
        assert_eq!(outcome_of(&o, "web", servers[1].addr), (2, 0), "the trials' outcomes are counted");
        finish(dp, servers, fds).await;
    });
}

#[test]
fn udp_outcomes_count_port_unreachable_as_a_failure_and_a_reply_as_one_success_per_session() {
    run(async {
        let fds = fd_count();
        let servers = vec![udp_echo("u").await];
        let live = servers[0].addr;
        let dead = SocketAddr::from((Ipv4Addr::LOCALHOST, free_udp_port()));
        let (vip_live, vip_dead) = (
            SocketAddr::from((Ipv4Addr::LOCALHOST, free_udp_port())),
            SocketAddr::from((Ipv4Addr::LOCALHOST, free_udp_port())),
        );
        let services = service("live", vip_live, "protocol = \"udp\"", &w1(&[live]))
            + &service("dead", vip_dead, "protocol = \"udp\"", &w1(&[dead]));
        let mut dp = start(&config("", &services));
        let mut buf = [0u8; 64];
        for _ in 0..2 {
            let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            c.connect(vip_live).await.unwrap();
            for _ in 0..3 {
                c.send(b"hi").await.unwrap();
                within(Duration::from_secs(2), "reply", c.recv(&mut buf)).await.unwrap();
            }
        }
        let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        c.connect(vip_dead).await.unwrap();
        let stats = dp.stats();
        within(Duration::from_secs(3), "ICMP port unreachable is seen", async {
            while stats.backend("dead", dead).unwrap().failed_total == 0 {
                let _ = c.send(b"anyone?").await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        let o = dp.outcomes();
        assert_eq!(outcome_of(&o, "live", live), (2, 0), "one success per session, not per reply");
        let (ok, failed) = outcome_of(&o, "dead", dead);
        assert_eq!(ok, 0);
        assert!(failed >= 1, "{failed}");
        drop(c);
        finish(dp, servers, fds).await;
    });
}

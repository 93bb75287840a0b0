//! Network tests: the netns test network, the real `lb run` attached by XDP on the LB's
//! eth0, the seed's backends, real clients (curl, sockets). Root only: `cargo xtask test`
//! runs them one at a time (`--ignored --test-threads=1`); without root they fail.
mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::net::*;
use testenv::{CLIENT_NS, LB_NS, VIP_V4, VIP_V6};

fn config(forwarding: &str, extra_v4_backend: Option<&str>, drop_v4_backend: Option<&str>) -> String {
    let mut v4 = vec!["172.20.0.11:80", "172.20.0.12:80", "172.20.0.13:80"];
    if let Some(b) = extra_v4_backend {
        v4.push(b);
    }
    v4.retain(|b| Some(*b) != drop_v4_backend);
    let backends =
        |list: &[&str]| list.iter().map(|a| format!("[[service.backend]]\naddress = \"{a}\"\n")).collect::<String>();
    format!(
        "[daemon]\ninterface = \"eth0\"\nmode = \"xdp\"\npin_path = \"{pin}\"\n\n\
         [[service]]\nname = \"web\"\nvip = \"{VIP_V4}:80\"\nforwarding = \"{forwarding}\"\n{}\n\
         [[service]]\nname = \"web6\"\nvip = \"[{VIP_V6}]:80\"\nforwarding = \"{forwarding}\"\n{}",
        backends(&v4),
        backends(&["[fd00:20::11]:80", "[fd00:20::12]:80", "[fd00:20::13]:80"]),
        pin = testenv::LB_PIN_PATH,
    )
}

fn all_three() -> BTreeSet<String> {
    ["Server1", "Server2", "Server3"].iter().map(|s| s.to_string()).collect()
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn curl_through_the_ipv4_and_ipv6_vips_in_nat_mode_reaches_all_three_servers() {
    let _net = Net::up(false);
    let lb = start(&config("nat", None, None));
    assert_eq!(servers_reached(&format!("http://{VIP_V4}/"), 30), all_three());
    assert_eq!(servers_reached(&format!("http://[{VIP_V6}]/"), 30), all_three());
    let stats: serde_json::Value = serde_json::from_str(&lb.list_json("stats").unwrap()).unwrap();
    assert_eq!(stats["actions"]["aborted"], 0);
    assert!(stats["actions"]["tx"].as_u64().unwrap() >= 60 * 4, "every request's packets went out by XDP_TX");
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn curl_through_the_ipv4_and_ipv6_vips_in_dsr_mode_reaches_all_three_servers() {
    let _net = Net::up(true);
    let lb = start(&config("dsr", None, None));
    assert_eq!(servers_reached(&format!("http://{VIP_V4}/"), 30), all_three());
    assert_eq!(servers_reached(&format!("http://[{VIP_V6}]/"), 30), all_three());
    let backends: Vec<serde_json::Value> = serde_json::from_str(&lb.list_json("backends").unwrap()).unwrap();
    let new_flows: u64 = backends.iter().map(|b| b["new_flows"].as_u64().unwrap()).sum();
    assert!(new_flows >= 60, "the data path counted the flows it steered: {new_flows}");
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_long_lived_connection_keeps_its_backend_while_the_backend_set_changes() {
    let _net = Net::up(false);
    testenv::add_server(4).expect("a fourth server");
    let mut lb = start(&config("nat", None, None));
    let (mut client, port) = KeepAliveClient::connect(VIP_V4);
    let first = client.request();

    // The flow is in the data path's table, pinned to the server that answered.
    let flows: Vec<serde_json::Value> = serde_json::from_str(&lb.list_json("flows").unwrap()).unwrap();
    let flow =
        flows.iter().find(|f| f["client"] == format!("172.20.0.2:{port}")).expect("lb list flows shows the connection");
    let n: u8 = first.trim_start_matches("Server").parse().unwrap();
    assert_eq!(flow["backend"], format!("172.20.0.1{n}:80"));

    // Add a backend, then remove one that is not ours: the connection stays put.
    lb.reload(&config("nat", Some("172.20.0.14:80"), None)).unwrap();
    assert_eq!(client.request(), first);
    let other = (1..=3u8).find(|m| *m != n).unwrap();
    lb.reload(&config("nat", Some("172.20.0.14:80"), Some(&format!("172.20.0.1{other}:80")))).unwrap();
    for _ in 0..5 {
        assert_eq!(client.request(), first, "the connection kept its backend");
    }
    // New connections still spread over what is left.
    let reached = servers_reached(&format!("http://{VIP_V4}/"), 40);
    assert!(!reached.contains(&format!("Server{other}")), "the removed backend gets no new flows: {reached:?}");
    assert!(reached.len() >= 2, "{reached:?}");
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn the_lbs_own_tcp_service_on_a_non_vip_port_still_works_with_xdp_attached() {
    let _net = Net::up(false);
    let _lb = start(&config("nat", None, None));
    // An SSH-like service of the LB host itself: a TCP server on port 2222, both families.
    let mut server = testenv::spawn(LB_NS, &["python3", "-m", "http.server", "2222", "--bind", "::"]).expect("spawn");
    let fetch = |url: &str| {
        let mut last = Err(anyhow::anyhow!("not tried"));
        for _ in 0..50 {
            last = testenv::curl(CLIENT_NS, url, Duration::from_secs(2));
            if last.is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        last
    };
    let v4 = fetch("http://172.20.0.10:2222/");
    let v6 = fetch("http://[fd00:20::10]:2222/");
    let _ = server.kill();
    let _ = server.wait();
    assert!(v4.expect("the LB's own service over IPv4").contains("Directory listing"));
    assert!(v6.expect("the LB's own service over IPv6").contains("Directory listing"));
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn sigterm_leaves_the_data_path_forwarding_and_detach_on_exit_removes_everything() {
    let _net = Net::up(false);
    let cfg = config("nat", None, None);
    let mut lb = start(&cfg);
    let status = lb.stop().unwrap();
    assert!(status.success(), "{status}: {}", lb.log());
    // Hitless by default: no daemon, and the XDP program still balances.
    assert!(testenv::xdp_attached(LB_NS, "eth0").unwrap(), "still attached");
    assert_eq!(servers_reached(&format!("http://{VIP_V4}/"), 30), all_three());
    // A daemon started with --detach-on-exit adopts it, and takes it all away on SIGTERM.
    let mut lb = testenv::LbDaemon::start_with(&testenv::lb_binary(), &cfg, &["--detach-on-exit"]).unwrap();
    assert!(lb.log().contains("replaced in the running link"), "adopted: {}", lb.log());
    let status = lb.stop().unwrap();
    assert!(status.success(), "{status}: {}", lb.log());
    assert!(!testenv::xdp_attached(LB_NS, "eth0").unwrap(), "XDP detached");
    // Everything: the pin directory goes whole, with every map and the link pin in it.
    let pin_dir = std::path::Path::new(testenv::LB_PIN_PATH);
    let left: Vec<_> =
        std::fs::read_dir(pin_dir).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
    assert!(!pin_dir.exists(), "{} still exists, holding {left:?}", pin_dir.display());
    let out = std::process::Command::new(testenv::lb_binary())
        .args(["list", "vips", "--pin-path", testenv::LB_PIN_PATH])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing is pinned"));
}

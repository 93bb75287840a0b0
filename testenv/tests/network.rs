//! The netns test network itself: needs root (`cargo xtask test` runs these).

use std::time::Duration;
use testenv::*;

const TIMEOUT: Duration = Duration::from_secs(3);

/// Holds the machine's one test network and takes it down however the test ends.
struct Network {
    _lock: NetworkLock,
}

impl Network {
    fn up(dsr: bool) -> Network {
        Network::up_with(&UpOptions { dsr, ..Default::default() })
    }

    fn up_with(options: &UpOptions) -> Network {
        require_root();
        let lock = lock_network().expect("lock the test network");
        up(options).expect("testenv up");
        Network { _lock: lock }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        if let Err(error) = down() {
            eprintln!("testenv down after the test failed: {error:#}");
        }
    }
}

fn server_field(body: &str) -> &str {
    let marker = "\"server\": \"";
    let start = body.find(marker).unwrap_or_else(|| panic!("no server in {body}")) + marker.len();
    &body[start..start + body[start..].find('"').unwrap()]
}

fn lbt_namespaces() -> Vec<String> {
    let list = exec_ok_root(&["ip", "netns", "list"]);
    list.lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| name.starts_with("lbt-"))
        .map(str::to_string)
        .collect()
}

fn exec_ok_root(args: &[&str]) -> String {
    let output = std::process::Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

fn assert_root_namespace_untouched() {
    for args in [
        &["ip", "-4", "addr"][..],
        &["ip", "-6", "addr"],
        &["ip", "-4", "route", "show", "table", "all"],
        &["ip", "-6", "route", "show", "table", "all"],
    ] {
        let shown = exec_ok_root(args);
        assert!(
            !shown.contains("172.20.") && !shown.contains("fd00:20:"),
            "root namespace has test addresses or routes ({args:?}):\n{shown}"
        );
    }
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn up_serves_every_server_over_ipv4_and_ipv6_then_down_removes_everything() {
    let network = Network::up(false);
    for n in 1..=SERVERS {
        for url in [format!("http://{}/", server_v4(n)), format!("http://[{}]/", server_v6(n))] {
            let body = curl(CLIENT_NS, &url, TIMEOUT).unwrap();
            assert_eq!(server_field(&body), format!("Server{n}"), "{url}: {body}");
        }
    }
    let lb_port = switch_port(LB_NS);
    assert!(xdp_attached(SWITCH_NS, &lb_port).unwrap(), "no XDP on switch port {lb_port}");
    let routes = exec_ok(CLIENT_NS, &["ip", "route"]).unwrap();
    assert!(routes.contains(&format!("{VIP_V4} via {LB_V4}")), "{routes}");
    let routes = exec_ok(CLIENT_NS, &["ip", "-6", "route"]).unwrap();
    assert!(routes.contains(&format!("{VIP_V6} via {LB_V6}")), "{routes}");
    let offloads = exec_ok(LB_NS, &["ethtool", "-k", IFACE]).unwrap();
    assert!(offloads.contains("tx-checksumming: off"), "{offloads}");
    assert_root_namespace_untouched();

    drop(network);
    assert_eq!(lbt_namespaces(), Vec::<String>::new());
    assert!(!std::path::Path::new(RUN_DIR).exists(), "{RUN_DIR} left behind");
    assert_root_namespace_untouched();
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn l3_puts_far_servers_behind_a_router_and_the_lb_reaches_them_on_its_second_nic() {
    use testenv::l3::*;
    let network = Network::up_with(&UpOptions { l3: true, ..Default::default() });
    for n in 1..=FAR_SERVERS {
        for url in [format!("http://{}/", far_v4(n)), format!("http://[{}]/", far_v6(n))] {
            let body = curl(LB_NS, &url, TIMEOUT).unwrap();
            assert_eq!(server_field(&body), far_name(n), "{url}: {body}");
        }
        // The far server holds the VIPs (direct-return services answer from them) and
        // routes everything else through the router.
        let lo = exec_ok(&far_ns(n), &["ip", "addr", "show", "dev", "lo"]).unwrap();
        assert!(lo.contains(&format!("{VIP_V4}/32")) && lo.contains(&format!("{VIP_V6}/128")), "{lo}");
        let routes = exec_ok(&far_ns(n), &["ip", "route"]).unwrap();
        assert!(routes.contains(&format!("default via {}", router_far_v4(n))), "{routes}");
    }
    // The LB's server side goes through the router, the VIPs too (tunnelled checks).
    let routes = exec_ok(LB_NS, &["ip", "route", "get", &far_v4(1)]).unwrap();
    assert!(routes.contains(&format!("via {ROUTER_CORE_V4} dev {LB_SERVER_IFACE}")), "{routes}");
    let routes = exec_ok(LB_NS, &["ip", "route", "get", VIP_V4]).unwrap();
    assert!(routes.contains(&format!("dev {LB_SERVER_IFACE}")), "{routes}");
    // Replies of the far servers reach the client without the LB: the router is on br0.
    let routes = exec_ok(ROUTER_NS, &["ip", "route", "get", CLIENT_V4]).unwrap();
    assert!(routes.contains(&format!("dev {IFACE}")) && !routes.contains("via"), "{routes}");
    assert!(xdp_attached(ROUTER_NS, ROUTER_CORE_IFACE).unwrap(), "no XDP on the router's side of the LB's eth1");
    assert_root_namespace_untouched();
    drop(network);
    assert_eq!(lbt_namespaces(), Vec::<String>::new());
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn dsr_puts_the_vips_on_every_servers_loopback() {
    let _network = Network::up(true);
    for n in 1..=SERVERS {
        let ns = server_ns(n);
        let lo = exec_ok(&ns, &["ip", "addr", "show", "dev", "lo"]).unwrap();
        assert!(lo.contains(&format!("{VIP_V4}/32")), "{ns} lo: {lo}");
        assert!(lo.contains(&format!("{VIP_V6}/128")), "{ns} lo: {lo}");
        let arp = exec_ok(&ns, &["sysctl", "-n", "net.ipv4.conf.all.arp_ignore"]).unwrap();
        assert_eq!(arp.trim(), "1", "{ns} arp_ignore");
        // The backend accepts connections to the VIP (what the LB forwards).
        let body = curl(&ns, &format!("http://{VIP_V4}/"), TIMEOUT).unwrap();
        assert_eq!(server_field(&body), format!("Server{n}"));
        let body = curl(&ns, &format!("http://[{VIP_V6}]/"), TIMEOUT).unwrap();
        assert_eq!(server_field(&body), format!("Server{n}"));
    }
    // Only the LB may own the VIP on the wire: no server answers ARP for it.
    let lb = exec_ok(LB_NS, &["ip", "addr"]).unwrap();
    assert!(!lb.contains(VIP_V4), "testenv must not put the VIP on the LB");
    assert_root_namespace_untouched();
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn servers_can_be_added_stopped_and_started() {
    let _network = Network::up(false);
    add_server(4).unwrap();
    let body = curl(CLIENT_NS, &format!("http://{}/", server_v4(4)), TIMEOUT).unwrap();
    assert_eq!(server_field(&body), "Server4");
    let body = curl(CLIENT_NS, &format!("http://[{}]/", server_v6(4)), TIMEOUT).unwrap();
    assert_eq!(server_field(&body), "Server4");
    assert!(xdp_attached(SWITCH_NS, &switch_port(&server_ns(4))).unwrap());
    assert!(add_server(4).is_err(), "adding an existing server must fail");

    stop_server(2).unwrap();
    let url = format!("http://{}/", server_v4(2));
    assert!(curl(CLIENT_NS, &url, TIMEOUT).is_err(), "Server2 still answers after stop");
    stop_server(2).unwrap(); // already stopped: no-op
    start_server(2).unwrap();
    assert_eq!(server_field(&curl(CLIENT_NS, &url, TIMEOUT).unwrap()), "Server2");
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn down_is_idempotent() {
    require_root();
    let _lock = lock_network().unwrap();
    down().unwrap();
    down().unwrap();
    assert_eq!(lbt_namespaces(), Vec::<String>::new());
}

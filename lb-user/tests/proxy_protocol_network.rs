//! The PROXY protocol on the proxy path, against HAProxy from Debian as
//! the real peer: as the backend that reads what `send_proxy` writes (v2 and v1, IPv4 and
//! IPv6, `l4` and `http`), and as the front load balancer whose header `accept_proxy`
//! reads, with the untrusted, malformed, late and LOCAL cases. Root only.
mod common;

use std::time::{Duration, Instant};

use common::net::*;
use testenv::peers::{haproxy, Peer};
use testenv::{CLIENT_NS, LB_NS, VIP_V4, VIP_V6};

fn config(services: &str) -> String {
    format!(
        "[daemon]\nmode = \"proxy\"\nadmin_listen = \"127.0.0.1:9100\"\nstate_file = \"/run/lbt/state.json\"\n\
         workers = 2\n\n{services}"
    )
}

fn service(name: &str, vip: &str, extra: &str, backend: &str) -> String {
    format!(
        "[[service]]\nname = \"{name}\"\nvip = \"{vip}\"\n{extra}\n[service.health_check]\ntype = \"none\"\n\
         [[service.backend]]\naddress = \"{backend}\"\n\n"
    )
}

fn vips_on_the_lb() {
    testenv::exec_ok(LB_NS, &["ip", "addr", "add", &format!("{VIP_V4}/32"), "dev", "lo"]).unwrap();
    testenv::exec_ok(LB_NS, &["ip", "addr", "add", &format!("{VIP_V6}/128"), "dev", "lo", "nodad"]).unwrap();
}

/// HAProxy on server1, port 8080 (IPv4 and IPv6), reading a PROXY header on every
/// connection and answering with the client and destination it names (and logging them).
fn echo_backend() -> Peer {
    let cfg = r#"global
    log stdout format raw local0
defaults
    mode http
    log global
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend echo
    bind :8080 accept-proxy
    bind :::8080 v6only accept-proxy
    log-format "proxy-header src=%ci:%cp dst=%fi:%fp"
    http-request return status 200 content-type text/plain lf-string "%[src] %[src_port] %[dst] %[dst_port]\n"
"#;
    haproxy(&testenv::server_ns(1), "haproxy-echo", cfg, 8080).expect("haproxy echo backend")
}

fn curl_from(ns: &str, url: &str) -> String {
    testenv::curl(ns, url, Duration::from_secs(5)).unwrap_or_else(|e| panic!("curl {url} from {ns}: {e:#}"))
}

/// (client ip, destination ip, destination port) of an echo line.
fn echoed(line: &str) -> (String, String, String) {
    let f: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(f.len(), 4, "echo line: {line:?}");
    (f[0].to_string(), f[2].to_string(), f[3].to_string())
}

fn metrics() -> String {
    testenv::exec_ok(LB_NS, &["curl", "-s", "--noproxy", "*", "http://127.0.0.1:9100/metrics"]).unwrap()
}

/// The value of the series whose line starts with `prefix` (0 if none).
fn metric(text: &str, prefix: &str) -> u64 {
    text.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()).map_or(0, |v| v.parse().unwrap())
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn haproxy_behind_send_proxy_sees_the_clients_own_address() {
    let _net = Net::up(false);
    vips_on_the_lb();
    let echo = echo_backend();
    let services = service("pp4", &format!("{VIP_V4}:8080"), "send_proxy = \"v2\"", "172.20.0.11:8080")
        + &service("pp6", &format!("[{VIP_V6}]:8080"), "send_proxy = \"v2\"", "[fd00:20::11]:8080")
        + &service("pp1", &format!("{VIP_V4}:8081"), "send_proxy = \"v1\"", "172.20.0.11:8080")
        + &service("pph", &format!("{VIP_V4}:8082"), "proxy_mode = \"http\"\nsend_proxy = \"v2\"", "172.20.0.11:8080");
    let _lb = start(&config(&services));

    for (url, client, vip, port) in [
        (format!("http://{VIP_V4}:8080/"), testenv::CLIENT_V4, VIP_V4, "8080"),
        (format!("http://[{VIP_V6}]:8080/"), testenv::CLIENT_V6, VIP_V6, "8080"),
        (format!("http://{VIP_V4}:8081/"), testenv::CLIENT_V4, VIP_V4, "8081"),
        (format!("http://{VIP_V4}:8082/"), testenv::CLIENT_V4, VIP_V4, "8082"),
    ] {
        let body = curl_from(CLIENT_NS, &url);
        println!("{url}: HAProxy echoed {}", body.trim());
        assert_eq!(echoed(body.trim()), (client.to_string(), vip.to_string(), port.to_string()), "{url}");
    }

    // http: three requests on one client connection, each on an upstream connection of its
    // own (a pooled one would carry another client's header).
    let url = format!("http://{VIP_V4}:8082/");
    let out = testenv::exec_ok(CLIENT_NS, &["curl", "-s", "--noproxy", "*", &url, &url, &url]).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines.iter().all(|l| echoed(l).0 == testenv::CLIENT_V4), "{out}");
    let m = metrics();
    let opened = metric(&m, "lb_pool_connections_opened_total{service=\"pph\"}");
    let requests = metric(&m, "lb_pool_requests_total{service=\"pph\"}");
    assert_eq!((opened, requests), (4, 4), "one upstream connection per request:\n{m}");

    std::thread::sleep(Duration::from_millis(300));
    let log = echo.log();
    let fields: Vec<&str> = log.lines().filter(|l| l.starts_with("proxy-header")).collect();
    println!("HAProxy logged:\n{}", fields.join("\n"));
    assert!(fields.len() >= 7, "{log}");
    assert!(fields.iter().all(|l| l.contains("src=172.20.0.2:") || l.contains("src=fd00:20::2:")), "{log}");
}

/// HAProxy on server3 as the front: TCP on port 9000 to the LB's own address, with a v2
/// header (`send-proxy-v2`).
fn haproxy_front() -> Peer {
    let cfg = r#"global
    log stdout format raw local0
defaults
    mode tcp
    timeout connect 2s
    timeout client 10s
    timeout server 10s
listen front
    bind :9000
    server lb 172.20.0.10:8090 send-proxy-v2
"#;
    haproxy(&testenv::server_ns(3), "haproxy-front", cfg, 9000).expect("haproxy front")
}

fn raw(ns: &str, port: u16, hex: &str) -> (f64, String) {
    raw_exchange(ns, testenv::LB_V4, port, hex)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn accept_proxy_takes_the_client_from_a_trusted_haproxy_front_and_refuses_the_rest() {
    let _net = Net::up(false);
    let _echo = echo_backend();
    let _front = haproxy_front();
    let extra = "accept_proxy = true\naccept_proxy_from = [\"172.20.0.13/32\"]\nsend_proxy = \"v2\"";
    let _lb = start(&config(&service("front", "172.20.0.10:8090", extra, "172.20.0.11:8080")));

    // Client → HAProxy front (server3) → lb → HAProxy echo (server1): the echo sees the
    // client, not the front.
    let body = curl_from(CLIENT_NS, "http://172.20.0.13:9000/");
    println!("through the front: HAProxy echoed {}", body.trim());
    // ... and the address the client reached: the front's, as its header named it.
    let want = (testenv::CLIENT_V4.to_string(), "172.20.0.13".to_string(), "9000".to_string());
    assert_eq!(echoed(body.trim()), want);

    // LOCAL (a front's health check), with a request in the same segment: the real peer.
    let local = [b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00".as_slice(), b"GET / HTTP/1.0\r\n\r\n"].concat();
    let (_, answer) = raw(&testenv::server_ns(3), 8090, &hex(&local));
    assert!(answer.contains("\n172.20.0.13 "), "LOCAL: the front's own address: {answer}");

    // Untrusted: the client straight to the LB.
    assert!(testenv::curl(CLIENT_NS, "http://172.20.0.10:8090/", Duration::from_secs(3)).is_err());
    // Malformed: the trusted front's host without a header.
    assert!(testenv::curl(&testenv::server_ns(3), "http://172.20.0.10:8090/", Duration::from_secs(3)).is_err());
    // Late: a trusted peer that sends nothing is closed after the header timeout (3 s).
    let started = Instant::now();
    let (waited, answer) = raw(&testenv::server_ns(3), 8090, "");
    println!("silent trusted peer closed after {waited:.2} s");
    assert!(answer.trim().is_empty() && (2.5..5.0).contains(&waited), "{waited} {answer:?}");
    assert!(started.elapsed() < Duration::from_secs(8));

    let m = metrics();
    let count = |reason: &str| {
        metric(&m, &format!("lb_proxy_proxy_header_rejected_total{{service=\"front\",reason=\"{reason}\""))
    };
    println!("refused: untrusted {} malformed {} timeout {}", count("untrusted"), count("malformed"), count("timeout"));
    assert_eq!((count("untrusted"), count("malformed"), count("timeout")), (1, 1, 1), "{m}");
}

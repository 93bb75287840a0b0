//! TLS passthrough routed by SNI on the proxy path, with real TLS: three
//! `openssl s_server` backends, each with its own certificate made at test time
//! (api.example.com, www.example.org, default.example.net), two routes and a default
//! group; `openssl s_client -servername`, `curl --resolve` and a Python client that splits
//! its ClientHello across TCP segments reach the backend whose certificate matches; a
//! ClientHello without SNI goes to the default group; plain HTTP, a silent client and
//! garbage are closed and counted. Root only.
mod common;

use std::time::Duration;

use common::net::*;
use testenv::peers::{tls_server, Peer};
use testenv::{CLIENT_NS, LB_NS, VIP_V4};

const PORT: u16 = 8443;

fn config() -> String {
    format!(
        r#"[daemon]
mode = "proxy"
admin_listen = "127.0.0.1:9100"
state_file = "/run/lbt/state.json"
workers = 2

[[service]]
name = "tls"
vip = "{VIP_V4}:{PORT}"
sni_timeout = "2s"
[service.health_check]
type = "none"
[[service.route]]
sni = ["api.example.com"]
group = "api"
[[service.route]]
sni = ["*.example.org"]
group = "org"
[[service.backend]]
address = "172.20.0.11:{PORT}"
group = "api"
[[service.backend]]
address = "172.20.0.12:{PORT}"
group = "org"
[[service.backend]]
address = "172.20.0.13:{PORT}"
"#
    )
}

fn backends() -> Vec<Peer> {
    [(1, "api.example.com"), (2, "www.example.org"), (3, "default.example.net")]
        .into_iter()
        .map(|(n, cn)| {
            tls_server(&testenv::server_ns(n), &format!("tls-server{n}"), PORT, cn)
                .unwrap_or_else(|e| panic!("tls server {n}: {e:#}"))
        })
        .collect()
}

/// The subject CN of the certificate the backend reached sent, by `openssl s_client`
/// (`-servername NAME`, or none).
fn s_client(server_name: Option<&str>) -> String {
    let connect = format!("{VIP_V4}:{PORT}");
    let mut args = vec!["openssl", "s_client", "-connect", &connect];
    match server_name {
        Some(n) => args.extend(["-servername", n]),
        None => args.push("-noservername"),
    }
    let script = format!("echo | timeout 10 {} 2>&1", args.join(" "));
    let out = testenv::exec_ok(CLIENT_NS, &["sh", "-c", &script]).unwrap();
    subject_cn(&out).unwrap_or_else(|| panic!("no certificate subject in:\n{out}"))
}

/// `subject=CN = x` / `subject=CN=x` / curl's `subject: CN=x`.
fn subject_cn(out: &str) -> Option<String> {
    let line = out.lines().find(|l| l.trim_start().starts_with("subject=") || l.contains("subject: "))?;
    let compact: String = line.chars().filter(|c| !c.is_whitespace()).collect();
    compact.split("CN=").nth(1).map(|cn| cn.split([',', '/']).next().unwrap_or(cn).to_string())
}

fn metrics() -> String {
    testenv::exec_ok(LB_NS, &["curl", "-s", "--noproxy", "*", "http://127.0.0.1:9100/metrics"]).unwrap()
}

fn metric(text: &str, prefix: &str) -> u64 {
    text.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()).map_or(0, |v| v.parse().unwrap())
}

/// A TLS client that sends its ClientHello in `pieces` TCP segments `gap` seconds apart
/// (TCP_NODELAY), finishes the handshake and prints the certificate's DER in hex.
const SPLIT_CLIENT: &str = r#"
import socket, ssl, sys, time
host, port, name, pieces, gap = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
tls = ctx.wrap_bio(incoming, outgoing, server_hostname=name)
s = socket.create_connection((host, port), timeout=5)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
first = True
while True:
    try:
        tls.do_handshake()
        done = True
    except ssl.SSLWantReadError:
        done = False
    out = outgoing.read()
    if out and first:
        step = max(1, len(out) // pieces)
        for i in range(0, len(out), step):
            s.sendall(out[i:i + step])
            time.sleep(gap)
        first = False
    elif out:
        s.sendall(out)
    if done:
        break
    data = s.recv(65536)
    if not data:
        sys.exit("closed during the handshake")
    incoming.write(data)
print(tls.getpeercert(binary_form=True).hex())
"#;

fn split_client(name: &str, pieces: u32) -> String {
    let args = [VIP_V4, &PORT.to_string(), name, &pieces.to_string(), "0.15"].map(String::from);
    let mut cmd = vec!["python3", "-c", SPLIT_CLIENT];
    cmd.extend(args.iter().map(String::as_str));
    let der = testenv::exec_ok(CLIENT_NS, &cmd).unwrap();
    // The CN's bytes appear in the DER as they are.
    for cn in ["api.example.com", "www.example.org", "default.example.net"] {
        let hex: String = cn.bytes().map(|b| format!("{b:02x}")).collect();
        if der.contains(&hex) {
            return cn.to_string();
        }
    }
    panic!("no known CN in the certificate {der}");
}

/// (seconds until closed, bytes answered).
fn raw(hex: &str) -> (f64, usize) {
    let (secs, data) = raw_exchange(CLIENT_NS, VIP_V4, PORT, hex);
    (secs, data.len())
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn tls_connections_reach_the_backend_their_server_name_routes_to() {
    let _net = Net::up(false);
    testenv::exec_ok(LB_NS, &["ip", "addr", "add", &format!("{VIP_V4}/32"), "dev", "lo"]).unwrap();
    let _backends = backends();
    let _lb = start(&config());

    // openssl s_client, by server name.
    let cases = [
        (Some("api.example.com"), "api.example.com"),
        (Some("API.Example.COM"), "api.example.com"),
        (Some("www.example.org"), "www.example.org"),
        (Some("shop.example.org"), "www.example.org"),
        (Some("a.b.example.org"), "default.example.net"),
        (Some("other.example.com"), "default.example.net"),
        (None, "default.example.net"),
    ];
    for (sni, want) in cases {
        let got = s_client(sni);
        println!("s_client -servername {sni:?}: certificate CN={got}");
        assert_eq!(got, want, "{sni:?}");
    }

    // curl --resolve, a full request through the relay.
    let resolve = format!("api.example.com:{PORT}:{VIP_V4}");
    let url = format!("https://api.example.com:{PORT}/");
    let out = testenv::exec_ok(
        CLIENT_NS,
        &["sh", "-c", &format!("curl -sk -v --max-time 10 --resolve {resolve} {url} 2>&1")],
    )
    .unwrap();
    assert_eq!(subject_cn(&out).as_deref(), Some("api.example.com"), "{out}");
    assert!(out.contains("s_server"), "the backend's page came back: {out}");

    // A ClientHello split across TCP segments.
    for pieces in [3, 12] {
        let got = split_client("www.example.org", pieces);
        println!("ClientHello in {pieces} segments: certificate CN={got}");
        assert_eq!(got, "www.example.org");
    }

    // Plain HTTP: closed without an answer.
    let plain = testenv::curl(CLIENT_NS, &format!("http://{VIP_V4}:{PORT}/"), Duration::from_secs(3));
    assert!(plain.is_err(), "{plain:?}");
    // A silent client: closed after sni_timeout (2 s).
    let (waited, answered) = raw("");
    println!("silent client closed after {waited:.2} s");
    assert!((1.5..4.0).contains(&waited) && answered == 0, "{waited} {answered}");
    // Half a record header, then nothing: the same.
    let (waited, _) = raw("160301");
    assert!((1.5..4.0).contains(&waited), "{waited}");
    // A handshake record that is no ClientHello: closed at once.
    let (waited, answered) = raw("16030100050200000100");
    assert!(waited < 1.0 && answered == 0, "{waited} {answered}");

    let m = metrics();
    let routed = |g: &str| metric(&m, &format!("lb_proxy_sni_routed_total{{service=\"tls\",group=\"{g}\""));
    let refused = |r: &str| metric(&m, &format!("lb_proxy_sni_rejected_total{{service=\"tls\",reason=\"{r}\""));
    println!(
        "routed: api {} org {} (default) {}; refused: not_tls {} timeout {} malformed {}",
        routed("api"),
        routed("org"),
        routed("(default)"),
        refused("not_tls"),
        refused("timeout"),
        refused("malformed")
    );
    assert_eq!((routed("api"), routed("org"), routed("(default)")), (3, 4, 3), "{m}");
    assert_eq!((refused("not_tls"), refused("timeout"), refused("malformed")), (1, 2, 1), "{m}");
}

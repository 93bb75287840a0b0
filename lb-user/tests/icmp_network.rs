//! ICMP through the real data path: a backend's "port unreachable" about a nat flow must
//! reach the client translated, or a connected UDP socket never learns that nobody listens.
//! Root only, on the test network: `cargo xtask test` runs it.
mod common;

use common::net::*;
use testenv::{CLIENT_NS, VIP_V4, VIP_V6};

/// A UDP service on port 9999 whose backends listen on no UDP port at all.
fn config() -> String {
    let service = |name: &str, vip: &str, backends: &[&str]| {
        let mut s = format!("[[service]]\nname = \"{name}\"\nvip = \"{vip}\"\nprotocol = \"udp\"\nforwarding = \"nat\"\n[service.health_check]\ntype = \"none\"\n");
        for b in backends {
            s.push_str(&format!("[[service.backend]]\naddress = \"{b}\"\n"));
        }
        s
    };
    format!(
        "[daemon]\ninterface = \"eth0\"\nmode = \"xdp\"\npin_path = \"{pin}\"\n\n{}\n{}",
        service("void", &format!("{VIP_V4}:9999"), &["172.20.0.11:9999", "172.20.0.12:9999"]),
        service("void6", &format!("[{VIP_V6}]:9999"), &["[fd00:20::11]:9999", "[fd00:20::12]:9999"]),
        pin = testenv::LB_PIN_PATH,
    )
}

/// A connected UDP socket sends one datagram; its next receive tells what came back.
const UDP_CLIENT: &str = r#"
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM)
s.settimeout(3)
s.connect((sys.argv[1], 9999))
s.send(b"anyone there?")
try:
    s.recv(100)
    print("answered")
except ConnectionRefusedError:
    print("refused")
except socket.timeout:
    print("timeout")
"#;

fn send_once(vip: &str) -> String {
    let out = testenv::exec(CLIENT_NS, &["python3", "-c", UDP_CLIENT, vip]).expect("run the UDP client");
    format!("{}{}", String::from_utf8_lossy(&out.stdout).trim(), String::from_utf8_lossy(&out.stderr).trim())
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_backends_port_unreachable_reaches_the_client_as_connection_refused() {
    let _net = Net::up(false);
    let lb = start(&config());
    for vip in [VIP_V4, VIP_V6] {
        assert_eq!(
            send_once(vip),
            "refused",
            "{vip}: the backend's ICMP error, translated back to the client\n{}",
            lb.log()
        );
    }
    let stats: serde_json::Value = serde_json::from_str(&lb.list_json("backends").unwrap()).unwrap();
    let packets: u64 = stats.as_array().expect("rows").iter().map(|r| r["packets"].as_u64().unwrap_or(0)).sum();
    assert!(packets >= 4, "two datagrams and two errors counted on the backends: {stats}");
}

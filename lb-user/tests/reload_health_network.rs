//! Health and registrations as a fresh start would have them, on the test network with
//! real clients: a UDP service is not TCP-checked by default (its UDP-only backends stay
//! in rotation), and a reload drops a registration its new config no longer takes, from
//! the tables, the API and the state file. Root only: `cargo xtask test` runs them.
mod common;

use std::time::Duration;

use common::net::*;
use serde_json::Value;
use testenv::{LbDaemon, VIP_V4, VIP_V6};

const API: &str = "http://172.20.0.10:9100";
const TOKEN: &str = "s3cret-test-token";
const TOKEN_FILE: &str = "/run/lbt/token";
const STATE_FILE: &str = "/run/lbt/state.json";

fn daemon_section() -> String {
    format!(
        "[daemon]\ninterface = \"eth0\"\nmode = \"xdp\"\npin_path = \"{pin}\"\nadmin_listen = \"172.20.0.10:9100\"\n\
         token_file = \"{TOKEN_FILE}\"\nstate_file = \"{STATE_FILE}\"\n\n",
        pin = testenv::LB_PIN_PATH
    )
}

fn up() -> (Net, ()) {
    let net = Net::up(false);
    std::fs::write(TOKEN_FILE, format!("{TOKEN}\n")).unwrap();
    let _ = std::fs::remove_file(STATE_FILE);
    (net, ())
}

fn backend_rows(lb: &LbDaemon) -> Vec<Value> {
    serde_json::from_str(&lb.list_json("backends").expect("lb list backends")).expect("JSON rows")
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_udp_service_with_no_check_written_keeps_its_udp_only_backends_in_rotation() {
    let (_net, ()) = up();
    let _echoes = UdpEchoes::start();
    let backends: String =
        (1..=3).map(|n| format!("[[service.backend]]\naddress = \"172.20.0.1{n}:5300\"\n")).collect();
    let service = format!("[[service]]\nname = \"dns\"\nvip = \"{VIP_V4}:53\"\nprotocol = \"udp\"\n{backends}");
    let lb = start(&(daemon_section() + &service));
    assert_eq!(udp_answers(5), 5);
    // A TCP connect check (2 s interval, 3 failures) took them all down within about 6 s.
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(udp_answers(5), 5, "still in rotation");
    let rows = backend_rows(&lb);
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r["health"] == "unknown"), "nothing checks them: {rows:?}");
    assert!(!lb.log().contains("health changed"), "{}", lb.log());
}

/// Two services without checks: `web` on :80 (servers 1 and 2) and `api` on :81 at `api_vip`
/// (server 1 at `api_backend`).
fn two_services(api_vip: &str, api_backend: &str) -> String {
    format!(
        "[[service]]\nname = \"web\"\nvip = \"{VIP_V4}:80\"\nhealth_check = {{ type = \"none\" }}\n\
         [[service.backend]]\naddress = \"172.20.0.11:80\"\n[[service.backend]]\naddress = \"172.20.0.12:80\"\n\n\
         [[service]]\nname = \"api\"\nvip = \"{api_vip}\"\nhealth_check = {{ type = \"none\" }}\n\
         [[service.backend]]\naddress = \"{api_backend}\"\n"
    )
}

fn saved_registrations() -> Vec<Value> {
    let text = std::fs::read_to_string(STATE_FILE).unwrap_or_else(|e| panic!("{STATE_FILE}: {e}"));
    let file: Value = serde_json::from_str(&text).unwrap();
    file["registrations"].as_array().cloned().unwrap_or_default()
}

fn api_backends() -> Vec<String> {
    let (code, body) = api("GET", &format!("{API}/v1/services"), None, None);
    assert_eq!(code, 200, "{body}");
    let services: Value = serde_json::from_str(&body).unwrap();
    let api = services.as_array().unwrap().iter().find(|s| s["name"] == "api").expect("service api");
    api["backends"].as_array().unwrap().iter().map(|b| b["address"].as_str().unwrap().to_string()).collect()
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_reload_that_moves_a_service_to_ipv6_drops_its_ipv4_registration_everywhere() {
    let (_net, ()) = up();
    let mut lb = start(&(daemon_section() + &two_services(&format!("{VIP_V4}:81"), "172.20.0.11:80")));
    let register = format!("{API}/v1/services/api/backends");
    let (code, body) =
        api("POST", &register, Some(TOKEN), Some(r#"{"address":"172.20.0.13:80","weight":1,"ttl":"60s"}"#));
    assert_eq!(code, 201, "{body}");
    // Once its MAC is known (the daemon asks the kernel within a second), it takes flows.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !servers_reached(&format!("http://{VIP_V4}:81/"), 10).contains("Server3") {
        assert!(std::time::Instant::now() < deadline, "the registered backend takes no flows");
    }
    assert_eq!(saved_registrations().len(), 1);

    // `api` moves to IPv6: its IPv4 registration no longer fits, as the register call
    // would say now.
    let clients = ClientLoop::start(&format!("http://{VIP_V4}:80/"));
    lb.reload(&(daemon_section() + &two_services(&format!("[{VIP_V6}]:81"), "[fd00:20::11]:80"))).unwrap();
    assert!(lb.log().contains("registration dropped"), "{}", lb.log());
    assert!(saved_registrations().is_empty(), "the state file forgets it");
    assert_eq!(api_backends(), ["[fd00:20::11]:80"], "the IPv4 backend left at once: nothing of it to drain");
    let (code, body) = api("PUT", &format!("{register}/172.20.0.13:80/heartbeat"), Some(TOKEN), None);
    assert_eq!(code, 404, "its lease is gone: {body}");
    let (code, body) =
        api("POST", &register, Some(TOKEN), Some(r#"{"address":"172.20.0.13:80","weight":1,"ttl":"60s"}"#));
    assert_eq!(code, 400, "and registering it again is refused: {body}");
    // The other service never noticed.
    let outcomes = clients.finish();
    assert!(failures(&outcomes).is_empty(), "web: {} of {} failed", failures(&outcomes).len(), outcomes.len());
    assert_eq!(servers_reached(&format!("http://{VIP_V4}:80/"), 20).len(), 2);
}

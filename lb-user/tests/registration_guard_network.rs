//! Registrations against a real `lb run` on the test network (XDP): addresses that are no
//! backend are refused and never listed; the backend cap counts configured and registered
//! backends together, the registrations past it are refused with the reason, and the data
//! path still takes changes afterwards (an admin `maint` reaches XDP: `lb list backends`
//! from the pins, and traffic). Also `/v1/flows` pages through the live flows with the
//! token. Root only: `cargo xtask test` runs it.
mod common;

use std::collections::BTreeSet;

use common::net::*;
use serde_json::Value;
use testenv::{CLIENT_NS, VIP_V4};

const API: &str = "http://172.20.0.10:9100";
const TOKEN: &str = "s3cret-guard-token";
const TOKEN_FILE: &str = "/run/lbt/token";
const CONFIGURED: [&str; 3] = ["172.20.0.11:80", "172.20.0.12:80", "172.20.0.13:80"];
const CAP: usize = lb_config::MAX_BACKENDS;
/// Backends of the config that only hold a slot (weight 0, on the servers' addresses at
/// ports 20000 and up): with them the cap is reached after a few hundred registrations
/// instead of sixteen thousand, each of which reconciles the whole service.
const FILLER: usize = CAP - 196;
/// Registrations tried past the room the config leaves.
const PAST_CAP: usize = 107;

fn config() -> String {
    let mut list: String = CONFIGURED.iter().map(|a| format!("[[service.backend]]\naddress = \"{a}\"\n")).collect();
    for i in 0..FILLER {
        list += &format!("[[service.backend]]\naddress = \"172.20.0.{}:{}\"\nweight = 0\n", 11 + i % 3, 20000 + i / 3);
    }
    format!(
        "[daemon]\ninterface = \"eth0\"\nmode = \"xdp\"\npin_path = \"{pin}\"\nadmin_listen = \"172.20.0.10:9100\"\n\
         token_file = \"{TOKEN_FILE}\"\nstate_file = \"/run/lbt/state.json\"\n\n\
         [[service]]\nname = \"web\"\nvip = \"{VIP_V4}:80\"\nhealth_check = {{ type = \"none\" }}\n{list}",
        pin = testenv::LB_PIN_PATH,
    )
}

fn services() -> Value {
    let (code, body) = api("GET", &format!("{API}/v1/services"), None, None);
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn configured() -> usize {
    CONFIGURED.len() + FILLER
}

fn listed() -> BTreeSet<String> {
    services()[0]["backends"].as_array().unwrap().iter().map(|b| b["address"].as_str().unwrap().to_string()).collect()
}

/// Registers `count` backends from the client over one keep-alive connection, numbered from
/// `first`: weight 0 (they hold a slot, take no traffic), on the servers' addresses at ports
/// 10000 and up (their MACs are known, so each reconcile stays quick). Returns how many got
/// each status, and the last refusal's body.
const BULK: &str = r#"
import http.client, json, sys
first, count, token = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
codes, last = {}, ""
conn = None
for i in range(first, first + count):
    body = json.dumps({"address": "172.20.0.%d:%d" % (11 + i % 3, 10000 + i // 3), "weight": 0, "ttl": "1h"})
    for attempt in range(3):
        try:
            if conn is None:
                conn = http.client.HTTPConnection("172.20.0.10", 9100, timeout=10)
            conn.request("POST", "/v1/services/web/backends", body,
                         {"Authorization": "Bearer " + token, "Content-Type": "application/json"})
            r = conn.getresponse()
            data = r.read().decode()
            break
        except (http.client.HTTPException, OSError):
            conn = None
    else:
        print(json.dumps({"codes": codes, "last": "connection failed"}))
        sys.exit(1)
    codes[str(r.status)] = codes.get(str(r.status), 0) + 1
    if r.status != 201:
        last = data
print(json.dumps({"codes": codes, "last": last}))
"#;

fn register_bulk(first: usize, count: usize) -> Value {
    let out = testenv::exec(CLIENT_NS, &["python3", "-c", BULK, &first.to_string(), &count.to_string(), TOKEN])
        .expect("run the bulk registration");
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("bulk registration ({e}): {text} {}", String::from_utf8_lossy(&out.stderr)))
}

/// `GET url` with the token, following nothing: (status, `X-Next-After`, body).
fn get_page(url: &str) -> (u16, Option<String>, String) {
    let auth = format!("Authorization: Bearer {TOKEN}");
    let out =
        testenv::exec(CLIENT_NS, &["curl", "-s", "-g", "--noproxy", "*", "-m", "10", "-D", "-", "-H", &auth, url])
            .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let next = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("x-next-after").then(|| v.trim().to_string())
    });
    (status, next, body.to_string())
}

fn flow_clients(body: &str) -> Vec<String> {
    let rows: Vec<Value> = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    rows.iter().map(|r| format!("{} {} {}", r["client"], r["vip"], r["backend"])).collect()
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn registrations_at_no_backend_addresses_and_past_the_cap_are_refused_and_maint_still_reaches_xdp() {
    let _net = Net::up(false);
    std::fs::write(TOKEN_FILE, format!("{TOKEN}\n")).unwrap();
    let lb = start(&config());
    assert_eq!(servers_reached(&format!("http://{VIP_V4}/"), 30).len(), 3);

    // Addresses that are no backend: each refused with 400 and its reason.
    let register = format!("{API}/v1/services/web/backends");
    let mut refused = 0;
    for (address, reason) in [
        ("127.0.0.1:9100", "loopback"),
        ("172.20.0.10:9100", "admin API"),
        ("172.20.0.10:80", "LB's own addresses"),
        ("172.20.0.100:80", "VIP of service web"),
        ("0.0.0.0:80", "unspecified"),
        ("169.254.169.254:80", "link-local"),
        ("224.0.0.1:80", "multicast"),
        ("255.255.255.255:80", "broadcast"),
    ] {
        let body = format!("{{\"address\":\"{address}\",\"ttl\":\"1h\"}}");
        let (code, text) = api("POST", &register, Some(TOKEN), Some(&body));
        let error: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{address}: not JSON: {text}"));
        assert_eq!(code, 400, "{address}: {text}");
        assert!(error["error"].as_str().unwrap().contains(reason), "{address}: {text}");
        refused += 1;
    }
    let before = listed();
    assert_eq!(before.len(), configured());
    assert!(CONFIGURED.iter().all(|a| before.contains(*a)));
    assert!(!before.iter().any(|a| a.starts_with("127.") || a.starts_with("172.20.0.10")), "none of them is listed");
    eprintln!("guarded addresses: {refused} registrations refused, 0 accepted");

    // The cap: 16191 configured + 193 registered fill it; the next 107 are refused (409).
    let room = CAP - configured();
    let bulk = register_bulk(0, room + PAST_CAP);
    eprintln!("bulk registrations against {} configured backends: {bulk}", configured());
    assert_eq!(bulk["codes"]["201"], room as u64, "{bulk}");
    assert_eq!(bulk["codes"]["409"], PAST_CAP as u64, "{bulk}");
    assert!(bulk["last"].as_str().unwrap().contains(&format!("at most {CAP} backends")), "{bulk}");
    assert_eq!(listed().len(), CAP, "/v1/services shows exactly what fits");
    // A renewal needs no room.
    let renewal = register_bulk(0, 1);
    assert_eq!(renewal["codes"]["201"], 1, "{renewal}");

    // The data path still takes changes: maint on a configured backend reaches XDP.
    let state = format!("{API}/v1/services/web/backends/172.20.0.11:80/state");
    let (code, text) = api("PUT", &state, Some(TOKEN), Some(r#"{"state":"maint"}"#));
    assert_eq!(code, 200, "{text}");
    let rows: Vec<Value> = serde_json::from_str(&lb.list_json("backends").unwrap()).unwrap();
    assert_eq!(rows.len(), CAP, "the pinned maps hold every backend");
    let row = rows.iter().find(|r| r["address"] == "172.20.0.11:80").expect("172.20.0.11:80 in the maps");
    assert_eq!(row["state"], "maint", "{row}");
    let reached = servers_reached(&format!("http://{VIP_V4}/"), 30);
    assert_eq!(reached, ["Server2", "Server3"].iter().map(|s| s.to_string()).collect(), "maint is obeyed");
    let (code, _) = api("PUT", &state, Some(TOKEN), Some(r#"{"state":"ready"}"#));
    assert_eq!(code, 200);
    assert_eq!(servers_reached(&format!("http://{VIP_V4}/"), 30).len(), 3);

    // /v1/flows: the API listens beyond loopback, so it needs the token; with it, pages of
    // one flow follow the cursor through the same flows one big page lists.
    let (code, _) = api("GET", &format!("{API}/v1/flows"), None, None);
    assert_eq!(code, 401);
    // Two keep-alive connections whose flows stay live through the paging (the others are
    // closed connections, which the daemon's sweep may delete meanwhile).
    let held: Vec<(KeepAliveClient, u16)> = (0..2).map(|_| KeepAliveClient::connect(VIP_V4)).collect();
    let held: Vec<(KeepAliveClient, String)> = held
        .into_iter()
        .map(|(mut c, port)| {
            c.request();
            (c, format!("\"172.20.0.2:{port}\""))
        })
        .collect();
    let (code, next, body) = get_page(&format!("{API}/v1/flows?limit=10000"));
    assert_eq!((code, next), (200, None), "{body}");
    let all = flow_clients(&body);
    assert!(all.len() >= 2, "the requests above left flows: {body}");
    let mut paged = Vec::new();
    let mut url = format!("{API}/v1/flows?limit=1");
    for _ in 0..all.len() + 5 {
        let (code, next, body) = get_page(&url);
        assert_eq!(code, 200, "{body}");
        paged.extend(flow_clients(&body));
        match next {
            Some(cursor) => url = format!("{API}/v1/flows?limit=1&after={cursor}"),
            None => break,
        }
    }
    let (mut a, mut p) = (all.clone(), paged.clone());
    a.sort();
    p.sort();
    // Flows may end and be swept between pages; none may come twice or from nowhere, and
    // every flow that the big page had and still lives after the paging was paged.
    assert!(p.windows(2).all(|w| w[0] != w[1]), "no flow twice: {paged:?}");
    assert!(p.iter().all(|f| a.contains(f)), "only flows the big page had: {paged:?} vs {all:?}");
    let (_, _, body) = get_page(&format!("{API}/v1/flows?limit=10000"));
    let after = flow_clients(&body);
    let kept: Vec<&String> = a.iter().filter(|f| after.contains(f)).collect();
    assert!(kept.iter().all(|f| p.contains(f)), "paged {paged:?}, lived throughout {kept:?}");
    for (_, client) in &held {
        assert!(p.iter().any(|f| f.starts_with(client.as_str())), "the live flow of {client} was paged: {paged:?}");
    }
    println!(
        "/v1/flows: {} flows in one page, {} paged one by one, {} lived throughout",
        all.len(),
        paged.len(),
        kept.len()
    );
}

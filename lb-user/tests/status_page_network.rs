//! The status page in a real browser: an XDP daemon on the test network with two services,
//! real clients sending requests through it, and headless Chromium (over WebDriver) opening
//! `GET /` on the admin listener. Checks that every backend has its row with its state, that
//! the script polls and turns counters into rates and charts, that a state changed through
//! the API shows on the page within 2 s, and that on a phone-sized window nothing overflows
//! sideways. Saves screenshots to target/status-page.png (the README's) and
//! target/status-page-phone.png. Root only: `cargo xtask test`.
mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::net::*;
use common::webdriver::Browser;
use serde_json::Value;
use testenv::{LB_NS, VIP_V4};

const TOKEN: &str = "s3cret-test-token";
const TOKEN_FILE: &str = "/run/lbt/token";
const STATE_FILE: &str = "/run/lbt/state.json";
const WEB: [&str; 2] = ["172.20.0.11:80", "172.20.0.12:80"];
const ECHO: &str = "172.20.0.13:80";

fn config() -> String {
    let backends = |addresses: &[&str]| {
        addresses.iter().map(|a| format!("[[service.backend]]\naddress = \"{a}\"\n")).collect::<String>()
    };
    format!(
        "[daemon]\ninterface = \"eth0\"\nmode = \"xdp\"\npin_path = \"{pin}\"\n\
         admin_listen = \"127.0.0.1:9100\"\ntoken_file = \"{TOKEN_FILE}\"\nstate_file = \"{STATE_FILE}\"\n\n\
         [[service]]\nname = \"web\"\nvip = \"{VIP_V4}:80\"\nalgorithm = \"round_robin\"\n\
         [service.health_check]\ninterval = \"1s\"\n{web}\n\
         [[service]]\nname = \"echo\"\nvip = \"{VIP_V4}:8080\"\n\
         [service.health_check]\ninterval = \"1s\"\n{echo}",
        pin = testenv::LB_PIN_PATH,
        web = backends(&WEB),
        echo = backends(&[ECHO]),
    )
}

/// Each backend row as the page shows it: "service/address" → {field: text}.
const ROWS: &str = r#"
const rows = {};
for (const tr of document.querySelectorAll("tr.backend")) {
  const cells = {};
  for (const td of tr.querySelectorAll("td[data-field]")) cells[td.dataset.field] = td.textContent;
  cells.charted = tr.querySelector("td[data-field=chart] polyline") !== null;
  rows[tr.dataset.service + "/" + tr.dataset.backend] = cells;
}
return { updates: Number(document.body.dataset.updates), rows: rows, alert: document.getElementById("error").textContent };
"#;

fn screenshot_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("target").join(name)
}

fn set_state(address: &str, state: &str) {
    let url = format!("http://127.0.0.1:9100/v1/services/web/backends/{address}/state");
    let body = format!("{{\"state\":\"{state}\"}}");
    let auth = format!("Authorization: Bearer {TOKEN}");
    let out = testenv::exec_ok(
        LB_NS,
        &["curl", "-sf", "--noproxy", "*", "-m", "5", "-X", "PUT", "-H", &auth, "--data-binary", &body, &url],
    )
    .unwrap_or_else(|e| panic!("PUT {url}: {e:#}"));
    assert!(out.contains(state), "{out}");
}

#[test]
#[ignore = "needs root: the test network, XDP and a headless browser (cargo xtask test)"]
fn the_status_page_shows_every_backend_live_and_follows_a_state_change() {
    let _net = Net::up(false);
    std::fs::write(TOKEN_FILE, format!("{TOKEN}\n")).unwrap();
    let _ = std::fs::remove_file(STATE_FILE);
    let _daemon = start(&config());
    let clients = ClientLoop::start(&format!("http://{VIP_V4}/"));

    let browser = Browser::start(LB_NS, 1280, 900);
    browser.open("http://127.0.0.1:9100/");
    let every_row = |v: &Value| {
        WEB.iter().map(|a| format!("web/{a}")).chain([format!("echo/{ECHO}")]).all(|k| v["rows"][&k].is_object())
    };
    // Rates need two samples, and the web backends have had traffic for a while by then.
    let (page, live) = browser.wait_for(ROWS, Duration::from_secs(10), |v| {
        v["updates"].as_u64() >= Some(3)
            && every_row(v)
            && WEB
                .iter()
                .all(|a| v["rows"][format!("web/{a}")]["flows_rate"].as_str().is_some_and(|r| r != "0" && r != "–"))
    });
    assert!(live, "the page did not come alive with every backend and rates: {page:#}");
    assert_eq!(page["alert"], "", "{page:#}");
    for a in WEB {
        let row = &page["rows"][format!("web/{a}")];
        assert_eq!(row["state"], "ready", "{row}");
        assert_eq!(row["health"], "up", "{row}");
        assert_eq!(row["circuit"], "closed", "{row}");
        assert_eq!(row["weight"], "1", "{row}");
        assert_eq!(row["sources"], "config", "{row}");
        assert_ne!(row["packets_rate"], "0", "{row}");
        assert_eq!(row["charted"], true, "a chart of new flows/s: {row}");
    }
    // No client talks to the echo service: its row is there, idle.
    assert_eq!(page["rows"][format!("echo/{ECHO}")]["flows_rate"], "0", "{page:#}");
    let drops = browser.eval("return document.querySelectorAll('#drops .drop[data-reason=fragment]').length");
    assert_eq!(drops, 1, "every drop reason has its place");

    // A change through the API shows within 2 s (one poll a second, one render each).
    set_state(WEB[1], "drain");
    let key = format!("web/{}", WEB[1]);
    let (after, followed) = browser.wait_for(ROWS, Duration::from_secs(2), |v| v["rows"][&key]["state"] == "drain");
    assert!(followed, "the page did not show the drain within 2 s: {}", after["rows"][&key]);
    let class = browser.eval(&format!(
        "return document.querySelector('tr.backend[data-backend=\"{}\"] td[data-field=state]').className",
        WEB[1]
    ));
    assert_eq!(class, "state-drain", "the state is styled by its value");
    // Fragments for the VIP, which the program drops and counts by reason, show on the page.
    const FRAGMENTS: &str = "from scapy.all import IP, TCP, Raw, fragment, send\n\
        import sys\n\
        send(fragment(IP(dst=sys.argv[1]) / TCP(dport=80, flags='S') / Raw(b'x' * 1200), fragsize=400), count=3, verbose=0)";
    testenv::exec_ok(testenv::CLIENT_NS, &["/usr/bin/python3", "-c", FRAGMENTS, VIP_V4])
        .expect("scapy sends fragments");
    let fragments =
        "return document.querySelector('#drops .drop[data-reason=fragment] [data-field=total]').textContent";
    let (total, counted) =
        browser.wait_for(fragments, Duration::from_secs(3), |v| v.as_str().is_some_and(|t| t != "0"));
    assert!(counted, "the fragment drops did not show: {total}");
    // A few more seconds of history for the charts, then the README's picture.
    let (_, charted) = browser.wait_for(ROWS, Duration::from_secs(15), |v| v["updates"].as_u64() >= Some(14));
    assert!(charted, "the page stopped polling");
    browser.screenshot(&screenshot_path("status-page.png"));

    // A phone: the tables turn into cards and nothing scrolls sideways.
    browser.resize(390, 844);
    let overflow = browser.eval("return document.documentElement.scrollWidth - window.innerWidth");
    assert!(overflow.as_i64().is_some_and(|px| px <= 0), "the page is {overflow} px wider than a phone");
    let label =
        browser.eval("return getComputedStyle(document.querySelector('td[data-field=state]'), '::before').content");
    assert_eq!(label, "\"State\"", "each cell carries its column's name on a phone");
    browser.screenshot(&screenshot_path("status-page-phone.png"));

    let outcomes = clients.finish();
    assert!(failures(&outcomes).is_empty(), "{:?}", failures(&outcomes));
}

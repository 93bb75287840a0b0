//! The admin API against its own OpenAPI description, with schemathesis (from PyPI,
//! installed by `cargo xtask deps` under target/tools/): an XDP daemon on the test network
//! with two services, its API on the LB's address (so the token is needed, and given), and
//! schemathesis from the client host generating valid and invalid input for every operation
//! the description names. It must find no 5xx, no status the description does not list, no
//! answer that breaks its schema and no wrong content type. Root only: `cargo xtask test`.
mod common;

use common::net::*;
use testenv::{CLIENT_NS, LB_V4, VIP_V4};

const TOKEN: &str = "s3cret-test-token";
const TOKEN_FILE: &str = "/run/lbt/token";
const STATE_FILE: &str = "/run/lbt/state.json";

fn config() -> String {
    format!(
        "[daemon]\ninterface = \"eth0\"\nmode = \"xdp\"\npin_path = \"{pin}\"\n\
         admin_listen = \"{LB_V4}:9100\"\ntoken_file = \"{TOKEN_FILE}\"\nstate_file = \"{STATE_FILE}\"\n\n\
         [[service]]\nname = \"web\"\nvip = \"{VIP_V4}:80\"\n\
         [[service.backend]]\naddress = \"172.20.0.11:80\"\n[[service.backend]]\naddress = \"172.20.0.12:80\"\n\n\
         [[service]]\nname = \"dns\"\nvip = \"{VIP_V4}:53\"\nprotocol = \"udp\"\n\
         [[service.backend]]\naddress = \"172.20.0.13:53\"\n",
        pin = testenv::LB_PIN_PATH
    )
}

/// The checks that say the description is true: every other check schemathesis has judges
/// the API's design (e.g. that invalid input is refused in ways the description cannot say).
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance";

#[test]
#[ignore = "needs root: the test network and XDP (cargo xtask test)"]
fn schemathesis_finds_every_operation_true_to_the_description() {
    let st = testenv::tools::schemathesis();
    assert!(st.exists(), "{} is missing: run `cargo xtask deps`", st.display());
    let _net = Net::up(false);
    std::fs::write(TOKEN_FILE, format!("{TOKEN}\n")).unwrap();
    let _ = std::fs::remove_file(STATE_FILE);
    let _daemon = start(&config());

    let api = format!("http://{LB_V4}:9100");
    let (status, body) = api_get(&format!("{api}/openapi.json"));
    assert_eq!(status, 200, "{body}");
    let doc: serde_json::Value = serde_json::from_str(&body).expect("the description is JSON");
    let operations: Vec<String> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object().into_iter().flatten().map(move |(m, _)| format!("{} {path}", m.to_uppercase()))
        })
        .collect();
    assert!(operations.len() >= 16, "{operations:?}");

    let report = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/schemathesis.xml");
    let auth = format!("Authorization: Bearer {TOKEN}");
    let st = st.to_string_lossy().into_owned();
    let out = testenv::exec(
        CLIENT_NS,
        &[
            &st,
            "run",
            &format!("{api}/openapi.json"),
            "--checks",
            CHECKS,
            "--header",
            &auth,
            // Bounded: the fuzzing phase generates until its time is up (several thousand
            // cases in 30 s here), after the coverage phase has tried each operation's
            // documented and boundary inputs; one seed, so a failure reproduces.
            "--max-examples",
            "10",
            "--seed",
            "1",
            "--max-time",
            "30",
            // Generated input for each operation, valid and invalid; the stateful phase (chains
            // of calls through the inferred links) adds half a minute and no new operation.
            "--phases",
            "examples,coverage,fuzzing",
            "--request-timeout",
            "5",
            "--report",
            "junit",
            "--report-junit-path",
            &report.to_string_lossy(),
            "--no-color",
        ],
    )
    .expect("run schemathesis");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "schemathesis found problems:\n{text}");

    // Every operation was really exercised: each has its test case in the report (all but
    // the description itself, which schemathesis leaves out as the schema it loaded).
    let junit = std::fs::read_to_string(&report).expect("the JUnit report");
    let untested: Vec<String> = operations
        .iter()
        .filter(|op| op.as_str() != "GET /openapi.json")
        .filter(|op| !junit.contains(&format!("<testcase name=\"{op}\"")))
        .cloned()
        .collect();
    assert!(untested.is_empty(), "schemathesis did not test {untested:?}:\n{text}");
}

fn api_get(url: &str) -> (u16, String) {
    api("GET", url, None, None)
}

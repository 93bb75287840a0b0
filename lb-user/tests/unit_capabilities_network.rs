//! The packaged unit's privileges are enough, and no more is held: packaging/lb.service runs
//! the daemon as root with only the capabilities of its `CapabilityBoundingSet` (ambient
//! too) and `NoNewPrivileges`. Here the real `lb run` starts on the test network the same
//! way (setpriv with the set read from the unit file), in `mode = "xdp"`: XDP attaches and
//! pins its maps, requests go through, a SIGHUP reload applies, and a second daemon adopts
//! what the first left; the daemon holds exactly the unit's capabilities. Without
//! `CAP_BPF`, `CAP_NET_ADMIN` or `CAP_PERFMON` the same start fails: each is needed, and
//! the wrapper does limit what the daemon may do. Root only; about 20 s.
mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::net::*;
use testenv::{LbDaemon, LB_NS, RUN_DIR, VIP_V4};

const UNIT: &str = "packaging/lb.service";

/// Capability numbers (linux/capability.h) of the names a unit may list here.
const CAPABILITIES: [(&str, u32); 7] = [
    ("CAP_NET_BIND_SERVICE", 10),
    ("CAP_NET_ADMIN", 12),
    ("CAP_NET_RAW", 13),
    ("CAP_SYS_ADMIN", 21),
    ("CAP_DAC_OVERRIDE", 1),
    ("CAP_PERFMON", 38),
    ("CAP_BPF", 39),
];

/// The unit's `CapabilityBoundingSet=` names.
fn unit_capabilities() -> Vec<String> {
    let unit = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(UNIT)).unwrap();
    let line = unit.lines().find_map(|l| l.strip_prefix("CapabilityBoundingSet=")).expect("a CapabilityBoundingSet");
    line.split_whitespace().map(String::from).collect()
}

/// A script that runs `lb` as systemd would with these capabilities: bounding, inheritable
/// and ambient sets limited to them, no new privileges.
fn capped_lb(name: &str, capabilities: &[String]) -> PathBuf {
    let list: Vec<String> =
        capabilities.iter().map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase())).collect();
    let set = format!("-all,{}", list.join(","));
    let script = PathBuf::from(RUN_DIR).join(name);
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nexec setpriv --bounding-set={set} --inh-caps={set} --ambient-caps={set} --no-new-privs {} \"$@\"\n",
            testenv::lb_binary().display()
        ),
    )
    .unwrap();
    let mut chmod = Command::new("chmod");
    chmod.arg("755").arg(&script);
    assert!(chmod.status().unwrap().success());
    script
}

fn config(backends: &[&str]) -> String {
    let backends: String = backends.iter().map(|a| format!("[[service.backend]]\naddress = \"{a}\"\n")).collect();
    format!(
        "[daemon]\ninterface = \"eth0\"\nmode = \"xdp\"\npin_path = \"{}\"\nstate_file = \"{RUN_DIR}/state.json\"\n\n\
         [[service]]\nname = \"web\"\nvip = \"{VIP_V4}:80\"\n\n{backends}",
        testenv::LB_PIN_PATH
    )
}

fn status_field(pid: i32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status.lines().find_map(|l| l.strip_prefix(field)).unwrap_or_default().trim().to_string()
}

fn mask(capabilities: &[String]) -> u64 {
    capabilities
        .iter()
        .map(|c| {
            let bit = CAPABILITIES.iter().find(|(name, _)| name == c).unwrap_or_else(|| panic!("unknown {c}")).1;
            1u64 << bit
        })
        .sum()
}

fn servers(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn the_daemon_serves_reloads_and_adopts_with_only_the_units_capabilities() {
    let _net = Net::up(false);
    let capabilities = unit_capabilities();
    let all = ["172.20.0.11:80", "172.20.0.12:80", "172.20.0.13:80"];
    let url = format!("http://{VIP_V4}/");

    // One of the first three short: the start fails, so each is needed, and the wrapper does
    // limit what the daemon may do.
    std::fs::write(testenv::LB_CONFIG, config(&all)).unwrap();
    for needed in ["CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON"] {
        assert!(capabilities.iter().any(|c| c == needed), "the unit lacks {needed}: {capabilities:?}");
        let without: Vec<String> = capabilities.iter().filter(|c| *c != needed).cloned().collect();
        let short = capped_lb(&format!("lb-without-{needed}"), &without);
        let out = Command::new("timeout")
            .args(["20", "ip", "netns", "exec", LB_NS])
            .arg(&short)
            .args(["run", "-c", testenv::LB_CONFIG])
            .output()
            .unwrap();
        assert_ne!(out.status.code(), Some(124), "lb run without {needed} neither served nor failed within 20 s");
        assert!(!out.status.success(), "lb run served without {needed}");
        // A refused fresh start takes back the maps it pinned before failing: the next start
        // would refuse maps without the layout version a finished start writes.
        let pins = Path::new(testenv::LB_PIN_PATH);
        let left: Vec<_> = std::fs::read_dir(pins).into_iter().flatten().flatten().map(|e| e.file_name()).collect();
        assert!(left.is_empty(), "lb run without {needed} left pins behind: {left:?}");
    }

    let capped = capped_lb("lb-capped", &capabilities);
    let mut lb = LbDaemon::start(&capped, &config(&all))
        .unwrap_or_else(|e| panic!("lb run with the unit's capabilities: {e:#}"));
    assert_eq!(servers_reached(&url, 15), servers(&["Server1", "Server2", "Server3"]));
    let pid = lb.pid().expect("running");
    let held = u64::from_str_radix(&status_field(pid, "CapEff:"), 16).unwrap();
    assert_eq!(held, mask(&capabilities), "CapEff {held:#x}: not exactly the unit's {capabilities:?}");
    assert_eq!(status_field(pid, "NoNewPrivs:"), "1");

    lb.reload(&config(&all[..2])).unwrap_or_else(|e| panic!("reload with the unit's capabilities: {e:#}"));
    assert_eq!(servers_reached(&url, 15), servers(&["Server1", "Server2"]));

    // A stop leaves the program and its pins; the next start reopens and adopts them.
    let status = lb.stop().unwrap();
    assert!(status.success(), "lb run exited {status}:\n{}", lb.log());
    let lb = LbDaemon::start(&capped, "").unwrap_or_else(|e| panic!("a second lb run adopting: {e:#}"));
    assert!(lb.log().contains("adopt"), "the second daemon did not adopt:\n{}", lb.log());
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(servers_reached(&url, 15), servers(&["Server1", "Server2"]));
}

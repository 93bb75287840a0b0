//! `lb doctor --interface IF`: the real binary against real interfaces.
//!
//! The host tests need no root. The root tests (`#[ignore]`; `cargo xtask test` runs them)
//! each build their own network namespace `lbdoc-test-<pid>-<n>` with a veth pair in it,
//! run `ip netns exec NS lb doctor ...` there, and delete the namespace when done, also
//! when the test fails.
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use lb_user::doctor::{self, checks, probe};
use serde_json::Value;

const ALL_CHECKS: [&str; 10] = [
    checks::INTERFACE,
    checks::PRIVILEGES,
    checks::BPFFS,
    checks::DRIVER,
    checks::NATIVE_ATTACH,
    checks::MTU,
    checks::LRO,
    checks::VETH_PEER,
    checks::RP_FILTER,
    checks::TX_CHECKSUM,
];

fn lb(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lb")).args(args).output().expect("running lb")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(out: &Output) -> Vec<Value> {
    serde_json::from_str(&stdout(out))
        .unwrap_or_else(|e| panic!("lb doctor --json printed no JSON array ({e}): {}", stdout(out)))
}

fn finding<'a>(findings: &'a [Value], check: &str) -> &'a Value {
    findings.iter().find(|f| f["check"] == check).unwrap_or_else(|| panic!("no {check} finding in {findings:?}"))
}

/// The line `lb doctor` printed for a check.
fn line<'a>(text: &'a str, check: &str) -> &'a str {
    text.lines()
        .find(|l| l.split_whitespace().nth(1) == Some(check))
        .unwrap_or_else(|| panic!("no {check} line in:\n{text}"))
}

// ---- host tests: no root needed ----

#[test]
fn help_documents_doctor() {
    let out = lb(&["doctor", "--help"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let help = stdout(&out);
    for word in ["--interface", "--json", "native", "exits 0", "rp_filter", "left alone"] {
        assert!(help.contains(word), "`lb doctor --help` mentions {word}:\n{help}");
    }
    let top = stdout(&lb(&["--help"]));
    assert!(top.contains("doctor"), "`lb --help` lists doctor:\n{top}");
}

#[test]
fn interface_is_required() {
    let out = lb(&["doctor"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--interface"), "{}", stderr(&out));
}

#[test]
fn a_missing_interface_is_a_clear_error() {
    let out = lb(&["doctor", "--interface", "does-not-exist0"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(text.contains("interface does-not-exist0 does not exist"), "{text}");
    assert!(text.contains("native XDP cannot attach on does-not-exist0: interface"), "{text}");
    assert_eq!(text.lines().count(), 2, "one finding and the verdict:\n{text}");
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));

    let out = lb(&["doctor", "--interface", "does-not-exist0", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let findings = json(&out);
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0]["check"], "interface");
    assert_eq!(findings[0]["ok"], false);
    assert_eq!(findings[0]["status"], "problem");
    assert!(findings[0]["fix"].is_string());
}

#[test]
fn bad_interface_names_are_clear_errors_not_panics() {
    for name in ["", "a/b", "..", "name-longer-than-15", "eth0:1", "two words", "../../etc"] {
        let out = lb(&["doctor", "--interface", name]);
        assert_eq!(out.status.code(), Some(1), "{name:?}: {}{}", stdout(&out), stderr(&out));
        assert!(stdout(&out).contains("is not a valid interface name"), "{name:?}: {}", stdout(&out));
        assert!(!stderr(&out).contains("panicked"), "{name:?}: {}", stderr(&out));
    }
}

#[test]
fn every_check_reports_on_an_existing_interface() {
    // Loopback exists everywhere and never runs native XDP: exit 1 as root (EOPNOTSUPP) or
    // not (the probe's load is refused).
    let out = lb(&["doctor", "--interface", "lo", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let findings = json(&out);
    let names: Vec<&str> = findings.iter().map(|f| f["check"].as_str().unwrap()).collect();
    assert_eq!(names, ALL_CHECKS);
    for f in &findings {
        let status = f["status"].as_str().unwrap();
        assert!(["ok", "note", "problem"].contains(&status), "{f}");
        assert_eq!(f["ok"] == false, status == "problem", "{f}");
    }
    assert_eq!(finding(&findings, "driver")["ok"], false, "loopback has no native XDP");
    assert_eq!(finding(&findings, "native-attach")["ok"], false);
    assert!(!doctor::blockers("lo").is_empty());
    assert!(doctor::native_xdp_works("lo").is_err());
}

// ---- root tests: their own network namespace ----

static SEQ: AtomicUsize = AtomicUsize::new(0);

fn run_ok(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(out.status.success(), "{program} {}: {}", args.join(" "), stderr(&out));
    stdout(&out)
}

/// A network namespace with a veth pair `va` / `vb` in it, both up; deleted on drop.
struct Netns {
    name: String,
    others: Vec<String>,
}

impl Netns {
    fn new() -> Netns {
        let name = format!("lbdoc-test-{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::SeqCst));
        run_ok("ip", &["netns", "add", &name]);
        let ns = Netns { name, others: Vec::new() };
        ns.ip(&["link", "add", "va", "type", "veth", "peer", "name", "vb"]);
        ns.ip(&["link", "set", "va", "up"]);
        ns.ip(&["link", "set", "vb", "up"]);
        ns
    }

    /// Another namespace, deleted with this one.
    fn another(&mut self) -> String {
        let other = format!("{}-b", self.name);
        run_ok("ip", &["netns", "add", &other]);
        self.others.push(other.clone());
        other
    }

    fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run_ok("ip", &all)
    }

    fn exec(&self, args: &[&str]) -> String {
        let mut all = vec!["netns", "exec", self.name.as_str()];
        all.extend_from_slice(args);
        run_ok("ip", &all)
    }

    fn doctor(&self, interface: &str, json: bool) -> Output {
        let mut args =
            vec!["netns", "exec", self.name.as_str(), env!("CARGO_BIN_EXE_lb"), "doctor", "--interface", interface];
        if json {
            args.push("--json");
        }
        let out = Command::new("ip").args(&args).output().expect("running ip netns exec lb doctor");
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
        out
    }

    /// The XDP program ids attached to `dev` (`ip -j link`).
    fn xdp_prog(&self, dev: &str) -> Option<u64> {
        let v: Value = serde_json::from_str(&self.ip(&["-j", "link", "show", "dev", dev])).unwrap();
        v[0]["xdp"]["prog"]["id"].as_u64()
    }

    /// Runs `f` on a thread that has entered this namespace (ifindexes, `ip`, /proc/sys/net
    /// are then this namespace's).
    fn within<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                let file = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
                // SAFETY: setns on an open namespace fd; it affects this thread only.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .expect("thread in the namespace")
        })
    }

    /// Attaches a pass-through program to `dev` in `mode` (probe::XDP_FLAGS_*); it stays
    /// until the returned link fd is dropped.
    fn hold_xdp(&self, dev: &str, mode: u32) -> OwnedFd {
        self.within(|| {
            let c = std::ffi::CString::new(dev).unwrap();
            // SAFETY: a NUL-terminated name.
            let ifindex = unsafe { libc::if_nametoindex(c.as_ptr()) };
            assert_ne!(ifindex, 0, "{dev} in the namespace");
            probe::attach_pass(ifindex, mode).expect("attaching a pass-through program")
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for ns in self.others.iter().chain(std::iter::once(&self.name)) {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn loopback_cannot_attach_natively() {
    let ns = Netns::new();
    let out = ns.doctor("lo", false);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(line(&text, "driver").starts_with("problem") && line(&text, "driver").contains("loopback"), "{text}");
    assert!(line(&text, "native-attach").contains("EOPNOTSUPP"), "{text}");
    assert!(line(&text, "native-attach").contains("fix: `daemon.xdp_attach = \"generic\"`"), "{text}");
    assert!(text.trim_end().ends_with("native XDP cannot attach on lo: driver, native-attach"), "{text}");
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_veth_with_mtu_1500_attaches_natively_and_is_left_as_it_was() {
    let ns = Netns::new();
    let out = ns.doctor("va", false);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(line(&text, "native-attach").starts_with("ok"), "{text}");
    assert!(line(&text, "driver").contains("driver veth supports native XDP"), "{text}");
    assert!(line(&text, "mtu").starts_with("ok"), "{text}");
    assert!(text.lines().last().unwrap().starts_with("native XDP can attach on va"), "{text}");
    assert_eq!(ns.xdp_prog("va"), None, "the probe detached its program");

    let findings = json(&ns.doctor("va", true));
    assert_eq!(finding(&findings, "native-attach")["ok"], true);
    assert_eq!(finding(&findings, "native-attach")["status"], "ok");

    // The library, in the namespace: the daemon's view.
    ns.within(|| {
        assert_eq!(doctor::native_xdp_works("va"), Ok(()));
        let blockers = doctor::blockers("va");
        // Only the peer (no XDP, GRO off) stands in the way of forwarding.
        assert_eq!(blockers.iter().map(|f| f.check).collect::<Vec<_>>(), [checks::VETH_PEER], "{blockers:?}");
    });
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_veth_with_mtu_9000_cannot_attach_and_says_why() {
    let ns = Netns::new();
    ns.ip(&["link", "set", "va", "mtu", "9000"]);
    ns.ip(&["link", "set", "vb", "mtu", "9000"]);
    let out = ns.doctor("va", false);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let mtu = line(&text, "mtu");
    assert!(mtu.starts_with("problem") && mtu.contains("MTU 9000") && mtu.contains("at most MTU 3498"), "{text}");
    assert!(mtu.contains("fix: `ip link set vb mtu 1500` and `ip link set va mtu 1500`"), "{text}");
    assert!(line(&text, "native-attach").contains("ERANGE"), "{text}");
    let verdict = text.lines().last().unwrap();
    assert!(verdict.starts_with("native XDP cannot attach on va:") && verdict.contains("mtu"), "{text}");

    let findings = json(&ns.doctor("va", true));
    assert_eq!(finding(&findings, "mtu")["ok"], false);
    assert_eq!(finding(&findings, "mtu")["blocker"], true);

    ns.within(|| {
        let err = doctor::native_xdp_works("va").unwrap_err();
        assert!(err.contains("ERANGE") && err.contains("MTU"), "{err}");
        assert!(doctor::blockers("va").iter().any(|f| f.check == checks::MTU));
    });
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn an_attached_program_is_left_alone() {
    let ns = Netns::new();
    let held = ns.hold_xdp("va", probe::XDP_FLAGS_DRV_MODE);
    let id = ns.xdp_prog("va").expect("the held program shows on va");
    let out = ns.doctor("va", false);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let attach = line(&text, "native-attach");
    assert!(
        attach.contains("EBUSY")
            && attach.contains(&format!("native XDP program {} (id {id})", probe::PASS_PROGRAM_NAME)),
        "{text}"
    );
    assert!(attach.contains("left it alone"), "{text}");
    assert!(attach.contains("fix: if it is not needed, detach it (`ip link set dev va xdp off`)"), "{text}");
    assert!(line(&text, "driver").contains("runs native XDP"), "{text}");
    assert_eq!(ns.xdp_prog("va"), Some(id), "the program is still attached, untouched");
    drop(held);
    assert_eq!(ns.xdp_prog("va"), None);

    // A generic-mode program: native and generic cannot be active at once.
    let held = ns.hold_xdp("va", probe::XDP_FLAGS_SKB_MODE);
    let id = ns.xdp_prog("va").expect("the generic program shows on va");
    let text = stdout(&ns.doctor("va", false));
    assert!(line(&text, "native-attach").contains("native and generic XDP cannot be active at once"), "{text}");
    assert_eq!(ns.xdp_prog("va"), Some(id));
    drop(held);
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn the_veth_peer_needs_xdp_or_gro() {
    let mut ns = Netns::new();
    let text = stdout(&ns.doctor("va", false));
    let peer = line(&text, "veth-peer");
    assert!(peer.starts_with("problem") && peer.contains("vb has no XDP program and GRO off"), "{text}");
    assert!(peer.contains("fix: `ethtool -K vb gro on`"), "{text}");

    ns.exec(&["ethtool", "-K", "vb", "gro", "on"]);
    let text = stdout(&ns.doctor("va", false));
    assert!(line(&text, "veth-peer").starts_with("ok"), "{text}");
    ns.exec(&["ethtool", "-K", "vb", "gro", "off"]);

    let held = ns.hold_xdp("vb", probe::XDP_FLAGS_DRV_MODE);
    let text = stdout(&ns.doctor("va", false));
    assert!(
        line(&text, "veth-peer").starts_with("ok") && line(&text, "veth-peer").contains("native XDP program"),
        "{text}"
    );
    drop(held);

    // The peer in another namespace: a note with the requirement, not a failure.
    let other = ns.another();
    ns.ip(&["link", "set", "vb", "netns", &other]);
    let out = ns.doctor("va", false);
    let text = stdout(&out);
    let peer = line(&text, "veth-peer");
    assert!(peer.starts_with("note") && peer.contains("another network namespace"), "{text}");
    assert!(peer.contains("cannot be checked from here") && peer.contains("GRO"), "{text}");
    // va itself still attaches natively (its peer is up, in the other namespace).
    assert_eq!(out.status.code(), Some(0), "{text}");
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn strict_rp_filter_and_veth_tx_checksum_offload_are_reported_with_fixes() {
    let ns = Netns::new();
    ns.exec(&["sysctl", "-qw", "net.ipv4.conf.va.rp_filter=1"]);
    let out = ns.doctor("va", false);
    let text = stdout(&out);
    let rp = line(&text, "rp_filter");
    assert!(rp.starts_with("problem") && rp.contains("strict"), "{text}");
    assert!(rp.contains("fix: `sysctl -w net.ipv4.conf.va.rp_filter=2`"), "{text}");
    // Advice, not a reason native XDP cannot attach.
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(!text.lines().last().unwrap().contains("cannot"), "{text}");

    let tx = line(&text, "tx-checksum");
    assert!(tx.starts_with("note") && tx.contains("tx checksum offload is on for va"), "{text}");
    assert!(tx.contains("ethtool -K DEV tx off"), "{text}");
    ns.exec(&["ethtool", "-K", "va", "tx", "off"]);
    ns.exec(&["ethtool", "-K", "vb", "tx", "off"]);
    let text = stdout(&ns.doctor("va", false));
    assert!(line(&text, "tx-checksum").starts_with("ok"), "{text}");
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn with_several_nics_each_is_checked_as_a_redirect_target() {
    let ns = Netns::new();
    ns.ip(&["link", "add", "vc", "type", "veth", "peer", "name", "vd"]);
    ns.ip(&["link", "set", "vc", "up"]);
    ns.ip(&["link", "set", "vd", "up"]);
    let run = |json: bool| {
        let mut args = vec!["netns", "exec", ns.name.as_str(), env!("CARGO_BIN_EXE_lb"), "doctor"];
        args.extend(["--interface", "va", "--interface", "vc"]);
        if json {
            args.push("--json");
        }
        let out = Command::new("ip").args(&args).output().expect("running lb doctor");
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
        out
    };
    let out = run(false);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "peers without XDP or GRO cannot take redirected frames:\n{text}");
    assert!(text.lines().any(|l| l == "va:") && text.lines().any(|l| l == "vc:"), "{text}");
    let redirect: Vec<&str> = text.lines().filter(|l| l.split_whitespace().nth(1) == Some("redirect-target")).collect();
    assert_eq!(redirect.len(), 2, "{text}");
    assert!(redirect[0].starts_with("problem") && redirect[0].contains("redirects to va"), "{text}");
    assert!(redirect[1].contains("fix: `ethtool -K vd gro on`"), "{text}");

    // A native XDP program on vd: vc now takes redirected frames; va still does not.
    let _held = ns.hold_xdp("vd", probe::XDP_FLAGS_DRV_MODE);
    let rows = json(&run(true));
    let of = |nic: &str| {
        rows.iter().find(|r| r["interface"] == nic && r["check"] == "redirect-target").expect("a redirect-target row")
    };
    assert_eq!(of("vc")["ok"], true, "{rows:?}");
    assert_eq!((of("va")["ok"].clone(), of("va")["blocker"].clone()), (Value::Bool(false), Value::Bool(true)));
}

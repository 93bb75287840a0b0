//! `lb check`'s look at the host for dsr backends (lb-user `cli/segment.rs`), through the
//! binary, on the loopback NIC every host has (127.0.0.1/8): no root needed.
use std::process::{Command, Stdio};

fn check(name: &str, config: &str) -> (Option<i32>, String, String) {
    let dir = std::env::temp_dir().join(format!("lb-check-segment-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("lb.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lb"))
        .args(["check", "-c", path.to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr).replace(path.to_str().unwrap(), "lb.toml");
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

fn config(interface: &str, backend: &str) -> String {
    format!(
        "[daemon]\ninterface = {interface}\n\n[[service]]\nname = \"direct\"\nvip = \"127.0.0.100:80\"\n\
         forwarding = \"dsr\"\n[[service.backend]]\naddress = \"{backend}\"\n"
    )
}

#[test]
fn a_dsr_backend_behind_a_router_fails_the_check_at_its_address() {
    let (code, stdout, stderr) = check("router", &config("\"lo\"", "10.99.0.5:80"));
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(stdout, "");
    assert!(
        stderr.starts_with("lb.toml:9:11: service \"direct\": dsr backend 10.99.0.5 is not on a subnet connected to the balancer (127.0.0.1/8 on lo"),
        "{stderr}"
    );
    assert!(stderr.contains("use forwarding = \"ipip\" or \"gue\""), "{stderr}");
}

#[test]
fn a_dsr_backend_on_a_connected_subnet_passes() {
    let (code, stdout, stderr) = check("segment", &config("\"lo\"", "127.0.0.5:80"));
    assert_eq!((code, stdout.as_str(), stderr.as_str()), (Some(0), "ok\n", ""));
}

#[test]
fn without_a_configured_nic_on_this_host_it_is_only_a_warning() {
    let (code, stdout, stderr) = check("build-machine", &config("[\"lo\", \"nosuchnic0\"]", "10.99.0.5:80"));
    assert_eq!((code, stdout.as_str()), (Some(0), "ok\n"), "{stderr}");
    assert!(stderr.starts_with("lb.toml:9:11: warning: service \"direct\": dsr backend 10.99.0.5"), "{stderr}");
    assert!(stderr.contains("daemon.interface nosuchnic0 is not on this host"), "{stderr}");
}

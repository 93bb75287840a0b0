//! Network test of several NICs and next hops from the kernel, on namespaces of its own (not
//! the shared test network, so it takes no network lock): a balancer namespace with two
//! veth NICs, `c0` towards a client namespace and `s0` towards a server namespace, the real
//! `lb run` attached to both (`interface = ["c0", "s0"]`), forwarding on. A nat request
//! crosses from `c0` to `s0` and its replies back, both by `XDP_REDIRECT`; the first reply
//! meets a client the balancer's kernel has no neighbour entry for, which the daemon gets
//! resolved, so the backend's retransmission gets through. Then a restarted daemon swaps
//! its program into both links in place. Root only: `cargo xtask test` runs it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LB: &str = "lbeg-lb";
const CLIENT: &str = "lbeg-cl";
const SERVER: &str = "lbeg-sv";
const RUN: &str = "/run/lbeg";
const VIP: &str = "10.88.1.100";

fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(out.status.success(), "{}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ip(ns: &str, cmd: &str) {
    let mut args = vec!["ip", "-n", ns];
    args.extend(cmd.split(' '));
    sh(&args);
}

fn in_ns(ns: &str, cmd: &[&str]) -> String {
    let mut args = vec!["ip", "netns", "exec", ns];
    args.extend_from_slice(cmd);
    sh(&args)
}

/// The three namespaces, a bpffs for the pins, the backend; all gone on drop.
struct Topology {
    backend: Option<Child>,
}

impl Topology {
    fn up() -> Self {
        testenv::require_root();
        Self::clean();
        let t = Topology { backend: None };
        for ns in [LB, CLIENT, SERVER] {
            sh(&["ip", "netns", "add", ns]);
            ip(ns, "link set lo up");
        }
        ip(LB, &format!("link add c0 type veth peer name cl0 netns {CLIENT}"));
        ip(LB, &format!("link add s0 type veth peer name sv0 netns {SERVER}"));
        for (ns, dev, addr) in [
            (LB, "c0", "10.88.1.1/24"),
            (LB, "s0", "10.88.2.1/24"),
            (CLIENT, "cl0", "10.88.1.2/24"),
            (SERVER, "sv0", "10.88.2.2/24"),
        ] {
            ip(ns, &format!("addr add {addr} dev {dev}"));
            ip(ns, &format!("link set {dev} up"));
        }
        // The client reaches the VIP on c0's MAC; the server answers the SNAT address (c0's,
        // the first NIC's) through the balancer.
        let c0_mac = in_ns(LB, &["cat", "/sys/class/net/c0/address"]);
        ip(CLIENT, &format!("neigh replace {VIP} lladdr {} dev cl0 nud permanent", c0_mac.trim()));
        ip(SERVER, "route add default via 10.88.2.1");
        // Frames redirected to c0 and s0 reach their peers only when those run NAPI (GRO);
        // the peers' own checksums are computed in full (no partial checksums on veths).
        for (ns, dev) in [(CLIENT, "cl0"), (SERVER, "sv0"), (LB, "c0"), (LB, "s0")] {
            in_ns(ns, &["ethtool", "-K", dev, "gro", "on", "tx", "off"]);
        }
        in_ns(LB, &["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
        std::fs::create_dir_all(format!("{RUN}/bpffs")).unwrap();
        sh(&["mount", "-t", "bpf", "bpf", &format!("{RUN}/bpffs")]);
        let mut t = t;
        let script = testenv::backend_script();
        let python = testenv::python();
        t.backend = Some(
            testenv::spawn_logged(
                SERVER,
                &[
                    "env",
                    "SERVER_NAME=Far",
                    "SERVER_BIND=10.88.2.2",
                    "SERVER_PORT=80",
                    &python,
                    script.to_str().unwrap(),
                ],
                Path::new(&format!("{RUN}/backend.log")),
            )
            .expect("start the backend"),
        );
        t
    }

    fn clean() {
        // Quietly: on the first run there is nothing to remove.
        for ns in [LB, CLIENT, SERVER] {
            let _ = Command::new("ip").args(["netns", "del", ns]).stderr(Stdio::null()).status();
        }
        let _ = Command::new("umount").arg(format!("{RUN}/bpffs")).stderr(Stdio::null()).status();
        let _ = std::fs::remove_dir_all(RUN);
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        if let Some(mut b) = self.backend.take() {
            let _ = b.kill();
            let _ = b.wait();
        }
        Self::clean();
    }
}

/// `lb run` in the balancer namespace; stopped with SIGTERM on drop.
struct Daemon {
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    fn start(detach_on_exit: bool) -> Self {
        let config = format!(
            "[daemon]\ninterface = [\"c0\", \"s0\"]\nmode = \"xdp\"\nxdp_attach = \"native\"\npin_path = \"{RUN}/bpffs/lb\"\n\
             admin_listen = \"127.0.0.1:9100\"\n\n[[service]]\nname = \"web\"\nvip = \"{VIP}:80\"\n\
             [[service.backend]]\naddress = \"10.88.2.2:80\"\n"
        );
        let path = format!("{RUN}/lb.toml");
        std::fs::write(&path, config).unwrap();
        let log = PathBuf::from(format!("{RUN}/lb.log"));
        let _ = std::fs::remove_file(&log);
        let bin = testenv::lb_binary();
        let mut args = vec![bin.to_str().unwrap(), "run", "-c", path.as_str()];
        if detach_on_exit {
            args.push("--detach-on-exit");
        }
        let child = testenv::spawn_logged(LB, &args, &log).expect("start lb run");
        let mut d = Daemon { child: Some(child), log };
        d.wait_for("lb is serving");
        d
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_for(&mut self, needle: &str) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if self.text().contains(needle) {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("lb run exited ({status}); its log:\n{}", self.text());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("lb run did not log {needle:?}; its log:\n{}", self.text());
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our own child (`ip netns exec` execs the daemon in place).
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && child.try_wait().ok().flatten().is_none() {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

fn stats() -> serde_json::Value {
    let bin = testenv::lb_binary();
    let out = sh(&[bin.to_str().unwrap(), "list", "stats", "--json", "--pin-path", &format!("{RUN}/bpffs/lb")]);
    serde_json::from_str(&out).expect("lb list stats --json")
}

fn xdp_prog(dev: &str) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_str(&in_ns(LB, &["ip", "-j", "link", "show", "dev", dev])).unwrap();
    v[0]["xdp"]["prog"]["id"].as_u64()
}

fn request() -> String {
    testenv::curl(CLIENT, &format!("http://{VIP}/"), Duration::from_secs(8)).expect("curl through the VIP")
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_nat_flow_crosses_two_nics_by_redirect_and_a_restart_keeps_both_links() {
    let _net = Topology::up();
    let mut lb = Daemon::start(false);
    assert!(lb.text().contains("XDP program running on an additional NIC"), "{}", lb.text());
    let (c0, s0) = (xdp_prog("c0").expect("XDP on c0"), xdp_prog("s0").expect("XDP on s0"));
    assert_eq!(c0, s0, "one program on both NICs");

    let body = request();
    assert!(body.contains("Hello from Far"), "{body}");
    let s = stats();
    assert_eq!(s["actions"]["aborted"], 0);
    assert!(s["actions"]["redirect"].as_u64().unwrap() >= 4, "both directions left by XDP_REDIRECT: {s}");
    // The balancer's kernel had never heard of the client: the first reply found no
    // neighbour; the daemon had it resolved and the backend's retransmission got through.
    assert!(s["drops"]["no_neighbor"].as_u64().unwrap() >= 1, "{s}");

    // A restarted daemon swaps its program into both pinned links: no NIC is detached.
    lb.stop();
    assert_eq!((xdp_prog("c0"), xdp_prog("s0")), (Some(c0), Some(s0)), "left attached for the next daemon");
    let mut lb = Daemon::start(true);
    assert!(lb.text().contains("XDP program replaced in the running link"), "{}", lb.text());
    let (c1, s1) = (xdp_prog("c0").unwrap(), xdp_prog("s0").unwrap());
    assert!(c1 != c0 && c1 == s1, "the new program on both NICs: {c0} -> {c1}, {s1}");
    assert!(request().contains("Hello from Far"));
    lb.stop();
    assert_eq!((xdp_prog("c0"), xdp_prog("s0")), (None, None), "--detach-on-exit detaches every NIC");
}

//! Shared pieces of the network tests: the test network's lifetime, the daemon, clients.
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout};
use std::time::Duration;

use testenv::{LbDaemon, NetworkLock, CLIENT_NS, VIP_V4};

/// The test network, up for one test and down afterwards (the lock keeps tests apart).
pub struct Net {
    _lock: NetworkLock,
}

impl Net {
    pub fn up(dsr: bool) -> Self {
        testenv::require_root();
        let lock = testenv::lock_network().expect("lock the test network");
        testenv::up(&testenv::UpOptions { dsr, ..Default::default() }).expect("test network up");
        Net { _lock: lock }
    }

    /// With the L3 layout too (testenv `l3.rs`): a router, the LB's second NIC, far servers.
    pub fn up_l3() -> Self {
        testenv::require_root();
        let lock = testenv::lock_network().expect("lock the test network");
        testenv::up(&testenv::UpOptions { l3: true, ..Default::default() }).expect("test network up");
        Net { _lock: lock }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = testenv::down();
    }
}

pub fn start(cfg: &str) -> LbDaemon {
    LbDaemon::start(&testenv::lb_binary(), cfg).unwrap_or_else(|e| panic!("lb run: {e:#}"))
}

pub fn server_of(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    v["server"].as_str().expect("server field").to_string()
}

/// `n` requests through `url` from the client; the set of servers that answered.
pub fn servers_reached(url: &str, n: usize) -> BTreeSet<String> {
    (0..n)
        .map(|_| {
            let body =
                testenv::curl(CLIENT_NS, url, Duration::from_secs(3)).unwrap_or_else(|e| panic!("curl {url}: {e:#}"));
            server_of(&body)
        })
        .collect()
}

/// A client holding one HTTP/1.1 keep-alive connection to the VIP, sending a request each
/// time it is told to and printing which server answered.
pub struct KeepAliveClient {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

const KEEPALIVE_CLIENT: &str = r#"
import json, socket, sys
s = socket.create_connection((sys.argv[1], 80), timeout=5)
f = s.makefile("rb")
print(s.getsockname()[1], flush=True)
for _ in sys.stdin:
    s.sendall(b"GET / HTTP/1.1\r\nHost: vip\r\n\r\n")
    length = 0
    while True:
        line = f.readline()
        if line in (b"\r\n", b""):
            break
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    print(json.loads(f.read(length))["server"], flush=True)
"#;

impl KeepAliveClient {
    pub fn connect(vip: &str) -> (Self, u16) {
        let mut child = testenv::spawn(CLIENT_NS, &["python3", "-c", KEEPALIVE_CLIENT, vip]).expect("spawn client");
        let stdin = child.stdin.take().expect("stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut port = String::new();
        stdout.read_line(&mut port).expect("client port");
        let port = port.trim().parse().unwrap_or_else(|_| panic!("client did not connect: {port:?}"));
        (KeepAliveClient { child, stdin, stdout }, port)
    }

    pub fn request(&mut self) -> String {
        writeln!(self.stdin).expect("tell the client to send");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("client answer");
        assert!(!line.is_empty(), "the connection broke");
        line.trim().to_string()
    }
}

impl Drop for KeepAliveClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client sending one short request after another through `url` on a background thread,
/// until stopped (bounded: at most 4000 requests or 180 s). Records when each request
/// started and which server answered, or the error.
pub struct ClientLoop {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<Outcome>>>,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub started: std::time::Instant,
    pub result: Result<String, String>,
}

impl ClientLoop {
    pub fn start(url: &str) -> Self {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let url = url.to_string();
        let thread = std::thread::spawn(move || {
            let begun = std::time::Instant::now();
            let mut out = Vec::new();
            while !flag.load(Ordering::SeqCst) && out.len() < 4000 && begun.elapsed() < Duration::from_secs(180) {
                let started = std::time::Instant::now();
                let result = testenv::curl(CLIENT_NS, &url, Duration::from_secs(3))
                    .map(|b| server_of(&b))
                    .map_err(|e| format!("{e:#}"));
                out.push(Outcome { started, result });
                std::thread::sleep(Duration::from_millis(20));
            }
            out
        });
        ClientLoop { stop, thread: Some(thread) }
    }

    pub fn finish(mut self) -> Vec<Outcome> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread.take().expect("running").join().expect("client loop thread")
    }
}

impl Drop for ClientLoop {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub fn failures(outcomes: &[Outcome]) -> Vec<&Outcome> {
    outcomes.iter().filter(|o| o.result.is_err()).collect()
}

/// An admin API call from the client host: (status, body).
pub fn api(method: &str, url: &str, token: Option<&str>, body: Option<&str>) -> (u16, String) {
    let auth = token.map(|t| format!("Authorization: Bearer {t}"));
    let mut args = vec![
        "curl",
        "-s",
        "-g",
        "--noproxy",
        "*",
        "-m",
        "5",
        "-X",
        method,
        "-w",
        "\n%{http_code}",
        "-H",
        "Content-Type: application/json",
    ];
    if let Some(a) = &auth {
        args.extend(["-H", a.as_str()]);
    }
    if let Some(b) = body {
        args.extend(["--data-binary", b]);
    }
    args.push(url);
    let out = testenv::exec(CLIENT_NS, &args).expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// Sends `hex` (the bytes, in hex) from `ns` to `host:port` over one TCP connection, reads
/// until the LB ends it: (seconds from the send until then, what came back).
pub fn raw_exchange(ns: &str, host: &str, port: u16, hex: &str) -> (f64, String) {
    const RAW_CLIENT: &str = r#"
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
s.sendall(bytes.fromhex(sys.argv[3]))
t = time.time()
data = b""
try:
    while True:
        d = s.recv(4096)
        if not d:
            break
        data += d
except ConnectionResetError:
    pass
print("%.2f" % (time.time() - t))
print(data.decode(errors="replace"), end="")
"#;
    let out = testenv::exec_ok(ns, &["python3", "-c", RAW_CLIENT, host, &port.to_string(), hex]).unwrap();
    let (secs, rest) = out.split_once('\n').unwrap_or((&out, ""));
    (secs.trim().parse().unwrap_or_else(|_| panic!("raw client said {out:?}")), rest.to_string())
}

/// A UDP echo in each server namespace on port 5300, answering with the server's name;
/// stopped when dropped.
pub struct UdpEchoes(Vec<std::process::Child>);

impl UdpEchoes {
    pub fn start() -> Self {
        const ECHO: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 5300))
while True:
    data, peer = s.recvfrom(2048)
    s.sendto(sys.argv[1].encode(), peer)
"#;
        UdpEchoes(
            (1..=3)
                .map(|n| {
                    testenv::spawn(&format!("lbt-server{n}"), &["python3", "-c", ECHO, &format!("Server{n}")]).unwrap()
                })
                .collect(),
        )
    }
}

impl Drop for UdpEchoes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// How many of `n` datagrams from the client to the VIP's port 53 got an answer (each from
/// a fresh source port, so each is a new flow).
pub fn udp_answers(n: usize) -> usize {
    const ASK: &str = r#"
import socket, sys
ok = 0
for _ in range(int(sys.argv[2])):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1)
    try:
        s.sendto(b"ping", (sys.argv[1], 53))
        s.recvfrom(2048)
        ok += 1
    except OSError:
        pass
    s.close()
print(ok)
"#;
    let out = testenv::exec_ok(CLIENT_NS, &["python3", "-c", ASK, VIP_V4, &n.to_string()]).unwrap();
    out.trim().parse().unwrap_or_else(|_| panic!("udp client said {out:?}"))
}

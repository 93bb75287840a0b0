//! The real `lb run` (proxy path on loopback, no root) under a stand-in for systemd: a unix
//! datagram socket named by `NOTIFY_SOCKET`, as a `Type=notify` unit gets. The daemon says
//! `READY=1` once it serves (and `/readyz` answers 200), `RELOADING=1` with its monotonic
//! start on SIGHUP and `READY=1` when the reload has ended (saying so when it failed), and
//! `STOPPING=1` on SIGTERM before it exits. Every wait is bounded.
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lb-systemd-notify-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn config(dir: &Path, admin: u16, vip: u16, backend: u16) -> String {
    format!(
        "[daemon]\nmode = \"proxy\"\nadmin_listen = \"127.0.0.1:{admin}\"\nstate_file = \"{d}/state.json\"\n\
         token_file = \"{d}/token\"\ndrain_timeout = \"1s\"\n\n[[service]]\nname = \"web\"\n\
         vip = \"127.0.0.1:{vip}\"\n\n[[service.backend]]\naddress = \"127.0.0.1:{backend}\"\n",
        d = dir.display()
    )
}

/// The daemon, killed if the test ends early.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Daemon {
    fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill has no memory effects; the pid is our own child, not yet reaped.
        assert_eq!(unsafe { libc::kill(self.0.id() as libc::pid_t, signal) }, 0);
    }

    fn exits_within(&mut self, limit: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.0.try_wait().unwrap().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

fn next_message(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).unwrap_or_else(|e| panic!("no notification within {WAIT:?}: {e}"));
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn readyz_status(admin: u16) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", admin)).expect("the admin API listens");
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream.write_all(b"GET /readyz HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.lines().next().unwrap_or_default().to_string()
}

#[test]
fn lb_run_tells_systemd_when_it_serves_reloads_and_stops() {
    let dir = scratch();
    let socket_path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(WAIT)).unwrap();
    let (admin, vip, backend) = (free_port(), free_port(), free_port());
    let config_path = dir.join("lb.toml");
    std::fs::write(&config_path, config(&dir, admin, vip, backend)).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_lb"))
        .args(["run", "--config"])
        .arg(&config_path)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("lb run starts");
    let mut daemon = Daemon(child);

    assert_eq!(next_message(&socket), "READY=1\nSTATUS=serving on the proxy path");
    assert!(readyz_status(admin).contains(" 200 "), "READY=1 came before /readyz was ready");

    daemon.signal(libc::SIGHUP);
    let reloading = next_message(&socket);
    let usec: u64 = reloading
        .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a reload notification: {reloading:?}"));
    assert!(usec > 0);
    assert_eq!(next_message(&socket), "READY=1\nSTATUS=serving on the proxy path; config reloaded");

    // A config that no longer parses: the reload fails, the daemon stays ready and says so.
    std::fs::write(&config_path, "[daemon\n").unwrap();
    daemon.signal(libc::SIGHUP);
    assert!(next_message(&socket).starts_with("RELOADING=1\n"));
    let after_failure = next_message(&socket);
    assert!(
        after_failure.starts_with("READY=1\nSTATUS=serving on the proxy path; the last reload failed"),
        "{after_failure:?}"
    );
    assert_eq!(after_failure.lines().count(), 2, "one line per KEY=value: {after_failure:?}");

    daemon.signal(libc::SIGTERM);
    assert_eq!(next_message(&socket), "STOPPING=1");
    assert!(daemon.exits_within(WAIT), "lb run did not exit within {WAIT:?} of SIGTERM");
    drop(daemon);
    std::fs::remove_dir_all(&dir).unwrap();
}

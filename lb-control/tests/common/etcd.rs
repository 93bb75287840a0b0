//! A real etcd for the store's tests: `/usr/bin/etcd` (Debian's `etcd-server`) on 127.0.0.1
//! with free client and peer ports and a data directory of its own, killed on drop. It can
//! be stopped and started again on the same ports and data (etcd down, then back).
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ETCD: &str = "/usr/bin/etcd";
const START_WAIT: Duration = Duration::from_secs(15);

pub struct TestEtcd {
    client: SocketAddr,
    peer: SocketAddr,
    dir: PathBuf,
    child: Option<Child>,
}

/// The binary, or None (with a message) when it is missing outside CI; in CI a missing
/// etcd fails the test: the layer would otherwise pass without testing anything.
pub fn available() -> bool {
    if std::path::Path::new(ETCD).exists() {
        return true;
    }
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{ETCD} is missing (cargo xtask deps installs etcd-server)");
    eprintln!("skipped: {ETCD} is missing (cargo xtask deps installs etcd-server)");
    false
}

/// Whether `GET /health` on etcd's client port says `"health":"true"`.
fn healthy(client: &SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(client, Duration::from_millis(200)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut answer = String::new();
    stream.write_all(b"GET /health HTTP/1.0\r\n\r\n").is_ok()
        && stream.read_to_string(&mut answer).is_ok()
        && answer.contains("\"health\":\"true\"")
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// Start attempts before giving up: a port picked free may be taken before etcd binds it
/// (tests run in parallel, each with its own etcd), and then etcd exits; new ports are tried.
const START_ATTEMPTS: usize = 3;

impl TestEtcd {
    pub fn start(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("lb-test-etcd-{tag}-{}", std::process::id()));
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let mut etcd = TestEtcd { client: free_port(), peer: free_port(), dir: dir.clone(), child: None };
            match etcd.try_resume() {
                Ok(()) => return etcd,
                Err(e) => failures.push(e),
            }
        }
        panic!("etcd did not start in {START_ATTEMPTS} attempts: {failures:#?}");
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.client)
    }

    /// Start (again) on the same ports and data; returns once it answers `/health`.
    pub fn resume(&mut self) {
        self.try_resume().unwrap_or_else(|e| panic!("{e}"));
    }

    /// Start etcd and wait until this very process serves: the client port answering is not
    /// enough (it may be another test's etcd that took the port), so its own log must say it
    /// serves on that address, and `/health` must say true, while the child still runs.
    fn try_resume(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "etcd is running already");
        let (client, peer) = (format!("http://{}", self.client), format!("http://{}", self.peer));
        let log_path = self.dir.join("etcd.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(ETCD)
            .args(["--name", "test", "--data-dir"])
            .arg(self.dir.join("data"))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("test={peer}")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {ETCD}: {e}"));
        let child = self.child.insert(child);
        let deadline = Instant::now() + START_WAIT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                return Err(format!("etcd on {client} (peer {peer}) exited ({status}): {tail:?}"));
            }
            let serving = format!("serving insecure client requests on {}", self.client);
            if std::fs::read_to_string(&log_path).is_ok_and(|log| log.contains(&serving)) && healthy(&self.client) {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(format!("etcd on {client} did not answer /health within {START_WAIT:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kill it (SIGKILL: a crash, not a goodbye) and wait until it is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for TestEtcd {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

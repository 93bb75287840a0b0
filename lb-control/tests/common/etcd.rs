//! A real etcd for the store's tests: `/usr/bin/etcd` (Debian's `etcd-server`) on 127.0.0.1
//! with free client and peer ports and a data directory of its own, killed on drop. It can
//! be stopped and started again on the same ports and data (etcd down, then back).
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

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

impl TestEtcd {
    pub fn start(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("lb-test-etcd-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut etcd = TestEtcd { client: free_port(), peer: free_port(), dir, child: None };
        etcd.resume();
        etcd
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.client)
    }

    /// Start (again) on the same ports and data; returns once the client port answers.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "etcd is running already");
        let (client, peer) = (format!("http://{}", self.client), format!("http://{}", self.peer));
        let log = std::fs::File::create(self.dir.join("etcd.log")).unwrap();
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
        self.child = Some(child);
        let deadline = Instant::now() + START_WAIT;
        while TcpStream::connect_timeout(&self.client, Duration::from_millis(100)).is_err() {
            assert!(Instant::now() < deadline, "etcd did not listen on {} within {START_WAIT:?}", self.client);
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

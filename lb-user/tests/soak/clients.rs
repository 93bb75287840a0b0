//! The soak's real client: one short HTTP request after another through the VIP from the
//! client host (a new connection each, so every request is a new flow), for the run's
//! length. Each failure is named with its time and the backend its flow went to, read from
//! the flow table the moment it is reported.
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::Child;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use testenv::{CLIENT_NS, CLIENT_V4, VIP_V4};

use super::churn::backend_of;

/// Prints `TIME PORT ok SERVER` or `TIME PORT err WHAT` per request; bounded by time and
/// count.
const CLIENT: &str = r#"
import json, socket, sys, time
vip, end, left = sys.argv[1], time.time() + float(sys.argv[2]), int(sys.argv[3])
while time.time() < end and left > 0:
    left -= 1
    t, port, s = time.time(), 0, socket.socket()
    s.settimeout(3)
    try:
        s.bind(("0.0.0.0", 0))
        port = s.getsockname()[1]
        s.connect((vip, 80))
        s.sendall(b"GET / HTTP/1.1\r\nHost: vip\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        server = json.loads(data.split(b"\r\n\r\n", 1)[1])["server"]
        print(f"{t:.3f} {port} ok {server}", flush=True)
    except Exception as e:
        what = f"{type(e).__name__}: {e}".replace("\n", " ")
        print(f"{t:.3f} {port} err {what}", flush=True)
    finally:
        s.close()
    time.sleep(0.02)
"#;

#[derive(Clone, Debug)]
pub struct Failure {
    pub at: SystemTime,
    pub client: String,
    pub error: String,
    /// The backend the flow table names for the client's address and port, if any.
    pub backend: Option<String>,
}

impl Failure {
    pub fn describe(&self) -> String {
        let t = self.at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
        let backend = self.backend.as_deref().unwrap_or("no flow in the table");
        format!("at {t:.3} from {} via {backend}: {}", self.client, self.error)
    }
}

pub struct Outcomes {
    pub ok: u64,
    pub by_server: BTreeMap<String, u64>,
    pub failures: Vec<Failure>,
}

impl Outcomes {
    pub fn summary(&self) -> String {
        format!("answers by server: {:?}", self.by_server)
    }
}

pub struct Requests {
    child: Child,
    reader: JoinHandle<Outcomes>,
}

impl Requests {
    pub fn start(run: Duration) -> Requests {
        let secs = run.as_secs_f64().to_string();
        // At most 100 requests a second: the count bound.
        let most = ((run.as_secs() + 1) * 100).to_string();
        let mut child = testenv::spawn(CLIENT_NS, &["python3", "-u", "-c", CLIENT, VIP_V4, &secs, &most])
            .expect("start the client");
        let out = BufReader::new(child.stdout.take().expect("client stdout"));
        let reader = std::thread::spawn(move || read(out));
        Requests { child, reader }
    }

    /// Waits for the client to reach its end (its own deadline, at most 15 s after the
    /// run's; then it is killed).
    pub fn finish(mut self) -> Outcomes {
        let limit = std::time::Instant::now() + Duration::from_secs(15);
        while self.child.try_wait().ok().flatten().is_none() && std::time::Instant::now() < limit {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.reader.join().expect("client reader")
    }
}

fn read(out: impl BufRead) -> Outcomes {
    let mut outcomes = Outcomes { ok: 0, by_server: BTreeMap::new(), failures: Vec::new() };
    for line in out.lines().map_while(Result::ok) {
        let mut parts = line.splitn(4, ' ');
        let (Some(t), Some(port), Some(kind), rest) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if kind == "ok" {
            outcomes.ok += 1;
            *outcomes.by_server.entry(rest.unwrap_or("").to_string()).or_default() += 1;
            continue;
        }
        let client = format!("{CLIENT_V4}:{port}");
        let at = UNIX_EPOCH + Duration::from_secs_f64(t.parse().unwrap_or(0.0));
        let backend = backend_of(&client);
        outcomes.failures.push(Failure { at, client, error: rest.unwrap_or("").to_string(), backend });
    }
    outcomes
}

//! Long-lived connections across a node's death, for `demo --cluster`: the client holds a
//! few connections to the dsr VIP's echo port and exchanges a line on each every 100 ms;
//! each connection's node is read off the nodes' flow tables; after the kill, each one says
//! whether it kept talking to the same backend.
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Lines};
use std::process::{Child, ChildStdout};

use anyhow::{bail, Context, Result};
use testenv::cluster::{node_name, Node, CLIENT_NS, CLIENT_V4, ECHO_PORT, VIP_DSR};

pub const CONNECTIONS: u16 = 6;
const FIRST_PORT: u16 = 42000;

/// The client's script: connects, says `ready`, talks for `seconds`, then prints one line
/// per connection: `PORT BACKEND EXCHANGES ok|broken [WHY]`. A reply from another backend
/// than the first, a reset, or a reply missing for 1 s breaks the connection.
fn script(seconds: u64) -> String {
    format!(
        r#"import socket, time
conns = []
for port in range({FIRST_PORT}, {FIRST_PORT} + {CONNECTIONS}):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("{CLIENT_V4}", port))
    s.settimeout(1)
    s.connect(("{VIP_DSR}", {ECHO_PORT}))
    conns.append({{"port": port, "sock": s, "reader": s.makefile("rb"), "backend": None, "n": 0, "why": None}})
print("ready", flush=True)
end = time.time() + {seconds}
while time.time() < end:
    for c in conns:
        if c["why"]:
            continue
        try:
            c["sock"].sendall(b"x\n")
            name = c["reader"].readline().decode().split(" ")[0]
            if not name:
                raise OSError("closed by the other end")
            if c["backend"] is None:
                c["backend"] = name
            elif name != c["backend"]:
                raise OSError("answered by " + name)
            c["n"] += 1
        except OSError as e:
            c["why"] = str(e) or type(e).__name__
    time.sleep(0.1)
for c in conns:
    state = "broken " + c["why"] if c["why"] else "ok"
    print(c["port"], c["backend"], c["n"], state, flush=True)
"#
    )
}

/// What one held connection went through.
pub struct Outcome {
    /// The backend that answered its first line.
    pub backend: String,
    pub exchanges: u64,
    /// Why it broke (a reset, a silence of 1 s, another backend answering), if it did.
    pub broken: Option<String>,
}

/// The client's script, running.
pub struct Held {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Held {
    /// Opens the connections (they talk for `seconds`) and waits until all are up.
    pub fn open(seconds: u64) -> Result<Held> {
        let mut child = testenv::spawn(CLIENT_NS, &["python3", "-c", &script(seconds)])?;
        let stdout = child.stdout.take().context("the client script's stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        match lines.next() {
            Some(Ok(line)) if line == "ready" => Ok(Held { child, lines }),
            other => {
                let _ = child.kill();
                let out = child.wait_with_output()?;
                bail!("the client's connections did not open ({other:?}): {}", String::from_utf8_lossy(&out.stderr))
            }
        }
    }

    /// Waits for the script's end; each connection's outcome by its client port.
    pub fn finish(mut self) -> Result<BTreeMap<u16, Outcome>> {
        let mut results = BTreeMap::new();
        for line in self.lines.by_ref() {
            let line = line?;
            let mut words = line.splitn(4, ' ');
            let (Some(port), Some(backend), Some(n), Some(state)) =
                (words.next(), words.next(), words.next(), words.next())
            else {
                continue;
            };
            let broken = state.strip_prefix("broken ").map(str::to_string);
            results.insert(port.parse()?, Outcome { backend: backend.to_string(), exchanges: n.parse()?, broken });
        }
        let status = self.child.wait()?;
        if !status.success() || results.len() != CONNECTIONS as usize {
            bail!("the client script ended with {status} and {} results", results.len());
        }
        Ok(results)
    }
}

/// Which node each held connection went through: the node whose flow table has it.
pub fn nodes_of_connections(nodes: &[Node]) -> Result<BTreeMap<u16, u8>> {
    let mut found = BTreeMap::new();
    for node in nodes {
        let out = node.cli(&["list", "flows", "--json"])?;
        if !out.status.success() {
            bail!("lb list flows on {}: {}", node_name(node.i), String::from_utf8_lossy(&out.stderr));
        }
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).context("lb list flows --json")?;
        for row in rows {
            let client = row["client"].as_str().unwrap_or_default();
            let port = client.strip_prefix(&format!("{CLIENT_V4}:")).and_then(|p| p.parse::<u16>().ok());
            if let Some(port) = port.filter(|p| (FIRST_PORT..FIRST_PORT + CONNECTIONS).contains(p)) {
                found.insert(port, node.i);
            }
        }
    }
    Ok(found)
}

//! Long-lived connections across a node's death or drain (`demo --cluster` and the fleet's
//! network tests): the client holds connections to a VIP's echo port and exchanges a line on
//! each every 100 ms; each connection's node is read off the nodes' flow tables; at the end
//! each one says whether it kept talking to the same backend, without a reset or a
//! silence longer than its limit.
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Lines};
use std::process::{Child, ChildStdout};

use super::node::Node;
use super::topology::{node_name, CLIENT_NS, CLIENT_V4, ECHO_PORT};
use anyhow::{bail, Context, Result};

/// What to hold: `connections` connections to `vip`'s echo port from client ports
/// `first_port..`, talking for `seconds`; a reply missing for `silence` seconds breaks one.
#[derive(Clone, Copy, Debug)]
pub struct Hold {
    pub vip: &'static str,
    pub first_port: u16,
    pub connections: u16,
    pub seconds: u64,
    pub silence: u64,
}

impl Hold {
    fn ports(&self) -> std::ops::Range<u16> {
        self.first_port..self.first_port + self.connections
    }
}

/// The client's script: connects, says `ready`, talks for `seconds`, then prints one line
/// per connection: `PORT BACKEND EXCHANGES ok|broken [WHY]`. A reply from another backend
/// than the first, a reset, or a reply missing for `silence` seconds breaks the connection.
fn script(h: &Hold) -> String {
    let Hold { vip, first_port, connections, seconds, silence } = *h;
    format!(
        r#"import socket, time
conns = []
for port in range({first_port}, {first_port} + {connections}):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("{CLIENT_V4}", port))
    s.settimeout({silence})
    s.connect(("{vip}", {ECHO_PORT}))
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
    hold: Hold,
}

impl Held {
    /// Opens the connections and waits until all are up.
    pub fn open(hold: Hold) -> Result<Held> {
        let mut child = crate::spawn(CLIENT_NS, &["python3", "-c", &script(&hold)])?;
        let stdout = child.stdout.take().context("the client script's stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        match lines.next() {
            Some(Ok(line)) if line == "ready" => Ok(Held { child, lines, hold }),
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
        if !status.success() || results.len() != self.hold.connections as usize {
            bail!("the client script ended with {status} and {} results", results.len());
        }
        Ok(results)
    }

    /// Which node each connection goes through: the node whose flow table has it.
    pub fn nodes(&self, nodes: &[Node]) -> Result<BTreeMap<u16, u8>> {
        nodes_of_connections(nodes, self.hold.ports())
    }
}

/// Which node each client port of `ports` went through: the node whose flow table has it.
pub fn nodes_of_connections(nodes: &[Node], ports: std::ops::Range<u16>) -> Result<BTreeMap<u16, u8>> {
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
            if let Some(port) = port.filter(|p| ports.contains(p)) {
                found.insert(port, node.i);
            }
        }
    }
    Ok(found)
}

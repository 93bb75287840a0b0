//! Fast backends for the bench: nginx in each server namespace, in place of the seed's
//! Python server (one request at a time, it would be the bottleneck of every row). The
//! answer keeps the seed's shape: 200, JSON, `X-Server: ServerN`.
use std::time::Duration;

use anyhow::{Context, Result};
use testenv::{server_name, server_ns, server_v4, SERVERS};

use super::process::{wait_http, Proc};
use super::WORK_DIR;

pub struct Backends {
    procs: Vec<Proc>,
}

fn config(n: u8) -> String {
    let name = server_name(n);
    format!(
        r#"# Written by cargo xtask bench: {name}'s fast backend.
daemon off;
master_process on;
# Two workers: as much of the two cores as one backend could use, so the direct row is
# limited by the machine, not by the backend's process count.
worker_processes 2;
pid {WORK_DIR}/backend{n}.pid;
error_log {WORK_DIR}/backend{n}.err warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 60s;
    server {{
        listen 80 reuseport backlog=8192;
        listen [::]:80 reuseport backlog=8192;
        location / {{
            default_type application/json;
            add_header X-Server {name};
            return 200 '{{"server": "{name}", "message": "Hello from {name}!"}}\n';
        }}
    }}
}}
"#
    )
}

impl Backends {
    /// Stops the seed's servers and starts nginx in their namespaces.
    pub fn start() -> Result<Self> {
        let mut procs = Vec::new();
        for n in 1..=SERVERS {
            testenv::stop_server(n)?;
            procs.push(spawn(n)?);
        }
        for (i, p) in procs.iter_mut().enumerate() {
            let n = i as u8 + 1;
            p.check_alive()?;
            wait_http(&server_ns(n), &format!("http://{}/", server_v4(n)), Duration::from_secs(10))?;
        }
        Ok(Backends { procs })
    }

    /// Stops backend n (for the health-check detection time).
    pub fn stop(&mut self, n: u8) -> Result<()> {
        self.procs[n as usize - 1].stop()
    }

    pub fn restart(&mut self, n: u8) -> Result<()> {
        self.procs[n as usize - 1] = spawn(n)?;
        wait_http(&server_ns(n), &format!("http://{}/", server_v4(n)), Duration::from_secs(10))
    }
}

fn spawn(n: u8) -> Result<Proc> {
    let path = format!("{WORK_DIR}/backend{n}.conf");
    std::fs::write(&path, config(n)).with_context(|| format!("writing {path}"))?;
    Proc::spawn(
        &format!("nginx backend {n}"),
        &server_ns(n),
        &["nginx", "-c", &path],
        &format!("{WORK_DIR}/backend{n}.log"),
    )
}

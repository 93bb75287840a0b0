//! The balancers `lb` is compared with, from Debian's packages, each configured by the
//! bench to the same three backends. For the l4 rows: HAProxy (mode tcp, roundrobin),
//! nginx stream (round robin) and nftables DNAT balancing (numgen). For `lb proxy http`,
//! HTTP proxies that keep their backend connections alive as lb's pool does: HAProxy
//! (mode http, `http-reuse always`) and nginx `proxy_pass` (`upstream { keepalive }`).
//! All run in `lbt-lb`.
use anyhow::{Context, Result};
use testenv::{server_v4, LB_NS, LB_V4, SERVERS, VIP_V4};

use super::process::Proc;
use super::WORK_DIR;

fn backends() -> Vec<String> {
    (1..=SERVERS).map(server_v4).collect()
}

/// How HAProxy relays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HaproxyMode {
    /// `mode tcp`: bytes, like `lb proxy l4`.
    Tcp,
    /// `mode http`: parses each request, and with `http-reuse always` sends it over any
    /// idle connection to the chosen server, like `lb proxy http`'s pool.
    Http,
}

/// HAProxy in the foreground (`-db`), one thread per core.
pub fn haproxy(mode: HaproxyMode) -> Result<Proc> {
    // Keep-alive on both sides is HAProxy's default in mode http; `http-reuse always`
    // lets any request use any idle server connection (the default, `safe`, keeps a
    // connection's first request off it).
    let (mode, reuse, name) = match mode {
        HaproxyMode::Tcp => ("tcp", "", "haproxy"),
        HaproxyMode::Http => ("http", "    http-reuse always\n", "haproxy-http"),
    };
    let servers: String =
        backends().iter().enumerate().map(|(i, a)| format!("    server s{} {a}:80\n", i + 1)).collect();
    let config = format!(
        "# Written by cargo xtask bench.
global
    nbthread 2
    # Below what the fd limit (20000 here) allows: HAProxy refuses to start otherwise.
    maxconn 8000
defaults
    mode {mode}
    timeout connect 2s
    timeout client 30s
    timeout server 30s
{reuse}frontend vip
    bind {VIP_V4}:80
    default_backend servers
backend servers
    balance roundrobin
{servers}"
    );
    let path = format!("{WORK_DIR}/{name}.cfg");
    std::fs::write(&path, config).with_context(|| format!("writing {path}"))?;
    Proc::spawn(name, LB_NS, &["haproxy", "-db", "-f", &path], &format!("{WORK_DIR}/{name}.log"))
}

/// nginx's stream module: one worker per core, round robin (its default).
pub fn nginx_stream() -> Result<Proc> {
    let servers: String = backends().iter().map(|a| format!("        server {a}:80;\n")).collect();
    let config = format!(
        "# Written by cargo xtask bench.
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
daemon off;
master_process on;
worker_processes 2;
pid {WORK_DIR}/nginx-stream.pid;
error_log {WORK_DIR}/nginx-stream.err warn;
events {{ worker_connections 16384; }}
stream {{
    upstream servers {{
{servers}    }}
    server {{
        listen {VIP_V4}:80 reuseport backlog=8192;
        proxy_pass servers;
    }}
}}
"
    );
    let path = format!("{WORK_DIR}/nginx-stream.conf");
    std::fs::write(&path, config).with_context(|| format!("writing {path}"))?;
    Proc::spawn("nginx stream", LB_NS, &["nginx", "-c", &path], &format!("{WORK_DIR}/nginx-stream.log"))
}

/// nginx as an HTTP proxy: one worker per core, round robin, HTTP/1.1 to the backends over
/// kept-alive connections (`keepalive` idle connections per worker; `Connection: ""` so
/// that the client's `Connection: close` does not close the backend's connection too).
/// Request limits per connection lifted on both sides, as lb and HAProxy have none.
pub fn nginx_http() -> Result<Proc> {
    let servers: String = backends().iter().map(|a| format!("        server {a}:80;\n")).collect();
    let config = format!(
        "# Written by cargo xtask bench.
daemon off;
master_process on;
worker_processes 2;
pid {WORK_DIR}/nginx-http.pid;
error_log {WORK_DIR}/nginx-http.err warn;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 60s;
    upstream servers {{
{servers}        keepalive 64;
        keepalive_requests 10000000;
    }}
    server {{
        listen {VIP_V4}:80 reuseport backlog=8192;
        location / {{
            proxy_pass http://servers;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }}
    }}
}}
"
    );
    let path = format!("{WORK_DIR}/nginx-http.conf");
    std::fs::write(&path, config).with_context(|| format!("writing {path}"))?;
    Proc::spawn("nginx http", LB_NS, &["nginx", "-c", &path], &format!("{WORK_DIR}/nginx-http.log"))
}

const NFT_TABLE: &str = "lb_bench";

/// Kernel DNAT: each new connection to the VIP goes to the next backend (numgen inc),
/// with SNAT to the LB's address so replies come back through it (like lb's nat).
/// Forwarding on, and no ICMP redirects: the client and the backends share a segment,
/// and a redirect would teach the client to bypass the LB.
pub fn nft_up() -> Result<()> {
    let map: Vec<String> = backends().iter().enumerate().map(|(i, a)| format!("{i} : {a}")).collect();
    let set = backends().join(", ");
    let rules = format!(
        "table ip {NFT_TABLE} {{
    chain pre {{
        type nat hook prerouting priority dstnat;
        ip daddr {VIP_V4} tcp dport 80 dnat to numgen inc mod {SERVERS} map {{ {} }}:80
    }}
    chain post {{
        type nat hook postrouting priority srcnat;
        ip daddr {{ {set} }} tcp dport 80 ct status dnat snat to {LB_V4}
    }}
}}
",
        map.join(", ")
    );
    let path = format!("{WORK_DIR}/nft.conf");
    std::fs::write(&path, rules).with_context(|| format!("writing {path}"))?;
    testenv::exec_ok(
        LB_NS,
        &[
            "sysctl",
            "-q",
            "-w",
            "net.ipv4.ip_forward=1",
            "net.ipv4.conf.all.send_redirects=0",
            "net.ipv4.conf.eth0.send_redirects=0",
        ],
    )?;
    testenv::exec_ok(LB_NS, &["nft", "-f", &path]).context("loading the nftables DNAT rules")?;
    Ok(())
}

pub fn nft_down() -> Result<()> {
    testenv::exec_ok(LB_NS, &["nft", "delete", "table", "ip", NFT_TABLE])?;
    testenv::exec_ok(LB_NS, &["sysctl", "-q", "-w", "net.ipv4.ip_forward=0"]).map(drop)
}

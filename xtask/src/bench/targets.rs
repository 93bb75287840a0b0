//! The configurations measured: what serves the client's requests, how it is started and
//! stopped, and where its CPU time is counted.
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;
use testenv::{LbDaemon, CLIENT_NS, LB_NS, LB_PIN_PATH, VIP_V4};

use super::peers::{self, HaproxyMode};
use super::process::{wait_http, Proc};
use super::WORK_DIR;

/// Which table of BENCHMARKS.md a row belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Group {
    /// Direct, lb's four paths and the peers.
    Main,
    /// The proxy's I/O models (workers, pool): extra rows.
    IoModel,
}

/// Where the balancer's CPU time shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CpuSource {
    /// No balancer.
    None,
    /// In the kernel, in softirq (XDP, netfilter): machine-wide softirq time.
    Softirq,
    /// A process tree (proxies).
    Process,
}

#[derive(Clone, Debug)]
pub enum Kind {
    Direct,
    Lb { config: String },
    Haproxy(HaproxyMode),
    NginxStream,
    NginxHttp,
    Nft,
}

#[derive(Clone, Debug)]
pub struct Target {
    pub name: &'static str,
    pub label: &'static str,
    pub group: Group,
    pub cpu: CpuSource,
    pub kind: Kind,
    /// The lb row runs XDP: the program's own run time is read too.
    pub xdp: bool,
}

impl Target {
    pub fn url(&self) -> String {
        match self.kind {
            Kind::Direct => format!("http://{}/", testenv::server_v4(1)),
            _ => format!("http://{VIP_V4}/"),
        }
    }
}

/// Settings shared by every lb row: pins and state on the test network's own paths, no
/// health checks (the peers have none either).
fn lb_config(mode: &str, workers: u32, service: &str) -> String {
    format!(
        r#"# Written by cargo xtask bench.
[daemon]
interface = "eth0"
mode = "{mode}"
workers = {workers}
pin_path = "{LB_PIN_PATH}"
state_file = "{WORK_DIR}/state.json"
token_file = "{WORK_DIR}/token"
# Closed flows free their SNAT port after 2 s instead of 10 s: the new-connection runs
# open tens of thousands of connections a second through 3 × 12768 ports.
tcp_idle_timeout = "2s"

[[service]]
name = "web"
vip = "{VIP_V4}:80"
{service}
[service.health_check]
type = "none"
{backends}"#,
        backends = (1..=testenv::SERVERS)
            .map(|n| format!("\n[[service.backend]]\naddress = \"{}:80\"\n", testenv::server_v4(n)))
            .collect::<String>()
    )
}

/// Health checks for the detection-time measurement: http every 500 ms, down after 3.
pub fn lb_health_config() -> String {
    lb_config("xdp", 0, "forwarding = \"nat\"").replace(
        "type = \"none\"",
        "type = \"http\"\npath = \"/\"\ninterval = \"500ms\"\ntimeout = \"250ms\"\nhealthy_threshold = 1\nunhealthy_threshold = 3",
    )
}

fn lb(name: &'static str, label: &'static str, group: Group, mode: &str, workers: u32, service: &str) -> Target {
    let xdp = mode == "xdp";
    let cpu = if xdp { CpuSource::Softirq } else { CpuSource::Process };
    Target { name, label, group, cpu, kind: Kind::Lb { config: lb_config(mode, workers, service) }, xdp }
}

/// Every configuration, in the order of a round. nftables last: its conntrack entries
/// must not meet the next configuration's connections.
pub fn all() -> Vec<Target> {
    let peer = |name, label, kind, cpu| Target { name, label, group: Group::Main, cpu, kind, xdp: false };
    vec![
        peer("direct", "direct to one backend", Kind::Direct, CpuSource::None),
        lb("xdp_nat", "lb XDP nat", Group::Main, "xdp", 0, "forwarding = \"nat\""),
        lb("xdp_dsr", "lb XDP dsr", Group::Main, "xdp", 0, "forwarding = \"dsr\""),
        lb("proxy_l4", "lb proxy l4", Group::Main, "proxy", 0, "algorithm = \"round_robin\"\nproxy_mode = \"l4\""),
        lb(
            "proxy_http",
            "lb proxy http",
            Group::Main,
            "proxy",
            0,
            "algorithm = \"round_robin\"\nproxy_mode = \"http\"",
        ),
        peer("haproxy", "HAProxy (mode tcp)", Kind::Haproxy(HaproxyMode::Tcp), CpuSource::Process),
        peer("nginx_stream", "nginx stream", Kind::NginxStream, CpuSource::Process),
        peer("haproxy_http", "HAProxy (mode http)", Kind::Haproxy(HaproxyMode::Http), CpuSource::Process),
        peer("nginx_http", "nginx proxy_pass (upstream keepalive)", Kind::NginxHttp, CpuSource::Process),
        lb(
            "proxy_l4_w1",
            "lb proxy l4, workers = 1",
            Group::IoModel,
            "proxy",
            1,
            "algorithm = \"round_robin\"\nproxy_mode = \"l4\"",
        ),
        lb(
            "proxy_http_w1",
            "lb proxy http, workers = 1",
            Group::IoModel,
            "proxy",
            1,
            "algorithm = \"round_robin\"\nproxy_mode = \"http\"",
        ),
        lb(
            "proxy_http_nopool",
            "lb proxy http, pool off",
            Group::IoModel,
            "proxy",
            0,
            "algorithm = \"round_robin\"\nproxy_mode = \"http\"\n[service.pool]\nmax_idle_per_backend = 0",
        ),
        peer("nft_dnat", "nftables DNAT (numgen)", Kind::Nft, CpuSource::Softirq),
    ]
}

/// A configuration while it serves.
pub enum Running {
    Direct,
    Lb(LbDaemon, bool),
    Proc(Proc),
    Nft,
}

impl Running {
    pub fn start(t: &Target, lb_bin: &std::path::Path) -> Result<Self> {
        let mut running = match &t.kind {
            Kind::Direct => Running::Direct,
            Kind::Lb { config } => {
                // The proxy listens on the VIP, so the LB's kernel must own it; XDP takes
                // the VIP's packets before the kernel and needs no address.
                let proxy = !t.xdp;
                if proxy {
                    vip_on_lo(true)?;
                }
                let d = LbDaemon::start_with(lb_bin, config, &["--detach-on-exit"])
                    .with_context(|| format!("starting {}", t.label))?;
                Running::Lb(d, proxy)
            }
            Kind::Haproxy(mode) => {
                vip_on_lo(true)?;
                Running::Proc(peers::haproxy(*mode)?)
            }
            Kind::NginxStream => {
                vip_on_lo(true)?;
                Running::Proc(peers::nginx_stream()?)
            }
            Kind::NginxHttp => {
                vip_on_lo(true)?;
                Running::Proc(peers::nginx_http()?)
            }
            Kind::Nft => {
                peers::nft_up()?;
                Running::Nft
            }
        };
        // Serving means the client gets an answer through it.
        if let Err(e) = wait_http(CLIENT_NS, &t.url(), Duration::from_secs(10)) {
            if let Running::Proc(p) = &mut running {
                p.check_alive()?;
            }
            return Err(e).with_context(|| format!("{} does not serve", t.label));
        }
        Ok(running)
    }

    /// The process tree whose CPU time is the balancer's (proxies).
    pub fn pid(&self) -> Option<i32> {
        match self {
            Running::Lb(d, _) => d.pid(),
            Running::Proc(p) => Some(p.pid()),
            _ => None,
        }
    }

    pub fn stop(self) -> Result<()> {
        match self {
            Running::Direct => Ok(()),
            Running::Lb(mut d, proxy) => {
                let status = d.stop()?;
                if !status.success() {
                    anyhow::bail!("lb run exited with {status}; its log:\n{}", d.log());
                }
                if proxy {
                    vip_on_lo(false)?;
                }
                Ok(())
            }
            Running::Proc(mut p) => {
                p.stop()?;
                vip_on_lo(false)
            }
            Running::Nft => peers::nft_down(),
        }
    }
}

fn vip_on_lo(add: bool) -> Result<()> {
    let verb = if add { "add" } else { "del" };
    testenv::exec_ok(LB_NS, &["ip", "addr", verb, &format!("{VIP_V4}/32"), "dev", "lo"]).map(drop)
}

//! The fleet's balancers as the tests and the demo run them: node i's `lb.toml`, and `lb run`
//! started in `lbc-lb{i}` with it. The network leaves the balancers' namespaces empty of
//! daemons; a test starts, kills and restarts them.

use super::topology::{
    backend_v4, balancer_ns, balancer_v4, etcd_member_url, node_bird_dir, node_config_path, node_dir, node_log,
    node_name, node_pin_path, node_state_file, BACKENDS, BALANCER_ASN, ECHO_PORT, HASH_SEED, HOLD_TIME_SECS, HTTP_PORT,
    IFACE, ROUTER_ASN, ROUTER_LAN_V4, TOKEN_FILE, VIPS,
};
use crate::netns::{exec, spawn_logged};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output};
use std::time::{Duration, Instant};

const SERVING_WITHIN: Duration = Duration::from_secs(20);
const STOP_WITHIN: Duration = Duration::from_secs(15);

/// The service name for a forwarding mode and a port: `dsr-http`, `gue-echo`, ...
pub fn service_name(forwarding: &str, port: u16) -> String {
    let what = if port == ECHO_PORT { "echo" } else { "http" };
    format!("{forwarding}-{what}")
}

/// Node i's config: XDP on eth0, its own pins, state file, admin API (on its LAN address,
/// so agents and tests reach any node) and BIRD run directory; the fleet's `[cluster]`
/// (same hash seed, the one etcd) with BGP to the router; and the same services on every
/// node: each VIP of [`VIPS`] on ports 80 (HTTP) and 9000 (echo), backed by every backend.
pub fn node_config(i: u8) -> String {
    node_config_for(i, 1)
}

/// [`node_config`] for a fleet whose etcd has `members` members: the nodes name them all
/// (the client fails over between them).
pub fn node_config_for(i: u8, members: u8) -> String {
    let mut conf = format!(
        r#"# Balancer {i} of the fleet network (testenv). Every node has the same services.
[daemon]
interface = "{IFACE}"
mode = "xdp"
pin_path = "{pins}"
state_file = "{state}"
admin_listen = "{me}:{admin}"
token_file = "{TOKEN_FILE}"

[cluster]
node = "{node}"
hash_seed = {HASH_SEED}
etcd = [{etcd}]
drain_grace = "2s"

[cluster.bgp]
speaker = "bird"
asn = {BALANCER_ASN}
router_id = "{me}"
neighbors = [{{ address = "{ROUTER_LAN_V4}", asn = {ROUTER_ASN} }}]
hold_time = "{HOLD_TIME_SECS}s"
run_dir = "{bird}"
"#,
        pins = node_pin_path(i).display(),
        state = node_state_file(i).display(),
        me = balancer_v4(i),
        admin = super::topology::ADMIN_PORT,
        node = node_name(i),
        etcd = (1..=members).map(|k| format!("\"{}\"", etcd_member_url(k))).collect::<Vec<_>>().join(", "),
        bird = node_bird_dir(i).display(),
    );
    for (forwarding, vip) in VIPS {
        for port in [HTTP_PORT, ECHO_PORT] {
            conf.push_str(&service(forwarding, vip, port));
        }
    }
    conf
}

/// Node i's config without `[cluster.bgp]`, for tests that announce the VIPs with a
/// hand-written BIRD instead (`announce_by_hand`): `lb`'s own speaker would take the same
/// session to the router.
pub fn node_config_without_bgp(i: u8) -> String {
    let full = node_config(i);
    let (Some(start), Some(end)) = (full.find("[cluster.bgp]"), full.find("\n[[service]]")) else {
        return full;
    };
    format!("{}{}", &full[..start], &full[end + 1..])
}

fn service(forwarding: &str, vip: &str, port: u16) -> String {
    let mut s = format!(
        "\n[[service]]\nname = \"{}\"\nvip = \"{vip}:{port}\"\nalgorithm = \"maglev\"\nforwarding = \"{forwarding}\"\n",
        service_name(forwarding, port)
    );
    for b in 1..=BACKENDS {
        s.push_str(&format!("\n[[service.backend]]\naddress = \"{}:{port}\"\n", backend_v4(b)));
    }
    s
}

/// `lb run` on balancer i; stopped with SIGTERM when dropped.
pub struct Node {
    pub i: u8,
    child: Option<Child>,
    bin: PathBuf,
}

impl Node {
    /// Writes node i's config (`config`, or [`node_config`] when empty), starts `lb run` in
    /// its namespace and waits until it serves.
    pub fn start(i: u8, bin: &Path, config: &str) -> Result<Node> {
        std::fs::create_dir_all(node_dir(i)).with_context(|| format!("creating {}", node_dir(i).display()))?;
        let config = if config.is_empty() { node_config(i) } else { config.to_string() };
        std::fs::write(node_config_path(i), config).context("writing a node's config")?;
        let _ = std::fs::remove_file(node_log(i));
        let bin_s = bin.to_str().context("non-UTF-8 path")?;
        let path = node_config_path(i);
        let path = path.to_str().context("non-UTF-8 path")?;
        let child = spawn_logged(&balancer_ns(i), &[bin_s, "run", "-c", path], &node_log(i))?;
        let mut node = Node { i, child: Some(child), bin: bin.to_path_buf() };
        node.wait_serving()?;
        Ok(node)
    }

    fn wait_serving(&mut self) -> Result<()> {
        let deadline = Instant::now() + SERVING_WITHIN;
        while Instant::now() < deadline {
            if self.log().contains("lb is serving") {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                bail!("lb run on {} exited ({status}) before serving; its log:\n{}", node_name(self.i), self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("lb run on {} did not serve within {SERVING_WITHIN:?}; its log:\n{}", node_name(self.i), self.log())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(node_log(self.i)).unwrap_or_default()
    }

    /// The daemon's pid while it runs (`ip netns exec` execs in place).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: the node dies without a word to anyone (its speaker's session to the
    /// router must end by itself).
    pub fn kill(&mut self) -> Result<()> {
        let mut child = self.child.take().context("node not running")?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// SIGTERM (a drain with the config's grace), waiting for the exit.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        let mut child = self.child.take().context("node not running")?;
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_WITHIN;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("lb run on {} did not exit within {STOP_WITHIN:?} of SIGTERM", node_name(self.i));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The node's `/metrics` text, fetched from inside its namespace.
    pub fn metrics(&self) -> Result<String> {
        let url = format!("{}/metrics", super::topology::node_api(self.i));
        let out = exec(&balancer_ns(self.i), &["curl", "-sS", "--fail", "--noproxy", "*", "--max-time", "2", &url])?;
        if !out.status.success() {
            bail!("GET {url}: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `lb ARGS --pin-path` this node's pins, from the root namespace (pins are files).
    pub fn cli(&self, args: &[&str]) -> Result<Output> {
        Command::new(&self.bin).args(args).arg("--pin-path").arg(node_pin_path(self.i)).output().context("running lb")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop();
        }
    }
}

/// The sum of every sample of metric `name` whose labels contain each of `labels`
/// (`key="value"` strings) in Prometheus text; 0 if there is none.
pub fn metric_sum(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let metric = series.split('{').next()?;
            (metric == name && labels.iter().all(|want| series.contains(want))).then(|| value.parse::<f64>().ok())?
        })
        .fold(0.0, |sum, v| sum + v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_config_is_valid_and_differs_only_in_its_own_names() {
        for i in 1..=3 {
            let text = node_config(i);
            let config = lb_config::Config::from_str(&text, "node.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
            let cluster = config.cluster.as_ref().expect("[cluster]");
            assert_eq!(cluster.node.as_deref(), Some(node_name(i).as_str()));
            assert_eq!(cluster.hash_seed, HASH_SEED);
            assert_eq!(cluster.etcd, ["http://10.61.0.5:2379"]);
            let bgp = cluster.bgp.as_ref().expect("[cluster.bgp]");
            assert_eq!((bgp.asn, bgp.router_id.to_string()), (65010, format!("10.61.0.1{i}")));
            assert_eq!(bgp.neighbors.len(), 1);
            assert_eq!(bgp.hold_time, Duration::from_secs(3));
            assert_eq!(config.services.len(), VIPS.len() * 2);
            assert!(config.services.iter().all(|s| s.backends.len() == BACKENDS as usize));
        }
        let (one, two) = (node_config(1), node_config(2));
        let services = |t: &str| t[t.find("[[service]]").unwrap()..].to_string();
        assert_eq!(services(&one), services(&two), "every node must have the same services");
    }

    #[test]
    fn a_config_without_bgp_keeps_everything_else() {
        let text = node_config_without_bgp(2);
        let config = lb_config::Config::from_str(&text, "node.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
        let cluster = config.cluster.expect("[cluster]");
        assert!(cluster.bgp.is_none());
        assert_eq!(cluster.node.as_deref(), Some("lb2"));
        assert_eq!(config.services.len(), VIPS.len() * 2);
    }

    #[test]
    fn metric_sums_filter_by_name_and_labels() {
        let text = "# HELP x\nlb_backend_new_flows_total{service=\"dsr-http\",backend=\"10.61.0.21:80\"} 3\n\
                    lb_backend_new_flows_total{service=\"dsr-http\",backend=\"10.61.0.22:80\"} 4\n\
                    lb_backend_new_flows_total{service=\"nat-http\",backend=\"10.61.0.22:80\"} 5\n\
                    lb_backend_new_flows_total_other 9\n";
        assert_eq!(metric_sum(text, "lb_backend_new_flows_total", &[]), 12.0);
        assert_eq!(metric_sum(text, "lb_backend_new_flows_total", &["service=\"dsr-http\""]), 7.0);
        assert_eq!(metric_sum(text, "lb_vip_announced", &[]), 0.0);
    }
}

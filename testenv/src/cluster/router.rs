//! The fleet's router (`lbc-router`): forwards between the client side and the LAN, and runs
//! BIRD 2 with one eBGP session per balancer. Routes learnt for the same VIP from several
//! balancers are merged into one kernel route with a next hop per balancer (ECMP), and the
//! kernel spreads flows over them by their 5-tuple (`fib_multipath_hash_policy=1`).

use super::daemons;
use super::topology::{
    balancer_v4, BALANCERS, BALANCER_ASN, HOLD_TIME_SECS, ROUTER_ASN, ROUTER_DIR, ROUTER_LAN_V4, ROUTER_NS,
};
use crate::netns::{exec, ip_in};
use anyhow::{Context, Result};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

const KEY: &str = "router-bird";
const READY_WITHIN: Duration = Duration::from_secs(10);

pub fn bird_config_path() -> PathBuf {
    PathBuf::from(format!("{ROUTER_DIR}/bird.conf"))
}

/// The router's BIRD control socket (`birdc -s` it to look at the sessions).
pub fn bird_socket() -> PathBuf {
    PathBuf::from(format!("{ROUTER_DIR}/bird.ctl"))
}

/// The router's BIRD configuration: AS 65000, a session per balancer (AS 65010) importing
/// whatever the balancer announces and exporting nothing, and a kernel protocol that merges
/// equal routes into multipath ones.
pub fn bird_config() -> String {
    let mut conf = format!(
        "# The fleet network's router (testenv): eBGP with every balancer, ECMP into the kernel.
log \"{ROUTER_DIR}/bird.log\" all;
router id {ROUTER_LAN_V4};

protocol device {{
  scan time 2;
}}

# merge paths: routes to one VIP from several balancers, equal by BGP's rules, become one
# kernel route with a next hop per balancer.
protocol kernel {{
  merge paths on;
  ipv4 {{ import none; export all; }};
}}

# hold time 3: a balancer that dies or is cut off leaves the ECMP set within 3 s. The short
# timers after an error let a restarted balancer peer again at once instead of after the
# default minute. No graceful restart: a dead balancer's routes go with its session.
template bgp balancer {{
  local {ROUTER_LAN_V4} as {ROUTER_ASN};
  hold time {HOLD_TIME_SECS};
  connect delay time 1;
  connect retry time 2;
  error wait time 1, 5;
  graceful restart off;
  ipv4 {{ import all; export none; }};
}}
"
    );
    for i in 1..=BALANCERS {
        conf.push_str(&format!(
            "\nprotocol bgp lb{i} from balancer {{\n  neighbor {} as {BALANCER_ASN};\n}}\n",
            balancer_v4(i)
        ));
    }
    conf
}

/// Writes the config and starts BIRD in the foreground (`-f`, so its pid is the one
/// recorded), then waits until it answers on its control socket.
pub(crate) fn start() -> Result<()> {
    std::fs::create_dir_all(ROUTER_DIR).with_context(|| format!("creating {ROUTER_DIR}"))?;
    std::fs::write(bird_config_path(), bird_config()).context("writing the router's BIRD config")?;
    let conf = bird_config_path();
    let socket = bird_socket();
    let pid = PathBuf::from(format!("{ROUTER_DIR}/bird.pid"));
    let args = [
        "bird",
        "-f",
        "-c",
        conf.to_str().context("non-UTF-8 path")?,
        "-s",
        socket.to_str().context("non-UTF-8 path")?,
        "-P",
        pid.to_str().context("non-UTF-8 path")?,
    ];
    let mut child = daemons::start(ROUTER_NS, KEY, &args)?;
    daemons::wait_ready(KEY, &mut child, READY_WITHIN, || birdc(&["show", "status"]).is_ok())
}

/// `birdc -s SOCKET args...` against the router's BIRD; its output.
pub fn birdc(args: &[&str]) -> Result<String> {
    let socket = bird_socket();
    let mut full = vec!["birdc", "-s", socket.to_str().context("non-UTF-8 path")?];
    full.extend_from_slice(args);
    let out = exec(ROUTER_NS, &full)?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() || text.contains("Unable to connect") {
        anyhow::bail!("birdc {} failed: {}{}", args.join(" "), text, String::from_utf8_lossy(&out.stderr));
    }
    Ok(text)
}

/// The router's ECMP set for `vip`: the next hops of its kernel route to `vip`/32, sorted;
/// empty when it has none (no balancer announces it).
pub fn next_hops(vip: &str) -> Result<Vec<Ipv4Addr>> {
    let shown = ip_in(ROUTER_NS, &["-4", "route", "show", &format!("{vip}/32")])?;
    Ok(parse_next_hops(&shown))
}

/// Every address after `via` in `ip route show` output: one for a single-path route
/// (`10.100.0.1 via 10.61.0.11 dev eth0 proto bird metric 32`), one per `nexthop` line for
/// a multipath one.
fn parse_next_hops(shown: &str) -> Vec<Ipv4Addr> {
    let words: Vec<&str> = shown.split_whitespace().collect();
    let mut hops: Vec<Ipv4Addr> =
        words.windows(2).filter(|w| w[0] == "via").filter_map(|w| w[1].parse().ok()).collect();
    hops.sort();
    hops.dedup();
    hops
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_hops_of_single_and_multipath_routes() {
        assert_eq!(parse_next_hops(""), Vec::<Ipv4Addr>::new());
        assert_eq!(
            parse_next_hops("10.100.0.1 via 10.61.0.12 dev eth0 proto bird metric 32 \n"),
            vec![Ipv4Addr::new(10, 61, 0, 12)]
        );
        let multipath = "10.100.0.1 proto bird metric 32 \n\tnexthop via 10.61.0.13 dev eth0 weight 1 \n\
                         \tnexthop via 10.61.0.11 dev eth0 weight 1 \n\tnexthop via 10.61.0.12 dev eth0 weight 1 \n";
        assert_eq!(
            parse_next_hops(multipath),
            vec![Ipv4Addr::new(10, 61, 0, 11), Ipv4Addr::new(10, 61, 0, 12), Ipv4Addr::new(10, 61, 0, 13)]
        );
    }

    #[test]
    fn router_config_peers_with_every_balancer() {
        let conf = bird_config();
        for i in 1..=BALANCERS {
            assert!(conf.contains(&format!("protocol bgp lb{i} from balancer")), "{conf}");
            assert!(conf.contains(&format!("neighbor 10.61.0.1{i} as 65010;")), "{conf}");
        }
        assert!(conf.contains("merge paths on;"));
        assert!(conf.contains("hold time 3;"));
        assert!(conf.contains("local 10.61.0.1 as 65000;"));
    }
}

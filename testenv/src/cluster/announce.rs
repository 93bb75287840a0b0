//! A hand-written BIRD in a balancer's namespace announcing VIPs to the router, without
//! `lb`: checks the fleet network's BGP and ECMP on their own (the topology test), and shows
//! what `lb`'s own speaker has to say to the router.

use super::daemons;
use super::topology::{balancer_ns, balancer_v4, node_dir, BALANCER_ASN, HOLD_TIME_SECS, ROUTER_ASN, ROUTER_LAN_V4};
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::time::Duration;

const READY_WITHIN: Duration = Duration::from_secs(10);

fn dir(i: u8) -> PathBuf {
    node_dir(i).join("bird-by-hand")
}

fn key(i: u8) -> String {
    format!("lb{i}-bird-by-hand")
}

/// Balancer i's BIRD config: AS 65010, router id its LAN address, one static blackhole
/// route per VIP exported to the router (eBGP sets itself as the next hop).
pub fn balancer_bird_config(i: u8, vips: &[&str]) -> String {
    let me = balancer_v4(i);
    let routes: String = vips.iter().map(|vip| format!("  route {vip}/32 blackhole;\n")).collect();
    format!(
        "# Balancer {i} of the fleet network, announcing by hand (testenv).
router id {me};
protocol device {{ }}
protocol static vips {{
  ipv4;
{routes}}}
protocol bgp upstream {{
  local {me} as {BALANCER_ASN};
  neighbor {ROUTER_LAN_V4} as {ROUTER_ASN};
  hold time {HOLD_TIME_SECS};
  connect delay time 1;
  connect retry time 2;
  error wait time 1, 5;
  ipv4 {{ import none; export where proto = \"vips\"; }};
}}
"
    )
}

/// Starts a BIRD in balancer i's namespace announcing `vips`, and waits until it runs.
pub fn announce_by_hand(i: u8, vips: &[&str]) -> Result<()> {
    let dir = dir(i);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let conf = dir.join("bird.conf");
    std::fs::write(&conf, balancer_bird_config(i, vips)).context("writing a balancer's BIRD config")?;
    let socket = dir.join("bird.ctl");
    let pid = dir.join("bird.pid");
    let utf8 = |p: &PathBuf| p.to_str().map(str::to_string).context("non-UTF-8 path");
    let (conf, socket_s, pid) = (utf8(&conf)?, utf8(&socket)?, utf8(&pid)?);
    let key = key(i);
    let mut child = daemons::start(&balancer_ns(i), &key, &["bird", "-f", "-c", &conf, "-s", &socket_s, "-P", &pid])?;
    daemons::wait_ready(&key, &mut child, READY_WITHIN, || socket.exists())
}

/// Stops balancer i's hand-written BIRD (its routes leave the router with the session).
pub fn stop_announcing_by_hand(i: u8) -> Result<()> {
    daemons::stop(&key(i), "bird")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_balancer_exports_its_vips_to_the_router() {
        let conf = balancer_bird_config(2, &["10.100.0.1", "10.100.0.3"]);
        assert!(conf.contains("router id 10.61.0.12;"), "{conf}");
        assert!(conf.contains("local 10.61.0.12 as 65010;"), "{conf}");
        assert!(conf.contains("neighbor 10.61.0.1 as 65000;"), "{conf}");
        assert!(conf.contains("route 10.100.0.1/32 blackhole;\n  route 10.100.0.3/32 blackhole;"), "{conf}");
    }
}

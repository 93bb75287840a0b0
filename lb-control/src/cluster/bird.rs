//! What `lb` writes for BIRD 2 and what it reads back: `bird.conf` (written once per
//! speaker start), `vips.conf` (rewritten whenever the announcement changes, then BIRD is
//! told to `configure`), and the sessions' state from `show protocols`.
//!
//! The shape of `bird.conf`: a router id, `protocol device` (BIRD needs it to know the
//! interfaces its sessions use), an `include` of `vips.conf`, which holds one
//! `protocol static` per address family (`lb_vips4`, `lb_vips6`) with a blackhole host
//! route per announced VIP, and one `protocol bgp` per neighbor that exports exactly those
//! statics, with next hop self, and imports nothing. There is no `protocol kernel`: the
//! blackhole routes never reach this host's own routing table, they only exist to be
//! announced. An IPv4 neighbor carries the IPv4 VIPs, an IPv6 neighbor the IPv6 ones.
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;

use lb_config::Bgp;

use super::announce::Announcement;

/// The static protocols' names in `vips.conf`; the BGP exports name them.
const STATIC4: &str = "lb_vips4";
const STATIC6: &str = "lb_vips6";

/// The file names inside `run_dir`.
pub const CONFIG_FILE: &str = "bird.conf";
pub const VIPS_FILE: &str = "vips.conf";
pub const CONTROL_SOCKET: &str = "bird.ctl";

/// BIRD's name for the session to `neighbor`: `lb_peer_` and its address with `.` and `:`
/// as `_` (a BIRD symbol is letters, digits and underscores).
pub fn protocol_name(neighbor: IpAddr) -> String {
    let mut name = String::from("lb_peer_");
    name.extend(neighbor.to_string().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }));
    name
}

/// `bird.conf` for `bgp`, including `run_dir/vips.conf`.
pub fn render_config(bgp: &Bgp, run_dir: &Path) -> String {
    // The hold time is validated to whole seconds from 3s; keepalives at a third of it, as
    // RFC 4271 suggests, so two may be lost before the session drops.
    let hold = bgp.hold_time.as_secs();
    let keepalive = (hold / 3).max(1);
    let mut out = String::new();
    out.push_str("# Written by lb at each start of its speaker: edits are lost. See docs/configuration.md.\n");
    let _ = writeln!(out, "router id {};", bgp.router_id);
    out.push_str("log stderr { info, remote, warning, error, auth, fatal, bug };\n");
    out.push_str("protocol device {\n  scan time 10;\n}\n");
    let _ = writeln!(out, "include \"{}\";", run_dir.join(VIPS_FILE).display());
    for n in &bgp.neighbors {
        let (family, source) = if n.address.is_ipv4() { ("ipv4", STATIC4) } else { ("ipv6", STATIC6) };
        let _ = write!(
            out,
            "protocol bgp {name} {{\n  local as {local};\n  neighbor {addr} as {remote};\n  hold time {hold};\n  \
             keepalive time {keepalive};\n  connect delay time 1;\n  connect retry time 2;\n  error wait time 1, 10;\n  {family} {{\n    \
             import none;\n    export where proto = \"{source}\";\n    next hop self;\n  }};\n}}\n",
            name = protocol_name(n.address),
            local = bgp.asn,
            addr = n.address,
            remote = n.asn,
        );
    }
    out
}

/// `vips.conf`: both statics, each with a blackhole host route per announced address of
/// its family (a static with no routes is fine: it withdraws them all).
pub fn render_vips(announcement: &Announcement) -> String {
    let mut out = String::from("# Written by lb whenever the announced VIPs change.\n");
    for (name, family, v4) in [(STATIC4, "ipv4", true), (STATIC6, "ipv6", false)] {
        let _ = writeln!(out, "protocol static {name} {{\n  {family};");
        for ip in announcement.vips.iter().filter(|ip| ip.is_ipv4() == v4) {
            let len = if v4 { 32 } else { 128 };
            let _ = writeln!(out, "  route {ip}/{len} blackhole;");
        }
        out.push_str("}\n");
    }
    out
}

/// Which sessions are established, by neighbor, from `birdc show protocols` output. A
/// neighbor whose line is missing counts as down.
pub fn sessions_up(show_protocols: &str, neighbors: &[IpAddr]) -> BTreeMap<IpAddr, bool> {
    neighbors
        .iter()
        .map(|&n| {
            let name = protocol_name(n);
            let up = show_protocols.lines().any(|line| {
                let mut words = line.split_whitespace();
                words.next() == Some(name.as_str())
                    && words.next() == Some("BGP")
                    && line.split_whitespace().any(|w| w == "Established")
            });
            (n, up)
        })
        .collect()
}

/// BIRD's answer to `configure`: the new config is in use (or being switched to).
pub fn reconfigured(reply: &str) -> bool {
    reply.lines().any(|l| l.starts_with("Reconfigured") || l.starts_with("Reconfiguration in progress"))
}

#[cfg(test)]
#[path = "bird_tests.rs"]
mod tests;

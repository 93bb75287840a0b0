//! What `ip -j -d link show` and `ethtool` report about an interface, parsed.
//!
//! `ip` and `ethtool` ask the kernel over netlink/ioctl in the caller's network namespace,
//! so they are right even where /sys belongs to another namespace (`nsenter --net`).
use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;

/// `ip` reports these for `xdp.mode` (IFLA_XDP_ATTACHED).
pub(crate) const XDP_ATTACHED_DRV: u64 = 1;
pub(crate) const XDP_ATTACHED_SKB: u64 = 2;
pub(crate) const XDP_ATTACHED_HW: u64 = 3;
pub(crate) const XDP_ATTACHED_MULTI: u64 = 4;

/// One interface, as `ip -j -d link show dev NAME` reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Link {
    pub name: String,
    pub ifindex: u32,
    pub mtu: u32,
    pub flags: Vec<String>,
    pub operstate: String,
    pub link_type: String,
    /// `linkinfo.info_kind`: veth, bridge, vlan, ... (none for physical NICs and lo).
    pub kind: Option<String>,
    /// For a veth: the peer's name when it is in this namespace (`link`).
    pub peer_name: Option<String>,
    /// For a veth: the peer's ifindex (`link_index`), in the peer's namespace.
    pub peer_index: Option<u32>,
    /// For a veth whose peer is in another namespace: that namespace's id here.
    pub peer_netnsid: Option<i64>,
    pub num_rx_queues: Option<u32>,
    pub num_tx_queues: Option<u32>,
    /// The XDP programs attached, if any.
    pub xdp: Option<Xdp>,
}

/// The XDP programs attached to an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Xdp {
    pub progs: Vec<XdpProg>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct XdpProg {
    /// XDP_ATTACHED_DRV / SKB / HW.
    pub mode: u64,
    pub id: Option<u64>,
    pub name: Option<String>,
}

impl XdpProg {
    pub fn mode_name(&self) -> &'static str {
        match self.mode {
            XDP_ATTACHED_DRV => "native",
            XDP_ATTACHED_SKB => "generic",
            XDP_ATTACHED_HW => "offloaded",
            _ => "unknown-mode",
        }
    }

    pub fn describe(&self) -> String {
        let mut s = format!("{} XDP program", self.mode_name());
        match (&self.name, self.id) {
            (Some(n), Some(id)) => s += &format!(" {n} (id {id})"),
            (None, Some(id)) => s += &format!(" id {id}"),
            (Some(n), None) => s += &format!(" {n}"),
            (None, None) => {}
        }
        s
    }
}

impl Xdp {
    pub fn native(&self) -> bool {
        self.progs.iter().any(|p| p.mode == XDP_ATTACHED_DRV)
    }

    pub fn describe(&self) -> String {
        self.progs.iter().map(XdpProg::describe).collect::<Vec<_>>().join(" and ")
    }
}

impl Link {
    pub fn is_loopback(&self) -> bool {
        self.link_type == "loopback" || self.flags.iter().any(|f| f == "LOOPBACK")
    }

    pub fn is_veth(&self) -> bool {
        self.kind.as_deref() == Some("veth")
    }
}

/// Runs a tool with a C locale; its stdout, or why it failed.
pub(crate) fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .env("LC_ALL", "C")
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!("`{program} {}` failed: {}", args.join(" "), stderr.trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The interface's index in this network namespace; None if there is no such interface.
pub(crate) fn ifindex(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: a NUL-terminated string; if_nametoindex only reads it.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (index != 0).then_some(index)
}

/// The names of this namespace's interfaces (for "did you mean").
pub(crate) fn interface_names() -> Vec<String> {
    // SAFETY: if_nameindex returns an array terminated by a zero entry, freed below.
    unsafe {
        let list = libc::if_nameindex();
        if list.is_null() {
            return Vec::new();
        }
        let mut names = Vec::new();
        let mut p = list;
        while (*p).if_index != 0 && !(*p).if_name.is_null() {
            names.push(std::ffi::CStr::from_ptr((*p).if_name).to_string_lossy().into_owned());
            p = p.add(1);
        }
        libc::if_freenameindex(list);
        names
    }
}

/// `ip -j -d link show dev NAME`, parsed; falls back to sysfs if `ip` cannot be run.
pub(crate) fn link(name: &str) -> Result<Link, String> {
    match run("ip", &["-j", "-d", "link", "show", "dev", name]) {
        Ok(json) => parse_link(&json),
        Err(e) => sysfs_link(name).ok_or(e),
    }
}

/// Another interface of this namespace by ifindex (a veth peer shown only by index).
pub(crate) fn link_by_index(ifindex: u32) -> Option<Link> {
    let json = run("ip", &["-j", "-d", "link", "show"]).ok()?;
    let all: Value = serde_json::from_str(&json).ok()?;
    all.as_array()?.iter().find(|l| l["ifindex"].as_u64() == Some(ifindex as u64)).and_then(|l| link_from_value(l).ok())
}

pub(crate) fn parse_link(json: &str) -> Result<Link, String> {
    let v: Value = serde_json::from_str(json).map_err(|e| format!("cannot parse `ip -j link` output: {e}"))?;
    let first = v.as_array().and_then(|a| a.first()).ok_or("`ip -j link` printed no interface")?;
    link_from_value(first)
}

fn link_from_value(l: &Value) -> Result<Link, String> {
    let u32_of = |key: &str| l[key].as_u64().map(|n| n as u32);
    let xdp = l.get("xdp").and_then(parse_xdp);
    Ok(Link {
        name: l["ifname"].as_str().ok_or("`ip -j link` gave no ifname")?.to_string(),
        ifindex: u32_of("ifindex").ok_or("`ip -j link` gave no ifindex")?,
        mtu: u32_of("mtu").unwrap_or(0),
        flags: l["flags"]
            .as_array()
            .map(|a| a.iter().filter_map(|f| f.as_str().map(String::from)).collect())
            .unwrap_or_default(),
        operstate: l["operstate"].as_str().unwrap_or("UNKNOWN").to_string(),
        link_type: l["link_type"].as_str().unwrap_or("").to_string(),
        kind: l["linkinfo"]["info_kind"].as_str().map(String::from),
        peer_name: l["link"].as_str().map(String::from),
        peer_index: u32_of("link_index"),
        peer_netnsid: l["link_netnsid"].as_i64(),
        num_rx_queues: u32_of("num_rx_queues"),
        num_tx_queues: u32_of("num_tx_queues"),
        xdp,
    })
}

/// `"xdp": {"mode": 1, "prog": {"id": 7, "name": "x", ...}}`, or with mode 4 (several
/// programs) `"attached": [{"mode": 1, "prog": {...}}, ...]`.
fn parse_xdp(x: &Value) -> Option<Xdp> {
    let prog = |entry: &Value, mode: u64| XdpProg {
        mode,
        id: entry["prog"]["id"].as_u64().or_else(|| entry["prog_id"].as_u64()),
        name: entry["prog"]["name"].as_str().map(String::from),
    };
    let mode = x["mode"].as_u64()?;
    let progs = match x["attached"].as_array() {
        Some(list) if !list.is_empty() => list.iter().filter_map(|e| Some(prog(e, e["mode"].as_u64()?))).collect(),
        _ if mode == XDP_ATTACHED_MULTI => Vec::new(),
        _ => vec![prog(x, mode)],
    };
    (mode != 0).then_some(Xdp { progs })
}

fn sysfs_link(name: &str) -> Option<Link> {
    let dir = std::path::Path::new("/sys/class/net").join(name);
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok().map(|s| s.trim().to_string());
    let ifindex = ifindex(name)?;
    let flags = read("flags").and_then(|f| u32::from_str_radix(f.trim_start_matches("0x"), 16).ok()).unwrap_or(0);
    let type_ = read("type").and_then(|t| t.parse::<u32>().ok()).unwrap_or(0);
    Some(Link {
        name: name.to_string(),
        ifindex,
        mtu: read("mtu").and_then(|m| m.parse().ok()).unwrap_or(0),
        flags: if flags & libc::IFF_LOOPBACK as u32 != 0 { vec!["LOOPBACK".into()] } else { Vec::new() },
        operstate: read("operstate").unwrap_or_default().to_uppercase(),
        link_type: if type_ == 772 { "loopback".into() } else { "ether".into() },
        ..Default::default()
    })
}

/// `ethtool -k NAME`: feature name -> (on, fixed). None if ethtool cannot tell.
pub(crate) type Features = BTreeMap<String, (bool, bool)>;

pub(crate) fn ethtool_features(name: &str) -> Option<Features> {
    run("ethtool", &["-k", name]).ok().map(|out| parse_features(&out))
}

pub(crate) fn parse_features(out: &str) -> Features {
    out.lines()
        .filter_map(|line| {
            let (key, value) = line.trim().split_once(": ")?;
            let on = value.starts_with("on");
            let fixed = value.contains("[fixed]");
            (value.starts_with("on") || value.starts_with("off")).then(|| (key.to_string(), (on, fixed)))
        })
        .collect()
}

/// `ethtool -i NAME`: the driver's name.
pub(crate) fn ethtool_driver(name: &str) -> Option<String> {
    let out = run("ethtool", &["-i", name]).ok()?;
    out.lines().find_map(|l| l.strip_prefix("driver:")).map(|d| d.trim().to_string()).filter(|d| !d.is_empty())
}

/// The driver bound to the interface's device, from sysfs (physical devices only).
pub(crate) fn sysfs_driver(name: &str) -> Option<String> {
    let link = std::fs::read_link(std::path::Path::new("/sys/class/net").join(name).join("device/driver")).ok()?;
    link.file_name().map(|n| n.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_veth_with_its_peer_in_this_namespace() {
        let json = r#"[{"ifindex":3,"link":"vb","ifname":"va","flags":["BROADCAST","MULTICAST","M-DOWN"],"mtu":1500,"qdisc":"noop","operstate":"DOWN","link_type":"ether","linkinfo":{"info_kind":"veth"},"num_tx_queues":2,"num_rx_queues":2}]"#;
        let l = parse_link(json).unwrap();
        assert_eq!((l.name.as_str(), l.ifindex, l.mtu), ("va", 3, 1500));
        assert!(l.is_veth() && !l.is_loopback());
        assert_eq!(l.peer_name.as_deref(), Some("vb"));
        assert_eq!(l.peer_netnsid, None);
        assert_eq!(l.xdp, None);
    }

    #[test]
    fn parses_a_veth_with_its_peer_elsewhere_and_an_xdp_program() {
        let json = r#"[{"ifindex":3,"link_index":2,"ifname":"va","flags":["BROADCAST"],"mtu":9000,"link_type":"ether","link_netnsid":0,"linkinfo":{"info_kind":"veth"},"xdp":{"mode":1,"prog":{"id":42,"name":"lb_xdp","tag":"ab","jited":1}}}]"#;
        let l = parse_link(json).unwrap();
        assert_eq!((l.peer_index, l.peer_netnsid), (Some(2), Some(0)));
        let xdp = l.xdp.unwrap();
        assert!(xdp.native());
        assert_eq!(xdp.describe(), "native XDP program lb_xdp (id 42)");
    }

    #[test]
    fn parses_several_attached_programs() {
        let x: Value = serde_json::from_str(
            r#"{"mode":4,"attached":[{"mode":2,"prog":{"id":5}},{"mode":1,"prog":{"id":6,"name":"p"}}]}"#,
        )
        .unwrap();
        let xdp = parse_xdp(&x).unwrap();
        assert_eq!(xdp.progs.len(), 2);
        assert!(xdp.native());
        assert_eq!(xdp.describe(), "generic XDP program id 5 and native XDP program p (id 6)");
    }

    #[test]
    fn parses_loopback() {
        let json =
            r#"[{"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"mtu":65536,"link_type":"loopback"}]"#;
        assert!(parse_link(json).unwrap().is_loopback());
    }

    #[test]
    fn parses_ethtool_features() {
        let out = "Features for va:\nrx-checksumming: on\ntx-checksumming: on\n\ttx-checksum-ipv4: off [fixed]\nlarge-receive-offload: off [fixed]\ngeneric-receive-offload: on\nrx-gro-hw: on [fixed]\n";
        let f = parse_features(out);
        assert_eq!(f["tx-checksumming"], (true, false));
        assert_eq!(f["tx-checksum-ipv4"], (false, true));
        assert_eq!(f["large-receive-offload"], (false, true));
        assert_eq!(f["rx-gro-hw"], (true, true));
        assert!(!f.contains_key("Features for va"));
    }
}

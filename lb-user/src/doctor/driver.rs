//! The interface itself and its driver: does it exist, is it loopback, which driver.
use super::checks::{DRIVER, INTERFACE};
use super::probe::Probe;
use super::tools::{self, Link};
use super::Finding;

/// Virtual devices whose driver has no native XDP hook (no ndo_bpf), as of Linux 6.x.
const NO_NATIVE_XDP: &[&str] = &[
    "loopback",
    "dummy",
    "bridge",
    "macvlan",
    "macvtap",
    "ipvlan",
    "vxlan",
    "geneve",
    "wireguard",
    "ifb",
    "team",
    "802.1Q VLAN Support",
    "vlan",
];

/// The kernel's rule for interface names (dev_valid_name): 1 to 15 bytes, not `.` or
/// `..`, no `/`, `:` or whitespace.
pub(crate) fn valid_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty");
    }
    if name.len() > 15 {
        return Err("interface names are at most 15 bytes");
    }
    if name == "." || name == ".." {
        return Err("`.` and `..` are not interface names");
    }
    if name.chars().any(|c| c == '/' || c == ':' || c == '\0' || c.is_whitespace()) {
        return Err("interface names cannot contain `/`, `:`, NUL or whitespace");
    }
    Ok(())
}

/// Does the interface exist here? Ok with its details, or the one finding that stops
/// the diagnosis.
pub(crate) fn interface(name: &str) -> Result<(Finding, Link), Finding> {
    if let Err(why) = valid_name(name) {
        return Err(Finding::problem(
            INTERFACE,
            format!("{name:?} is not a valid interface name: {why}"),
            Some("pass the name `ip link` shows, e.g. --interface eth0".into()),
        ));
    }
    if tools::ifindex(name).is_none() {
        let names = tools::interface_names();
        let here = if names.is_empty() { String::new() } else { format!("; interfaces here: {}", names.join(", ")) };
        return Err(Finding::problem(
            INTERFACE,
            format!("interface {name} does not exist in this network namespace{here}"),
            Some("pass an interface `ip link` shows (run lb doctor in the namespace the interface is in: `ip netns exec NS lb doctor ...`)".into()),
        ));
    }
    let link = tools::link(name)
        .map_err(|e| Finding::problem(INTERFACE, format!("cannot read the details of {name}: {e}"), None))?;
    let kind = link.kind.as_deref().map(|k| format!(", {k}")).unwrap_or_default();
    let detail = format!("{name} exists (ifindex {}{kind}, state {}, MTU {})", link.ifindex, link.operstate, link.mtu);
    Ok((Finding::ok(INTERFACE, detail), link))
}

/// The driver, and whether it can run XDP natively. The probe is the definitive answer;
/// this names the driver and explains the known cases (loopback, virtual devices).
/// `offloads_on`: merging receive offloads that are on (LRO, GRO_HW), which some drivers
/// answer with EOPNOTSUPP too. Returns the finding and, when the driver has no native XDP
/// at all, its name.
pub(crate) fn driver(link: &Link, probe: &Probe, offloads_on: &[&str]) -> (Finding, Option<String>) {
    let name = &link.name;
    if link.is_loopback() {
        let finding = Finding::problem(
            DRIVER,
            format!("{name} is the loopback device: loopback has no native XDP (it has no driver XDP hook)"),
            Some(format!(
                "attach to the NIC the VIP traffic arrives on; for tests on {name} use `daemon.xdp_attach = \"generic\"` or `daemon.mode = \"proxy\"`"
            )),
        );
        return (finding, Some("the loopback device".into()));
    }
    let driver = tools::ethtool_driver(name).or_else(|| tools::sysfs_driver(name)).or_else(|| link.kind.clone());
    let Some(driver) = driver else {
        return (
            Finding::ok(DRIVER, format!("cannot tell which driver {name} uses (neither ethtool -i nor sysfs says)")),
            None,
        );
    };
    let known_without =
        NO_NATIVE_XDP.contains(&driver.as_str()) || link.kind.as_deref().is_some_and(|k| NO_NATIVE_XDP.contains(&k));
    let refused = probe.errno() == Some(libc::EOPNOTSUPP);
    if probe.attached() {
        return (Finding::ok(DRIVER, format!("driver {driver} supports native XDP")), None);
    }
    if link.xdp.as_ref().is_some_and(|x| x.native()) {
        return (Finding::ok(DRIVER, format!("driver {driver} runs native XDP (a native program is attached)")), None);
    }
    if refused && !known_without && !offloads_on.is_empty() {
        let offloads = offloads_on.join(" and ");
        return (
            Finding::ok(DRIVER, format!("driver {driver}: it refuses native XDP while {offloads} is on (see lro)")),
            None,
        );
    }
    if known_without || refused {
        let finding = Finding::problem(
            DRIVER,
            format!("driver {driver} has no native XDP support"),
            Some(format!(
                "use `daemon.xdp_attach = \"generic\"` (slower, works on any driver), or `daemon.mode = \"proxy\"` or \"auto\"; or attach to a NIC whose driver has native XDP ({name} may sit on top of one)"
            )),
        );
        return (finding, Some(format!("driver {driver}")));
    }
    (Finding::ok(DRIVER, format!("driver {driver}")), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_follow_the_kernel_rule() {
        assert!(valid_name("eth0").is_ok());
        assert!(valid_name("veth-lb.100").is_ok());
        assert!(valid_name("abcdefghijklmno").is_ok());
        assert!(valid_name("abcdefghijklmnop").is_err());
        for bad in ["", ".", "..", "a/b", "a:1", "a b", "a\tb", "a\0b"] {
            assert!(valid_name(bad).is_err(), "{bad:?}");
        }
    }
}

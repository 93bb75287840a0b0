//! Device settings native XDP cares about: MTU, LRO, and (on veths) tx checksum offload.
use super::checks::{LRO, MTU, TX_CHECKSUM};
use super::probe::Probe;
use super::tools::{Features, Link};
use super::Finding;

/// Headroom (256), skb_shared_info (320) and link-layer overhead (22) a frame shares its
/// page with: on many drivers native XDP without multi-buffer takes MTU ≤ page - 598,
/// 3498 with 4 KiB pages (veth: page - 256 - 320 - 14 = 3506).
const PAGE_OVERHEAD: u32 = 598;

/// The largest MTU native XDP takes on many drivers (3498 with 4 KiB pages).
pub fn mtu_limit() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let page = if page > 0 { page as u32 } else { 4096 };
    page.saturating_sub(PAGE_OVERHEAD)
}

/// `without_native`: the driver has no native XDP at all (then the MTU is not the obstacle).
pub(crate) fn mtu(link: &Link, peer: Option<&Link>, probe: &Probe, without_native: Option<&str>) -> Finding {
    mtu_with_limit(link, peer, probe, without_native, mtu_limit())
}

fn mtu_with_limit(
    link: &Link,
    peer: Option<&Link>,
    probe: &Probe,
    without_native: Option<&str>,
    limit: u32,
) -> Finding {
    let name = &link.name;
    let peer = peer.filter(|_| link.is_veth());
    let shown = match peer {
        Some(p) if p.mtu != link.mtu => format!("MTU {} (veth peer {}: {})", link.mtu, p.name, p.mtu),
        _ => format!("MTU {}", link.mtu),
    };
    if let Some(driver) = without_native {
        return Finding::ok(MTU, format!("{shown}; not what is in the way ({driver} has no native XDP at all)"));
    }
    let largest = link.mtu.max(peer.map_or(0, |p| p.mtu));
    if largest <= limit {
        return Finding::ok(MTU, format!("{shown} fits native XDP (at most {limit})"));
    }
    if probe.attached() {
        return Finding::ok(
            MTU,
            format!("{shown} is above the {limit} many drivers take, but this driver accepted native XDP at it (multi-buffer or larger pages)"),
        );
    }
    let mut fix = Vec::new();
    if let Some(p) = peer.filter(|p| p.mtu > limit) {
        fix.push(format!("`ip link set {} mtu 1500`", p.name));
    }
    if link.mtu > limit {
        fix.push(format!("`ip link set {name} mtu 1500`"));
    }
    let veth = if link.is_veth() { " (on a veth the kernel checks the peer's MTU)" } else { "" };
    Finding::problem(
        MTU,
        format!(
            "{shown} is too large for native XDP: a frame must fit in one page with the XDP headroom, at most MTU {limit}{veth}"
        ),
        Some(format!("{} (any MTU up to {limit})", fix.join(" and "))),
    )
}

/// The receive offloads that merge frames and are on: native XDP wants them off.
pub(crate) fn merging_offloads_on(features: Option<&Features>) -> Vec<&'static str> {
    let Some(features) = features else { return Vec::new() };
    ["large-receive-offload", "rx-gro-hw"].into_iter().filter(|k| features.get(*k).is_some_and(|(on, _)| *on)).collect()
}

pub(crate) fn lro(name: &str, features: Option<&Features>) -> Finding {
    let Some(features) = features else {
        return Finding::ok(LRO, format!("`ethtool -k {name}` did not answer; LRO state unknown"));
    };
    let on = |key: &str| features.get(key).copied().filter(|(on, _)| *on);
    let mut problems = Vec::new();
    let mut fixes = Vec::new();
    for (key, short) in [("large-receive-offload", "lro"), ("rx-gro-hw", "rx-gro-hw")] {
        if let Some((_, fixed)) = on(key) {
            problems.push(format!("{key} is on{}", if fixed { " (fixed by the driver)" } else { "" }));
            fixes.push(if fixed {
                format!(
                    "{key} is fixed on by the driver of {name} (virtio_net without guest-offload control: turn the guest offloads off in the VM's config, QEMU `guest_tso4=off,guest_tso6=off,guest_ecn=off,guest_ufo=off`)"
                )
            } else {
                format!("`ethtool -K {name} {short} off`")
            });
        }
    }
    if problems.is_empty() {
        return Finding::ok(LRO, "large-receive-offload and rx-gro-hw are off");
    }
    Finding::problem(
        LRO,
        format!(
            "{}: native XDP needs single frames (drivers refuse XDP, or hand it merged super-frames)",
            problems.join(" and ")
        ),
        Some(fixes.join(" and ")),
    )
}

pub(crate) fn tx_checksum(link: &Link, features: Option<&Features>, peer: Option<&Link>) -> Finding {
    let name = &link.name;
    if !link.is_veth() {
        return Finding::ok(TX_CHECKSUM, format!("{name} is not a veth; frames arrive with their checksums filled in"));
    }
    let on = |f: Option<&Features>| f.and_then(|f| f.get("tx-checksumming").copied()).map(|(on, _)| on);
    let mut with_offload = Vec::new();
    if on(features) == Some(true) {
        with_offload.push(name.clone());
    }
    if let Some(peer) = peer {
        if on(super::tools::ethtool_features(&peer.name).as_ref()) == Some(true) {
            with_offload.push(peer.name.clone());
        }
    }
    let advice = format!(
        "on the veths of the senders whose traffic reaches {name} (clients, and the peer): `ethtool -K DEV tx off`"
    );
    if with_offload.is_empty() {
        let both = peer.map(|p| format!(" and {}", p.name)).unwrap_or_default();
        return Finding::ok(
            TX_CHECKSUM,
            format!("tx checksum offload is off on {name}{both} (senders on other veths need it off too)"),
        );
    }
    Finding::note(
        TX_CHECKSUM,
        format!(
            "tx checksum offload is on for {}: a veth hands over its sender's frames with the checksum not filled in (CHECKSUM_PARTIAL); XDP sees only the bytes, so frames it rewrites and sends back out carry wrong checksums",
            with_offload.join(" and ")
        ),
        advice,
    )
}

#[cfg(test)]
mod tests {
    use super::super::probe::{Refusal, Stage};
    use super::super::tools::parse_features;
    use super::*;

    fn veth(name: &str, mtu: u32) -> Link {
        Link {
            name: name.into(),
            ifindex: 3,
            mtu,
            kind: Some("veth".into()),
            link_type: "ether".into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_limit_is_3498_with_4k_pages() {
        if mtu_limit() + PAGE_OVERHEAD == 4096 {
            assert_eq!(mtu_limit(), 3498);
        }
    }

    #[test]
    fn a_large_mtu_is_a_problem_unless_the_driver_took_it() {
        let refused = Probe::Refused(Refusal { stage: Stage::Attach, errno: libc::ERANGE });
        let f = mtu_with_limit(&veth("va", 9000), Some(&veth("vb", 9000)), &refused, None, 3498);
        assert!(!f.ok, "{f:?}");
        let fix = f.fix.unwrap();
        assert!(fix.contains("ip link set vb mtu 1500") && fix.contains("ip link set va mtu 1500"), "{fix}");
        let f = mtu_with_limit(&veth("va", 9000), None, &Probe::Attached, None, 3498);
        assert!(f.ok);
        let f = mtu_with_limit(&veth("va", 1500), Some(&veth("vb", 1500)), &refused, None, 3498);
        assert!(f.ok && f.detail.contains("fits"));
    }

    #[test]
    fn lro_on_is_a_problem_with_the_ethtool_fix() {
        let f = lro("eth0", Some(&parse_features("large-receive-offload: on\nrx-gro-hw: off [fixed]\n")));
        assert!(!f.ok);
        assert_eq!(f.fix.as_deref(), Some("`ethtool -K eth0 lro off`"));
        assert!(lro("eth0", Some(&parse_features("large-receive-offload: off [fixed]\n"))).ok);
    }

    #[test]
    fn tx_checksum_offload_on_a_veth_is_advice() {
        let f = tx_checksum(&veth("va", 1500), Some(&parse_features("tx-checksumming: on\n")), None);
        assert!(f.ok && f.fix.is_some() && f.detail.contains("on for va"));
    }
}

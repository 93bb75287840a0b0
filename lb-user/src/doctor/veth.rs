//! A veth's peer. Kernel rule: a frame sent with XDP_TX (or redirected) out of a veth
//! reaches the peer only if the peer runs NAPI, which it does when it has a native XDP
//! program attached or GRO on; otherwise the kernel drops the frame silently. So an XDP
//! load balancer on a veth needs that of the peer. The same holds for a veth that is the
//! target of `XDP_REDIRECT` from another NIC (with several NICs in `daemon.interface`).
use super::checks::{REDIRECT_TARGET, VETH_PEER};
use super::tools::{self, Link};
use super::Finding;

/// The peer of a veth when it is in this network namespace.
pub(crate) fn peer(link: &Link) -> Option<Link> {
    if !link.is_veth() || link.peer_netnsid.is_some() {
        return None;
    }
    if let Some(name) = &link.peer_name {
        if let Ok(peer) = tools::link(name) {
            return Some(peer);
        }
    }
    link.peer_index.and_then(tools::link_by_index)
}

pub(crate) fn peer_finding(link: &Link, peer: Option<&Link>) -> Finding {
    let name = &link.name;
    if !link.is_veth() {
        return Finding::ok(VETH_PEER, format!("{name} is not a veth; no peer to check"));
    }
    let Some(peer) = peer else {
        let whereabouts = match (link.peer_netnsid, link.peer_index) {
            (Some(ns), Some(index)) => {
                format!("the veth peer of {name} (ifindex {index}) is in another network namespace (netnsid {ns})")
            }
            (Some(ns), None) => format!("the veth peer of {name} is in another network namespace (netnsid {ns})"),
            _ => format!("the veth peer of {name} is not visible here"),
        };
        return Finding::note(
            VETH_PEER,
            format!("{whereabouts}; it cannot be checked from here"),
            format!(
                "in the peer's namespace, give the peer a native XDP program (a pass-through is enough) or GRO on (`ethtool -K PEER gro on`); without either, frames {name} sends with XDP_TX are dropped"
            ),
        );
    };
    let gro =
        tools::ethtool_features(&peer.name).and_then(|f| f.get("generic-receive-offload").copied()).map(|(on, _)| on);
    match (&peer.xdp, gro) {
        (Some(xdp), _) if xdp.native() => {
            Finding::ok(VETH_PEER, format!("veth peer {} runs a {}", peer.name, xdp.describe()))
        }
        (_, Some(true)) => {
            Finding::ok(VETH_PEER, format!("veth peer {} has GRO on, so it takes frames sent with XDP_TX", peer.name))
        }
        (xdp, gro) => {
            let xdp = match xdp {
                Some(x) => format!("only a {} (generic mode does not count)", x.describe()),
                None => "no XDP program".into(),
            };
            let gro = match gro {
                Some(_) => "GRO off",
                None => "GRO state unknown",
            };
            Finding::problem(
                VETH_PEER,
                format!(
                    "veth peer {} has {xdp} and {gro}: frames {name} sends back out with XDP_TX are dropped",
                    peer.name
                ),
                Some(format!(
                    "`ethtool -K {} gro on`, or attach a native XDP program (a pass-through is enough) to {}",
                    peer.name, peer.name
                )),
            )
        }
    }
}

/// Can `link` take frames redirected to it from another NIC? A veth only when its peer runs
/// NAPI (a native XDP program, or GRO on), as for XDP_TX; other drivers take them through
/// their `ndo_xdp_xmit` when they run native XDP, and any NIC does in generic mode.
pub(crate) fn redirect_finding(link: &Link, peer: Option<&Link>) -> Finding {
    let name = &link.name;
    if !link.is_veth() {
        return Finding::ok(
            REDIRECT_TARGET,
            format!("{name} is not a veth: frames redirected to it leave through its driver's XDP transmit (native XDP drivers have one; generic mode works on any NIC)"),
        );
    }
    let tx = peer_finding(link, peer);
    let detail = format!("as a redirect target: {}", tx.detail);
    match (tx.ok, tx.fix) {
        (true, None) => Finding::ok(REDIRECT_TARGET, detail),
        (true, Some(advice)) => Finding::note(REDIRECT_TARGET, detail, advice),
        (false, fix) => Finding::problem(
            REDIRECT_TARGET,
            format!("{detail}; so are frames the balancer redirects to {name} from its other NICs"),
            fix,
        ),
    }
}

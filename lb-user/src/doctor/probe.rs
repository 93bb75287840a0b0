//! The definitive test: attach a pass-through XDP program natively, then detach it.
//!
//! The program is lb-rawbpf's two raw instructions (`r0 = XDP_PASS; exit`) loaded with
//! bpf(2); it is attached with a BPF link (BPF_LINK_CREATE, attach type BPF_XDP,
//! XDP_FLAGS_DRV_MODE), and closing the link's fd detaches it, also if the process dies. A
//! link never replaces an attached program: the kernel answers EBUSY (same mode) or EEXIST
//! (the other mode), so a program already there is left alone. (That is what
//! XDP_FLAGS_UPDATE_IF_NOEXIST says for netlink attaches; BPF_LINK_CREATE takes only the mode
//! flags and answers EINVAL to it.) The kernel's errno says what is in the way.
use std::io;
use std::os::fd::OwnedFd;

use lb_rawbpf::{create_xdp_link, load_xdp_pass};
// The modes `attach_pass` takes, for its callers.
pub use lb_rawbpf::{XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE};

use super::checks::NATIVE_ATTACH;
use super::tools::{Link, Xdp};
use super::Finding;

/// The name the probe's program carries (`bpftool prog`, `ip link`).
pub const PROBE_PROGRAM_NAME: &str = "lb_doctor_probe";
/// The name of the program [`attach_pass`] attaches.
pub const PASS_PROGRAM_NAME: &str = "lb_pass";

/// Where the probe stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// bpf(BPF_PROG_LOAD) of the pass-through program.
    Load,
    /// bpf(BPF_LINK_CREATE) in native mode.
    Attach,
}

/// The kernel's refusal: at which stage, with which errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub stage: Stage,
    pub errno: i32,
}

/// The probe's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// Attached natively, and detached again.
    Attached,
    Refused(Refusal),
}

impl Probe {
    pub fn attached(&self) -> bool {
        matches!(self, Probe::Attached)
    }

    pub fn refusal(&self) -> Option<Refusal> {
        match self {
            Probe::Attached => None,
            Probe::Refused(r) => Some(*r),
        }
    }

    /// The errno of a refused attach (not of a refused load).
    pub fn errno(&self) -> Option<i32> {
        self.refusal().filter(|r| r.stage == Stage::Attach).map(|r| r.errno)
    }
}

/// Attach the pass-through program natively to `ifindex` and detach it at once.
pub fn probe(ifindex: u32) -> Probe {
    let prog = match load_xdp_pass(PROBE_PROGRAM_NAME) {
        Ok(prog) => prog,
        Err(e) => return Probe::Refused(Refusal { stage: Stage::Load, errno: errno_of(&e) }),
    };
    match create_xdp_link(&prog, ifindex, XDP_FLAGS_DRV_MODE) {
        // Dropping the link's fd (the only reference) detaches the program.
        Ok(link) => {
            drop(link);
            Probe::Attached
        }
        Err(e) => Probe::Refused(Refusal { stage: Stage::Attach, errno: errno_of(&e) }),
    }
}

/// Attach a pass-through program to `ifindex` in the mode `flags` names
/// (`XDP_FLAGS_DRV_MODE` or `XDP_FLAGS_SKB_MODE`); it stays attached until the returned
/// link fd is closed. (The root tests use it to stand in for someone else's program.)
pub fn attach_pass(ifindex: u32, flags: u32) -> io::Result<OwnedFd> {
    let prog = load_xdp_pass(PASS_PROGRAM_NAME)?;
    create_xdp_link(&prog, ifindex, flags)
}

fn errno_of(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

/// The errno's symbolic name.
pub(crate) fn errno_name(errno: i32) -> &'static str {
    match errno {
        libc::EPERM => "EPERM",
        libc::EACCES => "EACCES",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ERANGE => "ERANGE",
        libc::EINVAL => "EINVAL",
        libc::ENOSPC => "ENOSPC",
        libc::ENOMEM => "ENOMEM",
        libc::ENODEV => "ENODEV",
        libc::ENOTCONN => "ENOTCONN",
        libc::ENOSYS => "ENOSYS",
        libc::E2BIG => "E2BIG",
        _ => "error",
    }
}

fn os_error(errno: i32) -> String {
    let text = io::Error::from_raw_os_error(errno).to_string();
    let text = text.split(" (os error").next().unwrap_or(&text).to_string();
    format!("{}: {text}", errno_name(errno))
}

/// lb's own data path, attached natively (a running `lb run`, or one that left it attached
/// for the next to adopt): proof that native XDP works here.
pub(crate) fn lb_runs_natively(existing: Option<&Xdp>) -> Option<String> {
    let prog = existing?
        .progs
        .iter()
        .find(|p| p.mode == super::tools::XDP_ATTACHED_DRV && p.name.as_deref() == Some(lb_xdp::load::PROGRAM))?;
    Some(prog.describe())
}

/// The `native-attach` finding.
pub(crate) fn finding(
    link: &Link,
    probe: &Probe,
    existing: Option<&Xdp>,
    peer: Option<&Link>,
    offloads_on: &[&str],
) -> Finding {
    match probe.refusal() {
        None => Finding::ok(
            NATIVE_ATTACH,
            format!(
                "a pass-through XDP program attached natively (driver mode) to {} and was detached again",
                link.name
            ),
        ),
        Some(r) if r.stage == Stage::Attach && r.errno == libc::EBUSY && lb_runs_natively(existing).is_some() => {
            Finding::ok(
                NATIVE_ATTACH,
                format!(
                    "lb's data path ({}) is attached natively to {}: native XDP works here (doctor left it alone)",
                    lb_runs_natively(existing).unwrap_or_default(),
                    link.name
                ),
            )
        }
        Some(r) => explain(&link.name, r, existing, Some((link, peer)), offloads_on),
    }
}

/// What the kernel's refusal means, with the fix. `context` (the interface and its veth
/// peer) sharpens the veth-specific answers; `offloads_on` names merging receive offloads
/// that are on (some drivers refuse XDP with them, with EOPNOTSUPP).
pub(crate) fn explain(
    interface: &str,
    r: Refusal,
    existing: Option<&Xdp>,
    context: Option<(&Link, Option<&Link>)>,
    offloads_on: &[&str],
) -> Finding {
    let err = os_error(r.errno);
    let problem = |detail: String, fix: Option<String>| Finding::problem(NATIVE_ATTACH, detail, fix);
    let run_as_root = || Some("run lb as root, or with CAP_BPF and CAP_NET_ADMIN (see privileges)".to_string());
    if r.stage == Stage::Load {
        return match r.errno {
            libc::EPERM | libc::EACCES => problem(
                format!("the kernel refused to load a pass-through XDP program ({err}): missing privileges"),
                run_as_root(),
            ),
            libc::ENOSYS => problem(
                format!("this kernel has no bpf(2) system call ({err})"),
                Some("use `daemon.mode = \"proxy\"`".into()),
            ),
            _ => problem(format!("loading a pass-through XDP program failed ({err})"), None),
        };
    }
    let generic =
        || "`daemon.xdp_attach = \"generic\"` (slower, any driver) or `daemon.mode = \"proxy\"`/\"auto\"".to_string();
    let veth = context.filter(|(l, _)| l.is_veth());
    match r.errno {
        libc::EPERM | libc::EACCES => {
            problem(format!("the kernel refused to attach XDP to {interface} ({err}): missing CAP_NET_ADMIN"), run_as_root())
        }
        libc::EOPNOTSUPP if !offloads_on.is_empty() => problem(
            format!("native attach refused ({err}): the driver of {interface} does not take native XDP while {} is on", offloads_on.join(" and ")),
            Some(format!("turn it off (see lro), or {}", generic())),
        ),
        libc::EOPNOTSUPP => problem(
            format!("native attach refused ({err}): the driver of {interface} has no native XDP"),
            Some(generic()),
        ),
        libc::EBUSY | libc::EEXIST => {
            let what = existing.map(Xdp::describe).unwrap_or_else(|| "another XDP program".into());
            let mut detail = format!("{what} is already attached to {interface} ({err}); doctor left it alone and could not probe");
            if r.errno == libc::EEXIST && existing.is_some_and(|x| !x.native()) {
                detail += "; native and generic XDP cannot be active at once";
            } else if existing.is_some_and(|x| x.native()) {
                detail += "; the driver does run native XDP";
            }
            let probing = existing.is_some_and(|x| x.progs.iter().any(|p| p.name.as_deref() == Some(PROBE_PROGRAM_NAME)));
            let ours = existing.is_some_and(|x| x.progs.iter().any(|p| p.name.as_deref() == Some(lb_xdp::load::PROGRAM)));
            let fix = if probing {
                "another `lb doctor` was probing at the same moment; run it again".to_string()
            } else if ours {
                "it is lb's data path: a running `lb run` (or one that left it attached, which the next `lb run` adopts); stop lb with --detach-on-exit to free the interface".to_string()
            } else {
                format!("if it is not needed, detach it (`ip link set dev {interface} xdp off`); lb attaches only to an interface without XDP")
            };
            problem(detail, Some(fix))
        }
        libc::ERANGE => {
            let peer = veth.and_then(|(_, peer)| peer);
            let (who, fix) = match (veth, peer) {
                (Some(_), Some(peer)) => (
                    format!("the MTU of {interface}'s veth peer {} ({})", peer.name, peer.mtu),
                    format!("`ip link set {} mtu 1500` and `ip link set {interface} mtu 1500`", peer.name),
                ),
                (Some(_), None) => (
                    format!("the MTU of {interface}'s veth peer"),
                    format!("in the peer's namespace `ip link set PEER mtu 1500`, and `ip link set {interface} mtu 1500`"),
                ),
                _ => (format!("the MTU of {interface}"), format!("`ip link set {interface} mtu 1500`")),
            };
            problem(format!("native attach refused ({err}): {who} is too large for native XDP (a frame must fit in one page)"), Some(fix))
        }
        libc::ENOSPC if veth.is_some() => {
            let (link, peer) = veth.expect("checked");
            let peer_tx = peer.and_then(|p| p.num_tx_queues).map(|n| n.to_string()).unwrap_or_else(|| "its".into());
            problem(
                format!(
                    "native attach refused ({err}): {interface} has fewer rx queues ({}) than its veth peer has tx queues ({peer_tx})",
                    link.num_rx_queues.map(|n| n.to_string()).unwrap_or_else(|| "?".into())
                ),
                Some(format!("recreate the veth pair with enough rx queues: `ip link add {interface} numrxqueues N type veth peer ...`, N at least the peer's tx queues")),
            )
        }
        libc::ENOMEM | libc::ENOSPC => problem(
            format!("the driver of {interface} could not set up native XDP ({err}): often too few free TX queues for XDP_TX (e.g. virtio_net needs one per CPU)"),
            Some(format!("give the NIC more queues (`ethtool -L {interface} combined N`; virtio_net: queues=N in the VM), or {}", generic())),
        ),
        libc::EINVAL => problem(
            format!("the driver of {interface} refused native XDP ({err}): commonly an MTU above one page's worth, LRO/GRO_HW on, or an unsupported queue setup"),
            Some(format!("see the mtu and lro findings; otherwise {}", generic())),
        ),
        libc::ENOTCONN => problem(format!("native attach refused ({err}): the veth peer of {interface} is detached"), None),
        libc::ENODEV => problem(format!("{interface} went away during the probe ({err})"), None),
        _ => problem(format!("native attach to {interface} failed ({err})"), Some(generic())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_names_fit_the_kernels_field() {
        // Longer names would be cut, and `explain` would not recognise a probe in progress.
        assert!(PROBE_PROGRAM_NAME.len() < lb_rawbpf::BPF_OBJ_NAME_LEN);
        assert!(PASS_PROGRAM_NAME.len() < lb_rawbpf::BPF_OBJ_NAME_LEN);
    }

    #[test]
    fn explains_the_common_refusals() {
        let attach = |errno| Refusal { stage: Stage::Attach, errno };
        let f = explain("lo", attach(libc::EOPNOTSUPP), None, None, &[]);
        assert!(f.detail.contains("no native XDP") && f.fix.unwrap().contains("generic"));
        let f = explain("eth0", attach(libc::ERANGE), None, None, &[]);
        assert!(f.detail.contains("MTU of eth0") && f.fix.unwrap().contains("ip link set eth0 mtu 1500"));
        let f = explain("eth0", attach(libc::EBUSY), None, None, &[]);
        assert!(f.detail.contains("already attached") && f.detail.contains("EBUSY"));
        let f = explain("eth0", Refusal { stage: Stage::Load, errno: libc::EPERM }, None, None, &[]);
        assert!(f.detail.contains("missing privileges"));
        let f = explain("eth0", attach(libc::EOPNOTSUPP), None, None, &["rx-gro-hw"]);
        assert!(f.detail.contains("while rx-gro-hw is on"), "{}", f.detail);
        assert!(!os_error(libc::EBUSY).contains("os error"));
    }

    #[test]
    fn lbs_own_native_data_path_counts_as_working() {
        use super::super::tools::{XdpProg, XDP_ATTACHED_DRV, XDP_ATTACHED_SKB};
        let prog = |mode, name: &str| Xdp { progs: vec![XdpProg { mode, id: Some(9), name: Some(name.into()) }] };
        let link = Link { name: "eth0".into(), ..Default::default() };
        let busy = Probe::Refused(Refusal { stage: Stage::Attach, errno: libc::EBUSY });
        let f = finding(&link, &busy, Some(&prog(XDP_ATTACHED_DRV, "lb_xdp")), None, &[]);
        assert!(f.ok && f.detail.contains("lb's data path (native XDP program lb_xdp (id 9))"), "{f:?}");
        let f = finding(&link, &busy, Some(&prog(XDP_ATTACHED_DRV, "other")), None, &[]);
        assert!(!f.ok && f.detail.contains("already attached"), "{f:?}");
        let exists = Probe::Refused(Refusal { stage: Stage::Attach, errno: libc::EEXIST });
        let f = finding(&link, &exists, Some(&prog(XDP_ATTACHED_SKB, "lb_xdp")), None, &[]);
        assert!(!f.ok && f.detail.contains("native and generic XDP cannot be active at once"), "{f:?}");
    }
}

//! What the pinned XDP link (`pin_path/link`) is attached to, asked of the kernel before a
//! new daemon trusts it. A link outlives its interface: when the interface goes (its
//! namespace deleted and recreated, a veth removed) the link stays pinned but severed, and
//! swapping a program into it fails ("Link has been severed"). And a config whose
//! `interface` changed must not keep serving the old one. So adoption reads the link's
//! interface (`bpf_link_info.xdp.ifindex`, 0 once severed) and decides how to take over
//! before any table is written.
//!
//! The decision, for a daemon configured for interface I:
//! - no link pinned: a fresh attach on I;
//! - the link runs on I: its program is swapped in place (hitless; flows kept);
//! - the link is severed: a fresh attach on I replaces it (flows kept in the maps, but the
//!   interface they ran on is gone);
//! - the link runs on another interface: the data path moves. A fresh link on I first, then
//!   the old link is dropped, which detaches the old interface. Flows of the old interface
//!   cannot be kept there: an operator who changed `interface` wants the traffic on the new
//!   one, and serving both would leave the old one with a program nobody manages.
//! - the pin is not an XDP link: refused.
//!
//! aya's link info has no accessor for the XDP part, so the two bpf(2) commands are made
//! here: BPF_OBJ_GET to open the pin, BPF_OBJ_GET_INFO_BY_FD to read it.
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// enum bpf_cmd
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
/// enum bpf_link_type: BPF_LINK_TYPE_XDP.
const BPF_LINK_TYPE_XDP: u32 = 6;

/// What the kernel says about the pinned link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pinned {
    /// An XDP link on interface `ifindex`; 0 when severed (its interface is gone).
    Xdp { ifindex: u32 },
    /// A link of another type (`enum bpf_link_type`).
    OtherLink { link_type: u32 },
    /// Another kind of BPF object (a map, a program).
    NotALink { kind: String },
}

/// How a new daemon takes the data path over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Takeover {
    /// Nothing pinned: attach on the interface.
    Fresh,
    /// The link runs on the configured interface: swap the program in.
    Replace,
    /// The link is severed: attach anew, replacing its pin.
    Reattach,
    /// The link runs on another interface (`from`, its name or index): attach on the
    /// configured one, then drop the old link.
    Move { from: String },
}

impl Takeover {
    /// Whether the maps are adopted (ids kept) rather than written from scratch.
    pub fn adopts(&self) -> bool {
        *self != Takeover::Fresh
    }
}

/// Read the link pinned at `pin`.
pub fn inspect(pin: &Path) -> Result<Pinned> {
    let fd = obj_get(pin).with_context(|| format!("opening the pinned XDP link {}", pin.display()))?;
    let kind = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap_or_default();
    let kind = kind.to_string_lossy();
    // The fd of a BPF object reads as `anon_inode:bpf-link`, `anon_inode:bpf-map`, ...
    if kind != "anon_inode:bpf-link" {
        return Ok(Pinned::NotALink { kind: kind.trim_start_matches("anon_inode:").to_string() });
    }
    let info = link_info(&fd).with_context(|| format!("reading the pinned link {}", pin.display()))?;
    if info.link_type != BPF_LINK_TYPE_XDP {
        return Ok(Pinned::OtherLink { link_type: info.link_type });
    }
    Ok(Pinned::Xdp { ifindex: info.xdp_ifindex })
}

/// The decision above, for a daemon configured for the interface of index `wanted` here.
/// `name_of` names an interface index of this network namespace.
pub fn decide(
    pin: &Path,
    found: Option<&Pinned>,
    wanted: u32,
    name_of: impl Fn(u32) -> Option<String>,
) -> Result<Takeover> {
    let hint = "remove it (or choose another daemon.pin_path) and start again";
    Ok(match found {
        None => Takeover::Fresh,
        Some(Pinned::Xdp { ifindex: 0 }) => Takeover::Reattach,
        Some(Pinned::Xdp { ifindex }) if *ifindex == wanted => Takeover::Replace,
        // Names are unique within a namespace: this is another device than the configured one.
        Some(Pinned::Xdp { ifindex }) => Takeover::Move {
            from: name_of(*ifindex).unwrap_or_else(|| format!("ifindex {ifindex}, not in this network namespace")),
        },
        Some(Pinned::OtherLink { link_type }) => {
            bail!("{} is a BPF link of type {link_type}, not lb's XDP link; {hint}", pin.display())
        }
        Some(Pinned::NotALink { kind }) => {
            bail!("{} is a pinned BPF object of kind {kind:?}, not lb's XDP link; {hint}", pin.display())
        }
    })
}

/// The interface's index in this network namespace.
pub fn ifindex_of(interface: &str) -> Result<u32> {
    let name = CString::new(interface).context("interface name contains NUL")?;
    // SAFETY: a NUL-terminated name; no other memory is touched.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        bail!("interface {interface} does not exist (see `ip link`)");
    }
    Ok(index)
}

/// The name of interface `index` in this network namespace.
pub fn name_of(index: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: the buffer holds IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: on success the buffer holds a NUL-terminated name.
    Some(unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned())
}

/// The fields of `union bpf_attr` for BPF_OBJ_GET.
#[repr(C)]
#[derive(Default)]
struct ObjGetAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
}

/// The fields of `union bpf_attr` for BPF_OBJ_GET_INFO_BY_FD.
#[repr(C)]
#[derive(Default)]
struct InfoByFdAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// `struct bpf_link_info`: type, id, prog_id, then an 8-aligned union whose XDP member is
/// `{ __u32 ifindex; }`. The tail is room for the union's larger members, left zero (the
/// kernel accepts a longer struct whose extra bytes are zero).
#[repr(C, align(8))]
struct LinkInfo {
    link_type: u32,
    id: u32,
    prog_id: u32,
    _pad: u32,
    xdp_ifindex: u32,
    _rest: [u32; 31],
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is one of the attribute structs above, whose pointers (a path, the
    // info buffer) outlive the call; its size is passed along.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>() as u32) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret)
}

fn obj_get(pin: &Path) -> io::Result<OwnedFd> {
    let path = CString::new(pin.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pin path contains NUL"))?;
    let mut attr = ObjGetAttr { pathname: path.as_ptr() as u64, ..Default::default() };
    let fd = bpf(BPF_OBJ_GET, &mut attr)?;
    // SAFETY: a successful BPF_OBJ_GET returns a new file descriptor that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn link_info(fd: &OwnedFd) -> io::Result<LinkInfo> {
    let mut info = LinkInfo { link_type: 0, id: 0, prog_id: 0, _pad: 0, xdp_ifindex: 0, _rest: [0; 31] };
    let mut attr = InfoByFdAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: std::mem::size_of::<LinkInfo>() as u32,
        info: &mut info as *mut LinkInfo as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(index: u32) -> Option<String> {
        match index {
            1 => Some("lo".into()),
            2 => Some("eth0".into()),
            3 => Some("v0".into()),
            _ => None,
        }
    }

    /// The configured interface is `wanted` (2 = eth0, 3 = v0).
    fn decide_for(found: Option<Pinned>, wanted: u32) -> Result<Takeover> {
        decide(Path::new("/sys/fs/bpf/lb/link"), found.as_ref(), wanted, names)
    }

    #[test]
    fn nothing_pinned_is_a_fresh_start() {
        assert_eq!(decide_for(None, 2).unwrap(), Takeover::Fresh);
        assert!(!Takeover::Fresh.adopts());
    }

    #[test]
    fn a_link_on_the_configured_interface_is_taken_over_in_place() {
        let t = decide_for(Some(Pinned::Xdp { ifindex: 2 }), 2).unwrap();
        assert_eq!(t, Takeover::Replace);
        assert!(t.adopts());
    }

    #[test]
    fn a_severed_link_is_replaced_by_a_fresh_attach() {
        let t = decide_for(Some(Pinned::Xdp { ifindex: 0 }), 2).unwrap();
        assert_eq!(t, Takeover::Reattach);
        assert!(t.adopts(), "the maps (and the ids their flows name) are still adopted");
    }

    #[test]
    fn a_link_on_another_interface_moves_to_the_configured_one_naming_the_old() {
        assert_eq!(decide_for(Some(Pinned::Xdp { ifindex: 2 }), 3).unwrap(), Takeover::Move { from: "eth0".into() });
        // An index this namespace does not know: still another device.
        assert_eq!(
            decide_for(Some(Pinned::Xdp { ifindex: 9 }), 3).unwrap(),
            Takeover::Move { from: "ifindex 9, not in this network namespace".into() }
        );
    }

    #[test]
    fn a_pin_that_is_not_an_xdp_link_is_refused_with_what_it_is() {
        let e = decide_for(Some(Pinned::OtherLink { link_type: 2 }), 2).unwrap_err().to_string();
        assert!(e.contains("/sys/fs/bpf/lb/link") && e.contains("type 2") && e.contains("not lb's XDP link"), "{e}");
        let e = decide_for(Some(Pinned::NotALink { kind: "bpf-map".into() }), 2).unwrap_err().to_string();
        assert!(e.contains("\"bpf-map\"") && e.contains("remove it"), "{e}");
    }

    #[test]
    fn link_info_has_the_uapi_layout() {
        assert_eq!(std::mem::offset_of!(LinkInfo, xdp_ifindex), 16);
        assert_eq!(std::mem::align_of::<LinkInfo>(), 8);
        assert_eq!(std::mem::size_of::<ObjGetAttr>(), 16);
        assert_eq!(std::mem::offset_of!(InfoByFdAttr, info), 8);
    }

    #[test]
    fn interface_names_and_indexes_round_trip_on_loopback() {
        let lo = ifindex_of("lo").unwrap();
        assert_eq!(name_of(lo).as_deref(), Some("lo"));
        assert!(ifindex_of("no-such-if0").unwrap_err().to_string().contains("does not exist"));
    }

    #[test]
    fn a_missing_pin_is_an_error_naming_it() {
        let e = inspect(Path::new("/nonexistent/lb/link")).unwrap_err();
        assert!(format!("{e:#}").contains("/nonexistent/lb/link"), "{e:#}");
    }
}

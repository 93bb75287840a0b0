//! Loading the embedded XDP object with its maps pinned under `pin_path`, and attaching it.
use std::path::Path;

use anyhow::{bail, Context, Result};
use aya::programs::{Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};
use lb_common::consts::map_names;

/// The XDP object built by build.rs (empty when built with AYA_BUILD_SKIP=1).
pub static XDP_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb-xdp"));

pub const PROGRAM: &str = "lb_xdp";
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

pub fn is_bpffs(dir: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else { return false };
    // SAFETY: statfs on a NUL-terminated path into a zeroed struct.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == BPF_FS_MAGIC
    }
}

/// Load the program and its maps (re-using maps already pinned under `pin_dir`), and
/// verify it. `flow_table_size` sizes the flow and NAT tables.
pub fn load(pin_dir: &Path, flow_table_size: u32) -> Result<Ebpf> {
    if XDP_OBJECT.is_empty() {
        bail!("this lb was built without its XDP program (AYA_BUILD_SKIP); rebuild with `cargo xtask build`");
    }
    std::fs::create_dir_all(pin_dir).with_context(|| format!("cannot create pin_path {}", pin_dir.display()))?;
    if !is_bpffs(pin_dir) {
        bail!(
            "pin_path {} is not on a BPF filesystem; mount one (`mount -t bpf bpf /sys/fs/bpf`) or set daemon.pin_path",
            pin_dir.display()
        );
    }
    let mut ebpf = EbpfLoader::new()
        .default_map_pin_directory(pin_dir)
        .map_max_entries(map_names::FLOWS, flow_table_size)
        .map_max_entries(map_names::NAT, flow_table_size)
        .load(XDP_OBJECT)
        .context("loading the XDP object (needs root or CAP_BPF + CAP_NET_ADMIN)")?;
    program(&mut ebpf)?.load().context("the kernel verifier rejected the XDP program")?;
    Ok(ebpf)
}

pub fn program(ebpf: &mut Ebpf) -> Result<&mut Xdp> {
    let p = ebpf.program_mut(PROGRAM).context("the XDP object has no program lb_xdp")?;
    Ok(p.try_into()?)
}

/// Attach to `interface`: native (driver) mode unless `generic` is asked for. Fails with
/// the kernel's reason and what to try instead; never falls back silently.
pub fn attach(ebpf: &mut Ebpf, interface: &str, generic: bool) -> Result<aya::programs::xdp::XdpLinkId> {
    let mode = if generic { XdpMode::Skb } else { XdpMode::Driver };
    let what = if generic { "generic" } else { "native" };
    program(ebpf)?.attach(interface, mode).map_err(|e| {
        let hint = if generic {
            "check that the interface exists and has no other XDP program"
        } else {
            "the driver may lack native XDP support (try daemon.xdp_attach = \"generic\"), or another XDP program is attached"
        };
        anyhow::anyhow!("{what} XDP attach to {interface} failed: {e:#}; {hint}")
    })
}

/// Remove the pinned maps (clean shutdown): nothing of ours is left in the BPF filesystem.
pub fn unpin_all(pin_dir: &Path) {
    for name in [
        map_names::VIPS,
        map_names::VIP_ADDRS,
        map_names::RING,
        map_names::BACKENDS,
        map_names::FLOWS,
        map_names::NAT,
        map_names::CONFIG,
        map_names::SERVICE_STATS,
        map_names::BACKEND_STATS,
        map_names::ACTION_STATS,
        map_names::DROP_STATS,
        map_names::SERVICE_META,
        map_names::BACKEND_META,
        map_names::SEQ,
        map_names::ACTIVE,
        map_names::RR_CURSOR,
        super::xdp::LINK_PIN,
    ] {
        let _ = std::fs::remove_file(pin_dir.join(name));
    }
    let _ = std::fs::remove_dir(pin_dir);
}

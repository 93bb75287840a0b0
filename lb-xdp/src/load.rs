//! Loading the embedded XDP object with its maps pinned under `pin_path`, and attaching it.
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{bail, Context, Result};
use aya::maps::{Array, MapData};
use aya::programs::{Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};
use lb_common::abi::map_names;
use lb_common::abi::{LAYOUT_VERSION, PINNED_MAPS};

use crate::layout::{check_pinned_layout, MapSizes, SIZED_BY_FLOW_TABLE, SIZED_BY_MAX_SERVICES};

/// The XDP object built by build.rs (empty when built with AYA_BUILD_SKIP=1).
pub static XDP_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb-xdp"));

pub const PROGRAM: &str = "lb_xdp";
/// The same program plus a restore of its frame, for the data-path bench only (lb-ebpf
/// `bench.rs`); the daemon never loads it.
pub const BENCH_PROGRAM: &str = "lb_xdp_bench";
/// The pinned XDP link: while this file exists the program stays attached, daemon or not.
pub const LINK_PIN: &str = "link";
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

pub fn is_bpffs(dir: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else { return false };
    // SAFETY: statfs on a NUL-terminated path into a zeroed struct.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == BPF_FS_MAGIC
    }
}

/// Load the program and its maps (re-using maps already pinned under `pin_dir` once their
/// layout is known to be this build's), and verify it. `sizes` gives the flow and NAT
/// tables and the table arrays their capacity (maps adopted from the pins keep theirs).
pub fn load(pin_dir: &Path, sizes: &MapSizes) -> Result<Ebpf> {
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
    // Before the loader: it reuses a pin by name whatever its layout.
    check_pinned_layout(pin_dir, Some(sizes))?;
    // The loader pins each map as it creates it, so a load that fails part-way (a map the
    // kernel will not allocate, a verifier refusal) leaves some pinned. After a fresh start
    // they go again: left, they would carry no layout version and the next start would
    // refuse them. Maps that were pinned before this load are a running data path's: kept.
    let fresh = !PINNED_MAPS.iter().any(|s| pin_dir.join(s.name).exists());
    load_pinned(pin_dir, sizes).inspect_err(|_| {
        if fresh {
            unpin_maps(pin_dir);
        }
    })
}

fn load_pinned(pin_dir: &Path, sizes: &MapSizes) -> Result<Ebpf> {
    let mut loader = EbpfLoader::new();
    loader.default_map_pin_directory(pin_dir);
    for name in SIZED_BY_FLOW_TABLE.into_iter().chain(SIZED_BY_MAX_SERVICES) {
        if let Some(entries) = sizes.entries(name) {
            loader.map_max_entries(name, entries);
        }
    }
    let mut ebpf = loader.load(XDP_OBJECT).context("loading the XDP object (needs root or CAP_BPF + CAP_NET_ADMIN)")?;
    stamp_layout(&mut ebpf)?;
    program(&mut ebpf)?.load().context("the kernel verifier rejected the XDP program")?;
    Ok(ebpf)
}

/// Record this build's layout version beside the pins, as soon as they exist (adopted
/// pins already hold the same one).
fn stamp_layout(ebpf: &mut Ebpf) -> Result<()> {
    let map = ebpf.map_mut(map_names::LAYOUT).context("the XDP object has no map LB_LAYOUT")?;
    let mut layout: Array<&mut MapData, u32> = Array::try_from(map)?;
    layout.set(0, LAYOUT_VERSION, 0).context("writing the layout version to LB_LAYOUT")
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

/// Remove everything of ours under `pin_dir` (clean shutdown, or a fresh start that
/// failed): the pin directory is `lb`'s, so it goes whole, with the link pin and any map an
/// older or newer `lb` left there. A `pin_path` that is a bpffs mount point itself holds
/// more than ours: there only the pinned-map table's names and the link go.
pub fn unpin_all(pin_dir: &Path) {
    if is_mount_point(pin_dir) {
        unpin_maps(pin_dir);
        let _ = std::fs::remove_file(pin_dir.join(LINK_PIN));
        return;
    }
    let _ = std::fs::remove_dir_all(pin_dir);
}

/// Remove the pinned-map table's pins under `pin_dir`, and nothing else.
fn unpin_maps(pin_dir: &Path) {
    for spec in PINNED_MAPS {
        let _ = std::fs::remove_file(pin_dir.join(spec.name));
    }
}

fn is_mount_point(dir: &Path) -> bool {
    let Some(parent) = dir.parent() else { return true };
    match (dir.metadata(), parent.metadata()) {
        (Ok(d), Ok(p)) => d.dev() != p.dev(),
        // Gone already, or unreadable: nothing for remove_dir_all to do either way.
        _ => false,
    }
}

//! The tunnel object (`lb-tunnel`, built beside the balancer's by build.rs): `lb decap`'s
//! XDP program (`decap`) and the balancer's tc program for tunnelled health checks
//! (`check`). Nothing of it is pinned: it lives as long as the process that loads it.
pub mod check;
pub mod decap;

use anyhow::{bail, Context, Result};
use aya::{Ebpf, EbpfLoader};

/// The tunnel object built by build.rs (empty when built with AYA_BUILD_SKIP=1).
pub static TUNNEL_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb-tunnel"));

/// Load the object (maps created, programs not yet verified).
pub fn load_object() -> Result<Ebpf> {
    if TUNNEL_OBJECT.is_empty() {
        bail!("this lb was built without its eBPF programs (AYA_BUILD_SKIP); rebuild with `cargo xtask build`");
    }
    EbpfLoader::new()
        .load(TUNNEL_OBJECT)
        .context("loading the tunnel eBPF object (needs root or CAP_BPF + CAP_NET_ADMIN)")
}

//! Builds the eBPF objects (crate lb-ebpf's binaries: `lb-xdp`, the balancer, and
//! `lb-tunnel`, `lb decap`'s and the tunnelled health checks' programs) with the nightly
//! toolchain and bpf-linker, and leaves them in OUT_DIR for `include_bytes_aligned!`.
use std::{env, fs, path::PathBuf};

fn main() -> anyhow::Result<()> {
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let ebpf_dir = manifest_dir.join("../lb-ebpf");
    let skip = env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if skip {
        // Host-only builds (no bpf-linker): an empty object, which the loader refuses with a
        // clear message instead of failing the whole build.
        fs::write(out_dir.join("lb-xdp"), [])?;
        fs::write(out_dir.join("lb-tunnel"), [])?;
    }
    let root = ebpf_dir.to_str().ok_or_else(|| anyhow::anyhow!("non-UTF-8 path"))?;
    aya_build::build_ebpf(
        [aya_build::Package { name: "lb-ebpf", root_dir: root, ..Default::default() }],
        aya_build::Toolchain::default(),
    )
}

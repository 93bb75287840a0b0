//! The host's side: the process's capabilities and the BPF filesystem.
use std::path::Path;

use super::checks::{BPFFS, PRIVILEGES};
use super::Finding;
use lb_xdp::load::is_bpffs;

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Where the BPF filesystem is mounted by convention (and the default pin_path's parent).
pub(crate) const BPFFS_DIR: &str = "/sys/fs/bpf";

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The effective capability set of this process (64 bits), from capget(2).
fn effective_caps() -> std::io::Result<u64> {
    let mut header = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let mut data = [CapData::default(); 2];
    // SAFETY: version 3 takes a header and an array of two data structs, both live here.
    let ret = unsafe { libc::syscall(libc::SYS_capget, &mut header as *mut CapHeader, data.as_mut_ptr()) };
    if ret != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(data[0].effective as u64 | (data[1].effective as u64) << 32)
}

/// What is missing from `caps` to load and attach XDP programs, by name.
fn missing(caps: u64) -> Vec<&'static str> {
    let has = |cap: u32| caps & (1u64 << cap) != 0;
    let mut missing = Vec::new();
    if !has(CAP_BPF) && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_BPF (or CAP_SYS_ADMIN)");
    }
    if !has(CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    missing
}

pub(crate) fn privileges() -> Finding {
    let caps = match effective_caps() {
        Ok(caps) => caps,
        Err(e) => return Finding::problem(PRIVILEGES, format!("capget failed: {e}"), None),
    };
    let missing = missing(caps);
    if missing.is_empty() {
        let bpf = if caps & (1u64 << CAP_BPF) != 0 { "CAP_BPF" } else { "CAP_SYS_ADMIN" };
        return Finding::ok(PRIVILEGES, format!("effective capabilities include {bpf} and CAP_NET_ADMIN"));
    }
    let exe = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "/usr/local/bin/lb".into());
    Finding::problem(
        PRIVILEGES,
        format!("missing {}: loading and attaching XDP programs needs them", missing.join(" and ")),
        Some(format!(
            "run as root (sudo lb ...), or grant the capabilities: `setcap cap_bpf,cap_net_admin+ep {exe}` (systemd: AmbientCapabilities=CAP_BPF CAP_NET_ADMIN)"
        )),
    )
}

/// Not mounted is a note when this process may mount it (`lb run` mounts it on demand
/// when daemon.pin_path is under it, as by default), a problem otherwise.
pub(crate) fn bpffs() -> Finding {
    let can_mount = effective_caps().is_ok_and(|caps| caps & (1u64 << CAP_SYS_ADMIN) != 0);
    bpffs_at(Path::new(BPFFS_DIR), can_mount)
}

fn bpffs_at(dir: &Path, can_mount: bool) -> Finding {
    if is_bpffs(dir) {
        return Finding::ok(BPFFS, format!("a BPF filesystem is mounted at {}", dir.display()));
    }
    let what = if dir.exists() { "is not a BPF filesystem" } else { "does not exist" };
    let detail = format!("{} {what}: lb pins its maps and XDP link there (daemon.pin_path)", dir.display());
    let fix = format!("`mount -t bpf bpf {}`", dir.display());
    if can_mount {
        let detail = format!(
            "{detail}; lb run mounts it on demand when daemon.pin_path is under {} (the default)",
            dir.display()
        );
        Finding::note(BPFFS, detail, format!("nothing, for lb run with the default pin_path; to mount it now: {fix}"))
    } else {
        Finding::problem(
            BPFFS,
            format!("{detail}, and this process lacks CAP_SYS_ADMIN to mount it"),
            Some(format!("{fix} (as root)")),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_what_is_missing() {
        assert_eq!(missing(0), vec!["CAP_BPF (or CAP_SYS_ADMIN)", "CAP_NET_ADMIN"]);
        assert!(missing(1 << CAP_BPF | 1 << CAP_NET_ADMIN).is_empty());
        assert!(missing(1 << CAP_SYS_ADMIN | 1 << CAP_NET_ADMIN).is_empty());
        assert_eq!(missing(1 << CAP_BPF), vec!["CAP_NET_ADMIN"]);
    }

    #[test]
    fn capget_answers() {
        assert!(effective_caps().is_ok());
        let _ = privileges();
    }

    #[test]
    fn a_plain_directory_is_not_bpffs() {
        let f = bpffs_at(Path::new("/proc"), false);
        assert!(!f.ok);
        assert!(f.fix.unwrap().contains("mount -t bpf bpf /proc"));
        assert!(!bpffs_at(Path::new("/nonexistent-dir"), false).ok);
        let f = bpffs_at(Path::new("/proc"), true);
        assert!(f.ok && f.detail.contains("on demand") && f.fix.is_some());
    }
}

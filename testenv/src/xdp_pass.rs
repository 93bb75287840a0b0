//! A pass-through XDP program for the switch-side veth ports.
//!
//! Kernel rule (measured on 6.18): a frame sent with XDP_TX (or redirected)
//! on a veth is delivered to the peer only if the peer runs its NAPI poll,
//! which it does when it has an XDP program attached. Without one the frame is
//! silently dropped. So the peer of the LB's eth0 (`lb` in lbt-switch) runs
//! this program: it returns XDP_PASS, and the frame goes on into the bridge.
//! Every switch port gets it, so any host may run an XDP data path.
//!
//! There is no C compiler for BPF here, so the program is two raw instructions
//! loaded with the bpf(2) syscall, pinned on a bpffs of our own, and attached
//! with `ip link set ... xdpdrv pinned`. (`ip netns exec` and `ip -n` remount
//! /sys in a private mount namespace, so a pin under /sys/fs/bpf would not be
//! visible there; /run/lbt is.)

use crate::netns::{ip_in, run};
use crate::topology::{BPFFS_DIR, SWITCH_NS, XDP_PASS_PIN};
use anyhow::{bail, Context, Result};
use std::ffi::CString;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::Path;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_PROG_TYPE_XDP: u32 = 6;
const XDP_PASS: i32 = 2;

/// `struct bpf_insn`: opcode, dst/src registers (4 bits each), offset, immediate.
#[repr(C)]
#[derive(Clone, Copy)]
struct BpfInsn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

/// `r0 = XDP_PASS; exit`
const PROGRAM: [BpfInsn; 2] = [
    BpfInsn {
        code: 0xb7,
        regs: 0,
        off: 0,
        imm: XDP_PASS,
    }, // BPF_ALU64|BPF_MOV|BPF_K, dst r0
    BpfInsn {
        code: 0x95,
        regs: 0,
        off: 0,
        imm: 0,
    }, // BPF_JMP|BPF_EXIT
];

/// The leading fields of `union bpf_attr` used by BPF_PROG_LOAD.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The fields of `union bpf_attr` used by BPF_OBJ_PIN.
#[repr(C)]
#[derive(Default)]
struct ObjPinAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
}

/// Mounts a bpffs at BPFFS_DIR (once) and pins the program at XDP_PASS_PIN.
pub(crate) fn install() -> Result<()> {
    if Path::new(XDP_PASS_PIN).exists() {
        return Ok(());
    }
    mount_bpffs()?;
    let prog = load()?;
    pin(&prog, XDP_PASS_PIN)
}

/// Attaches the pinned program in native (driver) mode to a switch port and
/// checks that the kernel reports it attached.
pub(crate) fn attach(port: &str) -> Result<()> {
    ip_in(
        SWITCH_NS,
        &["link", "set", "dev", port, "xdpdrv", "pinned", XDP_PASS_PIN],
    )?;
    if !xdp_attached(SWITCH_NS, port)? {
        bail!("XDP pass-through program not shown on {port} in {SWITCH_NS} after attaching");
    }
    Ok(())
}

/// Loads the pass-through program and pins it at `path` (on a bpffs the caller mounted):
/// the benchmarks' floor, the cost of running any XDP program at all through
/// BPF_PROG_TEST_RUN.
pub fn pin_pass_program(path: &str) -> Result<()> {
    pin(&load()?, path)
}

/// Whether `dev` in `ns` has an XDP program attached (`ip link` shows `prog/xdp`).
pub fn xdp_attached(ns: &str, dev: &str) -> Result<bool> {
    let shown = ip_in(ns, &["link", "show", "dev", dev])?;
    Ok(shown.contains("prog/xdp"))
}

fn mount_bpffs() -> Result<()> {
    std::fs::create_dir_all(BPFFS_DIR).with_context(|| format!("creating {BPFFS_DIR}"))?;
    if !is_mount_point(BPFFS_DIR)? {
        run("mount", &["-t", "bpf", "bpf", BPFFS_DIR])?;
    }
    Ok(())
}

/// Whether `path` is a mount point of this process's mount namespace.
pub(crate) fn is_mount_point(path: &str) -> Result<bool> {
    let mounts =
        std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    // Field 5 of each line is the mount point.
    Ok(mounts
        .lines()
        .any(|line| line.split(' ').nth(4) == Some(path)))
}

fn load() -> Result<OwnedFd> {
    let license = CString::new("GPL").expect("no NUL in literal");
    let mut log = vec![0u8; 4096];
    let mut name = [0u8; 16];
    name[..8].copy_from_slice(b"lbt_pass");
    let attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_XDP,
        insn_cnt: PROGRAM.len() as u32,
        insns: PROGRAM.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        prog_name: name,
        ..Default::default()
    };
    let fd = bpf(BPF_PROG_LOAD, &attr).map_err(|error| {
        let verifier = String::from_utf8_lossy(&log);
        anyhow::anyhow!(
            "bpf(BPF_PROG_LOAD) of the XDP pass-through program failed: {error}; verifier: {}",
            verifier.trim_end_matches('\0').trim()
        )
    })?;
    // SAFETY: a successful BPF_PROG_LOAD returns a new file descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn pin(prog: &OwnedFd, path: &str) -> Result<()> {
    use std::os::fd::AsRawFd;
    let c_path = CString::new(path).context("pin path contains NUL")?;
    let attr = ObjPinAttr {
        pathname: c_path.as_ptr() as u64,
        bpf_fd: prog.as_raw_fd() as u32,
        ..Default::default()
    };
    bpf(BPF_OBJ_PIN, &attr)
        .map(drop)
        .with_context(|| format!("bpf(BPF_OBJ_PIN) at {path}"))
}

/// The bpf(2) syscall with an attribute struct; returns the (fd) result.
fn bpf<T>(cmd: libc::c_long, attr: &T) -> std::io::Result<RawFd> {
    // SAFETY: attr points to a live, fully initialised #[repr(C)] struct
    // laid out as the prefix of `union bpf_attr`, and size is its size; the
    // pointers inside it stay valid for the duration of the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *const T,
            std::mem::size_of::<T>() as u32,
        )
    };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(ret as RawFd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instructions_encode_like_the_kernel_expects() {
        // Each instruction is 8 bytes, little-endian immediate at offset 4.
        assert_eq!(std::mem::size_of::<BpfInsn>(), 8);
        let bytes: [u8; 8] = unsafe { std::mem::transmute(PROGRAM[0]) };
        assert_eq!(bytes, [0xb7, 0, 0, 0, 2, 0, 0, 0]);
        let bytes: [u8; 8] = unsafe { std::mem::transmute(PROGRAM[1]) };
        assert_eq!(bytes, [0x95, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn attr_layouts_match_the_uapi() {
        assert_eq!(std::mem::size_of::<ProgLoadAttr>(), 72);
        assert_eq!(std::mem::size_of::<ObjPinAttr>(), 16);
    }
}

//! A pass-through XDP program (`r0 = XDP_PASS; exit`) and the few raw bpf(2) commands
//! that load, attach and pin it.
//!
//! Two places need such a program: `lb doctor` attaches one natively to find out whether
//! the driver takes native XDP at all, and the test network runs one on the switch-side
//! veth ports so that XDP_TX frames are delivered. Two instructions need no C compiler for
//! BPF and no object file, so they are written out here and loaded with the syscall
//! itself. They live in a crate of their own because testenv must not depend on lb-user
//! (lb-user's tests depend on testenv); both depend on this one, which depends only on
//! libc.
//!
//! The attribute structs are the leading fields of the kernel's `union bpf_attr` for one
//! command each; the kernel treats the fields after them as zero.
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// enum bpf_cmd
pub const BPF_PROG_LOAD: libc::c_long = 5;
pub const BPF_OBJ_PIN: libc::c_long = 6;
pub const BPF_LINK_CREATE: libc::c_long = 28;
/// enum bpf_prog_type: BPF_PROG_TYPE_XDP.
pub const BPF_PROG_TYPE_XDP: u32 = 6;
/// enum bpf_attach_type: BPF_XDP (an XDP program for a device, not a devmap or cpumap).
pub const BPF_XDP: u32 = 37;
/// enum xdp_action: XDP_PASS.
pub const XDP_PASS: i32 = 2;
/// Attach in generic (skb) mode.
pub const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
/// Attach in native (driver) mode.
pub const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
/// The size of a program name in the kernel, its terminating NUL included.
pub const BPF_OBJ_NAME_LEN: usize = 16;

/// `struct bpf_insn`: opcode, dst/src registers (4 bits each), offset, immediate.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BpfInsn {
    pub code: u8,
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

/// `r0 = XDP_PASS; exit`. A static, so that its address outlives any load.
pub static PASS_PROGRAM: [BpfInsn; 2] = [
    // BPF_ALU64|BPF_MOV|BPF_K, dst r0
    BpfInsn { code: 0xb7, regs: 0, off: 0, imm: XDP_PASS },
    // BPF_JMP|BPF_EXIT
    BpfInsn { code: 0x95, regs: 0, off: 0, imm: 0 },
];

/// The leading fields of `union bpf_attr` for BPF_PROG_LOAD.
#[repr(C)]
#[derive(Debug, Default)]
pub struct ProgLoadAttr {
    pub prog_type: u32,
    pub insn_cnt: u32,
    pub insns: u64,
    pub license: u64,
    pub log_level: u32,
    pub log_size: u32,
    pub log_buf: u64,
    pub kern_version: u32,
    pub prog_flags: u32,
    pub prog_name: [u8; BPF_OBJ_NAME_LEN],
    pub prog_ifindex: u32,
    pub expected_attach_type: u32,
}

/// The leading fields of `union bpf_attr` for BPF_LINK_CREATE (the rest stays zero).
#[repr(C)]
#[derive(Debug, Default)]
pub struct LinkCreateAttr {
    pub prog_fd: u32,
    pub target_ifindex: u32,
    pub attach_type: u32,
    pub flags: u32,
    pub reserved: [u64; 4],
}

/// The fields of `union bpf_attr` for BPF_OBJ_PIN.
#[repr(C)]
#[derive(Debug, Default)]
pub struct ObjPinAttr {
    pub pathname: u64,
    pub bpf_fd: u32,
    pub file_flags: u32,
}

/// The bpf(2) syscall with an attribute struct; returns its (fd) result, or the errno.
///
/// # Safety
///
/// `attr` must be one of the `#[repr(C)]` attribute structs above (or another prefix of
/// `union bpf_attr`) that fits `cmd`, and every pointer inside it must be valid for what
/// the kernel does with it for the duration of the call.
pub unsafe fn bpf<T>(cmd: libc::c_long, attr: &T) -> io::Result<RawFd> {
    // SAFETY: the caller's promise; size is the struct's size.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *const T, std::mem::size_of::<T>() as u32) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret as RawFd)
}

const LICENSE: &CStr = c"GPL";

/// Load [`PASS_PROGRAM`] as an XDP program named `name` (cut to 15 bytes; the kernel takes
/// letters, digits, `_` and `.`). The error carries the kernel's errno.
pub fn load_xdp_pass(name: &str) -> io::Result<OwnedFd> {
    load(name, None)
}

/// [`load_xdp_pass`], with the verifier's log (level 1) written into `log`.
pub fn load_xdp_pass_with_log(name: &str, log: &mut [u8]) -> io::Result<OwnedFd> {
    load(name, Some(log))
}

fn load(name: &str, log: Option<&mut [u8]>) -> io::Result<OwnedFd> {
    let mut prog_name = [0u8; BPF_OBJ_NAME_LEN];
    let len = name.len().min(BPF_OBJ_NAME_LEN - 1);
    prog_name[..len].copy_from_slice(&name.as_bytes()[..len]);
    let (log_level, log_size, log_buf) = match log {
        Some(log) => (1, log.len() as u32, log.as_mut_ptr() as u64),
        None => (0, 0, 0),
    };
    let attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_XDP,
        insn_cnt: PASS_PROGRAM.len() as u32,
        insns: PASS_PROGRAM.as_ptr() as u64,
        license: LICENSE.as_ptr() as u64,
        log_level,
        log_size,
        log_buf,
        prog_name,
        expected_attach_type: BPF_XDP,
        ..Default::default()
    };
    // SAFETY: a BPF_PROG_LOAD prefix; the program and license are statics, and the log
    // buffer is borrowed mutably for the call with its length as log_size.
    let fd = unsafe { bpf(BPF_PROG_LOAD, &attr)? };
    // SAFETY: a successful BPF_PROG_LOAD returns a new file descriptor that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Attach the XDP program `prog` to the interface `ifindex` with a BPF link, in the mode
/// `flags` names ([`XDP_FLAGS_DRV_MODE`] or [`XDP_FLAGS_SKB_MODE`]). It stays attached
/// until the returned link fd is closed, also if the process dies. A link never replaces
/// an attached program: the kernel answers EBUSY (same mode) or EEXIST (the other mode).
pub fn create_xdp_link(prog: impl AsFd, ifindex: u32, flags: u32) -> io::Result<OwnedFd> {
    let attr = LinkCreateAttr {
        prog_fd: prog.as_fd().as_raw_fd() as u32,
        target_ifindex: ifindex,
        attach_type: BPF_XDP,
        flags,
        ..Default::default()
    };
    // SAFETY: a BPF_LINK_CREATE prefix without pointers.
    let fd = unsafe { bpf(BPF_LINK_CREATE, &attr)? };
    // SAFETY: a successful BPF_LINK_CREATE returns a new file descriptor that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Pin the BPF object `fd` (a program, map or link) at `path`, on a mounted bpffs.
pub fn pin(fd: impl AsFd, path: impl AsRef<Path>) -> io::Result<()> {
    let path = CString::new(path.as_ref().as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pin path contains NUL"))?;
    let attr =
        ObjPinAttr { pathname: path.as_ptr() as u64, bpf_fd: fd.as_fd().as_raw_fd() as u32, ..Default::default() };
    // SAFETY: a BPF_OBJ_PIN prefix; the path outlives the call.
    unsafe { bpf(BPF_OBJ_PIN, &attr) }.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(insn: BpfInsn) -> [u8; 8] {
        // SAFETY: BpfInsn is 8 bytes of plain data.
        unsafe { std::mem::transmute(insn) }
    }

    #[test]
    fn instructions_encode_like_the_kernel_expects() {
        // Each instruction is 8 bytes, little-endian immediate at offset 4.
        assert_eq!(std::mem::size_of::<BpfInsn>(), 8);
        assert_eq!(bytes(PASS_PROGRAM[0]), [0xb7, 0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(bytes(PASS_PROGRAM[1]), [0x95, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn attr_layouts_match_the_uapi() {
        assert_eq!(std::mem::size_of::<ProgLoadAttr>(), 72);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, expected_attach_type), 68);
        assert_eq!(std::mem::offset_of!(LinkCreateAttr, flags), 12);
        assert_eq!(std::mem::size_of::<ObjPinAttr>(), 16);
    }
}

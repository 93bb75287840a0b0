//! Bounds-checked reads and writes into an XDP frame, as the verifier insists.

use core::mem::size_of;

use aya_ebpf::programs::XdpContext;

pub const ETH_HLEN: usize = 14;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;

/// `T` at `off` bytes into the frame, if the whole `T` is inside it.
#[inline(always)]
pub fn read<T: Copy>(ctx: &XdpContext, off: usize) -> Option<T> {
    // Offsets stay below 128; the mask gives the verifier a bound for computed ones.
    let off = off & 0xff;
    let start = ctx.data();
    if start + off + size_of::<T>() > ctx.data_end() {
        return None;
    }
    // SAFETY: inside the frame (checked above); packet data has no alignment guarantee.
    Some(unsafe { ((start + off) as *const T).read_unaligned() })
}

#[inline(always)]
pub fn write<T: Copy>(ctx: &XdpContext, off: usize, v: T) -> Option<()> {
    let off = off & 0xff;
    let start = ctx.data();
    if start + off + size_of::<T>() > ctx.data_end() {
        return None;
    }
    // SAFETY: as in `read`.
    unsafe { ((start + off) as *mut T).write_unaligned(v) };
    Some(())
}

/// Whether at least `len` bytes of frame follow `off`.
#[inline(always)]
pub fn has(ctx: &XdpContext, off: usize, len: usize) -> bool {
    ctx.data() + off + len <= ctx.data_end()
}

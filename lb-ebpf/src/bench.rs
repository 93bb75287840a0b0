//! The bench entry point `lb_xdp_bench`: the real program (`lb_xdp`'s body, inlined) plus a
//! restore of the frame it was given, so that every repetition of one `BPF_PROG_TEST_RUN`
//! call sees the same input. The kernel's `repeat` feeds one buffer to all repetitions,
//! and the program rewrites it (nat's addresses, encapsulation's outer header): without the
//! restore only the first repetition would take the path being timed. `BPF_F_TEST_XDP_LIVE_FRAMES`
//! does not help: its recycled pages keep what the program wrote (measured on this kernel:
//! after the first batch of 64 frames a nat frame went on as one for its backend).
//!
//! Loaded only by `cargo xtask bench` (lb-xdp's `bench_datapath`), never by the daemon; its
//! cost over `lb_xdp` (the restore) is measured on a frame neither rewrites and subtracted.
//! With `vary_at` set, each repetition also counts the source address up by one: a new
//! flow every time, for timing new flows the same way as established ones.

use aya_ebpf::{
    bindings::{xdp_action::XDP_DROP, xdp_md},
    helpers::bpf_xdp_adjust_head,
    macros::map,
    maps::PerCpuArray,
    programs::XdpContext,
};
use lb_common::maps::{BenchFrame, BENCH_FRAME_MAX};

use crate::parse::{read, write};

/// Private to the program, never pinned; the bench arms it before each call.
#[map]
static LB_BENCH_FRAME: PerCpuArray<BenchFrame> = PerCpuArray::with_max_entries(1, 0);

/// Frames are copied a 64-bit word at a time.
const WORD: usize = 8;

/// A word's offset in `BenchFrame::frame`, bounded where the verifier can see it.
#[inline(always)]
fn word_at(at: usize) -> usize {
    if at > BENCH_FRAME_MAX - WORD {
        BENCH_FRAME_MAX - WORD
    } else {
        at
    }
}

/// Run `run` on the frame, then put the frame back as it came.
/// The save and the restore are out of line and take the raw context, so that nothing of
/// theirs is on the stack while `run` (whose call chain already nearly fills the 512-byte
/// BPF stack) runs, and the compiler cannot hand them the frame's bounds as bare pointers
/// (which it then shifts, and the verifier refuses).
#[inline(always)]
pub fn timed(ctx: &XdpContext, run: impl FnOnce(&XdpContext) -> u32) -> u32 {
    if !saved(ctx.ctx) {
        return XDP_DROP;
    }
    let action = run(ctx);
    if !restored(ctx.ctx) {
        return XDP_DROP;
    }
    action
}

/// The first repetition of a call saves its frame.
#[inline(never)]
fn saved(raw: *mut xdp_md) -> bool {
    let ctx = XdpContext::new(raw);
    let Some(saved) = LB_BENCH_FRAME.get_ptr_mut(0) else { return false };
    // SAFETY: per-CPU map value; only this program on this CPU uses it now.
    let saved = unsafe { &mut *saved };
    saved.len != 0 || save(&ctx, saved)
}

#[inline(never)]
fn restored(raw: *mut xdp_md) -> bool {
    let ctx = XdpContext::new(raw);
    let Some(saved) = LB_BENCH_FRAME.get_ptr_mut(0) else { return false };
    // SAFETY: as in `saved`.
    restore(&ctx, unsafe { &mut *saved })
}

/// Copy the frame (up to `BENCH_FRAME_MAX` bytes) into `saved`.
#[inline(always)]
fn save(ctx: &XdpContext, saved: &mut BenchFrame) -> bool {
    let len = ctx.data_end() - ctx.data();
    if !(WORD..=BENCH_FRAME_MAX).contains(&len) {
        return false;
    }
    let mut off = 0;
    while off + WORD <= BENCH_FRAME_MAX {
        // The last word may reach past the frame: then it overlaps the one before.
        let at = if off + WORD > len { len - WORD } else { off };
        let Some(w) = read::<u64>(ctx, at) else { return false };
        // SAFETY: at + WORD <= len <= BENCH_FRAME_MAX (`word_at` shows the verifier).
        unsafe { (saved.frame.as_mut_ptr().add(word_at(at)) as *mut u64).write_unaligned(w) };
        off += WORD;
        if off >= len {
            break;
        }
    }
    saved.len = len as u32;
    true
}

/// Undo the run: the frame's start back where it was (encapsulation moves it), its bytes
/// as saved, with the varied word counted up for the next repetition.
#[inline(always)]
fn restore(ctx: &XdpContext, saved: &mut BenchFrame) -> bool {
    let now = ctx.data_end() - ctx.data();
    let was = saved.len as usize;
    // SAFETY: the helper checks its own bounds. (The difference is taken in usize: the
    // verifier refuses the shifts a signed 32-bit difference of the two pointers compiles to.)
    if now != was && unsafe { bpf_xdp_adjust_head(ctx.ctx, now.wrapping_sub(was) as i32) } != 0 {
        return false;
    }
    // The next repetition gets the varied frame.
    vary(saved);
    let len = saved.len as usize;
    if !(WORD..=BENCH_FRAME_MAX).contains(&len) {
        return false;
    }
    let mut off = 0;
    while off + WORD <= BENCH_FRAME_MAX {
        let at = if off + WORD > len { len - WORD } else { off };
        // SAFETY: as in `save`.
        let w = unsafe { (saved.frame.as_ptr().add(word_at(at)) as *const u64).read_unaligned() };
        if write::<u64>(ctx, at, w).is_none() {
            return false;
        }
        off += WORD;
        if off >= len {
            break;
        }
    }
    true
}

#[inline(always)]
fn vary(saved: &mut BenchFrame) {
    // The mask bounds the offset for the verifier (a map value is unbounded to it).
    let at = saved.vary_at as usize & (BENCH_FRAME_MAX - 1);
    if at == 0 || at > BENCH_FRAME_MAX - 4 {
        return;
    }
    // SAFETY: at + 4 <= BENCH_FRAME_MAX.
    unsafe {
        let word = saved.frame.as_mut_ptr().add(at) as *mut u32;
        word.write_unaligned(u32::from_be(word.read_unaligned()).wrapping_add(1).to_be());
    }
}

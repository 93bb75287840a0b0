//! The tunnel object, apart from the balancer's: `lb decap`'s XDP program, which strips the
//! IPIP/GUE header of packets to this host's decap addresses (`decap`), and the balancer's
//! tc egress program, which sends health checks of encapsulating services through the
//! tunnel the way the traffic goes (`check`). Its maps are small and private to whoever
//! loads it (nothing is pinned): a backend running `lb decap` holds no balancer state.
#![no_std]
#![no_main]
#![allow(clippy::needless_borrows_for_generic_args)]

mod check;
mod decap;
mod maps;
mod packet;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Unreachable: the verifier rejects programs that could get here.
    loop {}
}

//! Shared between the XDP program (`lb-ebpf`, no_std) and the userspace crates.
//!
//! Everything here is either a map layout (`#[repr(C)]`, no implicit padding, so both sides
//! agree byte for byte) or pure logic that both sides must compute identically: the flow
//! hash that picks a ring slot, the Maglev table, incremental checksum arithmetic.
#![cfg_attr(not(any(feature = "std", test)), no_std)]

pub mod abi;
pub mod consts;
pub mod csum;
pub mod encap;
pub mod hash;
pub mod maps;
pub mod ratelimit;
pub mod reason;
pub mod track;
pub mod tunnel;

#[cfg(any(feature = "std", test))]
pub mod addr;
#[cfg(any(feature = "std", test))]
pub mod maglev;
#[cfg(any(feature = "std", test))]
pub mod sequence;

//! Internet checksum arithmetic (RFC 1071) and incremental updates (RFC 1624, eqn. 3).
//!
//! Ones'-complement addition does not care about byte order as long as every operand is
//! read the same way, so the data path reads checksum fields, ports and addresses natively
//! from the packet and never swaps bytes.

/// Fold a 32-bit accumulator into 16 bits with end-around carry.
#[inline(always)]
pub const fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// New checksum after one 16-bit word of the covered data changed from `old` to `new`.
/// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m').
#[inline(always)]
pub const fn replace16(check: u16, old: u16, new: u16) -> u16 {
    !fold((!check) as u32 + (!old) as u32 + new as u32)
}

/// As `replace16`, for a 32-bit field (two words).
#[inline(always)]
pub const fn replace32(check: u16, old: u32, new: u32) -> u16 {
    let sum = (!check) as u32
        + (!(old as u16)) as u32
        + (!((old >> 16) as u16)) as u32
        + (new & 0xffff)
        + (new >> 16);
    !fold(sum)
}

/// As `replace16`, for an IPv6 address (eight words).
#[inline(always)]
pub const fn replace128(check: u16, old: &[u32; 4], new: &[u32; 4]) -> u16 {
    let c = replace32(check, old[0], new[0]);
    let c = replace32(c, old[1], new[1]);
    let c = replace32(c, old[2], new[2]);
    replace32(c, old[3], new[3])
}

/// UDP over IPv4 may carry no checksum (0): it stays 0. A computed 0 is sent as 0xffff,
/// because 0 on the wire means "no checksum" (RFC 768).
#[inline(always)]
pub const fn udp_fixup(old_check: u16, new_check: u16) -> u16 {
    if old_check == 0 {
        0
    } else if new_check == 0 {
        0xffff
    } else {
        new_check
    }
}

/// Ones'-complement sum of a byte slice as native-order 16-bit words (host side: tests,
/// packet builders). The checksum itself is `!fold(sum)`.
#[cfg(any(feature = "std", test))]
pub fn sum_bytes(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc = fold(acc + u16::from_ne_bytes([c[0], c[1]]) as u32) as u32;
    }
    if let [last] = chunks.remainder() {
        acc = fold(acc + u16::from_ne_bytes([*last, 0]) as u32) as u32;
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn full(data: &[u8]) -> u16 {
        !fold(sum_bytes(data, 0))
    }

    fn read_u32(d: &[u8], at: usize) -> u32 {
        u32::from_ne_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]])
    }

    /// Checksum over a pseudo-header-like prefix plus the body, placed at `at`.
    fn with_check(mut d: Vec<u8>, at: usize) -> Vec<u8> {
        d[at] = 0;
        d[at + 1] = 0;
        let c = full(&d);
        d[at..at + 2].copy_from_slice(&c.to_ne_bytes());
        d
    }

    fn check_at(d: &[u8], at: usize) -> u16 {
        u16::from_ne_bytes([d[at], d[at + 1]])
    }

    proptest! {
        // A 32-bit field rewritten anywhere in random data: incremental == recomputed.
        #[test]
        fn replace32_equals_full_recomputation(
            body in proptest::collection::vec(any::<u8>(), 24..200),
            field in 0usize..5, new in any::<u32>()
        ) {
            let d = with_check(body, 2);
            let at = 4 + field * 4;
            let old = read_u32(&d, at);
            let inc = replace32(check_at(&d, 2), old, new);
            let mut e = d.clone();
            e[at..at + 4].copy_from_slice(&new.to_ne_bytes());
            let e = with_check(e, 2);
            prop_assert_eq!(inc, check_at(&e, 2));
        }

        #[test]
        fn replace16_and_replace128_equal_full_recomputation(
            body in proptest::collection::vec(any::<u8>(), 40..200),
            port in any::<u16>(), addr in any::<[u32; 4]>()
        ) {
            let d = with_check(body, 0);
            let old_port = u16::from_ne_bytes([d[2], d[3]]);
            let old_addr = [read_u32(&d, 4), read_u32(&d, 8), read_u32(&d, 12), read_u32(&d, 16)];
            let inc = replace128(replace16(check_at(&d, 0), old_port, port), &old_addr, &addr);
            let mut e = d.clone();
            e[2..4].copy_from_slice(&port.to_ne_bytes());
            for (i, w) in addr.iter().enumerate() {
                e[4 + i * 4..8 + i * 4].copy_from_slice(&w.to_ne_bytes());
            }
            let e = with_check(e, 0);
            prop_assert_eq!(inc, check_at(&e, 0));
        }
    }

    #[test]
    fn udp_without_checksum_stays_without() {
        assert_eq!(udp_fixup(0, 0x1234), 0);
        assert_eq!(udp_fixup(0x1111, 0), 0xffff);
        assert_eq!(udp_fixup(0x1111, 0x2222), 0x2222);
    }
}

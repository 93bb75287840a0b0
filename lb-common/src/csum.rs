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
    let sum = (!check) as u32 + (!(old as u16)) as u32 + (!((old >> 16) as u16)) as u32 + (new & 0xffff) + (new >> 16);
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

/// Whole packets: an IPv4 header and a TCP or UDP segment with random addresses, ports and
/// payload, rewritten the way nat does it (both addresses and both ports), incrementally,
/// compared with checksums computed from scratch over the rewritten packet.
#[cfg(test)]
mod packet_tests {
    use super::*;
    use proptest::prelude::*;

    struct Packet {
        ip: [u8; 20],
        l4: Vec<u8>,
        udp: bool,
    }

    fn be_sum(data: &[u8], mut acc: u32) -> u32 {
        for c in data.chunks(2) {
            acc += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32;
        }
        acc
    }

    fn be_check(data: &[u8], acc: u32) -> u16 {
        let mut s = be_sum(data, acc);
        while s >> 16 != 0 {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }

    impl Packet {
        fn new(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, udp: bool, payload: &[u8]) -> Self {
            let mut ip = [0u8; 20];
            ip[0] = 0x45;
            let l4_len = if udp { 8 } else { 20 } + payload.len();
            ip[2..4].copy_from_slice(&((20 + l4_len) as u16).to_be_bytes());
            ip[8] = 64;
            ip[9] = if udp { 17 } else { 6 };
            ip[12..16].copy_from_slice(&src);
            ip[16..20].copy_from_slice(&dst);
            let mut l4 = vec![0u8; if udp { 8 } else { 20 }];
            l4[0..2].copy_from_slice(&sport.to_be_bytes());
            l4[2..4].copy_from_slice(&dport.to_be_bytes());
            if udp {
                l4[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
            } else {
                l4[12] = 5 << 4;
            }
            l4.extend_from_slice(payload);
            let mut p = Packet { ip, l4, udp };
            p.fill_checksums();
            p
        }

        fn check_at(&self) -> usize {
            if self.udp {
                6
            } else {
                16
            }
        }

        /// From scratch: IP header checksum, and L4 over the pseudo-header.
        fn fill_checksums(&mut self) {
            self.ip[10..12].copy_from_slice(&[0, 0]);
            let c = be_check(&self.ip, 0);
            self.ip[10..12].copy_from_slice(&c.to_be_bytes());
            let at = self.check_at();
            self.l4[at..at + 2].copy_from_slice(&[0, 0]);
            let mut pseudo = Vec::new();
            pseudo.extend_from_slice(&self.ip[12..20]);
            pseudo.extend_from_slice(&[0, self.ip[9]]);
            pseudo.extend_from_slice(&(self.l4.len() as u16).to_be_bytes());
            let mut c = be_check(&self.l4, be_sum(&pseudo, 0));
            if self.udp && c == 0 {
                c = 0xffff;
            }
            self.l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
        }

        fn word(b: &[u8], at: usize) -> u32 {
            u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
        }

        fn half(b: &[u8], at: usize) -> u16 {
            u16::from_ne_bytes([b[at], b[at + 1]])
        }

        /// The data path's sequence (lb-ebpf rewrite.rs): native reads, RFC 1624 updates.
        fn nat_incrementally(&mut self, src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) {
            let (old_src, old_dst) = (Self::word(&self.ip, 12), Self::word(&self.ip, 16));
            let (new_src, new_dst) = (u32::from_ne_bytes(src), u32::from_ne_bytes(dst));
            let ip_check = replace32(replace32(Self::half(&self.ip, 10), old_src, new_src), old_dst, new_dst);
            self.ip[10..12].copy_from_slice(&ip_check.to_ne_bytes());
            self.ip[12..16].copy_from_slice(&src);
            self.ip[16..20].copy_from_slice(&dst);
            let at = self.check_at();
            let old_check = Self::half(&self.l4, at);
            let (new_sport, new_dport) = (sport.to_be(), dport.to_be());
            let mut c = replace32(replace32(old_check, old_src, new_src), old_dst, new_dst);
            c = replace16(c, Self::half(&self.l4, 0), new_sport);
            c = replace16(c, Self::half(&self.l4, 2), new_dport);
            if self.udp {
                c = udp_fixup(old_check, c);
            }
            self.l4[0..2].copy_from_slice(&new_sport.to_ne_bytes());
            self.l4[2..4].copy_from_slice(&new_dport.to_ne_bytes());
            self.l4[at..at + 2].copy_from_slice(&c.to_ne_bytes());
        }
    }

    /// An ICMP error (destination unreachable) quoting `quoted`: the message, checksummed
    /// from scratch (ICMP over IPv4 has no pseudo-header).
    fn icmp_error(quoted: &[u8]) -> Vec<u8> {
        let mut msg = vec![3, 3, 0, 0, 0, 0, 0, 0];
        msg.extend_from_slice(quoted);
        let c = be_check(&msg, 0);
        msg[2..4].copy_from_slice(&c.to_be_bytes());
        msg
    }

    fn whole(p: &Packet) -> Vec<u8> {
        [&p.ip[..], &p.l4[..]].concat()
    }

    /// The data path's sequence for a quote (lb-ebpf icmp.rs `translate`): every changed
    /// word of the quote, and the quote's own checksums, folded into the ICMP checksum.
    fn translate_quote(msg: &mut [u8], udp: bool, src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) {
        let (ip, l4) = (8, 28);
        let check_off = l4 + if udp { 6 } else { 16 };
        let (old_src, old_dst) = (Packet::word(msg, ip + 12), Packet::word(msg, ip + 16));
        let (new_src, new_dst) = (u32::from_ne_bytes(src), u32::from_ne_bytes(dst));
        let (old_sport, old_dport) = (Packet::half(msg, l4), Packet::half(msg, l4 + 2));
        let (new_sport, new_dport) = (sport.to_be(), dport.to_be());
        let mut icmp = Packet::half(msg, 2);
        if check_off + 2 <= msg.len() {
            let old = Packet::half(msg, check_off);
            let mut c = replace32(replace32(old, old_src, new_src), old_dst, new_dst);
            c = replace16(replace16(c, old_sport, new_sport), old_dport, new_dport);
            if udp {
                c = udp_fixup(old, c);
            }
            msg[check_off..check_off + 2].copy_from_slice(&c.to_ne_bytes());
            icmp = replace16(icmp, old, c);
        }
        msg[l4..l4 + 2].copy_from_slice(&new_sport.to_ne_bytes());
        msg[l4 + 2..l4 + 4].copy_from_slice(&new_dport.to_ne_bytes());
        icmp = replace16(replace16(icmp, old_sport, new_sport), old_dport, new_dport);
        icmp = replace32(replace32(icmp, old_src, new_src), old_dst, new_dst);
        let old = Packet::half(msg, ip + 10);
        let c = replace32(replace32(old, old_src, new_src), old_dst, new_dst);
        msg[ip + 10..ip + 12].copy_from_slice(&c.to_ne_bytes());
        msg[ip + 12..ip + 16].copy_from_slice(&src);
        msg[ip + 16..ip + 20].copy_from_slice(&dst);
        icmp = replace16(icmp, old, c);
        msg[2..4].copy_from_slice(&icmp.to_ne_bytes());
    }

    proptest! {
        // Quotes of every length from the 8 bytes of L4 that RFC 792 promises to the whole
        // packet: with the quoted L4 checksum inside the quote or not.
        #[test]
        fn icmp_quote_translation_checksums_equal_a_full_recomputation(
            src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(), sport in any::<u16>(), dport in any::<u16>(),
            nsrc in any::<[u8; 4]>(), ndst in any::<[u8; 4]>(), nsport in any::<u16>(), ndport in any::<u16>(),
            udp in any::<bool>(), payload in proptest::collection::vec(any::<u8>(), 0..100), cut in any::<usize>()
        ) {
            let before = Packet::new(src, dst, sport, dport, udp, &payload);
            let after = Packet::new(nsrc, ndst, nsport, ndport, udp, &payload);
            let (old, new) = (whole(&before), whole(&after));
            let quote = 28 + cut % (old.len() - 28 + 1);
            let mut inc = icmp_error(&old[..quote]);
            translate_quote(&mut inc, udp, nsrc, ndst, nsport, ndport);
            // A quote that ends inside the L4 checksum keeps the half it has: the data path
            // updates the field only when it is whole (receivers do not check it anyway).
            let mut want = new[..quote].to_vec();
            let check_at = 20 + if udp { 6 } else { 16 };
            if quote == check_at + 1 {
                want[check_at] = old[check_at];
            }
            prop_assert_eq!(inc, icmp_error(&want));
        }

        #[test]
        fn nat_rewrite_checksums_equal_a_full_recomputation(
            src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(), sport in any::<u16>(), dport in any::<u16>(),
            nsrc in any::<[u8; 4]>(), ndst in any::<[u8; 4]>(), nsport in any::<u16>(), ndport in any::<u16>(),
            udp in any::<bool>(), payload in proptest::collection::vec(any::<u8>(), 0..300)
        ) {
            let mut inc = Packet::new(src, dst, sport, dport, udp, &payload);
            inc.nat_incrementally(nsrc, ndst, nsport, ndport);
            let full = Packet::new(nsrc, ndst, nsport, ndport, udp, &payload);
            prop_assert_eq!(inc.ip, full.ip, "IPv4 header");
            prop_assert_eq!(&inc.l4, &full.l4, "L4 segment");
        }
    }
}

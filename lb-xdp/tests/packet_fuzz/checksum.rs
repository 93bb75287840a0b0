//! Checksums as a receiver verifies them and a sender writes them, computed here from the
//! frame's own bytes (RFC 1071 over the real pseudo-header) and never with the data path's
//! incremental arithmetic: an `XDP_TX` frame is judged by what a peer's stack would accept.

/// Where a frame's IP packet starts: after Ethernet and at most one 802.1Q/802.1ad tag.
pub fn l3_offset(frame: &[u8]) -> Option<(usize, u16)> {
    let ethertype = be16(frame, 12)?;
    if ethertype == 0x8100 || ethertype == 0x88a8 {
        return Some((18, be16(frame, 16)?));
    }
    Some((14, ethertype))
}

pub fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Ones'-complement sum of big-endian words, folded to 16 bits.
fn sum(data: &[u8], mut acc: u64) -> u16 {
    for pair in data.chunks(2) {
        acc += u64::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
    }
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The parts of a frame a checksum covers, as its own headers claim them.
struct Covered {
    /// IPv4 header (None for IPv6, which has no header checksum).
    ip_header: Option<std::ops::Range<usize>>,
    /// Transport bytes, with the pseudo-header's sum, the checksum's offset inside them and
    /// whether 0 means "no checksum" (UDP over IPv4).
    l4: Option<(std::ops::Range<usize>, u64, usize, bool)>,
}

fn covered(frame: &[u8]) -> Option<Covered> {
    let (l3, ethertype) = l3_offset(frame)?;
    match ethertype {
        0x0800 => {
            let hlen = usize::from(*frame.get(l3)? & 0x0f) * 4;
            let total = usize::from(be16(frame, l3 + 2)?);
            if *frame.get(l3)? >> 4 != 4 || hlen < 20 || total < hlen || l3 + total > frame.len() {
                return None;
            }
            let fragment = be16(frame, l3 + 6)? & 0x3fff != 0;
            let proto = frame[l3 + 9];
            let len = total - hlen;
            let pseudo = u64::from(sum(&frame[l3 + 12..l3 + 20], 0)) + u64::from(proto) + len as u64;
            let l4 = (!fragment).then(|| transport(proto, l3 + hlen..l3 + total, pseudo, true)).flatten();
            Some(Covered { ip_header: Some(l3..l3 + hlen), l4 })
        }
        0x86dd => {
            let len = usize::from(be16(frame, l3 + 4)?);
            if l3 + 40 + len > frame.len() {
                return None;
            }
            let next = frame[l3 + 6];
            let pseudo = u64::from(sum(&frame[l3 + 8..l3 + 40], 0)) + u64::from(next) + len as u64;
            // Extension headers are not walked: only a transport header right after the
            // IPv6 header is judged.
            Some(Covered { ip_header: None, l4: transport(next, l3 + 40..l3 + 40 + len, pseudo, false) })
        }
        _ => None,
    }
}

fn transport(
    proto: u8,
    span: std::ops::Range<usize>,
    pseudo: u64,
    v4: bool,
) -> Option<(std::ops::Range<usize>, u64, usize, bool)> {
    let (check_at, min, with_pseudo) = match proto {
        6 => (16, 20, true),
        17 => (6, 8, true),
        1 if v4 => (2, 8, false),
        58 if !v4 => (2, 8, true),
        _ => return None,
    };
    if span.len() < min {
        return None;
    }
    Some((span, if with_pseudo { pseudo } else { 0 }, check_at, proto == 17 && v4))
}

/// What a receiver would say of a frame's checksums: `None` where it makes no claim (not
/// IP, lengths that do not fit, a fragment's or an unknown transport).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub ip_header: Option<bool>,
    pub l4: Option<bool>,
}

pub fn verify(frame: &[u8]) -> Verdict {
    let Some(c) = covered(frame) else { return Verdict { ip_header: None, l4: None } };
    let ip_header = c.ip_header.map(|r| sum(&frame[r], 0) == 0xffff);
    let l4 = c.l4.map(|(span, pseudo, check_at, zero_means_none)| {
        let check = be16(frame, span.start + check_at).unwrap_or(0);
        (zero_means_none && check == 0) || sum(&frame[span], pseudo) == 0xffff
    });
    Verdict { ip_header, l4 }
}

/// Write every checksum the frame's headers claim, as its sender would have: a mutated
/// frame then reaches the data path's later checks instead of only its length checks.
pub fn fix(frame: &mut [u8]) {
    let Some(c) = covered(frame) else { return };
    if let Some(r) = c.ip_header {
        frame[r.start + 10..r.start + 12].fill(0);
        let s = !sum(&frame[r.clone()], 0);
        frame[r.start + 10..r.start + 12].copy_from_slice(&s.to_be_bytes());
    }
    if let Some((span, pseudo, check_at, zero_means_none)) = c.l4 {
        let at = span.start + check_at;
        if zero_means_none && frame[at..at + 2] == [0, 0] {
            return;
        }
        frame[at..at + 2].fill(0);
        let mut s = !sum(&frame[span], pseudo);
        if zero_means_none && s == 0 {
            s = 0xffff;
        }
        frame[at..at + 2].copy_from_slice(&s.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_xdp::testkit::packet::{Pkt, SYN};

    #[test]
    fn built_frames_verify_and_a_flipped_byte_does_not() {
        for p in [Pkt::tcp("10.0.0.1:5", "10.0.0.2:80", SYN), Pkt::udp("[fd00::1]:5", "[fd00::2]:53")] {
            let mut f = p.bytes();
            assert!(verify(&f).l4 == Some(true) && verify(&f).ip_header != Some(false), "{p:?}");
            let last = f.len() - 1;
            f[last] ^= 0x40;
            assert_eq!(verify(&f).l4, Some(false));
            fix(&mut f);
            assert_eq!(verify(&f).l4, Some(true));
        }
    }
}

//! Reading the frames the data path sends: where a forwarded frame goes and where it says
//! it comes from, as its IP and TCP/UDP headers say after the rewrite (a nat frame's
//! destination is the backend it was sent to, its source the SNAT address and port).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Where a frame goes: its IP destination and TCP/UDP destination port.
pub fn destination(frame: &[u8]) -> SocketAddr {
    endpoints(frame).1
}

/// Where a frame says it comes from: its IP source and TCP/UDP source port.
pub fn source(frame: &[u8]) -> SocketAddr {
    endpoints(frame).0
}

/// (source, destination) of an Ethernet frame (one VLAN tag at most) carrying IPv4, with
/// or without options, or IPv6 without extension headers.
fn endpoints(frame: &[u8]) -> (SocketAddr, SocketAddr) {
    let word = |at: usize| u16::from_be_bytes([frame[at], frame[at + 1]]);
    assert!(frame.len() >= 14, "not an Ethernet frame: {} bytes", frame.len());
    let (ethertype, l3) = if word(12) == 0x8100 { (word(16), 18) } else { (word(12), 14) };
    let (src, dst, l4): (IpAddr, IpAddr, usize) = match ethertype {
        0x0800 => {
            let at = |o: usize| -> [u8; 4] { frame[l3 + o..l3 + o + 4].try_into().unwrap() };
            let ihl = (frame[l3] & 0x0f) as usize * 4;
            (Ipv4Addr::from(at(12)).into(), Ipv4Addr::from(at(16)).into(), l3 + ihl)
        }
        0x86dd => {
            let at = |o: usize| -> [u8; 16] { frame[l3 + o..l3 + o + 16].try_into().unwrap() };
            (Ipv6Addr::from(at(8)).into(), Ipv6Addr::from(at(24)).into(), l3 + 40)
        }
        other => panic!("not an IP frame: ethertype {other:#06x}"),
    };
    assert!(frame.len() >= l4 + 4, "the frame ends before its ports: {} bytes", frame.len());
    (SocketAddr::new(src, word(l4)), SocketAddr::new(dst, word(l4 + 2)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::packet::{Pkt, SYN};

    fn read(p: &Pkt) -> (String, String) {
        let f = p.bytes();
        (source(&f).to_string(), destination(&f).to_string())
    }

    #[test]
    fn ipv4_and_ipv6_frames_name_their_ends() {
        let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(read(&Pkt::tcp("10.1.2.3:4000", "10.9.8.7:80", SYN)), pair("10.1.2.3:4000", "10.9.8.7:80"));
        assert_eq!(read(&Pkt::udp("[fd00::1]:53000", "[fd00::2]:53")), pair("[fd00::1]:53000", "[fd00::2]:53"));
    }

    #[test]
    fn ipv4_options_and_a_vlan_tag_move_the_ports() {
        let mut p = Pkt::tcp("10.1.2.3:4000", "10.9.8.7:80", SYN);
        p.ip_options = vec![1; 8];
        p.vlan = Some(7);
        assert_eq!(read(&p), ("10.1.2.3:4000".to_string(), "10.9.8.7:80".to_string()));
    }
}

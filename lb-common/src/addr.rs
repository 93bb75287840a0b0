//! Socket addresses in the data path's layout: addresses and ports in network byte order,
//! exactly as they sit in packets (`crate::maps`).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::consts::{FAMILY_V4, FAMILY_V6};
use crate::maps::{VipAddrKey, VipKey};

pub fn ip_words(ip: IpAddr) -> ([u32; 4], u8) {
    match ip {
        IpAddr::V4(v4) => ([u32::from_ne_bytes(v4.octets()), 0, 0, 0], FAMILY_V4),
        IpAddr::V6(v6) => {
            let o = v6.octets();
            let w = |i: usize| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            ([w(0), w(4), w(8), w(12)], FAMILY_V6)
        }
    }
}

pub fn words_ip(words: &[u32; 4], family: u8) -> IpAddr {
    if family == FAMILY_V4 {
        IpAddr::V4(Ipv4Addr::from(words[0].to_ne_bytes()))
    } else {
        let mut o = [0u8; 16];
        for (i, w) in words.iter().enumerate() {
            o[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
        }
        IpAddr::V6(Ipv6Addr::from(o))
    }
}

/// A port as the data path stores it (network order, read natively).
pub fn port_be(port: u16) -> u16 {
    port.to_be()
}

pub fn port_host(port_be: u16) -> u16 {
    u16::from_be(port_be)
}

pub fn socket(words: &[u32; 4], port_be: u16, family: u8) -> SocketAddr {
    SocketAddr::new(words_ip(words, family), port_host(port_be))
}

pub fn vip_key(vip: SocketAddr, proto: u8) -> VipKey {
    let (addr, family) = ip_words(vip.ip());
    VipKey { addr, port: port_be(vip.port()), proto, family }
}

pub fn vip_addr_key(ip: IpAddr) -> VipAddrKey {
    let (addr, family) = ip_words(ip);
    VipAddrKey { addr, family, _pad: [0; 3] }
}

pub fn proto_name(proto: u8) -> &'static str {
    match proto {
        crate::consts::PROTO_TCP => "tcp",
        crate::consts::PROTO_UDP => "udp",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_in_packet_layout() {
        for s in ["172.20.0.11:80", "[fd00:20::11]:8080"] {
            let a: SocketAddr = s.parse().unwrap();
            let (w, f) = ip_words(a.ip());
            assert_eq!(socket(&w, port_be(a.port()), f), a);
        }
        // 172.20.0.11 as bytes on the wire: ac 14 00 0b.
        let (w, _) = ip_words("172.20.0.11".parse().unwrap());
        assert_eq!(w[0].to_ne_bytes(), [0xac, 0x14, 0x00, 0x0b]);
        assert_eq!(port_be(80).to_ne_bytes(), [0, 80]);
    }
}

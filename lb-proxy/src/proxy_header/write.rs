//! Writing the header the proxy puts before the client's bytes on a backend connection:
//! the PROXY command, TCP, the client's address and port and the address it reached.
use std::net::{IpAddr, SocketAddr};

use super::V2_SIGNATURE;
use lb_config::ProxyHeaderVersion;

/// The header for a connection from `source` to `destination`. Both are written in one
/// family: when they differ (an IPv4 client relayed to an IPv6 VIP by a front balancer),
/// the IPv4 one as IPv4-mapped IPv6.
pub fn encode(version: ProxyHeaderVersion, source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let (source, destination) = same_family(source, destination);
    match version {
        ProxyHeaderVersion::V1 => v1(source, destination),
        ProxyHeaderVersion::V2 => v2(source, destination),
    }
}

fn same_family(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    if a.is_ipv4() == b.is_ipv4() {
        return (a, b);
    }
    let v6 = |s: SocketAddr| match s.ip() {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), s.port()),
        IpAddr::V6(_) => s,
    };
    (v6(a), v6(b))
}

fn v1(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let proto = if source.is_ipv4() { "TCP4" } else { "TCP6" };
    format!("PROXY {proto} {} {} {} {}\r\n", source.ip(), destination.ip(), source.port(), destination.port())
        .into_bytes()
}

/// Version 2, command PROXY (0x21), family INET or INET6 with STREAM (0x11, 0x21).
fn v2(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 36);
    out.extend_from_slice(&V2_SIGNATURE);
    out.push(0x21);
    let (family, addresses): (u8, Vec<u8>) = match (source.ip(), destination.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => (0x11, [s.octets(), d.octets()].concat()),
        (IpAddr::V6(s), IpAddr::V6(d)) => (0x21, [s.octets(), d.octets()].concat()),
        // `same_family` made them one family.
        (s, d) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
                IpAddr::V6(v6) => v6.octets(),
            };
            (0x21, [v6(s), v6(d)].concat())
        }
    };
    out.push(family);
    let len = (addresses.len() + 4) as u16;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&addresses);
    out.extend_from_slice(&source.port().to_be_bytes());
    out.extend_from_slice(&destination.port().to_be_bytes());
    out
}

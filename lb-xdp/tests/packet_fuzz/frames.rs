//! The fuzz's frames: well-formed traffic of a few clients and the backends (SYNs, segments,
//! replies, ICMP errors quoting real flows, to VIPs and elsewhere), then bent the ways a
//! hostile or broken sender bends them (VLAN tags, IP options, IPv6 extension headers,
//! fragments, lengths and header fields that lie, truncation, flipped bytes), and some pure
//! noise. Deterministic for a seed.
use std::net::{IpAddr, SocketAddr};

use lb_xdp::testkit::packet::{server_mac, IcmpPkt, Pkt, ACK, FIN, LB_MAC, RST, SYN, TCP, UDP};

use super::checksum::{fix, l3_offset};
use super::owners::{BackendSide, Owners};

/// xorshift64*: small, fast and the same everywhere, so a seed replays a failure.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// A service of the harness's config, as clients reach it.
#[derive(Clone, Copy)]
pub struct Vip {
    pub addr: &'static str,
    pub proto: u8,
}

/// The harness config's services (lb_xdp::testkit::harness::CONFIG): nat and dsr, IPv4 and
/// IPv6, TCP and UDP, and the seed's service on the LB's own address (also the SNAT one).
pub const VIPS: [Vip; 6] = [
    Vip { addr: "172.20.0.100:80", proto: TCP },
    Vip { addr: "[fd00:20::100]:80", proto: TCP },
    Vip { addr: "172.20.0.100:53", proto: UDP },
    Vip { addr: "172.20.0.101:80", proto: TCP },
    Vip { addr: "[fd00:20::101]:80", proto: TCP },
    Vip { addr: "172.20.0.10:8080", proto: TCP },
];

/// Addresses that are no VIP: another host, the LB itself on a port nothing serves, a
/// VIP address on a port no service has.
const ELSEWHERE: [&str; 4] = ["172.20.0.12:80", "172.20.0.10:22", "172.20.0.100:443", "[fd00:20::100]:22"];

pub const CLIENTS: u8 = 8;

/// Client `i`'s address (IPv4 or IPv6, as the VIP is) and its own MAC, so a reply sent to
/// the wrong client's MAC shows as well as one sent to the wrong address.
pub fn client(i: u8, v6: bool, port: u16) -> SocketAddr {
    let ip: IpAddr =
        if v6 { format!("fd00:77::{}", i + 1).parse().unwrap() } else { format!("10.77.0.{}", i + 1).parse().unwrap() };
    SocketAddr::new(ip, port)
}

pub fn client_mac(i: u8) -> [u8; 6] {
    [0x02, 0xcc, 0, 0, 0, i + 1]
}

fn snat_address(v6: bool) -> IpAddr {
    if v6 {
        "fd00:20::10".parse().unwrap()
    } else {
        "172.20.0.10".parse().unwrap()
    }
}

/// The backends of the config's nat services, with their ports.
const NAT_BACKENDS: [&str; 9] = [
    "172.20.0.11:80",
    "172.20.0.12:80",
    "172.20.0.13:80",
    "[fd00:20::11]:80",
    "[fd00:20::12]:80",
    "[fd00:20::13]:80",
    "172.20.0.11:53",
    "172.20.0.12:53",
    "172.20.0.13:8080",
];

/// Builds one frame after another.
pub struct Frames {
    pub rng: Rng,
    pub snat_ports: (u16, u16),
}

/// One frame and what was done to it (printed when a check fails).
pub struct Frame {
    pub bytes: Vec<u8>,
    pub what: String,
}

impl Frames {
    pub fn next(&mut self, owners: &Owners) -> Frame {
        let (mut bytes, mut what) = match self.rng.below(100) {
            0..=34 => self.client_frame(),
            35..=59 => self.backend_reply(owners),
            60..=69 => self.icmp_error(owners),
            70..=79 => self.elsewhere(),
            80..=94 => self.client_frame_bent(),
            _ => self.noise(),
        };
        self.mutate(&mut bytes, &mut what);
        Frame { bytes, what }
    }

    fn port(&mut self) -> u16 {
        40000 + self.rng.below(64) as u16
    }

    fn flags(&mut self) -> u8 {
        *self.rng.pick(&[SYN, SYN, SYN, ACK, ACK, ACK | FIN, RST, ACK | RST, SYN | ACK, 0, 0xff])
    }

    /// A client's packet to a service: the flows the fuzz opens and goes on using.
    fn client_packet(&mut self) -> (Pkt, String) {
        let vip = *self.rng.pick(&VIPS);
        let dst: SocketAddr = vip.addr.parse().unwrap();
        let i = self.rng.below(CLIENTS as usize) as u8;
        let src = client(i, dst.is_ipv6(), self.port());
        let mut p = if vip.proto == TCP {
            Pkt::tcp(&src.to_string(), vip.addr, self.flags())
        } else {
            Pkt::udp(&src.to_string(), vip.addr)
        };
        p.src_mac = client_mac(i);
        p.payload = vec![b'x'; self.rng.below(64)];
        let what = format!("client {src} -> {} proto {} flags {:#x}", vip.addr, p.proto, p.tcp_flags);
        (p, what)
    }

    fn client_frame(&mut self) -> (Vec<u8>, String) {
        let (p, what) = self.client_packet();
        (p.bytes(), what)
    }

    /// A client's packet with a VLAN tag, IP options or IPv6 extension headers, or whose
    /// length fields, IHL, data offset or fragment bits lie.
    fn client_frame_bent(&mut self) -> (Vec<u8>, String) {
        let (mut p, mut what) = self.client_packet();
        if self.rng.chance(30) {
            p.vlan = Some(self.rng.next() as u16 & 0x0fff);
            what += ", VLAN";
        }
        if p.dst.is_ipv4() && self.rng.chance(40) {
            let words = 1 + self.rng.below(10);
            // NOPs, an end-of-list, or noise: IHL up to 15 words.
            p.ip_options = (0..words * 4)
                .map(|_| {
                    let noise = self.rng.next() as u8;
                    *self.rng.pick(&[1u8, 0, noise])
                })
                .collect();
            what += &format!(", {} bytes of IP options", words * 4);
        }
        let mut b = p.bytes();
        let Some((l3, _)) = l3_offset(&b) else { return (b, what) };
        if p.dst.is_ipv6() && self.rng.chance(50) {
            let next = *self.rng.pick(&[0u8, 43, 60, 44]);
            insert_extension_header(&mut b, l3, next, self.rng.below(3));
            what += &format!(", IPv6 extension header {next}");
        }
        let lie = self.rng.below(7);
        self.lie(&mut b, l3, p.dst.is_ipv6(), p.proto, lie, &mut what);
        (b, what)
    }

    fn lie(&mut self, b: &mut [u8], l3: usize, v6: bool, proto: u8, lie: usize, what: &mut String) {
        let r = self.rng.next();
        let l4 = if v6 { l3 + 40 } else { l3 + usize::from(b[l3] & 0x0f) * 4 };
        let at = |off: usize, b: &mut [u8], v: &[u8]| {
            if off + v.len() <= b.len() {
                b[off..off + v.len()].copy_from_slice(v);
            }
        };
        match lie {
            0 if !v6 => {
                at(l3, b, &[0x40 | (r as u8 & 0x0f)]);
                *what += ", IHL lies";
            }
            1 => {
                let len_at = if v6 { l3 + 4 } else { l3 + 2 };
                at(len_at, b, &((r % 200) as u16).to_be_bytes());
                *what += ", IP length lies";
            }
            2 if !v6 => {
                at(l3 + 6, b, &self.rng.pick(&[0x2000u16, 0x0010, 0x2010, 0x4000]).to_be_bytes());
                *what += ", fragment bits";
            }
            3 if proto == UDP => {
                at(l4 + 4, b, &((r % 100) as u16).to_be_bytes());
                *what += ", UDP length lies";
            }
            4 if proto == TCP => {
                at(l4 + 12, b, &[(r as u8) & 0xf0]);
                *what += ", TCP data offset lies";
            }
            _ => {}
        }
        fix(b);
    }

    /// A backend's reply to a SNAT port: mostly a port a flow of this run holds, else any.
    fn backend_reply(&mut self, owners: &Owners) -> (Vec<u8>, String) {
        let (backend, snat_port, proto) = self.backend_side(owners);
        let snat = SocketAddr::new(snat_address(backend.is_ipv6()), snat_port);
        let mut p = if proto == TCP {
            Pkt::tcp(&backend.to_string(), &snat.to_string(), *self.rng.pick(&[SYN | ACK, ACK, ACK | FIN, RST]))
        } else {
            Pkt::udp(&backend.to_string(), &snat.to_string())
        };
        p.src_mac = backend_mac(backend.ip());
        p.payload = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        (p.bytes(), format!("backend {backend} -> {snat} proto {proto}"))
    }

    fn backend_side(&mut self, owners: &Owners) -> (SocketAddr, u16, u8) {
        if self.rng.chance(80) {
            if let Some((side, _)) = owners.pick(self.rng.next()) {
                return (SocketAddr::new(side.backend, side.backend_port), side.snat_port, side.proto);
            }
        }
        let backend: SocketAddr = self.rng.pick(&NAT_BACKENDS).parse().unwrap();
        let (min, max) = self.snat_ports;
        let port = min + (self.rng.next() % (u64::from(max - min) + 1)) as u16;
        let proto = if backend.port() == 53 { UDP } else { TCP };
        (backend, port, proto)
    }

    /// An ICMP error quoting a packet of a flow: from a backend about what we sent it (to
    /// the SNAT address), or from the client side about what we sent a client (to a VIP).
    fn icmp_error(&mut self, owners: &Owners) -> (Vec<u8>, String) {
        let (quoted, from, to, what) = if self.rng.chance(60) {
            let (backend, snat_port, proto) = self.backend_side(owners);
            let snat = SocketAddr::new(snat_address(backend.is_ipv6()), snat_port);
            let q = quoted_packet(snat, backend, proto);
            (q, backend.ip(), snat.ip(), format!("ICMP error from {backend} about {snat} -> {backend}"))
        } else {
            let (p, _) = self.client_packet();
            let q = quoted_packet(p.dst, p.src, p.proto);
            (q, p.src.ip(), p.dst.ip(), format!("ICMP error from {} about {} -> {}", p.src, p.dst, p.src))
        };
        let v6 = from.is_ipv6();
        let (kind, code) = if v6 { (*self.rng.pick(&[1u8, 2, 3, 128]), 4) } else { (*self.rng.pick(&[3u8, 11, 8]), 3) };
        // RFC 792 quotes the IP header and 8 bytes; most stacks quote more.
        let header = if v6 { 40 } else { 20 };
        let keep = *self.rng.pick(&[header + 8, header + 4, quoted.len(), header + 2]);
        let body = &quoted[..keep.min(quoted.len())];
        let mut m = IcmpPkt::new(&from.to_string(), &to.to_string(), kind, code, [0, 0, 5, 0xdc], body);
        m.src_mac = if NAT_BACKENDS.iter().any(|b| b.parse::<SocketAddr>().unwrap().ip() == from) {
            backend_mac(from)
        } else {
            client_mac(0)
        };
        (m.bytes(), format!("{what}, type {kind}, {keep} bytes quoted"))
    }

    fn elsewhere(&mut self) -> (Vec<u8>, String) {
        let dst = *self.rng.pick(&ELSEWHERE);
        let v6 = dst.starts_with('[');
        let src = client(self.rng.below(CLIENTS as usize) as u8, v6, self.port());
        let p =
            if self.rng.chance(70) { Pkt::tcp(&src.to_string(), dst, SYN) } else { Pkt::udp(&src.to_string(), dst) };
        (p.bytes(), format!("{src} -> {dst} (no service)"))
    }

    /// Random bytes after an Ethernet header, mostly claiming IPv4 or IPv6.
    fn noise(&mut self) -> (Vec<u8>, String) {
        let len = 14 + self.rng.below(150);
        let mut b: Vec<u8> = (0..len).map(|_| self.rng.next() as u8).collect();
        b[..6].copy_from_slice(&LB_MAC);
        let other = self.rng.next() as u16;
        let ethertype: u16 = *self.rng.pick(&[0x0800, 0x86dd, 0x8100, other]);
        b[12..14].copy_from_slice(&ethertype.to_be_bytes());
        if ethertype == 0x0800 && len > 14 {
            b[14] = 0x40 | (b[14] & 0x0f);
        }
        if self.rng.chance(50) {
            fix(&mut b);
        }
        (b, format!("{len} random bytes, ethertype {ethertype:#06x}"))
    }

    /// Flip a few bytes or cut the frame short, then (half the time) write the checksums a
    /// sender would, so the frame gets past a receiver's checksum test.
    fn mutate(&mut self, b: &mut Vec<u8>, what: &mut String) {
        let mut changed = false;
        if self.rng.chance(30) {
            let n = 1 + self.rng.below(4);
            for _ in 0..n {
                let at = self.rng.below(b.len());
                b[at] = self.rng.next() as u8;
            }
            *what += &format!(", {n} bytes flipped");
            changed = true;
        }
        if self.rng.chance(15) && b.len() > 14 {
            b.truncate(14 + self.rng.below(b.len() - 14));
            *what += &format!(", cut to {} bytes", b.len());
            changed = true;
        }
        if changed && self.rng.chance(50) {
            fix(b);
            *what += ", checksums rewritten";
        }
    }
}

/// The IP packet an error quotes: `src` → `dst`, as it was sent.
fn quoted_packet(src: SocketAddr, dst: SocketAddr, proto: u8) -> Vec<u8> {
    let p = if proto == UDP {
        Pkt::udp(&src.to_string(), &dst.to_string())
    } else {
        Pkt::tcp(&src.to_string(), &dst.to_string(), ACK)
    };
    p.ip_packet()
}

/// The test network's server MACs: .11 / fd00:20::11 is server 1.
pub fn backend_mac(ip: IpAddr) -> [u8; 6] {
    let last = match ip {
        IpAddr::V4(a) => a.octets()[3],
        IpAddr::V6(a) => a.octets()[15] - 6,
    };
    server_mac(last - 10)
}

/// Put an IPv6 extension header of type `next` (with `extra` more 8-byte units) between the
/// IPv6 header and the transport header.
fn insert_extension_header(b: &mut Vec<u8>, l3: usize, next: u8, extra: usize) {
    if b.len() < l3 + 40 {
        return;
    }
    let inner = b[l3 + 6];
    let len = if next == 44 { 8 } else { 8 * (extra + 1) };
    let mut ext = vec![0u8; len];
    ext[0] = inner;
    if next != 44 {
        ext[1] = extra as u8;
        ext[2] = 1; // PadN, filling the rest
        ext[3] = (len - 4) as u8;
    }
    b[l3 + 6] = next;
    let payload = u16::from_be_bytes([b[l3 + 4], b[l3 + 5]]) as usize + len;
    b[l3 + 4..l3 + 6].copy_from_slice(&(payload as u16).to_be_bytes());
    b.splice(l3 + 40..l3 + 40, ext);
}

/// The backend side a TX frame to a backend shows (for the owners' table).
pub fn side_of(backend: SocketAddr, snat_port: u16, proto: u8) -> BackendSide {
    BackendSide { backend: backend.ip(), backend_port: backend.port(), snat_port, proto }
}

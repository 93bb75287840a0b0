//! Building test frames, with checksums computed from scratch (RFC 1071 over the real
//! pseudo-header), independent of the incremental arithmetic the data path uses.
use std::net::{IpAddr, SocketAddr};

pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const LB_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x10];

pub fn server_mac(n: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 0, 0x10 + n]
}

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const SYN: u8 = 0x02;
pub const ACK: u8 = 0x10;
pub const FIN: u8 = 0x01;
pub const RST: u8 = 0x04;
pub const ICMP: u8 = 1;
pub const ICMPV6: u8 = 58;

#[derive(Clone, Debug)]
pub struct Pkt {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub vlan: Option<u16>,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub proto: u8,
    pub tcp_flags: u8,
    pub payload: Vec<u8>,
    /// IPv4 options (a multiple of 4 bytes).
    pub ip_options: Vec<u8>,
    /// UDP over IPv4 sent without a checksum (0).
    pub udp_no_checksum: bool,
    /// TCP sequence number, and acknowledgement number (sent when `ACK` is set).
    pub seq: u32,
    pub ack_seq: u32,
}

impl Pkt {
    pub fn tcp(src: &str, dst: &str, flags: u8) -> Self {
        Self::new(src, dst, TCP, flags)
    }

    pub fn udp(src: &str, dst: &str) -> Self {
        Self::new(src, dst, UDP, 0)
    }

    fn new(src: &str, dst: &str, proto: u8, tcp_flags: u8) -> Self {
        Pkt {
            src_mac: CLIENT_MAC,
            dst_mac: LB_MAC,
            vlan: None,
            src: src.parse().expect("test address"),
            dst: dst.parse().expect("test address"),
            proto,
            tcp_flags,
            payload: b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            ip_options: Vec::new(),
            udp_no_checksum: false,
            seq: 1000,
            ack_seq: 2000,
        }
    }

    /// The sequence and acknowledgement numbers.
    pub fn seqs(mut self, seq: u32, ack_seq: u32) -> Self {
        self.seq = seq;
        self.ack_seq = ack_seq;
        self
    }

    pub fn macs(mut self, src: [u8; 6], dst: [u8; 6]) -> Self {
        self.src_mac = src;
        self.dst_mac = dst;
        self
    }

    pub fn addrs(mut self, src: &str, dst: &str) -> Self {
        self.src = src.parse().expect("test address");
        self.dst = dst.parse().expect("test address");
        self
    }

    pub fn bytes(&self) -> Vec<u8> {
        let l4 = self.l4();
        let mut f = Vec::new();
        f.extend_from_slice(&self.dst_mac);
        f.extend_from_slice(&self.src_mac);
        if let Some(tag) = self.vlan {
            f.extend_from_slice(&0x8100u16.to_be_bytes());
            f.extend_from_slice(&tag.to_be_bytes());
        }
        match (self.src.ip(), self.dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                f.extend_from_slice(&0x0800u16.to_be_bytes());
                let hlen = 20 + self.ip_options.len();
                let mut ip = vec![0x40 | (hlen / 4) as u8, 0];
                ip.extend_from_slice(&((hlen + l4.len()) as u16).to_be_bytes());
                ip.extend_from_slice(&[0x12, 0x34, 0x40, 0x00, 64, self.proto, 0, 0]);
                ip.extend_from_slice(&s.octets());
                ip.extend_from_slice(&d.octets());
                ip.extend_from_slice(&self.ip_options);
                let c = checksum(&ip, 0);
                ip[10..12].copy_from_slice(&c.to_be_bytes());
                f.extend_from_slice(&ip);
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                f.extend_from_slice(&0x86ddu16.to_be_bytes());
                f.extend_from_slice(&[0x60, 0, 0, 0]);
                f.extend_from_slice(&(l4.len() as u16).to_be_bytes());
                f.extend_from_slice(&[self.proto, 64]);
                f.extend_from_slice(&s.octets());
                f.extend_from_slice(&d.octets());
            }
            _ => panic!("mixed address families in a test packet"),
        }
        f.extend_from_slice(&l4);
        f
    }

    fn pseudo_sum(&self, len: usize) -> u32 {
        let mut p = Vec::new();
        match (self.src.ip(), self.dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                p.extend_from_slice(&s.octets());
                p.extend_from_slice(&d.octets());
                p.extend_from_slice(&[0, self.proto]);
                p.extend_from_slice(&(len as u16).to_be_bytes());
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                p.extend_from_slice(&s.octets());
                p.extend_from_slice(&d.octets());
                p.extend_from_slice(&(len as u32).to_be_bytes());
                p.extend_from_slice(&[0, 0, 0, self.proto]);
            }
            _ => unreachable!(),
        }
        sum(&p, 0)
    }

    fn l4(&self) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend_from_slice(&self.src.port().to_be_bytes());
        h.extend_from_slice(&self.dst.port().to_be_bytes());
        let check_at = if self.proto == TCP { 16 } else { 6 };
        if self.proto == TCP {
            h.extend_from_slice(&self.seq.to_be_bytes());
            h.extend_from_slice(&(if self.tcp_flags & ACK != 0 { self.ack_seq } else { 0 }).to_be_bytes());
            h.extend_from_slice(&[5 << 4, self.tcp_flags, 0xff, 0xff, 0, 0, 0, 0]);
        } else {
            h.extend_from_slice(&((8 + self.payload.len()) as u16).to_be_bytes());
            h.extend_from_slice(&[0, 0]);
        }
        h.extend_from_slice(&self.payload);
        if !(self.proto == UDP && self.udp_no_checksum) {
            let mut c = checksum(&h, self.pseudo_sum(h.len()));
            if self.proto == UDP && c == 0 {
                c = 0xffff;
            }
            h[check_at..check_at + 2].copy_from_slice(&c.to_be_bytes());
        }
        h
    }
}

impl Pkt {
    /// The IP packet inside the frame (what an ICMP error quotes).
    pub fn ip_packet(&self) -> Vec<u8> {
        let l2 = if self.vlan.is_some() { 18 } else { 14 };
        self.bytes()[l2..].to_vec()
    }
}

/// An ICMP (over IPv4) or ICMPv6 message: an error quoting a packet, or an echo.
#[derive(Clone, Debug)]
pub struct IcmpPkt {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: IpAddr,
    pub dst: IpAddr,
    pub kind: u8,
    pub code: u8,
    /// The header's last four bytes: unused, an MTU, or an echo's id and sequence.
    pub rest: [u8; 4],
    /// What follows the header: the quoted packet from its IP header on, or echo data.
    pub body: Vec<u8>,
}

impl IcmpPkt {
    /// A message from `src` to `dst` (an error quoting `body`, or an echo carrying it), in a
    /// frame from the client's side of the LB.
    pub fn new(src: &str, dst: &str, kind: u8, code: u8, rest: [u8; 4], body: &[u8]) -> Self {
        IcmpPkt {
            src_mac: CLIENT_MAC,
            dst_mac: LB_MAC,
            src: src.parse().expect("test address"),
            dst: dst.parse().expect("test address"),
            kind,
            code,
            rest,
            body: body.to_vec(),
        }
    }

    pub fn macs(mut self, src: [u8; 6], dst: [u8; 6]) -> Self {
        self.src_mac = src;
        self.dst_mac = dst;
        self
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut msg = vec![self.kind, self.code, 0, 0];
        msg.extend_from_slice(&self.rest);
        msg.extend_from_slice(&self.body);
        let mut f = Vec::new();
        f.extend_from_slice(&self.dst_mac);
        f.extend_from_slice(&self.src_mac);
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                // ICMP's checksum covers the message only.
                let c = checksum(&msg, 0);
                msg[2..4].copy_from_slice(&c.to_be_bytes());
                f.extend_from_slice(&0x0800u16.to_be_bytes());
                let mut ip = vec![0x45, 0];
                ip.extend_from_slice(&((20 + msg.len()) as u16).to_be_bytes());
                ip.extend_from_slice(&[0x56, 0x78, 0x00, 0x00, 64, ICMP, 0, 0]);
                ip.extend_from_slice(&s.octets());
                ip.extend_from_slice(&d.octets());
                let c = checksum(&ip, 0);
                ip[10..12].copy_from_slice(&c.to_be_bytes());
                f.extend_from_slice(&ip);
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                // ICMPv6's covers the pseudo-header too (RFC 4443 2.3).
                let mut pseudo = Vec::new();
                pseudo.extend_from_slice(&s.octets());
                pseudo.extend_from_slice(&d.octets());
                pseudo.extend_from_slice(&(msg.len() as u32).to_be_bytes());
                pseudo.extend_from_slice(&[0, 0, 0, ICMPV6]);
                let c = checksum(&msg, sum(&pseudo, 0));
                msg[2..4].copy_from_slice(&c.to_be_bytes());
                f.extend_from_slice(&0x86ddu16.to_be_bytes());
                f.extend_from_slice(&[0x60, 0, 0, 0]);
                f.extend_from_slice(&(msg.len() as u16).to_be_bytes());
                f.extend_from_slice(&[ICMPV6, 64]);
                f.extend_from_slice(&s.octets());
                f.extend_from_slice(&d.octets());
            }
            _ => panic!("mixed address families in a test packet"),
        }
        f.extend_from_slice(&msg);
        f
    }
}

/// RFC 1071: ones'-complement sum of big-endian 16-bit words.
pub fn sum(data: &[u8], mut acc: u32) -> u32 {
    for chunk in data.chunks(2) {
        let word =
            if chunk.len() == 2 { u16::from_be_bytes([chunk[0], chunk[1]]) } else { u16::from_be_bytes([chunk[0], 0]) };
        acc += word as u32;
    }
    acc
}

pub fn checksum(data: &[u8], acc: u32) -> u16 {
    let mut s = sum(data, acc);
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

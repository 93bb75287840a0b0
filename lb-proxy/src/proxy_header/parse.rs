//! Reading a PROXY header from the first bytes of a connection, as they arrive: each call
//! gets everything received so far and says whether it is a complete header (and how long),
//! needs more, or can never be one. A prefix that cannot start a header is refused at once,
//! without waiting for more bytes.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{Header, MAX_HEADER, V1_MAX, V1_PREFIX, V2_SIGNATURE};

/// A header read so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Every byte so far fits a header; more are needed.
    Incomplete,
    /// A whole header of `len` bytes; what follows is the client's.
    Complete { header: Header, len: usize },
}

/// Why the bytes are not a PROXY header (the connection is refused).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// Neither version's signature.
    Signature,
    /// Version 2 signature with a version other than 2.
    Version,
    /// Version 2 with a command other than LOCAL or PROXY.
    Command,
    /// Version 2 with an unknown address family or transport.
    Family,
    /// Version 2: the length is too short for the family's addresses.
    AddressTooShort,
    /// Longer than `MAX_HEADER` (v2) or `V1_MAX` (v1).
    TooLong,
    /// Version 1 that is not `PROXY TCP4|TCP6 SRC DST SPORT DPORT` or `PROXY UNKNOWN`.
    V1Syntax,
}

impl HeaderError {
    pub fn as_str(self) -> &'static str {
        match self {
            HeaderError::Signature => "no PROXY signature",
            HeaderError::Version => "unsupported version",
            HeaderError::Command => "unknown command",
            HeaderError::Family => "unknown address family or transport",
            HeaderError::AddressTooShort => "length too short for the address family",
            HeaderError::TooLong => "header too long",
            HeaderError::V1Syntax => "malformed version 1 header",
        }
    }
}

/// Reads a header from the start of `buf`.
pub fn parse(buf: &[u8]) -> Result<Parsed, HeaderError> {
    match buf.first() {
        None => Ok(Parsed::Incomplete),
        Some(b'\r') => v2(buf),
        Some(b'P') => v1(buf),
        Some(_) => Err(HeaderError::Signature),
    }
}

/// Whether `buf` matches `expected` as far as both go.
fn prefix_matches(buf: &[u8], expected: &[u8]) -> bool {
    let n = buf.len().min(expected.len());
    buf[..n] == expected[..n]
}

const V2_FIXED: usize = 16;
const CMD_LOCAL: u8 = 0;
const CMD_PROXY: u8 = 1;
const AF_UNSPEC: u8 = 0;
const AF_INET: u8 = 1;
const AF_INET6: u8 = 2;
const AF_UNIX: u8 = 3;
/// The addresses' length per family (source and destination, then both ports).
const INET_LEN: usize = 12;
const INET6_LEN: usize = 36;
const UNIX_LEN: usize = 216;

fn v2(buf: &[u8]) -> Result<Parsed, HeaderError> {
    if !prefix_matches(buf, &V2_SIGNATURE) {
        return Err(HeaderError::Signature);
    }
    if buf.len() < V2_FIXED {
        // The version is known at byte 13: refuse a bad one without waiting for the rest.
        if let Some(&vc) = buf.get(12) {
            check_version_command(vc)?;
        }
        return Ok(Parsed::Incomplete);
    }
    let command = check_version_command(buf[12])?;
    let (family, transport) = (buf[13] >> 4, buf[13] & 0x0f);
    let body = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if V2_FIXED + body > MAX_HEADER {
        return Err(HeaderError::TooLong);
    }
    if family > AF_UNIX || transport > 2 {
        return Err(HeaderError::Family);
    }
    let needed = match family {
        AF_INET => INET_LEN,
        AF_INET6 => INET6_LEN,
        AF_UNIX => UNIX_LEN,
        _ => 0,
    };
    // A LOCAL header's addresses are ignored, so their length is not checked.
    if command == CMD_PROXY && body < needed {
        return Err(HeaderError::AddressTooShort);
    }
    let len = V2_FIXED + body;
    if buf.len() < len {
        return Ok(Parsed::Incomplete);
    }
    let header = if command == CMD_LOCAL { Header::Local } else { v2_addresses(family, &buf[V2_FIXED..len]) };
    Ok(Parsed::Complete { header, len })
}

/// The command of byte 13 (version in the high nibble, command in the low one).
fn check_version_command(vc: u8) -> Result<u8, HeaderError> {
    if vc >> 4 != 2 {
        return Err(HeaderError::Version);
    }
    match vc & 0x0f {
        c @ (CMD_LOCAL | CMD_PROXY) => Ok(c),
        _ => Err(HeaderError::Command),
    }
}

/// A PROXY command's addresses; `body` is at least the family's length (checked).
fn v2_addresses(family: u8, body: &[u8]) -> Header {
    let port = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
    match family {
        AF_INET => {
            let ip = |at: usize| IpAddr::V4(Ipv4Addr::new(body[at], body[at + 1], body[at + 2], body[at + 3]));
            Header::Proxied { source: SocketAddr::new(ip(0), port(8)), destination: SocketAddr::new(ip(4), port(10)) }
        }
        AF_INET6 => {
            let ip = |at: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&body[at..at + 16]);
                IpAddr::V6(Ipv6Addr::from(octets))
            };
            Header::Proxied { source: SocketAddr::new(ip(0), port(32)), destination: SocketAddr::new(ip(16), port(34)) }
        }
        // AF_UNSPEC, AF_UNIX: no address the proxy can use.
        AF_UNSPEC | AF_UNIX => Header::Unspecified,
        _ => Header::Unspecified,
    }
}

fn v1(buf: &[u8]) -> Result<Parsed, HeaderError> {
    if !prefix_matches(buf, V1_PREFIX) {
        return Err(HeaderError::Signature);
    }
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        // No CRLF within the bound: it can only be too long, or still arriving.
        return if buf.len() >= V1_MAX { Err(HeaderError::TooLong) } else { Ok(Parsed::Incomplete) };
    };
    let line = std::str::from_utf8(&buf[..end]).map_err(|_| HeaderError::V1Syntax)?;
    let header = v1_line(line).ok_or(HeaderError::V1Syntax)?;
    Ok(Parsed::Complete { header, len: end + 2 })
}

/// `PROXY TCP4 SRC DST SPORT DPORT`, `PROXY TCP6 ...` or `PROXY UNKNOWN[ anything]`.
fn v1_line(line: &str) -> Option<Header> {
    let mut fields = line.split(' ');
    if fields.next()? != "PROXY" {
        return None;
    }
    let proto = fields.next()?;
    if proto == "UNKNOWN" {
        return Some(Header::Unspecified);
    }
    let v6 = match proto {
        "TCP4" => false,
        "TCP6" => true,
        _ => return None,
    };
    let ip = |text: &str| -> Option<IpAddr> {
        let ip: IpAddr = text.parse().ok()?;
        (ip.is_ipv6() == v6).then_some(ip)
    };
    let port = |text: &str| -> Option<u16> {
        // Decimal without a sign or leading zeros, as the protocol writes it.
        if text.is_empty() || (text.len() > 1 && text.starts_with('0')) || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        text.parse().ok()
    };
    let (src, dst) = (ip(fields.next()?)?, ip(fields.next()?)?);
    let (sport, dport) = (port(fields.next()?)?, port(fields.next()?)?);
    if fields.next().is_some() {
        return None;
    }
    Some(Header::Proxied { source: SocketAddr::new(src, sport), destination: SocketAddr::new(dst, dport) })
}

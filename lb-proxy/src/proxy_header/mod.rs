//! The PROXY protocol, versions 1 (text) and 2 (binary): `parse` reads the
//! header a front load balancer puts before a connection's first byte, `write` makes the
//! one the proxy puts before the client's bytes on a backend connection. Both are pure
//! functions over bytes; `front` does the socket side.
mod parse;
mod write;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;

pub use parse::{parse, Parsed};
pub use write::encode;

/// The 12 bytes every version 2 header starts with.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// What a version 1 header starts with.
pub const V1_PREFIX: &[u8] = b"PROXY ";
/// The longest version 1 header, CRLF included (the protocol's own bound).
pub const V1_MAX: usize = 107;
/// The longest version 2 header read: the 16 fixed bytes and 520 of addresses and TLVs
/// (the TLVs are skipped). The protocol allows 65535 after the fixed part; a front load
/// balancer sending the addresses and a few TLVs (ALPN, authority, a unique id) stays well
/// under this, and a peer that says more is refused rather than buffered.
pub const MAX_HEADER: usize = 536;

/// What a header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Header {
    /// The front load balancer's own connection (a health check): the real peer is the
    /// client.
    Local,
    /// A relayed connection of a family the proxy does not carry (v1 `UNKNOWN`, v2
    /// `AF_UNSPEC` or `AF_UNIX`): the protocol says to use the real peer.
    Unspecified,
    /// A relayed TCP connection: the client and the address it reached.
    Proxied { source: SocketAddr, destination: SocketAddr },
}

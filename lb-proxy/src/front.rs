//! `accept_proxy`: a connection from a trusted front load balancer starts with a PROXY
//! header, read here before anything else (bounded: `MAX_HEADER` bytes, `HEADER_TIMEOUT`).
//! Its source becomes the flow's client for everything after (selection, allow/deny, rate
//! limits and caps, logs, flows, and the header `send_proxy` forwards). What the read took
//! past the header is the client's first bytes, handed on to go to the backend first.
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::proxy_header::{self, Header, Parsed, MAX_HEADER};

/// How long a front load balancer has to send its header (it sends it with, or right
/// after, its connect).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(3);

/// Where a connection comes from, as the flow sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The client: the peer, or the source a PROXY header named.
    pub client: SocketAddr,
    /// The address the client reached, when a PROXY header named it.
    pub destination: Option<SocketAddr>,
    /// Bytes read from the client already (after a header, with a ClientHello): they go to
    /// the backend before anything else.
    pub early: Vec<u8>,
}

impl Origin {
    /// A connection taken as it is.
    pub fn direct(peer: SocketAddr) -> Self {
        Origin { client: peer, destination: None, early: Vec::new() }
    }
}

/// Why a connection from a front load balancer was refused (the `reason` label of
/// `lb_proxy_proxy_header_rejected_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrontRefusal {
    /// From an address outside `accept_proxy_from`.
    Untrusted,
    /// Not a valid header (or the connection ended inside it).
    Malformed,
    /// No complete header within `HEADER_TIMEOUT`.
    Timeout,
}

impl FrontRefusal {
    pub const ALL: [FrontRefusal; 3] = [FrontRefusal::Untrusted, FrontRefusal::Malformed, FrontRefusal::Timeout];

    pub fn as_str(self) -> &'static str {
        match self {
            FrontRefusal::Untrusted => "untrusted",
            FrontRefusal::Malformed => "malformed",
            FrontRefusal::Timeout => "timeout",
        }
    }
}

/// Reads the header from a trusted peer's connection. Err: refused, with a detail for the
/// log.
pub async fn read_header(stream: &mut TcpStream, peer: SocketAddr) -> Result<Origin, (FrontRefusal, String)> {
    match tokio::time::timeout(HEADER_TIMEOUT, read_until_parsed(stream)).await {
        Err(_) => Err((FrontRefusal::Timeout, format!("no PROXY header within {HEADER_TIMEOUT:?}"))),
        Ok(Err(detail)) => Err((FrontRefusal::Malformed, detail)),
        Ok(Ok((header, early))) => Ok(origin(header, peer, early)),
    }
}

/// Reads until the bytes hold a whole header (or cannot be one), never more than
/// `MAX_HEADER` in all.
async fn read_until_parsed(stream: &mut TcpStream) -> Result<(Header, Vec<u8>), String> {
    let mut buf = Vec::with_capacity(MAX_HEADER);
    loop {
        let room = MAX_HEADER - buf.len();
        let n = (&mut *stream).take(room as u64).read_buf(&mut buf).await.map_err(|e| e.to_string())?;
        match proxy_header::parse(&buf) {
            Ok(Parsed::Complete { header, len }) => return Ok((header, buf.split_off(len))),
            Ok(Parsed::Incomplete) if n == 0 => return Err("the connection ended inside the PROXY header".into()),
            // The parser refuses anything longer than MAX_HEADER, so `room` is never 0 here.
            Ok(Parsed::Incomplete) => {}
            Err(e) => return Err(e.as_str().to_string()),
        }
    }
}

fn origin(header: Header, peer: SocketAddr, early: Vec<u8>) -> Origin {
    match header {
        Header::Proxied { source, destination } => Origin { client: source, destination: Some(destination), early },
        // LOCAL (the front's health check) and families without addresses: the real peer.
        Header::Local | Header::Unspecified => Origin { client: peer, destination: None, early },
    }
}

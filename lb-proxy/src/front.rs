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

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    use super::*;
    use lb_config::ProxyHeaderVersion;

    /// Writes `chunks` to a loopback connection (a pause between them), closes it, and
    /// reads the header on the other end.
    async fn read_from(chunks: Vec<Vec<u8>>) -> (Result<Origin, (FrontRefusal, String)>, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let to = listener.local_addr().unwrap();
        let writer = tokio::spawn(async move {
            let mut s = TcpStream::connect(to).await.unwrap();
            s.set_nodelay(true).unwrap();
            for c in chunks {
                s.write_all(&c).await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // Closed here: a reader still waiting then sees the end.
        });
        let (mut stream, peer) = listener.accept().await.unwrap();
        let r = read_header(&mut stream, peer).await;
        writer.await.unwrap();
        (r, peer)
    }

    #[tokio::test]
    async fn a_header_in_pieces_names_the_client_and_keeps_the_bytes_after_it() {
        let (src, dst) = ("192.0.2.7:4242".parse().unwrap(), "198.51.100.1:443".parse().unwrap());
        let mut bytes = proxy_header::encode(ProxyHeaderVersion::V2, src, dst);
        bytes.extend_from_slice(b"hello");
        let chunks = vec![bytes[..5].to_vec(), bytes[5..20].to_vec(), bytes[20..].to_vec()];
        let (origin, _) = read_from(chunks).await;
        assert_eq!(origin.unwrap(), Origin { client: src, destination: Some(dst), early: b"hello".to_vec() });
    }

    #[tokio::test]
    async fn local_is_the_real_peer_and_garbage_or_an_early_end_is_malformed() {
        let local = [&proxy_header::V2_SIGNATURE[..], &[0x20, 0, 0, 0]].concat();
        let (origin, peer) = read_from(vec![local]).await;
        assert_eq!(origin.unwrap(), Origin::direct(peer));
        let (r, _) = read_from(vec![b"GET / HTTP/1.1\r\n".to_vec()]).await;
        assert_eq!(r.unwrap_err().0, FrontRefusal::Malformed);
        let (r, _) = read_from(vec![proxy_header::V2_SIGNATURE[..8].to_vec()]).await;
        assert_eq!(r.unwrap_err().0, FrontRefusal::Malformed, "the connection ended inside the header");
    }
}

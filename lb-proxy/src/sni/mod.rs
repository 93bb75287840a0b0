//! TLS passthrough routed by server name: an l4 service with
//! `[[service.route]]` reads the client's ClientHello before it picks a backend, takes the
//! server name from it, and picks among the backends of the route that names it (or those
//! without a group). TLS is not terminated: the bytes read go to the backend first, then
//! the relay carries on as l4 does.
//!
//! - `client_hello`: the pure parser (records reassembled, bounded).
//! - this module: reading it from the socket, bounded in bytes and time.
mod client_hello;

#[cfg(test)]
mod tests;

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

pub use client_hello::{parse, Hello, HelloError, MAX_HELLO};

/// Why a connection of an SNI-routed service was closed before any backend (the `reason`
/// label of `lb_proxy_sni_rejected_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SniRefusal {
    /// The first byte is not a TLS handshake record (plain HTTP, say).
    NotTls,
    /// TLS records that do not hold a well-formed ClientHello, or the connection ended
    /// inside it.
    Malformed,
    /// A ClientHello larger than `MAX_HELLO`.
    TooLarge,
    /// No complete ClientHello within `sni_timeout`.
    Timeout,
    /// No route names the server name (or there is none) and no backend is without a
    /// group.
    NoRoute,
}

impl SniRefusal {
    pub const ALL: [SniRefusal; 5] =
        [SniRefusal::NotTls, SniRefusal::Malformed, SniRefusal::TooLarge, SniRefusal::Timeout, SniRefusal::NoRoute];

    pub fn as_str(self) -> &'static str {
        match self {
            SniRefusal::NotTls => "not_tls",
            SniRefusal::Malformed => "malformed",
            SniRefusal::TooLarge => "too_large",
            SniRefusal::Timeout => "timeout",
            SniRefusal::NoRoute => "no_route",
        }
    }
}

impl From<HelloError> for SniRefusal {
    fn from(e: HelloError) -> Self {
        match e {
            HelloError::NotTls => SniRefusal::NotTls,
            HelloError::TooLarge => SniRefusal::TooLarge,
            HelloError::NotClientHello | HelloError::Malformed => SniRefusal::Malformed,
        }
    }
}

/// Reads until `buf` (which starts with what was read already) holds a whole ClientHello,
/// never more than `MAX_HELLO` bytes in all nor longer than `timeout`. Ok: its server name
/// (None: it has none) and every byte read, for the backend.
pub async fn read_hello(
    stream: &mut TcpStream,
    mut buf: Vec<u8>,
    timeout: Duration,
) -> Result<(Option<String>, Vec<u8>), SniRefusal> {
    let read = async {
        loop {
            match parse(&buf) {
                Ok(Hello::Complete { server_name }) => return Ok(server_name),
                Ok(Hello::Incomplete) => {}
                Err(e) => return Err(SniRefusal::from(e)),
            }
            // The parser refuses a ClientHello that would not fit, so there is room.
            let room = MAX_HELLO.saturating_sub(buf.len()) as u64;
            match (&mut *stream).take(room).read_buf(&mut buf).await {
                Ok(0) | Err(_) => return Err(SniRefusal::Malformed),
                Ok(_) => {}
            }
        }
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(Ok(name)) => Ok((name, buf)),
        Ok(Err(why)) => Err(why),
        Err(_) => Err(SniRefusal::Timeout),
    }
}

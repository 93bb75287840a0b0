//! The server name of a TLS ClientHello, read from the bytes a client sent first: the
//! handshake records are reassembled (a ClientHello may be split across TCP segments and
//! across TLS records), up to `MAX_HELLO` bytes. Each call gets everything received so far
//! and says whether the ClientHello is whole, needs more, or can never be one.
//!
//! Layouts (RFC 8446 §4.1.2, RFC 6066 §3): a record is type (22: handshake), version
//! (3.x), length (at most 2^14), payload; the handshake message is type (1: ClientHello), a
//! 24-bit length, then version, random (32), session id (<= 32), cipher suites, compression
//! methods, and extensions, among them `server_name` (0): a list of (type 0: host_name,
//! name).

/// The most bytes read for a ClientHello (records and all). Real ones are a few hundred
/// bytes; large post-quantum key shares bring them to 2-3 KiB.
pub const MAX_HELLO: usize = 16 * 1024;

const RECORD_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const RECORD_HEADER: usize = 5;
const MAX_RECORD: usize = 1 << 14;
const EXT_SERVER_NAME: u16 = 0;
const NAME_TYPE_HOST: u8 = 0;
const MAX_HOST_NAME: usize = 255;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hello {
    /// Every byte so far fits a ClientHello; more are needed.
    Incomplete,
    /// A whole ClientHello; its server name, lowercase (None: it sent none).
    Complete { server_name: Option<String> },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HelloError {
    /// The first bytes are not a TLS handshake record.
    NotTls,
    /// A handshake message other than ClientHello came first.
    NotClientHello,
    /// A record or field that does not add up.
    Malformed,
    /// Larger than `MAX_HELLO`.
    TooLarge,
}

/// Reads the ClientHello at the start of `buf`.
pub fn parse(buf: &[u8]) -> Result<Hello, HelloError> {
    if buf.first().is_some_and(|&t| t != RECORD_HANDSHAKE) || buf.get(1).is_some_and(|&major| major != 3) {
        return Err(HelloError::NotTls);
    }
    let message = reassemble(buf)?;
    if message.len() < 4 {
        return more(buf);
    }
    if message[0] != HANDSHAKE_CLIENT_HELLO {
        return Err(HelloError::NotClientHello);
    }
    let len = (usize::from(message[1]) << 16) | (usize::from(message[2]) << 8) | usize::from(message[3]);
    // Every record adds its header: a message that long cannot arrive within the bound.
    if 4 + len + RECORD_HEADER * (4 + len).div_ceil(MAX_RECORD) > MAX_HELLO {
        return Err(HelloError::TooLarge);
    }
    if message.len() < 4 + len {
        return more(buf);
    }
    let server_name = client_hello(&message[4..4 + len]).ok_or(HelloError::Malformed)?;
    Ok(Hello::Complete { server_name })
}

/// Incomplete, unless the bound is reached.
fn more(buf: &[u8]) -> Result<Hello, HelloError> {
    if buf.len() >= MAX_HELLO {
        Err(HelloError::TooLarge)
    } else {
        Ok(Hello::Incomplete)
    }
}

/// The handshake bytes of the records received so far (the last one perhaps in part), up
/// to the record that completes the first handshake message: what follows it (early data,
/// say) is not looked at.
fn reassemble(buf: &[u8]) -> Result<Vec<u8>, HelloError> {
    let mut message = Vec::with_capacity(buf.len());
    let mut at = 0;
    while at + RECORD_HEADER <= buf.len() && !whole_message(&message) {
        let header = &buf[at..at + RECORD_HEADER];
        if header[0] != RECORD_HANDSHAKE || header[1] != 3 {
            // Anything but handshake records before the ClientHello is whole.
            return Err(HelloError::Malformed);
        }
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if len == 0 || len > MAX_RECORD {
            return Err(HelloError::Malformed);
        }
        let start = at + RECORD_HEADER;
        let end = (start + len).min(buf.len());
        message.extend_from_slice(&buf[start..end]);
        at = start + len;
    }
    Ok(message)
}

/// Whether `message` holds a whole handshake message (header and body).
fn whole_message(message: &[u8]) -> bool {
    message.len() >= 4 && {
        let len = (usize::from(message[1]) << 16) | (usize::from(message[2]) << 8) | usize::from(message[3]);
        message.len() >= 4 + len
    }
}

/// A cursor over a ClientHello's fields; every read is checked against the end.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    /// A field with a 1- or 2-byte length before it.
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }

    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The ClientHello body's server name: Some(None) when it has none; None when malformed.
fn client_hello(body: &[u8]) -> Option<Option<String>> {
    let mut f = Fields(body);
    let version = f.take(2)?;
    if version[0] != 3 {
        return None;
    }
    f.take(32)?; // random
    let session_id = f.vec8()?;
    if session_id.len() > 32 {
        return None;
    }
    let suites = f.vec16()?;
    if suites.is_empty() || suites.len() % 2 != 0 {
        return None;
    }
    if f.vec8()?.is_empty() {
        return None; // compression methods: at least "null"
    }
    if f.is_empty() {
        return Some(None); // no extensions at all (SSL 3.0-style)
    }
    let mut extensions = Fields(f.vec16()?);
    if !f.is_empty() {
        return None;
    }
    while !extensions.is_empty() {
        let kind = extensions.u16()?;
        let data = extensions.vec16()?;
        if kind == EXT_SERVER_NAME {
            return server_name(data).map(Some);
        }
    }
    Some(None)
}

/// The host_name of a `server_name` extension; None when malformed.
fn server_name(data: &[u8]) -> Option<String> {
    let mut outer = Fields(data);
    let mut list = Fields(outer.vec16()?);
    if !outer.is_empty() {
        return None;
    }
    while !list.is_empty() {
        let kind = list.u8()?;
        let name = list.vec16()?;
        if kind == NAME_TYPE_HOST {
            return host_name(name);
        }
    }
    None
}

/// A DNS host name as RFC 6066 sends it: ASCII, no trailing dot; lowercase here.
fn host_name(name: &[u8]) -> Option<String> {
    if name.is_empty() || name.len() > MAX_HOST_NAME {
        return None;
    }
    if !name.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_') {
        return None;
    }
    std::str::from_utf8(name).ok().map(str::to_ascii_lowercase)
}

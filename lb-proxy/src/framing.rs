//! What hyper does not tell: how each request on a client connection was framed as it
//! arrived. Hyper takes a request carrying both `Content-Length` and `Transfer-Encoding`,
//! frames it by the latter and drops the former before anyone sees it; an operator expects
//! such a request (the classic request-smuggling vector) to be refused with 400. So the
//! client's bytes pass through this scanner on their way into hyper: it follows the
//! stream message by message (head, then a `Content-Length` or chunked body), and for each
//! head it records whether both headers were in it, in order, for the request handler to
//! take when hyper hands it that request.
//!
//! It only follows framing hyper accepts; on anything it cannot follow (a request that may
//! switch protocols, a line too long to read, a length it cannot parse) it stops, and the
//! requests after that carry no verdict: hyper's own handling (chunked wins, the connection
//! closes after the response) then applies.
use std::collections::VecDeque;

/// Longest header line kept to be read: the names and values that matter are short.
const MAX_LINE: usize = 256;

/// What one request head held.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeadVerdict {
    /// Both `Content-Length` and `Transfer-Encoding`.
    pub conflicting_length: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading a head's lines (the request line, then headers, until an empty line).
    Head,
    /// `Content-Length` body bytes still to come.
    Body(u64),
    /// A chunk-size line.
    ChunkSize,
    /// Chunk data still to come, then its CRLF.
    ChunkData(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    /// Trailer lines after the last chunk, until an empty line.
    Trailers,
    /// Lost, or the connection may stop being HTTP: no more verdicts.
    Stopped,
}

/// What the current head said so far.
#[derive(Debug, Default)]
struct Head {
    /// The request line was read (empty lines before it are skipped, as hyper does).
    started: bool,
    content_length: Option<u64>,
    has_content_length: bool,
    transfer_encoding: bool,
    /// The last coding of the last `Transfer-Encoding` is `chunked`.
    chunked: bool,
    /// CONNECT, or an `Upgrade` header: the connection may switch protocols.
    may_switch: bool,
    /// Something in it could not be followed.
    lost: bool,
}

pub struct FramingScanner {
    state: State,
    line: Vec<u8>,
    line_too_long: bool,
    head: Head,
    verdicts: VecDeque<HeadVerdict>,
}

impl Default for FramingScanner {
    fn default() -> Self {
        FramingScanner {
            state: State::Head,
            line: Vec::with_capacity(64),
            line_too_long: false,
            head: Head::default(),
            verdicts: VecDeque::new(),
        }
    }
}

impl FramingScanner {
    /// Follows the next bytes the client sent.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match self.state {
                State::Stopped => return,
                State::Body(n) | State::ChunkData(n) => {
                    let take = n.min(bytes.len() as u64);
                    bytes = &bytes[take as usize..];
                    let left = n - take;
                    self.state = match (self.state, left) {
                        (State::Body(_), 0) => State::Head,
                        (State::Body(_), _) => State::Body(left),
                        (_, 0) => State::ChunkEnd,
                        _ => State::ChunkData(left),
                    };
                }
                State::Head | State::ChunkSize | State::ChunkEnd | State::Trailers => {
                    let Some(end) = bytes.iter().position(|&b| b == b'\n') else {
                        self.keep(bytes);
                        return;
                    };
                    self.keep(&bytes[..end]);
                    bytes = &bytes[end + 1..];
                    self.line_ended();
                }
            }
        }
    }

    /// A head has begun and is not complete yet (what a header timeout interrupts).
    pub fn head_in_progress(&self) -> bool {
        match self.state {
            State::Head => self.head.started || !self.line.is_empty() || self.line_too_long,
            _ => false,
        }
    }

    /// Lost track of the stream: verdicts and head progress are unknown from here on.
    pub fn stopped(&self) -> bool {
        self.state == State::Stopped
    }

    /// The verdict of the oldest head completed and not yet taken.
    pub fn next_verdict(&mut self) -> Option<HeadVerdict> {
        self.verdicts.pop_front()
    }

    fn keep(&mut self, part: &[u8]) {
        let room = MAX_LINE.saturating_sub(self.line.len());
        if part.len() > room {
            self.line_too_long = true;
        }
        self.line.extend_from_slice(&part[..part.len().min(room)]);
    }

    fn line_ended(&mut self) {
        let mut line = std::mem::take(&mut self.line);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let too_long = std::mem::replace(&mut self.line_too_long, false);
        match self.state {
            State::Head => self.head_line(&line, too_long),
            State::ChunkSize => {
                self.state = chunk_size(&line).map_or(State::Stopped, |n| match n {
                    0 => State::Trailers,
                    n => State::ChunkData(n),
                })
            }
            State::ChunkEnd => self.state = if line.is_empty() { State::ChunkSize } else { State::Stopped },
            State::Trailers if line.is_empty() => self.state = State::Head,
            _ => {}
        }
        line.clear();
        self.line = line;
    }

    fn head_line(&mut self, line: &[u8], too_long: bool) {
        if !self.head.started {
            if line.is_empty() && !too_long {
                return;
            }
            self.head.started = true;
            self.head.may_switch = line.starts_with(b"CONNECT ");
            return;
        }
        if line.is_empty() && !too_long {
            self.head_ended();
            return;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            // Hyper refuses such a head; the connection ends with it.
            self.head.lost = true;
            return;
        };
        let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
        if name.eq_ignore_ascii_case(b"content-length") {
            self.head.has_content_length = true;
            match parse_decimal(value) {
                Some(n) if !too_long && self.head.content_length.is_none_or(|m| m == n) => {
                    self.head.content_length = Some(n)
                }
                _ => self.head.lost = true,
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.head.transfer_encoding = true;
            let last = value.rsplit(|&b| b == b',').next().map(trim).unwrap_or_default();
            self.head.chunked = !too_long && last.eq_ignore_ascii_case(b"chunked");
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            self.head.may_switch = true;
        }
    }

    fn head_ended(&mut self) {
        let head = std::mem::take(&mut self.head);
        self.verdicts.push_back(HeadVerdict { conflicting_length: head.has_content_length && head.transfer_encoding });
        self.state = if head.lost || head.may_switch || (head.transfer_encoding && !head.chunked) {
            State::Stopped
        } else if head.transfer_encoding {
            State::ChunkSize
        } else {
            match head.content_length {
                Some(0) | None => State::Head,
                Some(n) => State::Body(n),
            }
        };
    }
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Digits only, as hyper reads `Content-Length`.
fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// A chunk-size line: hex digits, then optional whitespace and `;extensions`.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return None;
    }
    let rest = trim(&line[digits..]);
    if !rest.is_empty() && rest[0] != b';' {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(&line[..digits]).ok()?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdicts(stream: &[u8], step: usize) -> (Vec<bool>, FramingScanner) {
        let mut s = FramingScanner::default();
        for part in stream.chunks(step) {
            s.feed(part);
        }
        let v = std::iter::from_fn(|| s.next_verdict()).map(|v| v.conflicting_length).collect();
        (v, s)
    }

    /// Every way of cutting the stream into reads gives the same verdicts.
    fn all_steps(stream: &[u8]) -> Vec<bool> {
        let (first, _) = verdicts(stream, stream.len());
        for step in 1..stream.len() {
            assert_eq!(verdicts(stream, step).0, first, "step {step}");
        }
        first
    }

    #[test]
    fn a_head_with_both_lengths_is_flagged_whatever_their_order() {
        let te_first = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n";
        let cl_first = b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n";
        assert_eq!(all_steps(te_first), [true]);
        assert_eq!(all_steps(cl_first), [true]);
    }

    #[test]
    fn bodies_are_skipped_so_each_pipelined_head_gets_its_own_verdict() {
        let stream = b"\r\nPOST /a HTTP/1.1\r\nContent-Length: 44\r\n\r\n\
            GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
            POST /b HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
            4;ext=1\r\nwxyz\r\n1A\r\nContent-Length: 5 in data\r\n0\r\nX-Trailer: 1\r\n\r\n\
            GET /c HTTP/1.1\nContent-Length: 1\nTransfer-Encoding: chunked\n\n";
        assert_eq!(all_steps(stream), [false, false, true]);
    }

    #[test]
    fn a_head_in_progress_is_seen_until_its_end() {
        let mut s = FramingScanner::default();
        assert!(!s.head_in_progress());
        s.feed(b"\r\n");
        assert!(!s.head_in_progress(), "empty lines before a request are not a request");
        s.feed(b"G");
        assert!(s.head_in_progress());
        s.feed(b"ET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(!s.head_in_progress());
        assert!(s.next_verdict().is_some() && s.next_verdict().is_none());
    }

    #[test]
    fn a_request_that_may_switch_protocols_or_cannot_be_followed_stops_the_scan() {
        for stream in [
            &b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nGET / HTTP/1.1\r\n\r\n"[..],
            b"CONNECT a:443 HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\nGET / HTTP/1.1\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\nGET / HTTP/1.1\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nGET / HTTP/1.1\r\n\r\n",
        ] {
            let (v, s) = verdicts(stream, 7);
            assert_eq!(v.len(), 1, "{}", String::from_utf8_lossy(stream));
            assert!(s.stopped());
        }
    }

    #[test]
    fn a_long_line_is_cut_but_still_ends_where_it_ends() {
        let mut stream = b"GET / HTTP/1.1\r\nCookie: ".to_vec();
        stream.extend(std::iter::repeat_n(b'x', 10_000));
        stream.extend_from_slice(b"\r\nContent-Length: 2\r\n\r\nokGET / HTTP/1.1\r\n\r\n");
        let (v, s) = verdicts(&stream, 1000);
        assert_eq!(v, [false, false]);
        assert!(s.line.capacity() < 1024, "the line buffer stays small");
    }
}

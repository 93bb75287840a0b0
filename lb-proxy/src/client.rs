//! An HTTP client's connection as hyper reads it: the socket, its activity (the idle
//! timeout), its place in the service's connection caps, and the framing scanner
//! (`framing`) that every byte from the client passes through.
//!
//! Hyper owns the connection while it serves it, and gives nothing back when it ends in an
//! error. But some endings need the socket once more: a header timeout is answered with 408
//! (hyper just stops), and any refusal (hyper's 400/431, our 408 or 400) is followed by a
//! lingering close, which reads what the client still sends for a moment instead of
//! closing on unread bytes (the kernel would answer those with an RST, and an RST can
//! destroy the refusal before the client reads it). So the handler can ask for the socket
//! back: once asked, dropping the `ClientIo` (with hyper's connection) leaves the socket
//! in `ClientShared` instead of closing it.
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::caps::ConnSlot;
use super::framing::{FramingScanner, HeadVerdict};
use super::idle::Activity;

/// How long a refused client's further bytes are read and discarded before the close.
const LINGER: Duration = Duration::from_secs(2);
/// At most this much is discarded while lingering.
const LINGER_BYTES: usize = 1 << 20;

/// The socket and what holds it open: what a connection hands over (to a relay after an
/// upgrade, or back to the handler).
pub struct Socket {
    pub stream: TcpStream,
    pub slot: Option<ConnSlot>,
}

/// What the connection's handler shares with its `ClientIo`.
#[derive(Default)]
pub struct ClientShared {
    pub activity: Activity,
    scanner: Mutex<FramingScanner>,
    /// The handler wants the socket back when the `ClientIo` is dropped.
    keep: AtomicBool,
    kept: Mutex<Option<Socket>>,
}

impl ClientShared {
    fn scanner(&self) -> MutexGuard<'_, FramingScanner> {
        self.scanner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The verdict on the head of the request hyper has just handed over (None: the
    /// scanner lost track, so nothing is known about it).
    pub fn next_verdict(&self) -> Option<HeadVerdict> {
        self.scanner().next_verdict()
    }

    /// Part of a request head was read and its end was not: what tells a header timeout
    /// that deserves a 408 from an idle connection that is simply closed. When the scanner
    /// lost track (after a declined upgrade, say), a 408 is sent anyway: it is harmless.
    pub fn head_in_progress(&self) -> bool {
        let s = self.scanner();
        s.stopped() || s.head_in_progress()
    }

    /// From now on, dropping the `ClientIo` leaves its socket here.
    pub fn keep_socket(&self) {
        self.keep.store(true, Ordering::Relaxed);
    }

    pub fn keeps_socket(&self) -> bool {
        self.keep.load(Ordering::Relaxed)
    }

    /// The socket the dropped `ClientIo` left, if asked for and still there (it is not
    /// after an upgrade took it).
    pub fn take_socket(&self) -> Option<Socket> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// The client's socket as hyper reads and writes it.
pub struct ClientIo {
    /// None only once handed over (`into_socket`) or during drop.
    socket: Option<Socket>,
    shared: std::sync::Arc<ClientShared>,
    /// The client's bytes read before hyper took the socket (after a front's PROXY
    /// header), read from here first; `early_at`: how far.
    early: Vec<u8>,
    early_at: usize,
}

impl ClientIo {
    pub fn new(stream: TcpStream, slot: Option<ConnSlot>, shared: std::sync::Arc<ClientShared>) -> Self {
        ClientIo { socket: Some(Socket { stream, slot }), shared, early: Vec::new(), early_at: 0 }
    }

    /// Bytes of the client's read already: hyper reads them before the socket.
    pub fn with_early(mut self, early: Vec<u8>) -> Self {
        self.early = early;
        self.early_at = 0;
        self
    }

    /// Copies what is left of the early bytes into `buf`; false when none are left.
    fn read_early(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        let left = &self.early[self.early_at..];
        if left.is_empty() {
            return false;
        }
        let n = left.len().min(buf.remaining());
        buf.put_slice(&left[..n]);
        self.early_at += n;
        if self.early_at == self.early.len() {
            self.early = Vec::new();
            self.early_at = 0;
        }
        true
    }

    /// The socket itself, for a connection that leaves HTTP (an `Upgrade`): the relay
    /// holds it, and its slot, from then on.
    pub fn into_socket(mut self) -> Option<Socket> {
        self.socket.take()
    }

    fn stream(&mut self) -> io::Result<&mut TcpStream> {
        match &mut self.socket {
            Some(s) => Ok(&mut s.stream),
            None => Err(io::Error::new(io::ErrorKind::NotConnected, "the client's socket was handed over")),
        }
    }
}

impl Drop for ClientIo {
    fn drop(&mut self) {
        if self.shared.keep.load(Ordering::Relaxed) {
            if let Some(socket) = self.socket.take() {
                *self.shared.kept.lock().unwrap_or_else(|e| e.into_inner()) = Some(socket);
            }
        }
    }
}

impl AsyncRead for ClientIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = if this.read_early(buf) { Poll::Ready(Ok(())) } else { Pin::new(this.stream()?).poll_read(cx, buf) };
        if let Poll::Ready(Ok(())) = r {
            let new = &buf.filled()[before..];
            if !new.is_empty() {
                this.shared.activity.touch();
                this.shared.scanner().feed(new);
            }
        }
        r
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(this.stream()?).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = r {
            if n > 0 {
                this.shared.activity.touch();
            }
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(this.stream()?).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            if n > 0 {
                this.shared.activity.touch();
            }
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.socket.as_ref().is_some_and(|s| s.stream.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().stream()?).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().stream()?).poll_shutdown(cx)
    }
}

/// Sends `answer` (may be empty: hyper already answered), ends our side, then reads and
/// discards what the client still sends until it closes, `LINGER` passes or
/// `LINGER_BYTES` were read; then the socket closes.
pub async fn answer_and_close(mut socket: Socket, answer: &[u8]) {
    let s = &mut socket.stream;
    let _ = tokio::time::timeout(LINGER, async {
        if !answer.is_empty() {
            s.write_all(answer).await?;
        }
        // Hyper may have ended our side already.
        let _ = s.shutdown().await;
        let mut buf = [0u8; 4096];
        let mut read = 0;
        while read < LINGER_BYTES {
            match s.read(&mut buf).await? {
                0 => break,
                n => read += n,
            }
        }
        io::Result::Ok(())
    })
    .await;
}

//! An upstream TCP stream that counts its traffic as its backend's `bytes_in` /
//! `bytes_out` (a client's side is `client::ClientIo`).
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::stats::BackendStats;

pub struct Metered {
    stream: TcpStream,
    /// Writes count as `bytes_in` (towards the backend), reads as `bytes_out`.
    backend: Arc<BackendStats>,
}

impl Metered {
    pub fn upstream(stream: TcpStream, backend: Arc<BackendStats>) -> Self {
        Metered { stream, backend }
    }

    /// The stream itself, for a connection that leaves HTTP (an `Upgrade`): from then on
    /// the relay counts its bytes.
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }

    fn note(&self, n: usize, read: bool) {
        let b = &self.backend;
        let c = if read { &b.bytes_out } else { &b.bytes_in };
        c.fetch_add(n as u64, Ordering::Relaxed);
    }
}

impl AsyncRead for Metered {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.stream).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            this.note(buf.filled().len() - before, true);
        }
        r
    }
}

impl AsyncWrite for Metered {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.stream).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = r {
            this.note(n, false);
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            this.note(n, false);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

//! The HTTP proxy's connection pool (the seed's "connection pool"): per backend, a stack of
//! idle keep-alive HTTP/1.1 connections. A request takes the most recently used one (the
//! least likely to have been closed by the backend), or opens a new one; when its response
//! has been read to the end, the connection goes back, unless `max_idle_per_backend` are
//! already waiting. Idle connections older than `idle_timeout` are closed.
//!
//! Each connection is driven by its own tracked task (started by `http`, which opens the
//! connections and runs the pool's reaper), which ends when the connection closes, when
//! the pool drops its sender, when its backend is cut, or at shutdown.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body_util::{Either, Full};
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;

use super::stats::FlowEntry;
use super::table::BackendSlot;
use crate::select::ActiveGuard;

/// What goes upstream: the client's body as it streams in, or held whole (empty or small,
/// so that it can be sent again).
pub type ReqBody = Either<Incoming, Full<Bytes>>;

/// One upstream connection.
pub struct Conn {
    pub sender: SendRequest<ReqBody>,
    pub slot: Arc<BackendSlot>,
    idle_since: Instant,
}

impl Conn {
    /// A connection just opened (its task driving it already started).
    pub fn new(sender: SendRequest<ReqBody>, slot: Arc<BackendSlot>) -> Self {
        Conn { sender, slot, idle_since: Instant::now() }
    }
}

#[derive(Clone, Copy, Debug)]
struct Limits {
    max_idle: usize,
    idle_timeout: Duration,
}

pub struct UpstreamPool {
    idle: Mutex<HashMap<SocketAddr, Vec<Conn>>>,
    limits: Mutex<Limits>,
    closed: AtomicBool,
}

impl UpstreamPool {
    pub fn new(cfg: &lb_config::Pool) -> Self {
        UpstreamPool {
            idle: Mutex::default(),
            limits: Mutex::new(Self::limits_of(cfg)),
            closed: AtomicBool::new(false),
        }
    }

    fn limits_of(cfg: &lb_config::Pool) -> Limits {
        Limits { max_idle: cfg.max_idle_per_backend as usize, idle_timeout: cfg.idle_timeout }
    }

    fn limits(&self) -> Limits {
        *self.limits.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// New limits (a reload); idle connections beyond them go at the next reap.
    pub fn configure(&self, cfg: &lb_config::Pool) {
        *self.limits.lock().unwrap_or_else(|e| e.into_inner()) = Self::limits_of(cfg);
    }

    /// Idle connections to `backend` now.
    pub fn idle_count(&self, backend: SocketAddr) -> usize {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).get(&backend).map_or(0, Vec::len)
    }

    /// An idle connection to `backend` that is still open and ready, if there is one.
    pub async fn checkout(&self, backend: SocketAddr, ready_within: Duration) -> Option<Conn> {
        let timeout = self.limits().idle_timeout;
        loop {
            let mut conn = {
                let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
                idle.get_mut(&backend)?.pop()?
            };
            if conn.sender.is_closed() || conn.idle_since.elapsed() >= timeout || conn.slot.cut.is_fired() {
                continue;
            }
            // Back in the pool as soon as its last response ended; the connection task may
            // need a moment to get ready for the next request.
            if let Ok(Ok(())) = tokio::time::timeout(ready_within, conn.sender.ready()).await {
                return Some(conn);
            }
        }
    }

    /// Returns a connection after a complete response. Closed, cut, surplus or shut-down:
    /// dropped, which closes it.
    pub fn checkin(&self, mut conn: Conn) {
        if self.closed.load(Ordering::Relaxed) || conn.sender.is_closed() || conn.slot.cut.is_fired() {
            return;
        }
        let max = self.limits().max_idle;
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.entry(conn.slot.address).or_default();
        if list.len() < max {
            conn.idle_since = Instant::now();
            list.push(conn);
        }
    }

    /// How often to `reap`: idle connections go within half their `idle_timeout`.
    pub fn reap_interval(&self) -> Duration {
        (self.limits().idle_timeout / 2).clamp(Duration::from_millis(50), Duration::from_secs(5))
    }

    /// Closes idle connections past their time (and beyond the current limit).
    pub fn reap(&self) {
        let Limits { max_idle, idle_timeout } = self.limits();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        for list in idle.values_mut() {
            list.retain(|c| !c.sender.is_closed() && c.idle_since.elapsed() < idle_timeout);
            // The stack's bottom holds the oldest: drop those first.
            let surplus = list.len().saturating_sub(max_idle);
            list.drain(..surplus);
        }
        idle.retain(|_, l| !l.is_empty());
    }

    /// Closes the idle connections to one backend (it was cut or removed).
    pub fn evict(&self, backend: SocketAddr) {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).remove(&backend);
    }

    /// No more pooling: idle connections close now, busy ones after their response.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// A response body from upstream. When it has been read to the end, its connection goes
/// back to the pool and its request stops counting as active; dropped early, the
/// connection is closed (HTTP/1.1 cannot skip the rest of a body).
pub struct UpstreamBody {
    inner: Incoming,
    conn: Option<Conn>,
    pool: Arc<UpstreamPool>,
    request: Option<(ActiveGuard, FlowEntry)>,
}

impl UpstreamBody {
    pub fn new(inner: Incoming, conn: Conn, pool: Arc<UpstreamPool>, active: ActiveGuard, flow: FlowEntry) -> Self {
        let mut b = UpstreamBody { inner, conn: Some(conn), pool, request: Some((active, flow)) };
        if b.inner.is_end_stream() {
            b.finish();
        }
        b
    }

    fn finish(&mut self) {
        if let Some(c) = self.conn.take() {
            self.pool.checkin(c);
        }
        self.request = None;
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        match &r {
            Poll::Ready(None) => this.finish(),
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.finish(),
            Poll::Ready(Some(Err(_))) => {
                this.conn = None;
                this.request = None;
            }
            _ => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        if self.inner.is_end_stream() {
            self.finish();
        }
    }
}

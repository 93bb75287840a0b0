//! L4 TCP relay (`proxy_mode = "l4"`): for a connection `accept` hands over, pick a
//! backend, connect (the next choice on failure), then copy bytes both ways until both
//! sides are done.
//!
//! Half-close: when one side sends FIN, the other side's write half is shut down and the
//! other direction keeps flowing until it ends too. A reset (any I/O error) on either side
//! resets both (SO_LINGER 0), so a client sees a backend's RST as an RST, not as a clean end.
//!
//! With `send_proxy`, a PROXY header goes to the backend before any client byte; with SNI
//! routes (`[[service.route]]`), the ClientHello is read first and picks the backend set.
//!
//! Protection: a backend at `max_connections` is skipped for the next choice, and with
//! every one full the client is closed (the rate limit is `accept`'s).
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, warn};

use super::front::Origin;
use super::idle::Activity;
use super::lazy_select::select_lazy;
use super::outcome::{self, Verdict};
use super::proxy_header;
use super::service::ServiceCtx;
use super::sni::{self, SniRefusal};
use super::stats::ProxyFlow;
use super::table::{BackendSlot, NoBackend, Picked, Table, MAX_TRIES};
use super::tracker::TaskGuard;
use crate::select::{ActiveGuard, Flow};
use futures_util::TryFutureExt as _;

const IPPROTO_TCP: u8 = 6;
const COPY_BUF: usize = 16 * 1024;

/// A connected backend, with what keeps its counters right while it lives.
struct Upstream {
    pub stream: TcpStream,
    pub slot: Arc<BackendSlot>,
    /// Held for the connection's life: the backend's active count.
    pub _active: ActiveGuard,
}

/// Connects to the flow's first choice, else to its next ones, `MAX_TRIES` backends at
/// most. None: no backend in rotation, all of them full (counted as overflow), or none
/// answered. A connect refused or timed out is the backend's failed outcome.
async fn connect_backend(table: &Table, flow: &Flow, group: Option<&str>, ctx: &ServiceCtx) -> Option<Upstream> {
    let timeout = table.settings.connect_timeout;
    let mut picks = table.picks_in(flow, group);
    for _ in 0..MAX_TRIES {
        let Picked { slot, active } = match picks.next_backend() {
            Ok(p) => p,
            Err(NoBackend::Full) => {
                ctx.service_stats.overflow_total.fetch_add(1, Ordering::Relaxed);
                debug!(service = %ctx.name, client = %flow.client, "every backend at max_connections");
                return None;
            }
            Err(NoBackend::None) => return None,
        };
        let address = slot.address;
        let error = match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                slot.stats.connections_total.fetch_add(1, Ordering::Relaxed);
                return Some(Upstream { stream, slot, _active: active });
            }
            Ok(Err(e)) if outcome::is_local(&e) => {
                if slot.may_warn() {
                    warn!(service = %ctx.name, backend = %address, "connect failed here, not at the backend: {e}; closing the client");
                }
                return None;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {timeout:?}"),
        };
        slot.stats.connect_failures_total.fetch_add(1, Ordering::Relaxed);
        outcome::failed(&slot.stats);
        if slot.may_warn() {
            warn!(service = %ctx.name, backend = %address, "connect failed: {error}; trying the next backend");
        } else {
            debug!(service = %ctx.name, backend = %address, client = %flow.client, "connect failed: {error}");
        }
    }
    None
}

/// Why a relay ended.
#[derive(Debug)]
enum End {
    /// Both directions finished (FIN both ways).
    Done,
    Idle,
    /// Either side reset or failed; `backend`: the backend's socket did.
    Error {
        backend: bool,
        error: io::Error,
    },
    /// The backend was cut, the service removed, or the drain ran out.
    Closed,
}

/// Relays one client connection until both sides are done, either resets, it goes idle,
/// or its backend or service is closed.
pub async fn serve(mut client: TcpStream, origin: Origin, ctx: Arc<ServiceCtx>, _guard: TaskGuard) {
    let _ = client.set_nodelay(true);
    let vip = ctx.flow_vip(|| client.local_addr().ok());
    let Origin { client: peer, destination, mut early } = origin;
    let flow = Flow { client: peer, vip, proto: IPPROTO_TCP };
    let table = ctx.table.load();
    let mut group = None;
    if !table.options.sni.is_empty() {
        let Some((routed, read)) = route(&mut client, early, peer, &table, &ctx).await else {
            reset(&client);
            return;
        };
        (group, early) = (routed, read);
    }
    let connected = tokio::select! {
        u = connect_backend(&table, &flow, group.as_deref(), &ctx) => u,
        _ = ctx.killed() => None,
    };
    let Some(mut up) = connected else {
        debug!(service = %ctx.name, client = %peer, "no backend: closing the client connection");
        return;
    };
    let idle = table.settings.tcp_idle_timeout;
    let header = table.options.proxy_protocol.send.map(|v| proxy_header::encode(v, peer, destination.unwrap_or(vip)));
    drop(table);
    // Before any byte of the client's: the PROXY header, then what was read already.
    if let Err(e) = send_first(&mut up, header.as_deref(), &early).await {
        debug!(service = %ctx.name, client = %peer, backend = %up.slot.address, "backend connection failed before the relay: {e}");
        outcome::failed(&up.slot.stats);
        reset(&client);
        reset(&up.stream);
        return;
    }
    let backend = up.slot.address;
    let _flow = ctx.stats.open_flow(ProxyFlow {
        service: ctx.name.to_string(),
        protocol: ctx.protocol,
        client: peer,
        vip,
        backend,
    });
    debug!(service = %ctx.name, client = %peer, %backend, "connection open");
    // The connect alone does not prove the backend works (one that accepts and resets at
    // once would never be ejected): the flow succeeds with the backend's first byte, or
    // when it ends without the backend failing; it fails if the backend resets before
    // sending anything.
    let verdict = Verdict::new(up.slot.stats.clone());
    relay(client, up.stream, peer, &up.slot, &ctx, idle, Some(&verdict)).await;
}

/// Writes the PROXY header (`send_proxy`) and the client's bytes read so far (after a
/// front's PROXY header, a ClientHello) to a new backend connection.
async fn send_first(up: &mut Upstream, header: Option<&[u8]>, early: &[u8]) -> io::Result<()> {
    if let Some(h) = header {
        up.stream.write_all(h).await?;
    }
    if !early.is_empty() {
        up.slot.stats.bytes_in.fetch_add(early.len() as u64, Ordering::Relaxed);
        up.stream.write_all(early).await?;
    }
    Ok(())
}

/// SNI routing: reads the ClientHello (bounded in bytes and by `sni_timeout`) and names
/// the group its server name routes to (None: the backends without a group), with every
/// byte read so far. None: the connection is refused (counted).
async fn route(
    client: &mut TcpStream,
    early: Vec<u8>,
    peer: SocketAddr,
    table: &Table,
    ctx: &ServiceCtx,
) -> Option<(Option<String>, Vec<u8>)> {
    let routing = &table.options.sni;
    let stats = &ctx.service_stats.traffic;
    let read = tokio::select! {
        r = sni::read_hello(client, early, routing.timeout) => r,
        _ = ctx.killed() => return None,
    };
    let (name, bytes) = match read {
        Ok(hello) => hello,
        Err(why) => {
            stats.sni_rejected(why);
            debug!(service = %ctx.name, client = %peer, reason = why.as_str(), "no ClientHello to route by: closed");
            return None;
        }
    };
    let group = name.as_deref().and_then(|n| routing.group_of(n));
    if group.is_none() && !table.has_default_group {
        stats.sni_rejected(SniRefusal::NoRoute);
        debug!(service = %ctx.name, client = %peer, sni = ?name, "no route for the server name and no default backends: closed");
        return None;
    }
    stats.sni_routed(group);
    debug!(service = %ctx.name, client = %peer, sni = ?name, group = ?group, "routed by SNI");
    Some((group.map(str::to_string), bytes))
}

/// Copies bytes both ways between a client and its backend until both sides are done,
/// either resets, the connection goes idle for `idle`, or its backend or service is closed
/// (then both are reset). The l4 relay, and an HTTP connection after an `Upgrade`.
/// `verdict`: the flow's outcome, decided by how the backend's side ends.
pub async fn relay(
    mut client: TcpStream,
    mut server: TcpStream,
    peer: SocketAddr,
    slot: &BackendSlot,
    ctx: &ServiceCtx,
    idle: Duration,
    verdict: Option<&Verdict>,
) {
    let backend = slot.address;
    let end = {
        let activity = Activity::new();
        let stats = &slot.stats;
        let (cr, cw) = client.split();
        let (sr, sw) = server.split();
        let ended = AtomicBool::new(false);
        let upstream = pipe(cr, sw, &stats.bytes_in, &activity, &ended, None).map_err(|(f, e)| (f == Fault::Write, e));
        let downstream =
            pipe(sr, cw, &stats.bytes_out, &activity, &ended, verdict).map_err(|(f, e)| (f == Fault::Read, e));
        let copy = async {
            match tokio::try_join!(upstream, downstream) {
                Ok(_) => End::Done,
                Err((backend, error)) => End::Error { backend, error },
            }
        };
        // The idle timer and the signals wake once in a connection's life, the copy on
        // every read and write: only the copy is polled on its own wake-ups.
        let ends = async {
            tokio::select! {
                _ = activity.expired(idle) => End::Idle,
                _ = slot.cut.fired() => End::Closed,
                _ = ctx.killed() => End::Closed,
            }
        };
        select_lazy(copy, ends).await
    };
    if let Some(verdict) = verdict {
        match &end {
            End::Error { backend: true, .. } => verdict.fail(),
            _ => verdict.succeed(),
        }
    }
    match &end {
        End::Error { backend: by_backend, error } => {
            debug!(service = %ctx.name, client = %peer, %backend, by_backend, "connection reset: {error}")
        }
        other => debug!(service = %ctx.name, client = %peer, %backend, end = ?other, "connection closed"),
    }
    if matches!(end, End::Error { .. } | End::Closed) {
        reset(&client);
        reset(&server);
    }
}

/// Which half of a `pipe` failed: reading its source or writing its destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    Read,
    Write,
}

/// Copies one direction; on EOF passes the FIN on (shutdown of the write half), unless
/// the other direction has ended already (`ended`): then the relay is over and closing the
/// sockets sends that FIN, one syscall less per connection. `first`: decided as a success
/// with the first byte read (the backend → client direction).
async fn pipe(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    bytes: &AtomicU64,
    activity: &Activity,
    ended: &AtomicBool,
    first: Option<&Verdict>,
) -> Result<(), (Fault, io::Error)> {
    // Not zeroed: reads fill the spare capacity, and only what they filled is written.
    let mut buf = Vec::with_capacity(COPY_BUF);
    loop {
        buf.clear();
        let n = from.read_buf(&mut buf).await.map_err(|e| (Fault::Read, e))?;
        if n == 0 {
            if ended.swap(true, Ordering::AcqRel) {
                return Ok(());
            }
            return to.shutdown().await.map_err(|e| (Fault::Write, e));
        }
        if let Some(v) = first {
            v.succeed();
        }
        // Once per chunk (a clock read): the write's end is no news to the idle timer.
        activity.touch();
        // Counted as taken for forwarding (before the write: a reader on the other side
        // never sees bytes the counter has not).
        bytes.fetch_add(n as u64, Ordering::Relaxed);
        to.write_all(&buf[..n]).await.map_err(|e| (Fault::Write, e))?;
    }
}

/// Close with RST rather than FIN when the socket is dropped.
pub fn reset(s: &TcpStream) {
    let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
}

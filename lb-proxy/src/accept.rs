//! TCP listeners: accept, apply what every accepted connection meets whatever the mode
//! (the connection caps: one past them is reset at once; `[service.rate_limit]`: a new
//! connection over it is refused, no backend contacted), then hand the connection to its
//! service's mode: the l4 relay (`tcp`) or the HTTP proxy (`http`), each as its own
//! tracked task holding the connection's slot in the caps.
//!
//! With `accept_proxy`, a connection from a trusted front load balancer first has its PROXY
//! header read (`front`), and all of the above is then applied to the client it names; one
//! from any other source is reset.
//!
//! Accept errors (EMFILE when the process is out of descriptors, ENFILE, ENOBUFS) leave
//! the connection in the kernel's queue: the loop logs once per streak and backs off
//! (10 ms more per failure, at most `MAX_BACKOFF`), so it neither spins nor gives up, and
//! accepts again as soon as descriptors are free.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

use super::caps::ConnSlot;
use super::front::{self, FrontRefusal, Origin};
use super::http::{self, Refusal};
use super::service::ServiceCtx;
use super::tcp;
use super::tracker::{TaskGuard, TaskKind};
use lb_config::ProxyMode;

const BACKOFF_STEP: Duration = Duration::from_millis(10);
/// Longest pause after a failed accept: short, as the clients queued meanwhile wait it out.
const MAX_BACKOFF: Duration = Duration::from_millis(200);

/// Accepts until the service or the proxy stops.
pub async fn accept_loop(listener: TcpListener, ctx: Arc<ServiceCtx>, _guard: TaskGuard) {
    let mut failures = 0u32;
    loop {
        let accepted = tokio::select! {
            biased;
            _ = ctx.stopped() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                failures = 0;
                let options = ctx.table.load().options.clone();
                if options.proxy_protocol.accepts() {
                    from_front(stream, peer, options.proxy_protocol.trusts(peer.ip()), &ctx);
                } else {
                    serve_accepted(stream, Origin::direct(peer), &ctx);
                }
            }
            Err(e) => {
                // EMFILE and friends: log once per streak and back off instead of spinning.
                if failures == 0 {
                    warn!(service = %ctx.name, vip = %ctx.vip, "accept failed: {e}");
                }
                failures = failures.saturating_add(1);
                tokio::time::sleep((BACKOFF_STEP * failures).min(MAX_BACKOFF)).await;
            }
        }
    }
    debug!(service = %ctx.name, vip = %ctx.vip, "listener closed");
}

/// What every accepted connection meets, in the name of its client (`origin`): the caps,
/// the source lists and the rate limit; then its mode serves it.
fn serve_accepted(stream: TcpStream, origin: Origin, ctx: &Arc<ServiceCtx>) {
    let Some(slot) = hold_slot(ctx, &stream, origin.client) else { return };
    if let Some(stream) = admit(ctx, stream, origin.client) {
        hand_over(stream, origin, slot, ctx);
    }
}

/// `accept_proxy`: a trusted front's connection is served once its PROXY header is read,
/// in the name of the client the header names; an untrusted one, or one whose header is
/// malformed or late, is reset (counted).
fn from_front(mut stream: TcpStream, peer: SocketAddr, trusted: bool, ctx: &Arc<ServiceCtx>) {
    if !trusted {
        refuse_front(&stream, peer, ctx, FrontRefusal::Untrusted, "not in accept_proxy_from");
        return;
    }
    let guard = ctx.track(TaskKind::Connection);
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let _guard = guard;
        let read = tokio::select! {
            r = front::read_header(&mut stream, peer) => r,
            _ = ctx.killed() => return,
        };
        match read {
            Ok(origin) => {
                debug!(service = %ctx.name, front = %peer, client = %origin.client, "PROXY header read");
                serve_accepted(stream, origin, &ctx);
            }
            Err((why, detail)) => refuse_front(&stream, peer, &ctx, why, &detail),
        }
    });
}

fn refuse_front(stream: &TcpStream, peer: SocketAddr, ctx: &ServiceCtx, why: FrontRefusal, detail: &str) {
    ctx.service_stats.traffic.proxy_header_rejected(why);
    debug!(service = %ctx.name, peer = %peer, reason = why.as_str(), "connection refused: {detail}");
    tcp::reset(stream);
}

/// The connection's place in the service's connection caps; none left: reset at once
/// (counted, logged at most once per 10 s with the count).
fn hold_slot(ctx: &Arc<ServiceCtx>, stream: &TcpStream, peer: SocketAddr) -> Option<ConnSlot> {
    match ctx.conns.admit(peer.ip()) {
        Ok(slot) => Some(slot),
        Err(scope) => {
            ctx.service_stats.capped(scope);
            if let Some(refused) = ctx.conns.refused() {
                warn!(service = %ctx.name, client = %peer, scope = scope.as_str(), refused, open = ctx.conns.open(), "connection cap reached: new connections refused");
            }
            tcp::reset(stream);
            None
        }
    }
}

/// The rate limit: the connection back if it may be served; else it is refused the
/// mode's way (counted, and no backend is contacted).
fn admit(ctx: &Arc<ServiceCtx>, stream: TcpStream, peer: SocketAddr) -> Option<TcpStream> {
    if !ctx.limiter.permits(peer.ip()) {
        // Refused by the source lists, before any bucket: reset, whatever the mode.
        ctx.service_stats.acl_denied();
        debug!(service = %ctx.name, client = %peer, "source refused by allow/deny: connection reset");
        tcp::reset(&stream);
        return None;
    }
    let Err(scope) = ctx.limiter.admit(peer.ip()) else { return Some(stream) };
    ctx.service_stats.ratelimited(scope);
    debug!(service = %ctx.name, client = %peer, scope = scope.as_str(), "over the rate limit: connection refused");
    match ctx.mode {
        // RST, not FIN: under a flood the LB keeps no TIME_WAIT for the connections it
        // refuses.
        ProxyMode::L4 => tcp::reset(&stream),
        ProxyMode::Http => {
            let guard = ctx.track(TaskKind::Connection);
            tokio::spawn(http::refuse(stream, peer, ctx.clone(), guard, Refusal::RateLimited));
        }
    }
    None
}

/// The connection becomes its own task, served in its service's mode.
fn hand_over(stream: TcpStream, origin: Origin, slot: ConnSlot, ctx: &Arc<ServiceCtx>) {
    let guard = ctx.track(TaskKind::Connection);
    let ctx = ctx.clone();
    match ctx.mode {
        ProxyMode::L4 => tokio::spawn(async move {
            let _slot = slot;
            tcp::serve(stream, origin, ctx, guard).await
        }),
        // The slot goes with the socket (into an upgrade's relay, too).
        ProxyMode::Http => tokio::spawn(http::serve(stream, origin, slot, ctx, guard)),
    };
}

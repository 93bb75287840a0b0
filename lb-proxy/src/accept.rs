//! TCP listeners: accept, apply what every accepted connection meets whatever the mode
//! (`[service.rate_limit]`: a new connection over it is refused at once, no backend
//! contacted), then hand the connection to its service's mode: the l4 relay (`tcp`) or
//! the HTTP proxy (`http`), each as its own tracked task.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

use super::http::{self, Refusal};
use super::service::ServiceCtx;
use super::tcp;
use super::tracker::{TaskGuard, TaskKind};
use lb_config::ProxyMode;

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
                if let Some(stream) = admit(&ctx, stream, peer) {
                    hand_over(stream, peer, &ctx);
                }
            }
            Err(e) => {
                // EMFILE and friends: log once per streak and back off instead of spinning.
                if failures == 0 {
                    warn!(service = %ctx.name, vip = %ctx.vip, "accept failed: {e}");
                }
                failures = failures.saturating_add(1);
                tokio::time::sleep(Duration::from_millis(10 * failures.min(100) as u64)).await;
            }
        }
    }
    debug!(service = %ctx.name, vip = %ctx.vip, "listener closed");
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
fn hand_over(stream: TcpStream, peer: SocketAddr, ctx: &Arc<ServiceCtx>) {
    let guard = ctx.track(TaskKind::Connection);
    let ctx = ctx.clone();
    match ctx.mode {
        ProxyMode::L4 => tokio::spawn(tcp::serve(stream, peer, ctx, guard)),
        ProxyMode::Http => tokio::spawn(http::serve(stream, peer, ctx, guard)),
    };
}

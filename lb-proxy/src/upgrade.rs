//! HTTP `Upgrade` (WebSocket, and any other protocol a client switches to) in
//! `proxy_mode = "http"`. The request goes to its backend on a connection of its own, never
//! a pooled one, with `Connection: upgrade` and its `Upgrade` header kept (both are
//! hop-by-hop, stripped from every other request). When the backend answers `101 Switching
//! Protocols`, the client gets the 101, and from then on the connection is a byte relay
//! between client and backend: the l4 relay, with its half-close, resets, idle timeout, and
//! end when its backend is cut or its service removed. Any other answer is an ordinary
//! response, and the client's connection carries on as HTTP.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, UPGRADE};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper::{HeaderMap, Request, Response, Version};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tracing::debug;

use super::client::{ClientIo, Socket};
use super::headers::strip_hop_by_hop;
use super::io::Metered;
use super::pool::Conn;
use super::service::ServiceCtx;
use super::stats::FlowEntry;
use super::tcp;
use super::tracker::{TaskGuard, TaskKind};
use crate::select::ActiveGuard;

/// How long the two sides have to hand their connections over once the 101 is on its way
/// (a formality for hyper; bounded so that no task can wait forever).
const HANDOVER: Duration = Duration::from_secs(10);

/// A client's request to switch protocols: what it asked for, and its side of the
/// connection once the switch is made.
pub struct Requested {
    pub protocols: HeaderValue,
    pub client: OnUpgrade,
}

/// The switch the request asks for, if it asks (see `protocols_asked`). Taken from the
/// request: its connection goes with it.
pub fn requested(req: &mut Request<Incoming>) -> Option<Requested> {
    let protocols = protocols_asked(req.version(), req.headers())?;
    Some(Requested { protocols, client: hyper::upgrade::on(req) })
}

/// The protocols a request asks to switch to: HTTP/1.1, `Connection` naming `upgrade`, and
/// an `Upgrade` header (RFC 9110 §7.8).
fn protocols_asked(version: Version, headers: &HeaderMap) -> Option<HeaderValue> {
    let names_upgrade = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if version != Version::HTTP_11 || !names_upgrade {
        return None;
    }
    headers.get(UPGRADE).cloned()
}

/// The two headers that ask for the switch, on a message whose hop-by-hop headers were
/// stripped.
pub fn ask(headers: &mut HeaderMap, protocols: &HeaderValue) {
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, protocols.clone());
}

/// What the request's flow holds while it lives: its backend's connection, its place in
/// the backend's active count, its row in the open flows.
pub struct Held {
    pub conn: Conn,
    pub active: ActiveGuard,
    pub flow: FlowEntry,
}

/// The backend switched (`resp` is its 101): the client's 101, with the backend's headers
/// (hop-by-hop ones out, the switch's back in); the relay starts as its own task once both
/// sides have handed their connections over. `Err`: the 101 names no protocol, which the
/// client could not use (RFC 9110 §15.2.2), so it gets a 502 instead.
pub fn switch(
    mut resp: Response<Incoming>,
    client: OnUpgrade,
    peer: SocketAddr,
    held: Held,
    ctx: &Arc<ServiceCtx>,
) -> Result<Response<()>, &'static str> {
    let Some(protocols) = resp.headers().get(UPGRADE).cloned() else {
        return Err("the backend switched protocols without naming one");
    };
    let backend = hyper::upgrade::on(&mut resp);
    let (mut parts, _) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    ask(&mut parts.headers, &protocols);
    let guard = ctx.track(TaskKind::Connection);
    let idle = ctx.table.load().settings.tcp_idle_timeout;
    tokio::spawn(relay(client, backend, peer, held, ctx.clone(), idle, guard));
    Ok(Response::from_parts(parts, ()))
}

async fn relay(
    client: OnUpgrade,
    backend: OnUpgrade,
    peer: SocketAddr,
    held: Held,
    ctx: Arc<ServiceCtx>,
    idle: Duration,
    _guard: TaskGuard,
) {
    let Held { conn, active: _active, flow: _flow } = held;
    let slot = conn.slot.clone();
    let handover = async { tokio::try_join!(client, backend) };
    let (client, backend) = tokio::select! {
        r = tokio::time::timeout(HANDOVER, handover) => match r {
            Ok(Ok(both)) => both,
            Ok(Err(e)) => {
                debug!(service = %ctx.name, client = %peer, backend = %slot.address, "upgrade failed: {e}");
                return;
            }
            Err(_) => {
                debug!(service = %ctx.name, client = %peer, backend = %slot.address, "upgrade not completed within {HANDOVER:?}");
                return;
            }
        },
        _ = ctx.killed() => return,
        _ = slot.cut.fired() => return,
    };
    // The connection to the backend is the relay's now, not the HTTP client's.
    drop(conn);
    let (Some((client, early_client)), Some((mut server, early_server))) = (client_of(client), stream_of(backend))
    else {
        debug!(service = %ctx.name, client = %peer, "upgraded connection of an unexpected type");
        return;
    };
    // The client's socket keeps its place in the service's connection caps while it relays.
    let Socket { stream: mut client, slot: _slot } = client;
    // Bytes either side sent right behind its head, read already with it.
    if !early_client.is_empty() {
        slot.stats.bytes_in.fetch_add(early_client.len() as u64, std::sync::atomic::Ordering::Relaxed);
        if server.write_all(&early_client).await.is_err() {
            return;
        }
    }
    if !early_server.is_empty() && client.write_all(&early_server).await.is_err() {
        return;
    }
    debug!(service = %ctx.name, client = %peer, backend = %slot.address, "connection upgraded: relaying bytes");
    tcp::relay(client, server, peer, &slot, &ctx, idle, None).await;
}

/// The TCP stream under an upgraded backend connection, and the bytes HTTP read past the
/// head.
fn stream_of(upgraded: Upgraded) -> Option<(TcpStream, hyper::body::Bytes)> {
    let parts = upgraded.downcast::<TokioIo<Metered>>().ok()?;
    Some((parts.io.into_inner().into_stream(), parts.read_buf))
}

/// The same for the client's side: its socket, with its connection slot.
fn client_of(upgraded: Upgraded) -> Option<(Socket, hyper::body::Bytes)> {
    let parts = upgraded.downcast::<TokioIo<ClientIo>>().ok()?;
    Some((parts.io.into_inner().into_socket()?, parts.read_buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (hyper::header::HeaderName::from_static(k), HeaderValue::from_static(v))).collect()
    }

    #[test]
    fn an_upgrade_needs_http_1_1_connection_upgrade_and_an_upgrade_header() {
        let ws = headers(&[("connection", "keep-alive, Upgrade"), ("upgrade", "websocket")]);
        assert_eq!(protocols_asked(Version::HTTP_11, &ws).unwrap(), "websocket");
        assert_eq!(protocols_asked(Version::HTTP_10, &ws), None);
        assert_eq!(protocols_asked(Version::HTTP_11, &headers(&[("upgrade", "websocket")])), None);
        assert_eq!(protocols_asked(Version::HTTP_11, &headers(&[("connection", "upgrade")])), None);
    }

    #[test]
    fn ask_puts_the_switch_back_after_stripping() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("upgrade, x-secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        strip_hop_by_hop(&mut h);
        ask(&mut h, &HeaderValue::from_static("websocket"));
        assert_eq!(h.get(CONNECTION).unwrap(), "upgrade");
        assert_eq!(h.get(UPGRADE).unwrap(), "websocket");
        assert!(!h.contains_key("x-secret"));
    }
}

//! `proxy_mode = "http"`: an HTTP/1.1 server for clients (keep-alive), each request sent to
//! a backend picked for it, over the pool's keep-alive connections.
//!
//! Headers: hop-by-hop ones (RFC 9110 §7.6.1: `Connection` and every header it names,
//! `Keep-Alive`, `Proxy-Connection`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`,
//! `Proxy-Authenticate`, `Proxy-Authorization`) are removed in both directions: each hop
//! frames its own messages. `X-Forwarded-For` gets the client's IP appended. A request to
//! switch protocols keeps `Connection: upgrade` and `Upgrade`, and after the backend's 101
//! the connection becomes a byte relay (`upgrade`).
//!
//! Retries: a request that failed before any response byte is sent again, once, on a fresh
//! connection, when its method is idempotent (RFC 9110 §9.2.2) or none of it was written
//! (hyper hands it back unsent: the pooled connection had closed), and its body can still
//! be sent: bodies up to 64 KiB (`Content-Length`) are read whole first for that; larger or
//! chunked ones stream and are retried only if hyper hands them back unsent. A POST or
//! PATCH whose bytes went out is never sent twice: the backend may have acted on it, so the
//! client gets the 502. After a backend that refuses or times out the connect (nothing
//! sent), the flow's next choice is tried, as in l4 mode, whatever the method.
//!
//! `send_proxy`: each upstream connection starts with a PROXY header naming the client
//! whose request opened it, so it serves that client's requests only: such a service's
//! requests always take a fresh connection, which is not pooled after the response.
//!
//! Protection: the rate limit counts client connections (requests on an established
//! keep-alive connection are never limited); one over it gets `429` and is closed. The
//! request is the unit of `max_connections` (requests in flight per backend, i.e. upstream
//! connections in use): a full backend is skipped, all full is `503`. Outcomes for the
//! circuit breaker are per request: connect failure, no response, or 5xx fail; else success.
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Either, Full};
use hyper::body::{Body, Bytes, Incoming};
use hyper::header::{HeaderName, HeaderValue, CONNECTION, HOST};
use hyper::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tracing::{debug, warn};

use super::caps::ConnSlot;
use super::client::{answer_and_close, ClientIo, ClientShared};
use super::front::Origin;
use super::headers::strip_hop_by_hop;
use super::io::Metered;
use super::outcome;
use super::pool::{Conn, ReqBody, UpstreamBody, UpstreamPool};
use super::proxy_header;
use super::service::ServiceCtx;
use super::stats::{FlowEntry, HttpRejection, ProxyFlow};
use super::table::{BackendSlot, NoBackend, Picked, Table, MAX_TRIES};
use super::tracker::{TaskGuard, TaskKind};
use super::upgrade;
use crate::select::{ActiveGuard, Flow};

pub type RespBody = Either<UpstreamBody, Full<Bytes>>;

const IPPROTO_TCP: u8 = 6;
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Serves one client connection until it closes, goes idle for `tcp_idle_timeout`, waits
/// longer than `http_header_timeout` for a request head, or the proxy shuts down (then: the
/// request in flight finishes, keep-alive ends). `slot`: its place in the connection caps,
/// held as long as its socket is open.
pub async fn serve(stream: TcpStream, origin: Origin, slot: ConnSlot, ctx: Arc<ServiceCtx>, _guard: TaskGuard) {
    let _ = stream.set_nodelay(true);
    let vip = ctx.flow_vip(|| stream.local_addr().ok());
    let peer = origin.client;
    let table = ctx.table.load();
    let settings = table.settings.clone();
    // `send_proxy`: every upstream connection of this client's starts with this.
    let header = table
        .options
        .proxy_protocol
        .send
        .map(|v| Bytes::from(proxy_header::encode(v, peer, origin.destination.unwrap_or(vip))));
    drop(table);
    let shared = Arc::new(ClientShared::default());
    let io = TokioIo::new(ClientIo::new(stream, Some(slot), shared.clone()).with_early(origin.early));
    let (svc_ctx, svc_shared) = (ctx.clone(), shared.clone());
    let service = hyper::service::service_fn(move |req| {
        let (ctx, shared, header) = (svc_ctx.clone(), svc_shared.clone(), header.clone());
        async move { Ok::<_, Infallible>(handle(req, peer, vip, header, &ctx, &shared).await) }
    });
    // The header timeout runs from when a head is awaited (accept, or the end of the
    // previous response) to its end: a slow head is cut, and so is a keep-alive connection
    // that sends no new request in that time. `max_header_size` is answered with 431 by
    // hyper, as is a malformed head with 400.
    // With upgrades: after a 101 the connection leaves HTTP for `upgrade`'s relay.
    let mut conn = Box::pin(
        hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(settings.http_header_timeout)
            .max_header_size(settings.http_max_header_size)
            .keep_alive(true)
            .half_close(true)
            .serve_connection(io, service)
            .with_upgrades(),
    );
    let mut stopping = false;
    let failed = loop {
        tokio::select! {
            r = conn.as_mut() => break r.err(),
            _ = ctx.stopped(), if !stopping => {
                conn.as_mut().graceful_shutdown();
                stopping = true;
            }
            _ = shared.activity.expired(settings.tcp_idle_timeout) => break None,
            _ = ctx.killed() => return,
        }
    };
    let answer = match &failed {
        Some(e) => refused_by_hyper(e, peer, &ctx, &shared),
        // Our own refusal (`handle`): hyper sent it and closed.
        None => shared.keeps_socket().then_some(&b""[..]),
    };
    let Some(answer) = answer else { return };
    // The socket back from hyper, for the answer and a lingering close.
    shared.keep_socket();
    drop(conn);
    if let Some(socket) = shared.take_socket() {
        tokio::select! {
            _ = answer_and_close(socket, answer) => {}
            _ = ctx.killed() => {}
        }
    }
}

/// What the client still gets after hyper gave up on its connection with `e`: a 408 for a
/// head cut by the header timeout; nothing more when hyper answered itself (431, 400) but
/// a lingering close. None: the connection just closes (it failed, or it sent nothing
/// within the header timeout).
fn refused_by_hyper(
    e: &hyper::Error,
    peer: SocketAddr,
    ctx: &ServiceCtx,
    shared: &ClientShared,
) -> Option<&'static [u8]> {
    let (why, answer) = if e.is_timeout() {
        if !shared.head_in_progress() {
            debug!(service = %ctx.name, client = %peer, "no request within the header timeout: closed");
            return None;
        }
        (HttpRejection::HeaderTimeout, REQUEST_TIMEOUT)
    } else if e.is_parse_too_large() {
        (HttpRejection::HeaderTooLarge, &b""[..])
    } else if e.is_parse() {
        (HttpRejection::Malformed, &b""[..])
    } else {
        debug!(service = %ctx.name, client = %peer, "client connection ended: {e}");
        return None;
    };
    ctx.service_stats.http_rejected(why);
    debug!(service = %ctx.name, client = %peer, reason = why.as_str(), "request refused: {e}");
    Some(answer)
}

/// The answer to a head cut by the header timeout (hyper has none of its own).
const REQUEST_TIMEOUT: &[u8] = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\
    Content-Type: text/plain; charset=utf-8\r\nContent-Length: 61\r\n\r\n\
    408 Request Timeout: the request head did not arrive in time\n";

/// One request, as hyper hands it over: refused if its head had both `Content-Length` and
/// `Transfer-Encoding` (400, and the connection closes: what follows cannot be trusted to
/// be framed as the client meant), else forwarded.
async fn handle(
    req: Request<Incoming>,
    client: SocketAddr,
    vip: SocketAddr,
    header: Option<Bytes>,
    ctx: &Arc<ServiceCtx>,
    shared: &ClientShared,
) -> Response<RespBody> {
    if shared.next_verdict().is_some_and(|v| v.conflicting_length) {
        ctx.service_stats.http_rejected(HttpRejection::ConflictingLength);
        debug!(service = %ctx.name, %client, "request with both Content-Length and Transfer-Encoding: 400");
        shared.keep_socket();
        let mut r = text(
            StatusCode::BAD_REQUEST,
            "400 Bad Request: both Content-Length and Transfer-Encoding (the request's length is ambiguous)\n",
        );
        r.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
        return r;
    }
    forward(req, client, vip, header, ctx).await
}

/// Why a client connection is answered without being proxied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Over `[service.rate_limit]`: 429.
    RateLimited,
}

/// How long a refused client has to send its request and read the answer.
const REFUSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Answers the connection's first request with the refusal (`Connection: close`) and
/// closes it. The request is read first (hyper does): answering before it, then closing
/// with unread bytes, would make the kernel send an RST that can destroy the answer.
pub async fn refuse(stream: TcpStream, peer: SocketAddr, ctx: Arc<ServiceCtx>, _guard: TaskGuard, why: Refusal) {
    let name = ctx.name.get();
    let service = hyper::service::service_fn(move |_req: Request<Incoming>| {
        let response = match why {
            Refusal::RateLimited => text(
                StatusCode::TOO_MANY_REQUESTS,
                &format!("429 Too Many Requests: service {name} is over its rate limit for new connections\n"),
            ),
        };
        async move { Ok::<_, Infallible>(response) }
    });
    // keep_alive(false): hyper sends `Connection: close` and ends after this response.
    let conn =
        hyper::server::conn::http1::Builder::new().keep_alive(false).serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        r = tokio::time::timeout(REFUSE_TIMEOUT, conn) => {
            if let Ok(Err(e)) = r {
                debug!(service = %ctx.name, client = %peer, "refused connection ended: {e}");
            }
        }
        _ = ctx.killed() => {}
    }
}

/// Request bodies up to this size (by `Content-Length`) are read whole before forwarding,
/// so a request can be sent again after a failure; larger ones stream through, unretried.
const MAX_REPLAY_BODY: u64 = 64 * 1024;

/// The body of the client's request, as far as it can still be sent.
enum Pending {
    Held(Bytes),
    Stream(Incoming),
    Sent,
}

impl Pending {
    fn take(&mut self) -> Option<ReqBody> {
        match std::mem::replace(self, Pending::Sent) {
            Pending::Held(b) => {
                *self = Pending::Held(b.clone());
                Some(Either::Right(Full::new(b)))
            }
            Pending::Stream(b) => Some(Either::Left(b)),
            Pending::Sent => None,
        }
    }

    fn put_back(&mut self, body: ReqBody) {
        if let Either::Left(b) = body {
            *self = Pending::Stream(b);
        }
    }

    fn available(&self) -> bool {
        !matches!(self, Pending::Sent)
    }
}

/// The request line and headers, rebuilt for every attempt.
struct Head {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

impl Head {
    fn request(&self, body: ReqBody) -> Request<ReqBody> {
        let mut req = Request::new(body);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.version_mut() = Version::HTTP_11;
        *req.headers_mut() = self.headers.clone();
        req
    }
}

/// A request on its way to a backend: what of it can still be sent, and what is left of
/// its retries.
struct Outgoing {
    head: Head,
    body: Pending,
    /// The client asks to switch protocols (`Upgrade`): sent on a connection of its own.
    upgrade: Option<upgrade::Requested>,
    /// Safe to send twice by its method.
    idempotent: bool,
    /// Sent again once already: never twice.
    retried: bool,
    /// Backends picked for it so far (`MAX_TRIES` at most).
    tries: usize,
    /// `send_proxy`: the PROXY header each of its upstream connections starts with (they
    /// are then its own, never pooled).
    proxy_header: Option<Bytes>,
}

/// A request one backend did not answer, that may still go to another.
enum Unanswered {
    /// The connect failed: the flow's next backend.
    ConnectFailed,
    Cut(BackendCut),
}

/// The backend was cut as the request went out: the retry goes to a backend of the table
/// now current.
struct BackendCut;

async fn forward(
    req: Request<Incoming>,
    client: SocketAddr,
    vip: SocketAddr,
    header: Option<Bytes>,
    ctx: &Arc<ServiceCtx>,
) -> Response<RespBody> {
    let Some(pool) = ctx.pool.clone() else {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "no connection pool\n");
    };
    let mut table = ctx.table.load();
    if table.is_empty() {
        return no_backend(ctx);
    }
    let mut out = match outgoing(req, client, vip, ctx).await {
        Ok(out) => out,
        Err(response) => return response,
    };
    out.proxy_header = header;
    let flow = Flow { client, vip, proto: IPPROTO_TCP };
    // Twice at most: a request is sent again once. The current table's picks start afresh
    // (the tries already spent still count).
    loop {
        match send(&table, &flow, &mut out, ctx, &pool).await {
            Ok(response) => return response,
            Err(BackendCut) => table = ctx.table.load(),
        }
    }
}

/// The request as it goes upstream: hop-by-hop headers out, `X-Forwarded-For` and `Host`
/// in; a small body read whole so that it can be sent again. Err: the client's answer (its
/// body could not be read).
async fn outgoing(
    mut req: Request<Incoming>,
    client: SocketAddr,
    vip: SocketAddr,
    ctx: &ServiceCtx,
) -> Result<Outgoing, Response<RespBody>> {
    let upgrade = upgrade::requested(&mut req);
    let (parts, body) = req.into_parts();
    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers);
    if let Some(u) = &upgrade {
        upgrade::ask(&mut headers, &u.protocols);
    }
    append_forwarded_for(&mut headers, client);
    if !headers.contains_key(HOST) {
        // HTTP/1.0 clients may leave it out; HTTP/1.1 upstream needs one.
        if let Ok(v) = HeaderValue::from_str(&vip.to_string()) {
            headers.insert(HOST, v);
        }
    }
    let idempotent = matches!(
        parts.method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS | Method::TRACE
    );
    let head = Head { method: parts.method, uri: parts.uri, headers };
    let body = if body.is_end_stream() {
        Pending::Held(Bytes::new())
    } else if body.size_hint().exact().is_some_and(|n| n <= MAX_REPLAY_BODY) {
        match body.collect().await {
            Ok(b) => Pending::Held(b.to_bytes()),
            Err(e) => {
                debug!(service = %ctx.name, %client, "request body: {e}");
                return Err(text(StatusCode::BAD_REQUEST, "400 Bad Request: the request body could not be read\n"));
            }
        }
    } else {
        Pending::Stream(body)
    };
    Ok(Outgoing { head, body, upgrade, idempotent, retried: false, tries: 0, proxy_header: None })
}

/// Sends the request to the flow's backends of `table` in order, the next one after a
/// failed connect, until one answers or the tries run out (502). Err: its backend was cut.
async fn send(
    table: &Table,
    flow: &Flow,
    out: &mut Outgoing,
    ctx: &Arc<ServiceCtx>,
    pool: &Arc<UpstreamPool>,
) -> Result<Response<RespBody>, BackendCut> {
    let mut picks = table.picks(flow);
    while out.tries < MAX_TRIES {
        out.tries += 1;
        let picked = match picks.next_backend() {
            Ok(p) => p,
            Err(NoBackend::Full) => {
                ctx.service_stats.overflow_total.fetch_add(1, Ordering::Relaxed);
                return Ok(text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("503 Service Unavailable: every backend of service {} is at max_connections\n", ctx.name),
                ));
            }
            Err(NoBackend::None) if out.tries == 1 => return Ok(no_backend(ctx)),
            Err(NoBackend::None) => break,
        };
        match exchange(picked, flow, out, ctx, pool, table.settings.connect_timeout).await {
            Ok(response) => return Ok(response),
            Err(Unanswered::ConnectFailed) => continue,
            Err(Unanswered::Cut(cut)) => return Err(cut),
        }
    }
    Ok(bad_gateway(ctx))
}

/// The request sent to one backend, over a pooled connection or a new one; on a failure
/// before any response byte, sent again once on a fresh connection (see the module's
/// retries). Ok: the client's answer (the backend's response, or a 502).
async fn exchange(
    picked: Picked,
    flow: &Flow,
    out: &mut Outgoing,
    ctx: &Arc<ServiceCtx>,
    pool: &Arc<UpstreamPool>,
    timeout: Duration,
) -> Result<Response<RespBody>, Unanswered> {
    let Picked { slot, active } = picked;
    let backend = slot.address;
    // A switch of protocols takes its connection for good, and a PROXY header makes it the
    // client's: never a pooled one.
    let mut fresh = out.upgrade.is_some() || out.proxy_header.is_some();
    loop {
        let pooled = if fresh { None } else { pool.checkout(backend, timeout).await };
        let reused = pooled.is_some();
        let mut conn = match pooled {
            Some(c) => c,
            None => match connect_upstream(&slot, ctx, timeout, out.proxy_header.as_deref()).await {
                Ok(c) => c,
                Err(e) if outcome::is_local(&e) => {
                    if slot.may_warn() {
                        warn!(service = %ctx.name, %backend, "connect failed here, not at the backend: {e}");
                    }
                    return Ok(text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "503 Service Unavailable: the proxy is out of resources (descriptors or buffers)\n",
                    ));
                }
                Err(e) => {
                    slot.stats.connect_failures_total.fetch_add(1, Ordering::Relaxed);
                    outcome::failed(&slot.stats);
                    if slot.may_warn() {
                        warn!(service = %ctx.name, %backend, "connect failed: {e}; trying the next backend");
                    }
                    return Err(Unanswered::ConnectFailed);
                }
            },
        };
        let Some(b) = out.body.take() else { return Ok(bad_gateway(ctx)) };
        match conn.sender.try_send_request(out.head.request(b)).await {
            Ok(resp) => {
                // The breaker's view of a request: a 5xx is the backend failing it.
                if resp.status().is_server_error() {
                    outcome::failed(&slot.stats);
                } else {
                    outcome::succeeded(&slot.stats);
                }
                ctx.service_stats.pool_requests_total.fetch_add(1, Ordering::Relaxed);
                slot.stats.connections_total.fetch_add(1, Ordering::Relaxed);
                let entry = ctx.stats.open_flow(ProxyFlow {
                    service: ctx.name.to_string(),
                    protocol: ctx.protocol,
                    client: flow.client,
                    vip: flow.vip,
                    backend,
                });
                if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                    let held = upgrade::Held { conn, active, flow: entry };
                    return Ok(switch(resp, out.upgrade.take(), flow.client, held, ctx));
                }
                return Ok(respond(resp, conn, pool.clone(), active, entry));
            }
            Err(mut e) => {
                // Hyper hands the request back only when none of it reached the socket.
                let unsent = match e.take_message() {
                    Some(unsent) => {
                        out.body.put_back(unsent.into_body());
                        true
                    }
                    None => {
                        ctx.service_stats.pool_requests_total.fetch_add(1, Ordering::Relaxed);
                        false
                    }
                };
                let error = e.into_error();
                // RFC 9110 §9.2.2: a request whose bytes went out may have been acted on; only
                // an idempotent one may be sent twice.
                if !out.retried && out.body.available() && (out.idempotent || unsent) {
                    out.retried = true;
                    if slot.cut.is_fired() {
                        // Its backend was just taken out: the retry goes to another one.
                        debug!(service = %ctx.name, %backend, "request failed as its backend was cut ({error}); retrying elsewhere");
                        return Err(Unanswered::Cut(BackendCut));
                    }
                    debug!(service = %ctx.name, %backend, reused, "request failed before a response ({error}); retrying on a fresh connection");
                    fresh = true;
                    continue;
                }
                // No response and no retry left: the client gets a 502 for it.
                outcome::failed(&slot.stats);
                if slot.may_warn() {
                    warn!(service = %ctx.name, %backend, "request failed: {error}");
                }
                return Ok(bad_gateway(ctx));
            }
        }
    }
}

/// Opens a connection to the slot's backend for the pool; its own tracked task drives it
/// until it closes, its backend is cut or the service is closed. Counted.
async fn connect_upstream(
    slot: &Arc<BackendSlot>,
    ctx: &Arc<ServiceCtx>,
    timeout: Duration,
    proxy_header: Option<&[u8]>,
) -> io::Result<Conn> {
    let mut stream = match tokio::time::timeout(timeout, TcpStream::connect(slot.address)).await {
        Ok(r) => r?,
        Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, format!("no answer within {timeout:?}"))),
    };
    let _ = stream.set_nodelay(true);
    if let Some(h) = proxy_header {
        // Into an empty send buffer: it does not wait on the backend.
        stream.write_all(h).await?;
    }
    let io = TokioIo::new(Metered::upstream(stream, slot.stats.clone()));
    let (sender, conn) =
        hyper::client::conn::http1::Builder::new().handshake::<_, ReqBody>(io).await.map_err(io::Error::other)?;
    ctx.service_stats.pool_connections_opened_total.fetch_add(1, Ordering::Relaxed);
    let guard = ctx.track(TaskKind::Upstream);
    let (task_ctx, task_slot) = (ctx.clone(), slot.clone());
    tokio::spawn(async move {
        let _guard = guard;
        tokio::select! {
            r = conn.with_upgrades() => if let Err(e) = r { debug!(service = %task_ctx.name, backend = %task_slot.address, "upstream connection ended: {e}") },
            _ = task_slot.cut.fired() => {}
            _ = task_ctx.killed() => {}
        }
    });
    Ok(Conn::new(sender, slot.clone()))
}

/// Reaps the service's pool until the service stops (then closes it).
pub async fn reaper(pool: Arc<UpstreamPool>, ctx: Arc<ServiceCtx>, _guard: TaskGuard) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(pool.reap_interval()) => pool.reap(),
            _ = ctx.stopped() => break,
        }
    }
    pool.close();
}

fn no_backend(ctx: &ServiceCtx) -> Response<RespBody> {
    text(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("503 Service Unavailable: service {} has no backend in rotation\n", ctx.name),
    )
}

fn bad_gateway(ctx: &ServiceCtx) -> Response<RespBody> {
    text(StatusCode::BAD_GATEWAY, &format!("502 Bad Gateway: no backend of service {} answered\n", ctx.name))
}

/// The backend's 101: the connection switches to a relay (see `upgrade`), if the client
/// asked for a switch and the backend named the protocol; otherwise the client could not
/// use it and gets a 502.
fn switch(
    resp: Response<Incoming>,
    requested: Option<upgrade::Requested>,
    client: SocketAddr,
    held: upgrade::Held,
    ctx: &Arc<ServiceCtx>,
) -> Response<RespBody> {
    let backend = held.conn.slot.address;
    let why = match requested {
        Some(r) => match upgrade::switch(resp, r.client, client, held, ctx) {
            Ok(switched) => return switched.map(|()| Either::Right(Full::new(Bytes::new()))),
            Err(why) => why,
        },
        None => "the backend switched protocols unasked",
    };
    warn!(service = %ctx.name, %backend, "{why}");
    text(StatusCode::BAD_GATEWAY, &format!("502 Bad Gateway: {why}\n"))
}

fn respond(
    resp: Response<Incoming>,
    conn: Conn,
    pool: Arc<UpstreamPool>,
    active: ActiveGuard,
    flow: FlowEntry,
) -> Response<RespBody> {
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Response::from_parts(parts, Either::Left(UpstreamBody::new(body, conn, pool, active, flow)))
}

fn text(status: StatusCode, body: &str) -> Response<RespBody> {
    let mut r = Response::new(Either::Right(Full::new(Bytes::from(body.to_string()))));
    *r.status_mut() = status;
    r.headers_mut().insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

/// `X-Forwarded-For: <earlier hops>, <client ip>` (several incoming headers are joined).
fn append_forwarded_for(headers: &mut HeaderMap, client: SocketAddr) {
    let ip = client.ip().to_string();
    let earlier: Vec<&str> = headers.get_all(&X_FORWARDED_FOR).iter().filter_map(|v| v.to_str().ok()).collect();
    let value = if earlier.is_empty() { ip } else { format!("{}, {ip}", earlier.join(", ")) };
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(X_FORWARDED_FOR, v);
    }
}

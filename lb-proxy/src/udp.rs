//! UDP: one socket per worker on the VIP. The first datagram from a client address opens a
//! session: a backend is picked and a socket connected to it; the session's task sends the
//! backend's replies back to that client from the VIP. Sessions end after `udp_idle_timeout`
//! without traffic either way, when their backend is cut, or when the proxy stops (UDP has
//! nothing in flight to drain).
//!
//! Protection: only a datagram that would open a session meets the connection caps
//! (`max_client_connections`, `max_connections_per_source`: sessions open at once), the rate
//! limit (dropped when over either) and `max_connections` (sessions per backend); a session's outcome for
//! the circuit breaker is its first reply, or ICMP port unreachable.
//!
//! A service on an unspecified VIP (`0.0.0.0:53`) answers from the address the kernel's
//! routing picks for the client, which on a multi-homed host may not be the one the client
//! wrote to; give UDP services a specific VIP there (IP_PKTINFO would lift this).
use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tracing::{debug, warn};

use super::caps::ConnSlot;
use super::listen;
use super::service::ServiceCtx;
use super::sessions::{Session, Sessions};
use super::stats::{FlowEntry, ProxyFlow};
use super::table::{NoBackend, Picked, Table, MAX_TRIES};
use super::tracker::{TaskGuard, TaskKind};
use crate::select::{ActiveGuard, Flow};

const IPPROTO_UDP: u8 = 17;
/// Largest datagram (IPv4 and IPv6 without jumbograms).
const MAX_DATAGRAM: usize = 65_536;

thread_local! {
    /// Session tasks read replies into this, not into a buffer each: a session costs a
    /// socket and a task, not 64 KiB.
    static REPLY_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0u8; MAX_DATAGRAM]);
}

/// Reads client datagrams until the service or the proxy stops.
pub async fn worker(socket: Arc<UdpSocket>, ctx: Arc<ServiceCtx>, _guard: TaskGuard) {
    let Some(sessions) = ctx.sessions.clone() else { return };
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut failures = 0u32;
    loop {
        let received = tokio::select! {
            biased;
            _ = ctx.stopped() => break,
            r = socket.recv_from(&mut buf) => r,
        };
        let (n, client) = match received {
            Ok(r) => {
                failures = 0;
                r
            }
            Err(e) => {
                if failures == 0 {
                    warn!(service = %ctx.name, vip = %ctx.vip, "receive failed: {e}");
                }
                failures = failures.saturating_add(1);
                tokio::time::sleep(Duration::from_millis(failures.min(100) as u64)).await;
                continue;
            }
        };
        let session = match sessions.get(client) {
            Some(s) => s,
            None => match open(&ctx, &sessions, &socket, client) {
                Some(s) => s,
                None => continue,
            },
        };
        // Straight to the socket: tokio's `try_send` would first consult its readiness
        // cache, empty for a socket the reactor has not polled yet, and drop a new
        // session's first datagram.
        match socket2::SockRef::from(&session.socket).send(&buf[..n]) {
            Ok(sent) => {
                session.slot.stats.bytes_in.fetch_add(sent as u64, Ordering::Relaxed);
                session.activity.touch();
            }
            // Full socket buffer: dropped, as the network would.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => {
                refused(&ctx, &session, &e);
                session.end.notify_one();
            }
        }
    }
    debug!(service = %ctx.name, vip = %ctx.vip, "udp listener closed");
}

/// A new session for `client`, or None (table full, over the rate limit, no backend: the
/// datagram is dropped).
fn open(
    ctx: &Arc<ServiceCtx>,
    sessions: &Arc<Sessions>,
    listener: &Arc<UdpSocket>,
    client: SocketAddr,
) -> Option<Arc<Session>> {
    let table = ctx.table.load();
    sessions.get_or_open(client, |open| {
        if open >= table.settings.max_udp_sessions {
            let rejected = ctx.service_stats.udp_sessions_rejected_total.fetch_add(1, Ordering::Relaxed);
            if rejected.is_multiple_of(10_000) {
                warn!(service = %ctx.name, limit = table.settings.max_udp_sessions, "udp session table full: dropping new clients' datagrams");
            }
            return None;
        }
        // The connection caps count sessions: every one holds a socket.
        let held = match ctx.conns.admit(client.ip()) {
            Ok(held) => held,
            Err(scope) => {
                ctx.service_stats.capped(scope);
                if let Some(refused) = ctx.conns.refused() {
                    warn!(service = %ctx.name, %client, scope = scope.as_str(), refused, open = ctx.conns.open(), "connection cap reached: datagrams that would open a session dropped");
                }
                return None;
            }
        };
        // Only a datagram that would open a session is limited: sessions already open never.
        if !ctx.limiter.permits(client.ip()) {
            ctx.service_stats.acl_denied();
            return None;
        }
        if let Err(scope) = ctx.limiter.admit(client.ip()) {
            ctx.service_stats.ratelimited(scope);
            debug!(service = %ctx.name, %client, scope = scope.as_str(), "over the rate limit: datagram dropped");
            return None;
        }
        let vip = ctx.vip;
        let (socket, Picked { slot, active }) = connect(&table, &Flow { client, vip, proto: IPPROTO_UDP }, ctx)?;
        slot.stats.connections_total.fetch_add(1, Ordering::Relaxed);
        let backend = slot.address;
        let session = Arc::new(Session::new(socket, slot));
        let flow_entry = ctx.stats.open_flow(ProxyFlow { service: ctx.name.to_string(), protocol: ctx.protocol, client, vip, backend });
        let guard = ctx.track(TaskKind::Session);
        let idle = table.settings.udp_idle_timeout;
        debug!(service = %ctx.name, %client, %backend, "udp session open");
        tokio::spawn(run(session.clone(), listener.clone(), client, ctx.clone(), idle, (guard, active, flow_entry, held)));
        Some(session)
    })
}

/// A socket connected to the flow's first choice, else to its next ones (`MAX_TRIES`
/// backends at most). None: no backend (all full is counted as overflow), or no socket.
fn connect(table: &Table, flow: &Flow, ctx: &ServiceCtx) -> Option<(UdpSocket, Picked)> {
    let mut picks = table.picks(flow);
    for _ in 0..MAX_TRIES {
        let picked = match picks.next_backend() {
            Ok(p) => p,
            Err(why) => {
                if why == NoBackend::Full {
                    ctx.service_stats.overflow_total.fetch_add(1, Ordering::Relaxed);
                }
                debug!(service = %ctx.name, client = %flow.client, ?why, "no backend: datagram dropped");
                return None;
            }
        };
        let slot = &picked.slot;
        match listen::udp_upstream(slot.address).and_then(UdpSocket::from_std) {
            Ok(socket) => return Some((socket, picked)),
            Err(e) => {
                slot.stats.connect_failures_total.fetch_add(1, Ordering::Relaxed);
                if slot.may_warn() {
                    warn!(service = %ctx.name, backend = %slot.address, "udp socket to the backend failed: {e}");
                }
            }
        }
    }
    None
}

/// Relays the backend's replies to the client until the session ends.
async fn run(
    session: Arc<Session>,
    listener: Arc<UdpSocket>,
    client: SocketAddr,
    ctx: Arc<ServiceCtx>,
    idle: Duration,
    guards: (TaskGuard, ActiveGuard, FlowEntry, ConnSlot),
) {
    let why = loop {
        tokio::select! {
            r = session.socket.readable() => {
                if let Err(e) = r.and_then(|_| relay_replies(&session, &listener, client)) {
                    refused(&ctx, &session, &e);
                    break "backend unreachable";
                }
            }
            _ = session.activity.expired(idle) => break "idle",
            _ = session.end.notified() => break "backend unreachable",
            _ = session.slot.cut.fired() => break "backend cut",
            _ = ctx.stopped() => break "stopping",
            _ = ctx.killed() => break "closed",
        }
    };
    session.close();
    if let Some(s) = &ctx.sessions {
        s.remove(client, &session);
    }
    debug!(service = %ctx.name, %client, backend = %session.slot.address, why, "udp session closed");
    drop(guards);
}

/// Sends every reply waiting on the session's socket to the client. A reply the listener
/// cannot take now (full buffer) is dropped.
fn relay_replies(session: &Session, listener: &UdpSocket, client: SocketAddr) -> io::Result<()> {
    let to = socket2::SockAddr::from(client);
    REPLY_BUF.with(|buf| {
        let mut buf = buf.borrow_mut();
        loop {
            match session.socket.try_recv(&mut buf) {
                Ok(n) => {
                    session.verdict.succeed();
                    session.activity.touch();
                    if socket2::SockRef::from(listener).send_to(&buf[..n], &to).is_ok() {
                        session.slot.stats.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    })
}

/// ICMP port unreachable on a connected socket comes back as ECONNREFUSED: the UDP
/// equivalent of a refused connect.
fn refused(ctx: &ServiceCtx, session: &Session, e: &io::Error) {
    session.slot.stats.connect_failures_total.fetch_add(1, Ordering::Relaxed);
    session.verdict.fail();
    if session.slot.may_warn() {
        warn!(service = %ctx.name, backend = %session.slot.address, "udp backend unreachable: {e}");
    }
}

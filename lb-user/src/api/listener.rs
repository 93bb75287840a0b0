//! The admin API's connections: accepted here, served by hyper, bounded so that callers
//! who open connections and say nothing cannot use up the daemon's file descriptors (which
//! its health checks and the proxy need).
//!
//! - At most `max_connections` at once. One more is closed as soon as it is accepted
//!   (counted in `lb_admin_connections_refused_total`): queueing it would hold its
//!   descriptor, which is what the cap protects; the kernel's accept queue holds the
//!   rest without costing the daemon anything.
//! - A connection must send a whole request head within `header_read` of opening, and of
//!   its previous response: hyper's header read timer starts whenever it waits for a
//!   request, so one timer is both the header read timeout (a slow sender) and the idle
//!   keep-alive timeout (a silent one). Then it is closed.
//! - An `accept` that fails (EMFILE, ENFILE, ENOBUFS...) is logged and retried after a
//!   pause instead of in a busy loop.
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

use lb_control::Telemetry;

/// The bounds on admin API connections.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    /// For a request head, from a connection's opening or its last response.
    pub header_read: Duration,
    /// After a stop, how long requests in flight may take to finish.
    pub drain: Duration,
}

/// Agents heartbeat over short connections, operators and scrapers add a few: 256 is far
/// above what a daemon serves at once, and far below the 1024 descriptors of the common
/// default soft limit.
pub const MAX_ADMIN_CONNECTIONS: usize = 256;
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: MAX_ADMIN_CONNECTIONS,
            header_read: HEADER_READ_TIMEOUT,
            drain: Duration::from_secs(5),
        }
    }
}

/// A failed `accept` is retried after this: the usual cause (out of descriptors) does not
/// go away in a microsecond.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// Refused connections are logged at most this often (they are counted every time).
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// Accept and serve `router` on `listener` until `shutdown` completes, then let the
/// connections finish their requests (for at most `limits.drain`).
pub async fn serve_connections(
    listener: TcpListener,
    router: axum::Router,
    limits: ConnectionLimits,
    telemetry: Arc<Telemetry>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut refusals = Refusals::default();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match slots.clone().try_acquire_owned() {
                    Ok(permit) => {
                        tokio::spawn(serve_one(stream, router.clone(), limits, permit, stop_rx.clone()));
                    }
                    Err(_) => {
                        drop(stream);
                        telemetry.update(|t| t.admin_connections_refused_total += 1);
                        refusals.note(peer, limits.max_connections);
                    }
                },
                Err(e) => {
                    warn!("admin API cannot accept a connection: {e}; retrying in {ACCEPT_RETRY:?}");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                }
            },
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection holds a slot until it is done: all slots back means all done.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(limits.drain, slots.acquire_many(all)).await.is_err() {
        warn!("admin API: connections still open after {:?}, closing them", limits.drain);
    }
}

/// One connection, holding its slot until it is closed.
async fn serve_one(
    stream: TcpStream,
    router: axum::Router,
    limits: ConnectionLimits,
    _slot: OwnedSemaphorePermit,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read).keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                debug!("admin API connection ended: {e}");
            }
            return;
        }
        _ = stop.wait_for(|stopped| *stopped) => conn.as_mut().graceful_shutdown(),
    }
    // Stopping: the request in flight finishes, an idle connection closes now.
    let _ = tokio::time::timeout(limits.drain, conn).await;
}

/// Counts refused connections between two log lines.
#[derive(Default)]
struct Refusals {
    since_log: u64,
    logged: Option<Instant>,
}

impl Refusals {
    fn note(&mut self, peer: std::net::SocketAddr, max: usize) {
        self.since_log += 1;
        if self.logged.is_some_and(|at| at.elapsed() < REFUSAL_LOG_EVERY) {
            return;
        }
        warn!(
            %peer,
            refused = self.since_log,
            "admin API: {max} connections open, refusing more (each closed at once; see lb_admin_connections_refused_total)"
        );
        self.since_log = 0;
        self.logged = Some(Instant::now());
    }
}

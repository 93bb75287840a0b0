//! The agent's life: register, keep the lease alive, leave gracefully.
//!
//! ```text
//!   register ──201──▶ heartbeat every ttl/3 ──404──▶ register again
//!      │ unreachable/5xx/409: backoff, retry       │ unreachable/5xx: backoff, retry
//!      │ 401: re-read the token file, backoff, retry (both phases, forever)
//!      │ 400/403/...: exit with the error           │ 400/403/...: exit with the error
//!   SIGTERM/SIGINT (any time): state drain ─▶ wait drain_time, heartbeating ─▶ DELETE ─▶ exit 0
//! ```
//!
//! A 401 is not fatal: tokens are rotated (docs/api.md, "Rotating the token"), and an agent
//! whose token was retired before its file was updated must pick the new one up, not leave
//! its backend to expire. Heartbeats go on while draining, so a drain longer than the lease
//! does not turn into a removal halfway.
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use tracing::{debug, info, warn};

use super::backoff::{Backoff, RETRY_CAP, RETRY_START};
use super::client::{ApiClient, ApiError, Failure};
use super::shutdown::Shutdown;
use lb_config::{format_duration, AdminState};

/// What the agent registers and how it leaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentSettings {
    pub service: String,
    pub address: SocketAddr,
    pub weight: u32,
    /// Lease length sent with the registration; the LB drops the backend when it runs out.
    pub ttl: Duration,
    /// How long to stay in `drain` (existing flows finish) before deregistering.
    pub drain_time: Duration,
}

impl AgentSettings {
    /// Three heartbeats per lease: one lost or slow heartbeat never costs the lease.
    pub fn heartbeat_interval(&self) -> Duration {
        self.ttl / 3
    }
}

/// A refused token is retried at most this far apart: rotating tokens takes an operator
/// minutes, and a fleet of agents must not hammer the LB meanwhile.
pub const AUTH_RETRY_CAP: Duration = Duration::from_secs(30);

enum Phase {
    Register,
    Heartbeat { next: Instant },
}

/// Runs until a stop request, then drains and deregisters. Returns an error only for a
/// mistake retrying cannot fix (the LB rejects the request: 400, 401, an unknown service).
pub fn run(client: &ApiClient, settings: &AgentSettings, shutdown: &Shutdown) -> Result<()> {
    let service = settings.service.as_str();
    let address = settings.address;
    let interval = settings.heartbeat_interval();
    let mut link = LinkLog::default();
    let mut backoff = Backoff::default();
    let mut refused = TokenRefused::default();
    // True while a registration may exist on the LB: then leaving means drain + DELETE.
    let mut registered = false;
    let mut phase = Phase::Register;

    while !shutdown.requested() {
        match phase {
            Phase::Register => match client.register(service, address, settings.weight, settings.ttl) {
                Ok(()) => {
                    link.up();
                    backoff.reset();
                    refused.accepted();
                    registered = true;
                    info!(
                        api = %client.base(), service, backend = %address, weight = settings.weight,
                        ttl = %format_duration(settings.ttl),
                        "registered; heartbeating every {}", format_duration(interval)
                    );
                    phase = Phase::Heartbeat { next: Instant::now() + interval };
                }
                Err(e) if e.failure() == Failure::Transient => {
                    link.down(&e);
                    shutdown.sleep(backoff.next_delay());
                }
                Err(e) if e.failure() == Failure::Unauthorized => {
                    link.up();
                    shutdown.sleep(refused.retry(client, &e));
                }
                Err(e) => return Err(rejected("registering", settings, e)),
            },
            Phase::Heartbeat { next } => {
                if shutdown.sleep_until(next) {
                    break;
                }
                let sent = Instant::now();
                match client.heartbeat(service, address) {
                    Ok(()) => {
                        link.up();
                        backoff.reset();
                        refused.accepted();
                        debug!(service, backend = %address, "heartbeat");
                        phase = Phase::Heartbeat { next: sent + interval };
                    }
                    Err(e) => match e.failure() {
                        Failure::NotFound => {
                            link.up();
                            backoff.reset();
                            registered = false;
                            warn!(
                                service, backend = %address, error = %e,
                                "registration gone (lease expired, or the LB restarted without it); registering again"
                            );
                            phase = Phase::Register;
                        }
                        Failure::Transient => {
                            link.down(&e);
                            phase = Phase::Heartbeat { next: Instant::now() + backoff.next_delay() };
                        }
                        Failure::Unauthorized => {
                            link.up();
                            phase = Phase::Heartbeat { next: Instant::now() + refused.retry(client, &e) };
                        }
                        Failure::Fatal => return Err(rejected("heartbeating", settings, e)),
                    },
                }
            }
        }
    }
    leave(client, settings, shutdown, registered)
}

/// Drain, give existing flows `drain_time`, deregister. One attempt each: the lease expires
/// on its own if the LB cannot be reached, and a stopping service must not hang.
fn leave(client: &ApiClient, settings: &AgentSettings, shutdown: &Shutdown, registered: bool) -> Result<()> {
    let service = settings.service.as_str();
    let address = settings.address;
    let cause = shutdown.cause();
    if !registered {
        info!(service, backend = %address, "{cause}: stopping; not registered, nothing to drain");
        return Ok(());
    }
    info!(service, backend = %address, "{cause}: draining (no new flows)");
    match client.set_state(service, address, AdminState::Drain) {
        Ok(_) => {}
        Err(e) if e.failure() == Failure::NotFound => {
            info!(service, backend = %address, "registration already gone; nothing to drain");
            return Ok(());
        }
        Err(e) => {
            warn!(service, backend = %address, error = %e, "could not set state drain; waiting and deregistering anyway")
        }
    }
    let drain_time = format_duration(settings.drain_time);
    info!(service, backend = %address, "waiting {drain_time} for existing flows (signal again to cut it short)");
    if !drain_wait(client, settings, shutdown) {
        return Ok(());
    }
    match client.deregister(service, address) {
        Ok(()) => info!(service, backend = %address, "deregistered"),
        Err(e) => match e.failure() {
            Failure::NotFound => info!(service, backend = %address, "registration already gone"),
            Failure::Transient => warn!(
                service, backend = %address, error = %e,
                "could not deregister; the LB drops the backend when its lease ({}) runs out",
                format_duration(settings.ttl)
            ),
            Failure::Fatal | Failure::Unauthorized => return Err(rejected("deregistering", settings, e)),
        },
    }
    Ok(())
}

/// Waits `drain_time`, heartbeating every ttl/3 so that the lease outlives the drain; a
/// second signal cuts the wait short. False when the registration turned out to be gone
/// (nothing left to deregister).
fn drain_wait(client: &ApiClient, settings: &AgentSettings, shutdown: &Shutdown) -> bool {
    let (service, address) = (settings.service.as_str(), settings.address);
    let deadline = Instant::now() + settings.drain_time;
    let interval = settings.heartbeat_interval();
    let mut next_beat = Instant::now() + interval;
    loop {
        let wake = next_beat.min(deadline);
        if shutdown.sleep_unless(wake.saturating_duration_since(Instant::now()), 2) {
            info!(service, backend = %address, "second {}: skipping the rest of the drain wait", shutdown.cause());
            return true;
        }
        if Instant::now() >= deadline {
            return true;
        }
        match client.heartbeat(service, address) {
            Ok(()) => debug!(service, backend = %address, "heartbeat while draining"),
            Err(e) if e.failure() == Failure::NotFound => {
                info!(service, backend = %address, "registration gone while draining; nothing left to deregister");
                return false;
            }
            Err(e) => {
                if e.failure() == Failure::Unauthorized {
                    let _ = client.reload_token();
                }
                warn!(service, backend = %address, error = %e, "heartbeat while draining failed; draining on");
            }
        }
        next_beat = Instant::now() + interval;
    }
}

/// A 401: says so once per episode (not every retry), re-reads the token file before each
/// retry, and spaces the retries out from 200 ms up to [`AUTH_RETRY_CAP`].
struct TokenRefused {
    backoff: Backoff,
    since: Option<Instant>,
}

impl Default for TokenRefused {
    fn default() -> Self {
        TokenRefused { backoff: Backoff::new(RETRY_START, AUTH_RETRY_CAP), since: None }
    }
}

impl TokenRefused {
    /// The wait before the next attempt, with the token file read again.
    fn retry(&mut self, client: &ApiClient, e: &ApiError) -> Duration {
        if self.since.is_none() {
            warn!(
                error = %e,
                "the LB refused the token; re-reading the token file and retrying (at most {} apart) until it is accepted",
                format_duration(AUTH_RETRY_CAP)
            );
            self.since = Some(Instant::now());
        }
        match client.reload_token() {
            Ok(true) => info!("the token file holds a new token; trying it"),
            Ok(false) => debug!("the token file is unchanged"),
            Err(e) => warn!(error = %e, "cannot read the token file again; keeping the token there was"),
        }
        self.backoff.next_delay()
    }

    fn accepted(&mut self) {
        if let Some(since) = self.since.take() {
            info!("the LB accepts the token again after {}", format_duration(since.elapsed()));
        }
        self.backoff.reset();
    }
}

fn rejected(doing: &str, settings: &AgentSettings, e: ApiError) -> anyhow::Error {
    anyhow!(
        "{doing} backend {} of service {:?} failed: {e}; not retrying: this is a configuration \
         problem (token, service name, arguments), fix it and start the agent again",
        settings.address,
        settings.service
    )
}

/// Logs reachability changes once each, not every retry: an outage is one warning when it
/// starts and one line when it ends.
#[derive(Default)]
struct LinkLog {
    /// While unreachable: since when, and how many attempts failed.
    outage: Option<(Instant, u32)>,
}

impl LinkLog {
    fn down(&mut self, e: &ApiError) {
        match &mut self.outage {
            None => {
                warn!(
                    error = %e,
                    "LB admin API unreachable; retrying with backoff (at most {} apart) until it answers",
                    format_duration(RETRY_CAP)
                );
                self.outage = Some((Instant::now(), 1));
            }
            Some((_, failures)) => {
                *failures += 1;
                debug!(error = %e, attempt = *failures, "LB admin API still unreachable");
            }
        }
    }

    fn up(&mut self) {
        if let Some((since, failures)) = self.outage.take() {
            info!(
                "LB admin API reachable again after {failures} failed attempt(s) over {}",
                format_duration(since.elapsed())
            );
        }
    }
}

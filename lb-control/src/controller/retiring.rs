//! Backends no source names any more drain for `REMOVAL_GRACE` before they leave.
use std::net::SocketAddr;
use std::time::Instant;

use tracing::info;

use super::{Controller, REMOVAL_GRACE};
use crate::registry::{fits_service, BackendKey};
use lb_config::desired::{Desired, DesiredBackend, SOURCE_RETIRING};
use lb_config::AdminState;

impl Controller {
    /// Backends that were there and are no longer named start their grace period; ones
    /// named again stop retiring. A backend its service's new VIP could not take (another
    /// address family, or with dsr another port) has nothing to drain: its flows were to
    /// the old VIP, which is no longer served. It leaves at once, as on a fresh start.
    pub(super) fn track_retiring(&mut self, next: &Desired, now: Instant) {
        let named = |service: &str, address: SocketAddr| {
            next.services.iter().find(|s| s.name == service).map(|s| s.backends.iter().any(|b| b.address == address))
        };
        let fits = |service: &str, address: SocketAddr| {
            next.services
                .iter()
                .find(|s| s.name == service)
                .is_some_and(|s| fits_service(&s.name, s.vip, s.forwarding, address).is_ok())
        };
        for s in &self.desired.services {
            for b in s.backends.iter().filter(|b| b.sources != SOURCE_RETIRING) {
                if named(&s.name, b.address) == Some(false) && fits(&s.name, b.address) {
                    info!(service = %s.name, backend = %b.address, grace = ?REMOVAL_GRACE, "backend removed: draining its flows");
                    let retiring = DesiredBackend { state: AdminState::Drain, sources: SOURCE_RETIRING, ..b.clone() };
                    self.retiring.insert(BackendKey::new(&s.name, b.address), (now + REMOVAL_GRACE, retiring));
                }
            }
        }
        self.retiring.retain(|BackendKey { service, address }, _| {
            named(service, *address) == Some(false) && fits(service, *address)
        });
    }

    /// Retiring backends stay in the desired state (draining) until their grace ends.
    pub(super) fn add_retiring(&self, next: &mut Desired) {
        for s in &mut next.services {
            for (BackendKey { service, .. }, (_, b)) in &self.retiring {
                if service == &s.name {
                    s.backends.push(b.clone());
                }
            }
        }
    }

    /// Grace periods that ended: those backends leave the tables.
    pub(super) fn end_grace_periods(&mut self, now: Instant) {
        let before = self.retiring.len();
        self.retiring.retain(|_, (deadline, _)| *deadline > now);
        if self.retiring.len() != before {
            self.apply();
        }
    }
}

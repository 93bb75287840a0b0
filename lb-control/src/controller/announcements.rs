//! `[cluster.bgp]`: after each reconcile the controller hands the speaker what to announce
//! (`cluster::announce`), and `lb drain` / SIGTERM set the drain flag that withdraws it all.
//! Draining touches no table: flows already here, and new ones that still arrive while the
//! routers converge, are served as before.
use tokio::sync::watch;
use tracing::info;

use super::Controller;
use crate::cluster::{announcement, Announcement};
use crate::handle::ControlError;

impl Controller {
    /// Announcements go to `tx` from now on (the daemon's speaker holds the other end); the
    /// current one is sent at once.
    pub fn with_announcements(mut self, tx: watch::Sender<Announcement>) -> Self {
        self.announce = Some(tx);
        self.publish_announcement();
        self
    }

    /// Sends the announcement the desired state gives; the speaker hears of it only when it
    /// changed.
    pub(super) fn publish_announcement(&self) {
        if let Some(tx) = &self.announce {
            let next = announcement(&self.desired, self.draining);
            tx.send_if_modified(|current| {
                let changed = *current != next;
                *current = next;
                changed
            });
        }
    }

    /// Whether the service's VIP is announced now; `None` without BGP.
    pub(super) fn announced(&self, vip: std::net::IpAddr) -> Option<bool> {
        self.announce.as_ref().map(|tx| tx.borrow().vips.contains(&vip))
    }

    /// Starts or ends a drain; `Ok(previous)`. Refused without `[cluster.bgp]`: there is
    /// nothing to withdraw, and saying "draining" would promise what does not happen.
    pub(super) fn drain(&mut self, drain: bool) -> Result<bool, ControlError> {
        if self.announce.is_none() {
            return Err(ControlError::Conflict(
                "this node has no [cluster.bgp]: draining withdraws BGP announcements, and there are none".into(),
            ));
        }
        let previous = std::mem::replace(&mut self.draining, drain);
        if previous != drain {
            info!(
                draining = drain,
                "{}",
                if drain { "draining: every VIP withdrawn" } else { "drain ended: VIPs announced again" }
            );
        }
        self.publish_announcement();
        Ok(previous)
    }
}

//! Passive health signals for the daemon's circuit breakers: how new flows' SYNs fare at
//! their backend. A SYN-ACK coming back is a success; an RST|ACK before any SYN-ACK
//! (nothing listens) or the client sending its SYN again after a silence (no answer within
//! its retransmission time, 1 s on Linux) is a failure. Each flow counts once.
//!
//! A client must not be able to forge a failure (see docs/protection.md): a SYN sent again
//! counts only after `SYN_RETRY_MIN_NS` of silence in the flow, by when a backend that
//! answers has answered through the LB (nat) and the flow is marked answered; a refusal is
//! an RST with ACK, the answer to a SYN, while the RST a backend sends for a stray ACK (no
//! connection) carries no ACK flag (RFC 9293, 3.10.7.1) and counts nothing. Replies bypass
//! the LB in dsr mode, so there every signal would be the client's own: the config refuses
//! circuit breakers on dsr services.

use lb_common::{
    consts::{FLOW_ANSWERED, FLOW_SYN_RETRIED, PROTO_TCP},
    maps::FlowState,
};

use crate::{
    maps::LB_OUTCOMES,
    parse::{TCP_ACK, TCP_RST, TCP_SYN},
};

/// A backend's packet of a flow on its way back to the client.
#[inline(always)]
pub fn reply(state: *mut FlowState, proto: u8, tcp_flags: u8) {
    if proto != PROTO_TCP {
        return;
    }
    // SAFETY: map value pointer; racing writers store the same flags.
    let s = unsafe { &mut *state };
    if s.flags & FLOW_ANSWERED != 0 {
        return;
    }
    let answered = tcp_flags & (TCP_SYN | TCP_ACK) == (TCP_SYN | TCP_ACK);
    let refused = tcp_flags & (TCP_RST | TCP_ACK) == (TCP_RST | TCP_ACK);
    if answered || refused {
        s.flags |= FLOW_ANSWERED;
        count(s.backend_id, answered);
    }
}

/// A SYN sent again counts as a failure only after this much silence in its flow: longer
/// than any answer of a healthy backend takes, shorter than the clients' first
/// retransmission (1 s, RFC 6298).
const SYN_RETRY_MIN_NS: u64 = 500_000_000;

/// A client's packet of a flow it already has, before the flow's clock is touched.
#[inline(always)]
pub fn request(state: *mut FlowState, proto: u8, tcp_flags: u8, now: u64) {
    if proto != PROTO_TCP || tcp_flags & (TCP_SYN | TCP_ACK) != TCP_SYN {
        return;
    }
    // SAFETY: as above.
    let s = unsafe { &mut *state };
    if now.saturating_sub(s.last_seen_ns) < SYN_RETRY_MIN_NS {
        return;
    }
    if s.flags & (FLOW_ANSWERED | FLOW_SYN_RETRIED) == 0 {
        s.flags |= FLOW_SYN_RETRIED;
        count(s.backend_id, false);
    }
}

#[inline(always)]
fn count(backend_id: u32, answered: bool) {
    if let Some(o) = LB_OUTCOMES.get_ptr_mut(backend_id) {
        // SAFETY: per-CPU slot, no other writer on this CPU while the program runs.
        unsafe {
            if answered {
                (*o).answered += 1;
            } else {
                (*o).failed += 1;
            }
        }
    }
}

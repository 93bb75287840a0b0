//! Passive health signals for the daemon's circuit breakers: how new flows' SYNs fare at
//! their backend. A SYN-ACK coming back is a success; an RST before any SYN-ACK (nothing
//! listens) or the client sending its SYN again (no answer within its retransmission
//! time, 1 s on Linux) is a failure. Each flow counts once. Replies pass through the LB
//! only in nat mode, so dsr flows give only the retransmission signal.

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
    let refused = tcp_flags & TCP_RST != 0;
    if answered || refused {
        s.flags |= FLOW_ANSWERED;
        count(s.backend_id, answered);
    }
}

/// A client's packet of a flow it already has.
#[inline(always)]
pub fn request(state: *mut FlowState, proto: u8, tcp_flags: u8) {
    if proto != PROTO_TCP || tcp_flags & (TCP_SYN | TCP_ACK) != TCP_SYN {
        return;
    }
    // SAFETY: as above.
    let s = unsafe { &mut *state };
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

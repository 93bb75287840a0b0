//! How far a flow got, from the packets the data path sees: the rules that decide when a
//! flow is embryonic (short-lived), established, unconfirmed, closing, and whether it
//! counts as active for `least_conn` and `p2c`. Pure logic on `FlowState`, shared by the
//! XDP program and tested here on the host.
//!
//! **Plausible** (RFC 5961's idea): a TCP sequence number is plausible when it lies within
//! `SEQ_WINDOW` of the next one expected from its sender; an acknowledgement number, of the
//! next one expected from the other side. Only plausible segments move the expected
//! numbers, close a flow (FIN, RST) or complete a handshake, so a sender that cannot see
//! the flow's packets cannot shorten it. An implausible segment is still forwarded: the
//! endpoint's own stack decides what it means.

use crate::{
    consts::{
        FLOW_CLOSING, FLOW_COUNTED, FLOW_ESTABLISHED, FLOW_REPLIED, FLOW_UNCONFIRMED, FWD_NAT, PROTO_TCP, SEQ_WINDOW,
    },
    maps::FlowState,
};

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// What the tracker needs of a packet: TCP flags, sequence and acknowledgement numbers
/// (host order), payload length. All zero for UDP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    pub len: u32,
}

impl Segment {
    /// The sequence number after this segment (SYN and FIN take one each).
    #[inline(always)]
    pub fn end(&self) -> u32 {
        let mut end = self.seq.wrapping_add(self.len);
        if self.flags & TCP_SYN != 0 {
            end = end.wrapping_add(1);
        }
        if self.flags & TCP_FIN != 0 {
            end = end.wrapping_add(1);
        }
        end
    }

    /// A SYN alone (no ACK, FIN or RST): the only segment that opens a nat flow.
    #[inline(always)]
    pub fn is_syn(&self) -> bool {
        self.flags & (TCP_SYN | TCP_ACK | TCP_FIN | TCP_RST) == TCP_SYN
    }

    #[inline(always)]
    fn ends_flow(&self) -> bool {
        self.flags & (TCP_FIN | TCP_RST) != 0
    }
}

/// `a` within `SEQ_WINDOW` of `b`, either way, modulo 2^32.
#[inline(always)]
pub fn near(a: u32, b: u32) -> bool {
    a.wrapping_sub(b).wrapping_add(SEQ_WINDOW) <= 2 * SEQ_WINDOW
}

/// `a` comes after `b` in sequence space.
#[inline(always)]
fn after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// What a packet changed in the flow's standing for `LB_ACTIVE`: the caller adds one or
/// takes one away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    Same,
    In,
    Out,
}

impl FlowState {
    /// The entry for a flow `seg` opens. A SYN-opened TCP flow and a UDP flow count as
    /// active at once; one opened by another segment is unconfirmed, and one opened by a
    /// FIN or RST is closing and never counts.
    #[inline(always)]
    pub fn opened(backend_id: u32, snat_port: u16, now: u64, proto: u8, seg: &Segment) -> FlowState {
        let mut flags = FLOW_COUNTED;
        if proto == PROTO_TCP {
            if seg.ends_flow() {
                flags = FLOW_CLOSING;
            } else if seg.flags & TCP_SYN == 0 {
                flags = FLOW_UNCONFIRMED;
            }
        }
        FlowState { last_seen_ns: now, backend_id, snat_port, flags, _pad: 0, client_next: seg.end(), server_next: 0 }
    }

    /// A client's packet of this live flow. `forwarding` is the service's.
    #[inline(always)]
    pub fn client_packet(&mut self, proto: u8, forwarding: u8, seg: &Segment, now: u64) -> Count {
        self.last_seen_ns = now;
        if proto != PROTO_TCP {
            // dsr sees no replies: a second packet is all it can go by.
            if forwarding != FWD_NAT {
                self.flags |= FLOW_ESTABLISHED;
            }
            return Count::Same;
        }
        if seg.is_syn() && self.flags & FLOW_CLOSING != 0 && !near(seg.seq, self.client_next) {
            // The client's next connection on the same ports: a flow of its own, on the
            // same backend and SNAT port.
            let counted = self.flags & FLOW_COUNTED != 0;
            *self = FlowState::opened(self.backend_id, self.snat_port, now, proto, seg);
            return if counted { Count::Same } else { Count::In };
        }
        if !near(seg.seq, self.client_next) {
            return Count::Same;
        }
        if after(seg.end(), self.client_next) {
            self.client_next = seg.end();
        }
        let mut count = Count::Same;
        if self.flags & FLOW_ESTABLISHED == 0 && seg.flags & TCP_ACK != 0 && seg.flags & (TCP_SYN | TCP_RST) == 0 {
            // nat sees the backend's SYN-ACK: the client must acknowledge it. dsr cannot
            // check the acknowledgement: a plausible second packet is all it has.
            let acknowledged =
                forwarding != FWD_NAT || (self.flags & FLOW_REPLIED != 0 && near(seg.ack, self.server_next));
            if acknowledged {
                self.flags |= FLOW_ESTABLISHED;
                if self.flags & FLOW_UNCONFIRMED != 0 {
                    self.flags &= !FLOW_UNCONFIRMED;
                    if self.flags & (FLOW_CLOSING | FLOW_COUNTED) == 0 {
                        self.flags |= FLOW_COUNTED;
                        count = Count::In;
                    }
                }
            }
        }
        if seg.ends_flow() {
            count = self.close();
        }
        count
    }

    /// A backend's packet of this live flow, on its way back through the LB (nat only).
    #[inline(always)]
    pub fn server_packet(&mut self, proto: u8, seg: &Segment, now: u64) -> Count {
        self.last_seen_ns = now;
        if proto != PROTO_TCP {
            self.flags |= FLOW_REPLIED | FLOW_ESTABLISHED;
            return Count::Same;
        }
        if self.flags & FLOW_REPLIED == 0 {
            // The answer to the client's SYN: it acknowledges the client's ISN (a SYN-ACK,
            // or the RST of a port nobody listens on).
            if seg.flags & TCP_ACK == 0 || !near(seg.ack, self.client_next) {
                return Count::Same;
            }
            if seg.flags & TCP_SYN != 0 {
                self.flags |= FLOW_REPLIED;
                self.server_next = seg.end();
            }
        } else if near(seg.seq, self.server_next) {
            if after(seg.end(), self.server_next) {
                self.server_next = seg.end();
            }
        } else {
            return Count::Same;
        }
        if seg.ends_flow() {
            return self.close();
        }
        Count::Same
    }

    /// A plausible FIN or RST: the flow is closing, and leaves the active count once.
    #[inline(always)]
    fn close(&mut self) -> Count {
        if self.flags & FLOW_CLOSING != 0 {
            return Count::Same;
        }
        self.flags |= FLOW_CLOSING;
        if self.flags & FLOW_COUNTED != 0 {
            self.flags &= !FLOW_COUNTED;
            return Count::Out;
        }
        Count::Same
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consts::{FWD_DSR, PROTO_UDP};

    fn seg(flags: u8, seq: u32, ack: u32, len: u32) -> Segment {
        Segment { flags, seq, ack, len }
    }

    /// SYN, SYN-ACK, ACK through a nat flow.
    fn nat_handshake() -> FlowState {
        let mut f = FlowState::opened(1, 2, 0, PROTO_TCP, &seg(TCP_SYN, 100, 0, 0));
        assert_eq!(f.server_packet(PROTO_TCP, &seg(TCP_SYN | TCP_ACK, 5000, 101, 0), 1), Count::Same);
        assert_eq!(f.client_packet(PROTO_TCP, FWD_NAT, &seg(TCP_ACK, 101, 5001, 0), 2), Count::Same);
        f
    }

    #[test]
    fn a_nat_handshake_establishes_only_when_the_client_acknowledges_the_syn_ack() {
        let f = nat_handshake();
        assert_ne!(f.flags & FLOW_ESTABLISHED, 0);
        assert_ne!(f.flags & FLOW_COUNTED, 0);
        // A blind ACK (spoofed source, SYN-ACK never seen) does not.
        let mut g = FlowState::opened(1, 2, 0, PROTO_TCP, &seg(TCP_SYN, 100, 0, 0));
        g.server_packet(PROTO_TCP, &seg(TCP_SYN | TCP_ACK, 5000, 101, 0), 1);
        g.client_packet(PROTO_TCP, FWD_NAT, &seg(TCP_ACK, 101, 900_000, 0), 2);
        assert_eq!(g.flags & FLOW_ESTABLISHED, 0);
        // Nor an ACK before any SYN-ACK.
        let mut h = FlowState::opened(1, 2, 0, PROTO_TCP, &seg(TCP_SYN, 100, 0, 0));
        h.client_packet(PROTO_TCP, FWD_NAT, &seg(TCP_ACK, 101, 5001, 0), 2);
        assert_eq!(h.flags & FLOW_ESTABLISHED, 0);
    }

    #[test]
    fn a_spoofed_rst_or_fin_far_from_the_sequence_does_not_close() {
        let mut f = nat_handshake();
        assert_eq!(f.client_packet(PROTO_TCP, FWD_NAT, &seg(TCP_RST, 101 + 3 * SEQ_WINDOW, 0, 0), 3), Count::Same);
        assert_eq!(
            f.client_packet(
                PROTO_TCP,
                FWD_NAT,
                &seg(TCP_FIN | TCP_ACK, 101u32.wrapping_sub(2 * SEQ_WINDOW), 5001, 0),
                3
            ),
            Count::Same
        );
        assert_eq!(f.server_packet(PROTO_TCP, &seg(TCP_RST, 5001 + 2 * SEQ_WINDOW, 0, 0), 3), Count::Same);
        assert_eq!(f.flags & FLOW_CLOSING, 0);
        // The real FIN, after 1000 bytes of data, closes, and counts out once.
        f.client_packet(PROTO_TCP, FWD_NAT, &seg(TCP_ACK, 101, 5001, 1000), 4);
        assert_eq!(f.client_next, 1101);
        assert_eq!(f.client_packet(PROTO_TCP, FWD_NAT, &seg(TCP_FIN | TCP_ACK, 1101, 5001, 0), 5), Count::Out);
        assert_eq!(f.client_packet(PROTO_TCP, FWD_NAT, &seg(TCP_RST, 1102, 0, 0), 6), Count::Same);
        assert_ne!(f.flags & FLOW_CLOSING, 0);
    }

    #[test]
    fn implausible_segments_do_not_move_the_window() {
        let mut f = nat_handshake();
        f.client_packet(PROTO_TCP, FWD_NAT, &seg(TCP_ACK, 101 + 2 * SEQ_WINDOW, 5001, 100), 3);
        assert_eq!(f.client_next, 101);
        f.server_packet(PROTO_TCP, &seg(TCP_ACK, 5001 + 2 * SEQ_WINDOW, 101, 100), 3);
        assert_eq!(f.server_next, 5001);
    }

    #[test]
    fn a_backend_rst_to_the_syn_closes_when_it_acknowledges_it() {
        let mut f = FlowState::opened(1, 2, 0, PROTO_TCP, &seg(TCP_SYN, 100, 0, 0));
        assert_eq!(f.server_packet(PROTO_TCP, &seg(TCP_RST | TCP_ACK, 0, 101 + 2 * SEQ_WINDOW, 0), 1), Count::Same);
        assert_eq!(f.flags & FLOW_CLOSING, 0, "acknowledges another ISN: not this flow's answer");
        assert_eq!(f.server_packet(PROTO_TCP, &seg(TCP_RST | TCP_ACK, 0, 101, 0), 1), Count::Out);
    }

    #[test]
    fn flows_opened_by_fin_or_rst_never_count_and_non_syn_ones_count_once_confirmed() {
        for flags in [TCP_FIN | TCP_ACK, TCP_RST] {
            let mut f = FlowState::opened(1, 0, 0, PROTO_TCP, &seg(flags, 100, 0, 0));
            assert_eq!(f.flags & FLOW_COUNTED, 0);
            assert_eq!(f.client_packet(PROTO_TCP, FWD_DSR, &seg(TCP_ACK, 101, 1, 0), 1), Count::Same);
            assert_eq!(f.flags & FLOW_COUNTED, 0);
        }
        let mut f = FlowState::opened(1, 0, 0, PROTO_TCP, &seg(TCP_ACK, 100, 1, 10));
        assert_eq!(f.flags & (FLOW_UNCONFIRMED | FLOW_COUNTED), FLOW_UNCONFIRMED);
        assert_eq!(f.client_packet(PROTO_TCP, FWD_DSR, &seg(TCP_ACK, 110, 1, 10), 1), Count::In);
        assert_eq!(f.flags & (FLOW_UNCONFIRMED | FLOW_ESTABLISHED), FLOW_ESTABLISHED);
        // A second packet far from the first confirms nothing.
        let mut g = FlowState::opened(1, 0, 0, PROTO_TCP, &seg(TCP_ACK, 100, 1, 10));
        assert_eq!(g.client_packet(PROTO_TCP, FWD_DSR, &seg(TCP_ACK, 100 + 3 * SEQ_WINDOW, 1, 10), 1), Count::Same);
        assert_ne!(g.flags & FLOW_UNCONFIRMED, 0);
    }

    #[test]
    fn a_resent_syn_keeps_the_flow_embryonic_and_a_new_syn_after_close_reopens_it() {
        let mut f = FlowState::opened(1, 2, 0, PROTO_TCP, &seg(TCP_SYN, 100, 0, 0));
        assert_eq!(f.client_packet(PROTO_TCP, FWD_NAT, &seg(TCP_SYN, 100, 0, 0), 1), Count::Same);
        assert_eq!((f.flags & FLOW_ESTABLISHED, f.backend_id, f.snat_port), (0, 1, 2));
        let mut g = nat_handshake();
        g.client_packet(PROTO_TCP, FWD_NAT, &seg(TCP_FIN | TCP_ACK, 101, 5001, 0), 3);
        assert_eq!(g.client_packet(PROTO_TCP, FWD_NAT, &seg(TCP_SYN, 9_000_000, 0, 0), 4), Count::In);
        assert_eq!(g.flags, FLOW_COUNTED);
        assert_eq!((g.backend_id, g.snat_port, g.client_next), (1, 2, 9_000_001));
    }

    #[test]
    fn udp_is_established_by_a_reply_in_nat_and_a_second_packet_in_dsr() {
        let mut f = FlowState::opened(1, 2, 0, PROTO_UDP, &Segment::default());
        f.client_packet(PROTO_UDP, FWD_NAT, &Segment::default(), 1);
        assert_eq!(f.flags & FLOW_ESTABLISHED, 0);
        f.server_packet(PROTO_UDP, &Segment::default(), 2);
        assert_ne!(f.flags & FLOW_ESTABLISHED, 0);
        let mut g = FlowState::opened(1, 0, 0, PROTO_UDP, &Segment::default());
        g.client_packet(PROTO_UDP, FWD_DSR, &Segment::default(), 1);
        assert_ne!(g.flags & FLOW_ESTABLISHED, 0);
    }

    #[test]
    fn near_wraps_around_sequence_space() {
        assert!(near(5, u32::MAX - 5));
        assert!(near(u32::MAX - 5, 5));
        assert!(near(0, SEQ_WINDOW) && !near(0, SEQ_WINDOW + 1));
    }
}

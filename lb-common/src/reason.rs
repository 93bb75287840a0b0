//! Why the data path dropped a packet. Indexes into `LB_DROP_STATS`; names are the
//! `reason` label values of `lb_drops_total` and of `lb list stats`.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum DropReason {
    /// An IP fragment for a VIP: no L4 header to pick a backend with.
    Fragment = 0,
    /// Headers cut short, or an IP length that runs past the frame, for a VIP.
    Truncated = 1,
    /// An IPv4 header length (IHL) below 5 words or a total length below it, for a VIP.
    BadIpHeader = 2,
    /// A TCP data offset below 5 words, or a zero-length L4 segment, for a VIP.
    BadL4Header = 3,
    /// The service has no backend that may take a new flow.
    NoBackend = 4,
    /// The backend's MAC is unknown: the daemon has not resolved its neighbour yet.
    NoNeighbor = 5,
    /// Every SNAT port probed for this backend is held by a live flow.
    SnatExhausted = 6,
    /// The flow or NAT table refused an insert.
    FlowInsertFailed = 7,
    /// The data path is not configured (daemon has not written `LB_CONFIG`).
    NotConfigured = 8,
    /// A new flow over its service's or its source's `rate_limit`.
    RateLimited = 9,
    /// A nat TCP segment that is not a SYN, for no flow: only a SYN opens a nat flow.
    NoFlow = 10,
    /// A new flow from a source the service's `allow` / `deny` lists refuse.
    AclDenied = 11,
    /// A packet too big for its way out: an `ipip`/`gue` packet that would exceed the
    /// tunnel's MTU once encapsulated (the client was sent ICMP "fragmentation needed" /
    /// ICMPv6 "packet too big"; that frame leaves by `XDP_TX`, so it also counts as a `tx`
    /// action), or a frame larger than the egress route's MTU (the FIB lookup said so).
    TooBig = 12,
    /// The kernel's FIB sends the frame out a NIC that is not one of `daemon.interface`
    /// (not in `LB_TX_PORTS`): a route points away from the balancer's NICs.
    NoTxPort = 13,
}

pub const DROP_REASON_COUNT: u32 = 14;

pub const DROP_REASON_NAMES: [&str; DROP_REASON_COUNT as usize] = [
    "fragment",
    "truncated",
    "bad_ip_header",
    "bad_l4_header",
    "no_backend",
    "no_neighbor",
    "snat_exhausted",
    "flow_insert_failed",
    "not_configured",
    "rate_limited",
    "no_flow",
    "acl_denied",
    "too_big",
    "no_tx_port",
];

/// XDP action names, indexed by the action's value (`XDP_ABORTED` = 0 ... `XDP_REDIRECT` = 4).
pub const ACTION_COUNT: u32 = 5;
pub const ACTION_NAMES: [&str; ACTION_COUNT as usize] = ["aborted", "drop", "pass", "tx", "redirect"];

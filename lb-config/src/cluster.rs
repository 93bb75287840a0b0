//! `[cluster]`: a fleet of balancers behind the routers' ECMP. Each node announces its VIPs
//! by BGP through a speaker it drives (`[cluster.bgp]`), builds the same tables as every
//! other node (`hash_seed`), and with `etcd` shares registrations and admin states with
//! the others. Without the table everything is one machine's, as before. The keys as written
//! are in `schema`, their rules in `cluster_rules`.
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

/// `[cluster]`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    /// This node's name. Default (`None`): the host name, read at start.
    pub node: Option<String>,
    pub hash_seed: u32,
    /// etcd endpoints (`http://host:port`); empty: no shared store.
    pub etcd: Vec<String>,
    /// Key prefix in etcd, starting with `/`, without a trailing `/`. Default `/lb`.
    pub etcd_prefix: String,
    /// SIGTERM: withdraw, keep forwarding this long, then stop. Default 5s with BGP, else 0.
    pub drain_grace: Duration,
    pub bgp: Option<Bgp>,
}

/// `[cluster.bgp]`: the speaker `lb` runs and feeds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bgp {
    pub speaker: Speaker,
    pub asn: u32,
    pub router_id: Ipv4Addr,
    /// In the file's order; at least one.
    pub neighbors: Vec<Neighbor>,
    /// The BGP hold time offered to every neighbor (whole seconds, at least 3). Default 9s:
    /// a node whose link is cut stops attracting traffic within it.
    pub hold_time: Duration,
    /// The speaker's program. Default `bird` (from PATH).
    pub bird: PathBuf,
    /// Where the speaker's config, VIP file and control socket live. Default `/run/lb/bird`.
    pub run_dir: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Speaker {
    /// BIRD 2, run by `lb` as its child, fed through an included file and its control socket.
    Bird,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Neighbor {
    pub address: IpAddr,
    pub asn: u32,
}

pub const DEFAULT_ETCD_PREFIX: &str = "/lb";
pub const DEFAULT_HOLD_TIME: Duration = Duration::from_secs(9);
pub const DEFAULT_DRAIN_GRACE: Duration = Duration::from_secs(5);
pub const MAX_DRAIN_GRACE: Duration = Duration::from_secs(600);
/// RFC 4271: a hold time is 0 or at least 3 seconds; 0 (no keepalives) is not offered, since
/// a silent death would then never end the announcement.
pub const MIN_HOLD_TIME: Duration = Duration::from_secs(3);
pub const MAX_HOLD_TIME: Duration = Duration::from_secs(65535);

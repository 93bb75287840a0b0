//! Who owns each SNAT port, as seen from outside the data path: every frame it sends to a
//! backend from the SNAT address names the client it came from. A reply (or an ICMP error)
//! it translates back must go to that client and no other: a flow never leaks.
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

/// A NAT flow's backend side: (backend, backend port, SNAT port, protocol).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BackendSide {
    pub backend: IpAddr,
    pub backend_port: u16,
    pub snat_port: u16,
    pub proto: u8,
}

/// The client a SNAT port was given to, and where it reached us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    pub client: SocketAddr,
    pub vip: SocketAddr,
    /// The source MAC of the packet that opened the flow: replies go back to it.
    pub mac: [u8; 6],
}

#[derive(Default)]
pub struct Owners {
    by_port: HashMap<BackendSide, Owner>,
    /// The same keys, for picking one at random.
    keys: Vec<BackendSide>,
}

impl Owners {
    /// A frame left for `side` on behalf of `owner`. The flow's MAC is the one it opened
    /// with: a later packet of the same client keeps it, another client takes the port over
    /// (the data path reuses a port once its flow is gone).
    pub fn forwarded(&mut self, side: BackendSide, owner: Owner) {
        match self.by_port.get_mut(&side) {
            Some(known) if known.client == owner.client && known.vip == owner.vip => {}
            Some(known) => *known = owner,
            None => {
                self.by_port.insert(side, owner);
                self.keys.push(side);
            }
        }
    }

    pub fn owner(&self, side: &BackendSide) -> Option<&Owner> {
        self.by_port.get(side)
    }

    pub fn pick(&self, r: u64) -> Option<(BackendSide, Owner)> {
        let side = *self.keys.get(r as usize % self.keys.len().max(1))?;
        Some((side, self.by_port[&side]))
    }
}

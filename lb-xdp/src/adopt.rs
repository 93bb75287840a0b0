//! Adopting a data path left running by a previous daemon (hitless restart). Reading the
//! maps back is the one exception to "maps are written, never read to decide": the flows
//! already in the flow table name backend ids, and the live ring generation is in use by
//! packets right now, so the new daemon must keep the ids and write the other generation.
//!
//! Before any of that, the pins must be of this build's layout (`layout`).
use std::net::SocketAddr;

use anyhow::Result;
use lb_common::addr::socket;
use lb_common::maps::VipKey;

use crate::inspect::service_name;
use crate::maps::Maps;

#[derive(Debug, Default, Clone)]
pub struct Adopted {
    /// (service id, name, VIP, live ring generation)
    pub services: Vec<(u32, String, VipKey, u32)>,
    /// (backend id, service name, address)
    pub backends: Vec<(u32, String, SocketAddr)>,
}

pub fn read_existing(maps: &Maps) -> Result<Adopted> {
    let mut a = Adopted::default();
    for (id, meta) in maps.services_in_use()? {
        if let Ok(info) = maps.vips.get(&meta.vip, 0) {
            if info.service_id == id {
                a.services.push((id, service_name(&meta), meta.vip, info.ring_gen));
            }
        }
    }
    for (id, _) in maps.backends_in_use()? {
        let b = maps.backends.get(&id, 0)?;
        if let Some((_, name, _, _)) = a.services.iter().find(|s| s.0 == b.service_id) {
            a.backends.push((id, name.clone(), socket(&b.addr, b.port, b.family)));
        }
    }
    Ok(a)
}

//! `lb list` without pinned maps: the proxy path (or a daemon on another pin path) answers
//! through its admin API instead.
use anyhow::{bail, Context, Result};

use super::ListWhat;
use lb_control::ServiceView;
use lb_xdp::inspect::{BackendRow, FlowRow, VipRow};

fn get<T: serde::de::DeserializeOwned>(api: &str, path: &str) -> Result<T> {
    get_page(api, path).map(|(rows, _)| rows)
}

/// One answer, and the `X-Next-After` cursor of a paged one (`/v1/flows`).
fn get_page<T: serde::de::DeserializeOwned>(api: &str, path: &str) -> Result<(T, Option<String>)> {
    let url = format!("{}{path}", api.trim_end_matches('/'));
    let agent = ureq::AgentBuilder::new().timeout(std::time::Duration::from_secs(3)).build();
    let resp = agent.get(&url).call().with_context(|| format!("GET {url}"))?;
    let next = resp.header("x-next-after").map(str::to_string);
    let rows = resp.into_json().with_context(|| format!("GET {url}: not the expected JSON"))?;
    Ok((rows, next))
}

/// Every flow: `/v1/flows` page after page, following the cursor.
fn all_flows(api: &str) -> Result<Vec<FlowRow>> {
    let mut rows: Vec<FlowRow> = Vec::new();
    let mut path = "/v1/flows?limit=10000".to_string();
    loop {
        let (page, next): (Vec<FlowRow>, _) = get_page(api, &path)?;
        rows.extend(page);
        match next {
            Some(cursor) => {
                path = format!("/v1/flows?limit=10000&after={}", crate::agent::encode_path_segment(&cursor))
            }
            None => return Ok(rows),
        }
    }
}

pub enum Rows {
    Vips(Vec<VipRow>),
    Backends(Vec<BackendRow>),
    Flows(Vec<FlowRow>),
}

pub fn rows(what: ListWhat, api: &str) -> Result<Rows> {
    Ok(match what {
        ListWhat::Vips => Rows::Vips(get::<Vec<ServiceView>>(api, "/v1/services")?.into_iter().map(vip_row).collect()),
        ListWhat::Backends => Rows::Backends(
            get::<Vec<ServiceView>>(api, "/v1/services")?.into_iter().flat_map(backend_rows).collect(),
        ),
        ListWhat::Flows => Rows::Flows(all_flows(api)?),
        ListWhat::Stats => bail!("`lb list stats` shows the XDP path's action and drop counters; the proxy path's counters are on {api}/metrics"),
    })
}

/// Each VIP's announcement as the daemon's API reports it (`lb list vips` from the maps
/// adds it); empty when the API does not answer.
pub fn announced(api: &str) -> std::collections::HashMap<String, Option<bool>> {
    get::<Vec<ServiceView>>(api, "/v1/services")
        .map(|services| services.into_iter().map(|s| (s.vip, s.announced)).collect())
        .unwrap_or_default()
}

fn vip_row(s: ServiceView) -> VipRow {
    VipRow {
        announced: s.announced,
        backends: s.backends.len() as u32,
        service: s.name,
        vip: s.vip,
        protocol: s.protocol,
        algorithm: s.algorithm,
        forwarding: s.forwarding,
    }
}

fn backend_rows(s: ServiceView) -> Vec<BackendRow> {
    s.backends
        .into_iter()
        .map(|b| {
            let c = b.proxy.unwrap_or_default();
            BackendRow {
                service: s.name.clone(),
                address: b.address,
                weight: b.weight,
                state: b.state,
                health: b.health,
                source: b.sources.join(","),
                // The proxy moves bytes, not packets.
                packets: 0,
                bytes: c.bytes_in + c.bytes_out,
                new_flows: c.connections_total,
                circuit: b.circuit,
            }
        })
        .collect()
}

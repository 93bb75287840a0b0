//! `lb explain --vip --client`: the backend a flow gets, from the pinned maps.
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use lb_common::consts::{PROTO_TCP, PROTO_UDP};

use super::{out, Proto};
use lb_xdp::{explain, maps::Maps};

pub fn explain(vip: SocketAddr, client: SocketAddr, proto: Proto, pin_path: &Path, json: bool) -> Result<ExitCode> {
    let maps = Maps::open_pinned(pin_path)?;
    let proto = if proto == Proto::Udp { PROTO_UDP } else { PROTO_TCP };
    let e = explain::explain(&maps, vip, client, proto)?;
    if json {
        out::line(serde_json::to_string_pretty(&e)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let text = match (&e.backend, e.ring_slot) {
        (Some(b), None) if e.decision.starts_with("new flow:") => {
            format!("{client} -> {vip}: backend {b} ({}, service {})", e.decision, e.service)
        }
        (Some(b), None) => format!("{client} -> {vip}: backend {b} (existing flow, service {})", e.service),
        (Some(b), Some(slot)) => {
            format!("{client} -> {vip}: backend {b} (new flow: {} slot {slot}, service {})", e.algorithm, e.service)
        }
        (None, _) if e.decision.starts_with("new flow:") => {
            format!("{client} -> {vip}: {} (service {}, {})", e.decision, e.service, e.algorithm)
        }
        (None, _) => format!(
            "{client} -> {vip}: no backend (service {} has none in rotation; the packet would be dropped)",
            e.service
        ),
    };
    out::line(text)?;
    Ok(ExitCode::SUCCESS)
}

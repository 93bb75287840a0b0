//! `lb list vips|backends|flows|stats`, straight from the pinned maps.
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;

use super::{table, ListWhat};
use crate::dataplane::{inspect, maps::Maps};

pub fn list(what: ListWhat, pin_path: &Path, json: bool) -> Result<ExitCode> {
    let maps = Maps::open_pinned(pin_path)?;
    match what {
        ListWhat::Vips => {
            let rows = inspect::vips(&maps);
            emit(json, &rows, || {
                table::print(
                    &["SERVICE", "VIP", "PROTO", "ALGORITHM", "FORWARDING", "BACKENDS"],
                    &rows.iter().map(|r| vec![r.service.clone(), r.vip.clone(), r.protocol.clone(), r.algorithm.clone(), r.forwarding.clone(), r.backends.to_string()]).collect::<Vec<_>>(),
                )
            })
        }
        ListWhat::Backends => {
            let rows = inspect::backends(&maps)?;
            emit(json, &rows, || {
                table::print(
                    &["SERVICE", "ADDRESS", "WEIGHT", "STATE", "HEALTH", "SOURCE", "PACKETS", "BYTES", "NEW_FLOWS"],
                    &rows
                        .iter()
                        .map(|r| vec![r.service.clone(), r.address.clone(), r.weight.to_string(), r.state.clone(), r.health.clone(), r.source.clone(), r.packets.to_string(), r.bytes.to_string(), r.new_flows.to_string()])
                        .collect::<Vec<_>>(),
                )
            })
        }
        ListWhat::Flows => {
            let rows = inspect::flows(&maps)?;
            emit(json, &rows, || {
                table::print(
                    &["PROTO", "CLIENT", "VIP", "BACKEND", "SNAT_PORT", "IDLE", "CLOSING"],
                    &rows
                        .iter()
                        .map(|r| vec![r.protocol.clone(), r.client.clone(), r.vip.clone(), r.backend.clone(), r.snat_port.map_or("-".into(), |p| p.to_string()), format!("{:.1}s", r.idle_seconds), r.closing.to_string()])
                        .collect::<Vec<_>>(),
                )
            })
        }
        ListWhat::Stats => {
            let s = inspect::stats(&maps)?;
            emit(json, &s, || {
                let mut rows: Vec<Vec<String>> = s.actions.iter().map(|(k, v)| vec!["action".into(), k.clone(), v.to_string()]).collect();
                rows.extend(s.drops.iter().map(|(k, v)| vec!["drop".into(), k.clone(), v.to_string()]));
                table::print(&["KIND", "NAME", "PACKETS"], &rows)
            })
        }
    }
}

fn emit<T: Serialize + ?Sized>(json: bool, value: &T, human: impl FnOnce()) -> Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        human();
    }
    Ok(ExitCode::SUCCESS)
}

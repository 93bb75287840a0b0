//! `lb list vips|backends|flows|stats`, straight from the pinned maps.
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;

use super::{out, table, ListWhat};
use lb_xdp::{
    inspect,
    maps::{Maps, NothingPinned},
};

pub fn list(what: ListWhat, pin_path: &Path, api: &str, json: bool) -> Result<ExitCode> {
    let maps = match Maps::open_pinned(pin_path) {
        Ok(m) => m,
        Err(e) if e.is::<NothingPinned>() => {
            let rows = super::remote::rows(what, api)
                .map_err(|api_err| anyhow::anyhow!("{e}; and the daemon's API did not answer either: {api_err:#}"))?;
            return match rows {
                super::remote::Rows::Vips(r) => print_vips(json, &r),
                super::remote::Rows::Backends(r) => print_backends(json, &r),
                super::remote::Rows::Flows(r) => print_flows(json, &r),
            };
        }
        Err(e) => return Err(e),
    };
    match what {
        ListWhat::Vips => {
            let mut rows = inspect::vips(&maps);
            let announced = super::remote::announced(api);
            for r in &mut rows {
                r.announced = announced.get(&r.vip).copied().flatten();
            }
            print_vips(json, &rows)
        }
        ListWhat::Backends => print_backends(json, &inspect::backends(&maps)?),
        ListWhat::Flows => print_flows(json, &inspect::flows(&maps)?),
        ListWhat::Stats => {
            let s = inspect::stats(&maps)?;
            emit(json, &s, || {
                let mut rows: Vec<Vec<String>> =
                    s.actions.iter().map(|(k, v)| vec!["action".into(), k.clone(), v.to_string()]).collect();
                rows.extend(s.drops.iter().map(|(k, v)| vec!["drop".into(), k.clone(), v.to_string()]));
                for (service, scopes) in &s.ratelimited {
                    rows.extend(
                        scopes
                            .iter()
                            .map(|(scope, v)| vec!["ratelimited".into(), format!("{service}/{scope}"), v.to_string()]),
                    );
                }
                rows.extend(
                    s.acl_denied.iter().map(|(service, v)| vec!["acl_denied".into(), service.clone(), v.to_string()]),
                );
                table::print(&["KIND", "NAME", "PACKETS"], &rows)
            })
        }
    }
}

fn print_vips(json: bool, rows: &[inspect::VipRow]) -> Result<ExitCode> {
    emit(json, rows, || {
        table::print(
            &["SERVICE", "VIP", "PROTO", "ALGORITHM", "FORWARDING", "BACKENDS", "ANNOUNCED"],
            &rows
                .iter()
                .map(|r| {
                    vec![
                        r.service.clone(),
                        r.vip.clone(),
                        r.protocol.clone(),
                        r.algorithm.clone(),
                        r.forwarding.clone(),
                        r.backends.to_string(),
                        match r.announced {
                            Some(true) => "yes".into(),
                            Some(false) => "no".into(),
                            None => "-".into(),
                        },
                    ]
                })
                .collect::<Vec<_>>(),
        )
    })
}

fn print_backends(json: bool, rows: &[inspect::BackendRow]) -> Result<ExitCode> {
    emit(json, rows, || {
        table::print(
            &["SERVICE", "ADDRESS", "WEIGHT", "STATE", "HEALTH", "CIRCUIT", "SOURCE", "PACKETS", "BYTES", "NEW_FLOWS"],
            &rows
                .iter()
                .map(|r| {
                    vec![
                        r.service.clone(),
                        r.address.clone(),
                        r.weight.to_string(),
                        r.state.clone(),
                        r.health.clone(),
                        r.circuit.clone(),
                        r.source.clone(),
                        r.packets.to_string(),
                        r.bytes.to_string(),
                        r.new_flows.to_string(),
                    ]
                })
                .collect::<Vec<_>>(),
        )
    })
}

fn print_flows(json: bool, rows: &[inspect::FlowRow]) -> Result<ExitCode> {
    emit(json, rows, || {
        table::print(
            &["PROTO", "CLIENT", "VIP", "BACKEND", "SNAT_PORT", "IDLE", "CLOSING"],
            &rows
                .iter()
                .map(|r| {
                    vec![
                        r.protocol.clone(),
                        r.client.clone(),
                        r.vip.clone(),
                        if r.backend_retired { format!("{} (retired)", r.backend) } else { r.backend.clone() },
                        r.snat_port.map_or("-".into(), |p| p.to_string()),
                        format!("{:.1}s", r.idle_seconds),
                        r.closing.to_string(),
                    ]
                })
                .collect::<Vec<_>>(),
        )
    })
}

fn emit<T: Serialize + ?Sized>(json: bool, value: &T, human: impl FnOnce() -> Result<()>) -> Result<ExitCode> {
    if json {
        out::line(serde_json::to_string_pretty(value)?)?;
    } else {
        human()?;
    }
    Ok(ExitCode::SUCCESS)
}

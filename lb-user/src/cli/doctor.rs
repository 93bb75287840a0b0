//! `lb doctor --interface IF`: can XDP run natively here, and what is in the way.
use std::process::ExitCode;

use anyhow::Result;

use super::out;
use crate::doctor::{self, Finding};

/// Prints one line per check and the verdict (or, with `json`, the findings as a JSON
/// array, each naming its interface); exits 0 when native XDP attaches on every interface
/// and nothing blocks forwarding between them, 1 otherwise. With several interfaces, each
/// gets a heading and its own verdict.
pub fn doctor(interfaces: &[String], json: bool) -> Result<ExitCode> {
    let per_nic = doctor::diagnose_nics(interfaces);
    if json {
        let rows: Vec<serde_json::Value> = per_nic
            .iter()
            .flat_map(|(nic, findings)| findings.iter().map(move |f| (nic, f)))
            .map(|(nic, f)| {
                serde_json::json!({
                    "interface": nic,
                    "check": f.check,
                    "status": f.status().as_str(),
                    "ok": f.ok,
                    "blocker": f.is_blocker(),
                    "detail": f.detail,
                    "fix": f.fix,
                })
            })
            .collect();
        out::line(serde_json::to_string_pretty(&rows)?)?;
    } else {
        for (nic, findings) in &per_nic {
            if per_nic.len() > 1 {
                out::line(format!("{nic}:"))?;
            }
            for f in findings {
                out::line(line(f))?;
            }
            out::line(doctor::verdict(nic, findings))?;
        }
    }
    let ok = per_nic
        .iter()
        .all(|(_, f)| doctor::native_ok(f) && !f.iter().any(|f| f.check == doctor::checks::REDIRECT_TARGET && !f.ok));
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `problem  mtu            MTU 9000 is too large ...; fix: ip link set ...`
fn line(f: &Finding) -> String {
    let mut line = format!("{:<8} {:<14} {}", f.status().as_str(), f.check, f.detail);
    if let Some(fix) = &f.fix {
        line += &format!("; fix: {fix}");
    }
    line
}

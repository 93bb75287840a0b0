//! `lb doctor --interface IF`: can XDP run natively here, and what is in the way.
use std::process::ExitCode;

use anyhow::Result;

use super::out;
use crate::doctor::{self, Finding};

/// Prints one line per check and the verdict (or, with `json`, the findings as a JSON
/// array); exits 0 when native XDP attaches, 1 otherwise.
pub fn doctor(interface: &str, json: bool) -> Result<ExitCode> {
    let findings = doctor::diagnose(interface);
    if json {
        let rows: Vec<serde_json::Value> = findings
            .iter()
            .map(|f| {
                serde_json::json!({
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
        for f in &findings {
            out::line(line(f))?;
        }
        out::line(doctor::verdict(interface, &findings))?;
    }
    Ok(if doctor::native_ok(&findings) { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `problem  mtu            MTU 9000 is too large ...; fix: ip link set ...`
fn line(f: &Finding) -> String {
    let mut line = format!("{:<8} {:<14} {}", f.status().as_str(), f.check, f.detail);
    if let Some(fix) = &f.fix {
        line += &format!("; fix: {fix}");
    }
    line
}

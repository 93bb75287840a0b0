//! `lb doctor --interface IF`: can XDP run natively on IF, and what stands in the way.
//!
//! Each check reads what the kernel reports (sysfs, procfs, `ip -j`, `ethtool`, capget,
//! statfs) and yields a [`Finding`]. One check is definitive: [`native_xdp_works`] loads a
//! two-instruction pass-through XDP program and attaches it in native (driver) mode with a
//! BPF link, then closes the link at once, which detaches it. An XDP program that is already
//! attached is never touched: the kernel refuses the probe and doctor says so.
//!
//! The daemon's auto mode explains its fallback to the proxy path with [`blockers`] and
//! [`reasons`], so `lb doctor` and the warning give the same reasons and fixes.
//!
//! Checks, one file per group: `host` (privileges, BPF filesystem), `driver` (interface,
//! driver, loopback), `probe` (the native attach), `netdev` (MTU, LRO, tx checksum
//! offload), `veth` (the peer of a veth), `sysctl` (rp_filter); `tools` runs `ip`/`ethtool`.
mod driver;
mod host;
mod netdev;
pub mod probe;
mod sysctl;
mod tools;
mod veth;

use serde::Serialize;

/// The check names, as they appear in the output (`check` field).
pub mod checks {
    pub const INTERFACE: &str = "interface";
    pub const PRIVILEGES: &str = "privileges";
    pub const BPFFS: &str = "bpffs";
    pub const DRIVER: &str = "driver";
    pub const NATIVE_ATTACH: &str = "native-attach";
    pub const MTU: &str = "mtu";
    pub const LRO: &str = "lro";
    pub const VETH_PEER: &str = "veth-peer";
    pub const RP_FILTER: &str = "rp_filter";
    pub const TX_CHECKSUM: &str = "tx-checksum";
    /// With several NICs: can the NIC take frames the data path redirects to it from another.
    pub const REDIRECT_TARGET: &str = "redirect-target";

    /// The checks whose failure keeps native XDP from attaching or from forwarding.
    /// The others (rp_filter, tx-checksum) are advice about the paths around it.
    pub const BLOCKING: [&str; 9] =
        [INTERFACE, PRIVILEGES, BPFFS, DRIVER, NATIVE_ATTACH, MTU, LRO, VETH_PEER, REDIRECT_TARGET];
}

/// The outcome of one check. `ok` with a `fix` is advice (shown as a note); not `ok` is a
/// problem, and `fix` says what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub check: &'static str,
    pub ok: bool,
    pub detail: String,
    pub fix: Option<String>,
}

/// How a finding is shown: `ok`, `note` (ok, with advice) or `problem`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Note,
    Problem,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Note => "note",
            Status::Problem => "problem",
        }
    }
}

impl Finding {
    pub(crate) fn ok(check: &'static str, detail: impl Into<String>) -> Self {
        Finding { check, ok: true, detail: detail.into(), fix: None }
    }

    pub(crate) fn note(check: &'static str, detail: impl Into<String>, advice: impl Into<String>) -> Self {
        Finding { check, ok: true, detail: detail.into(), fix: Some(advice.into()) }
    }

    pub(crate) fn problem(check: &'static str, detail: impl Into<String>, fix: Option<String>) -> Self {
        Finding { check, ok: false, detail: detail.into(), fix }
    }

    pub fn status(&self) -> Status {
        match (self.ok, &self.fix) {
            (false, _) => Status::Problem,
            (true, Some(_)) => Status::Note,
            (true, None) => Status::Ok,
        }
    }

    /// A failed check that keeps native XDP from attaching or from forwarding.
    pub fn is_blocker(&self) -> bool {
        !self.ok && checks::BLOCKING.contains(&self.check)
    }
}

/// Every check for `interface`, in a fixed order. If the interface does not exist (or the
/// name is not a valid interface name) there is one finding and nothing else is checked.
pub fn diagnose(interface: &str) -> Vec<Finding> {
    let link = match driver::interface(interface) {
        Ok((finding, link)) => {
            let mut findings = vec![finding];
            findings.extend(checks_for(&link));
            return findings;
        }
        Err(finding) => finding,
    };
    vec![link]
}

/// Every check for each of several NICs (`daemon.interface` as a list), and for each, when
/// there are several, whether it takes the frames the data path redirects to it from the
/// others (`XDP_REDIRECT` through `LB_TX_PORTS`).
pub fn diagnose_nics(interfaces: &[String]) -> Vec<(String, Vec<Finding>)> {
    interfaces
        .iter()
        .map(|nic| {
            let mut findings = diagnose(nic);
            if interfaces.len() > 1 {
                if let Ok(link) = tools::link(nic) {
                    findings.push(veth::redirect_finding(&link, veth::peer(&link).as_ref()));
                }
            }
            (nic.clone(), findings)
        })
        .collect()
}

fn checks_for(link: &tools::Link) -> Vec<Finding> {
    let name = link.name.as_str();
    let probe = probe::probe(link.ifindex);
    let existing = link.xdp.as_ref();
    let peer = veth::peer(link);
    let features = tools::ethtool_features(name);
    let offloads_on = netdev::merging_offloads_on(features.as_ref());
    let mut findings = vec![host::privileges(), host::bpffs()];
    let (driver, without_native) = driver::driver(link, &probe, &offloads_on);
    findings.push(driver);
    findings.push(probe::finding(link, &probe, existing, peer.as_ref(), &offloads_on));
    findings.push(netdev::mtu(link, peer.as_ref(), &probe, without_native.as_deref()));
    findings.push(netdev::lro(name, features.as_ref()));
    findings.push(veth::peer_finding(link, peer.as_ref()));
    findings.push(sysctl::rp_filter(name));
    findings.push(netdev::tx_checksum(link, features.as_ref(), peer.as_ref()));
    findings
}

/// The failed checks that keep native XDP from working on `interface` (empty when nothing
/// is in the way): what the daemon's auto mode names when it falls back to the proxy path.
pub fn blockers(interface: &str) -> Vec<Finding> {
    diagnose(interface).into_iter().filter(Finding::is_blocker).collect()
}

/// The definitive test: load a pass-through XDP program and attach it natively to
/// `interface`, then detach at once. `Err` says why not (the kernel's errno, explained),
/// with the fix. An XDP program already attached is left alone (and reported as the reason),
/// except lb's own data path attached natively: that is proof native XDP works (Ok).
pub fn native_xdp_works(interface: &str) -> Result<(), String> {
    if let Err(why) = driver::valid_name(interface) {
        return Err(format!("{interface:?} is not a valid interface name: {why}"));
    }
    let Some(ifindex) = tools::ifindex(interface) else {
        return Err(format!("interface {interface} does not exist (in this network namespace)"));
    };
    let outcome = probe::probe(ifindex);
    match outcome.refusal() {
        None => Ok(()),
        Some(r) => {
            let existing = tools::link(interface).ok().and_then(|l| l.xdp);
            if r.stage == probe::Stage::Attach
                && r.errno == libc::EBUSY
                && probe::lb_runs_natively(existing.as_ref()).is_some()
            {
                return Ok(());
            }
            let offloads_on = netdev::merging_offloads_on(tools::ethtool_features(interface).as_ref());
            let explained = probe::explain(interface, r, existing.as_ref(), None, &offloads_on);
            Err(match explained.fix {
                Some(fix) => format!("{} (fix: {fix})", explained.detail),
                None => explained.detail,
            })
        }
    }
}

/// Whether the findings include a successful native attach (the verdict of `lb doctor`).
pub fn native_ok(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.check == checks::NATIVE_ATTACH && f.ok)
}

/// The findings as one line for a log message: `check: detail (fix: ...)`, joined by `; `.
pub fn reasons(findings: &[Finding]) -> String {
    findings
        .iter()
        .map(|f| match &f.fix {
            Some(fix) => format!("{}: {} (fix: {fix})", f.check, f.detail),
            None => format!("{}: {}", f.check, f.detail),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The final line of `lb doctor`.
pub fn verdict(interface: &str, findings: &[Finding]) -> String {
    let problems = |pred: fn(&Finding) -> bool| {
        findings.iter().filter(|f| pred(f)).map(|f| f.check).collect::<Vec<_>>().join(", ")
    };
    if native_ok(findings) {
        let others = problems(|f| !f.ok);
        if others.is_empty() {
            format!("native XDP can attach on {interface}")
        } else {
            format!("native XDP can attach on {interface} (see the problems above: {others})")
        }
    } else {
        let mut reasons = problems(Finding::is_blocker);
        if reasons.is_empty() {
            reasons = problems(|f| !f.ok);
        }
        format!("native XDP cannot attach on {interface}: {reasons}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_follows_ok_and_fix() {
        assert_eq!(Finding::ok("mtu", "fine").status(), Status::Ok);
        assert_eq!(Finding::note("veth-peer", "elsewhere", "do this").status(), Status::Note);
        assert_eq!(Finding::problem("mtu", "big", None).status(), Status::Problem);
    }

    #[test]
    fn blockers_leave_out_advice_checks() {
        assert!(Finding::problem(checks::MTU, "big", None).is_blocker());
        assert!(!Finding::problem(checks::RP_FILTER, "strict", None).is_blocker());
        assert!(!Finding::note(checks::VETH_PEER, "elsewhere", "x").is_blocker());
    }

    #[test]
    fn verdict_names_the_blockers() {
        let findings = vec![
            Finding::ok(checks::INTERFACE, "x"),
            Finding::problem(checks::NATIVE_ATTACH, "refused", None),
            Finding::problem(checks::MTU, "big", None),
            Finding::problem(checks::RP_FILTER, "strict", None),
        ];
        assert_eq!(verdict("x0", &findings), "native XDP cannot attach on x0: native-attach, mtu");
        let findings =
            vec![Finding::ok(checks::NATIVE_ATTACH, "ok"), Finding::problem(checks::RP_FILTER, "strict", None)];
        assert_eq!(verdict("x0", &findings), "native XDP can attach on x0 (see the problems above: rp_filter)");
        assert_eq!(verdict("x0", &findings[..1]), "native XDP can attach on x0");
    }

    #[test]
    fn a_bad_name_is_one_finding_and_no_panic() {
        for name in ["", "a/b", "..", "waytoolonginterfacename", "a b", "x:y"] {
            let findings = diagnose(name);
            assert_eq!(findings.len(), 1, "{name:?}");
            assert!(!findings[0].ok);
            assert!(findings[0].detail.contains("not a valid interface name"), "{}", findings[0].detail);
            assert!(native_xdp_works(name).is_err());
        }
    }

    #[test]
    fn a_missing_interface_is_one_finding() {
        let findings = diagnose("nosuchif0");
        assert_eq!(findings.len(), 1);
        assert!(findings[0].detail.contains("does not exist"));
        assert_eq!(blockers("nosuchif0").len(), 1);
        assert!(native_xdp_works("nosuchif0").unwrap_err().contains("does not exist"));
    }
}

//! The `[service.health_check]` keys that belong to one check type each: `send` and
//! `expect` (`udp`), `sni`, `verify` and `ca_file` (`https`), `agent_port` (`agent`). A key
//! written for another type is an error at the key (it would be silently ignored
//! otherwise), and a type missing the key it needs is an error at its `type`.
use std::path::PathBuf;

use toml::Spanned;

use super::enums::HealthCheckType;
use super::model::TlsCheck;
use super::schema::RawHealthCheck;
use super::validate::Validator;

/// A `udp` check's payload and expected reply fit in one unfragmented datagram.
pub const MAX_UDP_CHECK_PAYLOAD: usize = 1024;

/// The per-type keys, each `None` when it was reported.
pub(super) struct TypeKeys {
    pub send: Option<String>,
    pub expect: Option<Option<String>>,
    pub tls: Option<TlsCheck>,
    pub agent_port: Option<u16>,
}

impl Validator<'_> {
    /// The keys of `kind` (the service's check type; `None` when it was itself invalid,
    /// then only the keys' own values are checked).
    pub(super) fn health_check_type_keys(&mut self, raw: &RawHealthCheck, kind: Option<HealthCheckType>) -> TypeKeys {
        let udp =
            self.only_for(kind, HealthCheckType::Udp, &[("send", raw.send.as_ref()), ("expect", raw.expect.as_ref())]);
        let https = self.only_for(
            kind,
            HealthCheckType::Https,
            &[("sni", raw.sni.as_ref()), ("ca_file", raw.ca_file.as_ref())],
        ) & self.only_for(kind, HealthCheckType::Https, &[("verify", raw.verify.as_ref())]);
        let agent = self.only_for(kind, HealthCheckType::Agent, &[("agent_port", raw.agent_port.as_ref())]);
        let send = self.optional(raw.send.as_ref(), String::new(), |t| payload(t, "send"));
        let expect = self.optional(raw.expect.as_ref(), None, |t| payload(t, "expect").map(Some));
        let agent_port = self.optional(raw.agent_port.as_ref(), 0, |&n| agent_port(n));
        let tls = self.tls(raw);
        self.required_by_type(raw, kind);
        TypeKeys {
            send: send.filter(|_| udp),
            expect: expect.filter(|_| udp),
            tls: tls.filter(|_| https),
            agent_port: agent_port.filter(|_| agent),
        }
    }

    /// Reports each written key of `keys` when the check is not of type `owner`; false if
    /// any was.
    fn only_for<T>(
        &mut self,
        kind: Option<HealthCheckType>,
        owner: HealthCheckType,
        keys: &[(&str, Option<&Spanned<T>>)],
    ) -> bool {
        let Some(kind) = kind.filter(|k| *k != owner) else { return true };
        let mut fine = true;
        for (name, value) in keys {
            if let Some(value) = value {
                self.report(
                    &value.span(),
                    format!("{name} applies to health checks of type \"{owner}\"; this one is \"{kind}\""),
                );
                fine = false;
            }
        }
        fine
    }

    /// `verify = true` needs `ca_file` (reported at `verify`); `ca_file` without it is
    /// never read (reported at `ca_file`).
    fn tls(&mut self, raw: &RawHealthCheck) -> Option<TlsCheck> {
        let sni = self.optional(raw.sni.as_ref(), None, |n| server_name(n).map(Some));
        let ca_file = self.optional(raw.ca_file.as_ref(), None, |p| ca_file(p).map(Some));
        let verify = raw.verify.as_ref().is_some_and(|v| *v.get_ref());
        match (&raw.verify, &raw.ca_file) {
            (Some(v), None) if verify => {
                self.report(&v.span(), "verify = true needs ca_file, the PEM certificates to trust");
                return None;
            }
            (_, Some(c)) if !verify => {
                self.report(&c.span(), "ca_file is read only with verify = true");
                return None;
            }
            _ => {}
        }
        Some(TlsCheck { sni: sni?, verify, ca_file: ca_file? })
    }

    /// `udp` needs `send`, `agent` needs `agent_port`: reported at the `type`.
    fn required_by_type(&mut self, raw: &RawHealthCheck, kind: Option<HealthCheckType>) {
        let Some(written) = raw.kind.as_ref() else { return };
        let missing = match kind {
            Some(HealthCheckType::Udp) if raw.send.is_none() => "send, the datagram to send",
            Some(HealthCheckType::Agent) if raw.agent_port.is_none() => "agent_port, the port the agent answers on",
            _ => return,
        };
        let kind = written.get_ref();
        self.report(&written.span(), format!("health check type \"{kind}\" needs {missing}"));
    }
}

/// A `send` or `expect` text: not empty, within one datagram.
fn payload(text: &str, key: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err(format!("{key} must not be empty"));
    }
    if text.len() > MAX_UDP_CHECK_PAYLOAD {
        return Err(format!("{key} is {} bytes; at most {MAX_UDP_CHECK_PAYLOAD}", text.len()));
    }
    Ok(text.to_string())
}

fn agent_port(n: u32) -> Result<u16, String> {
    match u16::try_from(n) {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(format!("agent_port {n} is not a port; expected 1-65535")),
    }
}

/// A DNS name as a ClientHello carries it: labels of letters, digits, `-` (and `_`, which
/// some internal names have), dot-separated, not an IP address (SNI never carries one).
fn server_name(name: &str) -> Result<String, String> {
    let label_ok = |l: &str| {
        !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if name.len() > 253 || !name.split('.').all(label_ok) || name.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!("sni {name:?} is not a DNS name, e.g. \"api.example.com\""));
    }
    Ok(name.to_ascii_lowercase())
}

fn ca_file(path: &str) -> Result<PathBuf, String> {
    if path.is_empty() {
        return Err("ca_file must not be empty".to_string());
    }
    Ok(PathBuf::from(path))
}

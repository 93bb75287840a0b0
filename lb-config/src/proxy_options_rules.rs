//! The rules of a service's proxy-path traffic keys: `send_proxy`,
//! `accept_proxy`, `accept_proxy_from`, `[[service.route]]`, a backend's `group` and
//! `sni_timeout`, each checked at its position (see `traffic` for the model).
//!
//! All of them need the proxy path: XDP forwards packets and can neither write a PROXY
//! header nor read a ClientHello. So they are refused unless the config can only run the
//! proxy: `daemon.mode = "proxy"`, or `"auto"` without an `interface` (auto with one may
//! start XDP, which would silently ignore them).
use std::collections::HashMap;
use std::net::SocketAddr;

use super::cidr::Cidr;
use super::duration::format_duration;
use super::enums::{Mode, Protocol, ProxyMode};
use super::proxy_options::*;
use super::schema::{RawBackend, RawRoute, RawService};
use super::validate::{positive_duration, Validator};

/// Which path the daemon's config lets serve: what the traffic keys need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct PathChoice {
    pub mode: Mode,
    pub has_interface: bool,
}

impl PathChoice {
    fn proxy_only(self) -> bool {
        self.mode == Mode::Proxy || (self.mode == Mode::Auto && !self.has_interface)
    }

    /// Err: why `key` cannot be used with this daemon.
    fn needs_proxy(self, key: &str) -> Result<(), String> {
        if self.proxy_only() {
            return Ok(());
        }
        let why = match self.mode {
            Mode::Xdp => "daemon.mode is \"xdp\"",
            _ => "daemon.mode \"auto\" with an interface may run XDP",
        };
        Err(format!("{key} needs the proxy path, but {why}, which cannot honour it; set daemon.mode = \"proxy\""))
    }
}

/// The longest group name (it is a metric label).
const MAX_GROUP_LEN: usize = 47;

impl Validator<'_> {
    /// A service's traffic options. `proxy_mode`: None when its own value was invalid.
    pub(super) fn proxy_options(
        &mut self,
        raw: &RawService,
        protocol: Protocol,
        proxy_mode: Option<ProxyMode>,
        path: PathChoice,
    ) -> Option<ProxyOptions> {
        let proxy_protocol = self.proxy_protocol(raw, protocol, path);
        let sni = self.sni_routing(raw, protocol, proxy_mode, path);
        Some(ProxyOptions { proxy_protocol: proxy_protocol?, sni: sni? })
    }

    fn proxy_protocol(&mut self, raw: &RawService, protocol: Protocol, path: PathChoice) -> Option<ProxyProtocol> {
        let send = self.optional(raw.send_proxy.as_ref(), None, |v| {
            let version = send_proxy(v)?;
            tcp_only(protocol, "send_proxy")?;
            path.needs_proxy("send_proxy")?;
            Ok(Some(version))
        });
        let on = raw.accept_proxy.as_ref().is_some_and(|a| *a.get_ref());
        let mut ok = true;
        if let Some(a) = raw.accept_proxy.as_ref().filter(|a| *a.get_ref()) {
            let checked = tcp_only(protocol, "accept_proxy").and_then(|()| path.needs_proxy("accept_proxy"));
            if let Err(e) = checked {
                self.report(&a.span(), e);
                ok = false;
            }
            if raw.accept_proxy_from.as_ref().is_none_or(|l| l.get_ref().is_empty()) {
                let at = raw.accept_proxy_from.as_ref().map_or(a.span(), |l| l.span());
                self.report(
                    &at,
                    "accept_proxy = true needs accept_proxy_from = [\"CIDR\", ...]: the front load balancers \
                     trusted to send PROXY headers (a client that could send one could claim any address)",
                );
                ok = false;
            }
        }
        let mut accept_from = Vec::new();
        if let Some(list) = &raw.accept_proxy_from {
            if !on {
                self.report(&list.span(), "accept_proxy_from is set but accept_proxy is not true");
                ok = false;
            }
            for p in list.get_ref() {
                match self.required(p, |text| text.parse::<Cidr>().map_err(|e| format!("accept_proxy_from: {e}"))) {
                    Some(c) => accept_from.push(c),
                    None => ok = false,
                }
            }
        }
        let send = send?;
        ok.then_some(ProxyProtocol { send, accept_from: if on { accept_from } else { Vec::new() } })
    }

    fn sni_routing(
        &mut self,
        raw: &RawService,
        protocol: Protocol,
        proxy_mode: Option<ProxyMode>,
        path: PathChoice,
    ) -> Option<SniRouting> {
        let timeout = self.optional(raw.sni_timeout.as_ref(), DEFAULT_SNI_TIMEOUT, sni_timeout);
        let groups = self.backend_groups(&raw.backends);
        let mut ok = true;
        if let Some(first) = raw.routes.first() {
            let fits = tcp_only(protocol, "[[service.route]]")
                .and_then(|()| match proxy_mode {
                    Some(ProxyMode::Http) => Err("[[service.route]] routes TLS connections by their server name: \
                                                  it needs proxy_mode = \"l4\", not \"http\""
                        .to_string()),
                    _ => Ok(()),
                })
                .and_then(|()| path.needs_proxy("[[service.route]]"));
            if let Err(e) = fits {
                self.report(&first.group.span(), e);
                ok = false;
            }
        }
        let routes: Vec<Option<SniRoute>> = raw.routes.iter().map(|r| self.route(r, &raw.backends)).collect();
        self.unique_sni_names(&raw.routes);
        self.groups_routed(&raw.routes, &raw.backends);
        let routes = routes.into_iter().collect::<Option<Vec<_>>>()?;
        let (groups, timeout) = (groups?, timeout?);
        ok.then_some(SniRouting { routes, groups, timeout })
    }

    fn route(&mut self, raw: &RawRoute, backends: &[RawBackend]) -> Option<SniRoute> {
        let group = self.required(&raw.group, |g| {
            let g = group_name(g)?;
            if !backends.iter().any(|b| b.group.as_ref().is_some_and(|bg| *bg.get_ref() == g)) {
                return Err(format!("route group {g:?}: no [[service.backend]] has group = {g:?}"));
            }
            Ok(g)
        });
        if raw.sni.get_ref().is_empty() {
            self.report(&raw.sni.span(), "sni must name at least one server name");
            return None;
        }
        let names: Vec<Option<SniName>> = raw.sni.get_ref().iter().map(|n| self.required(n, |t| sni_name(t))).collect();
        Some(SniRoute { names: names.into_iter().collect::<Option<_>>()?, group: group? })
    }

    /// Backend address → group, each group name checked where it is written.
    fn backend_groups(&mut self, backends: &[RawBackend]) -> Option<HashMap<SocketAddr, String>> {
        let mut groups = HashMap::new();
        let mut ok = true;
        for b in backends {
            let Some(g) = &b.group else { continue };
            match self.required(g, |g| group_name(g)) {
                // An invalid address was reported by the backend's own rules.
                Some(g) => {
                    if let Ok(address) = b.address.get_ref().parse::<SocketAddr>() {
                        groups.insert(address, g);
                    }
                }
                None => ok = false,
            }
        }
        ok.then_some(groups)
    }

    /// One server name in two routes (or twice in one) would make the route it takes depend
    /// on the order in the file.
    fn unique_sni_names(&mut self, routes: &[RawRoute]) {
        let mut first: HashMap<SniName, usize> = HashMap::new();
        for name in routes.iter().flat_map(|r| r.sni.get_ref()) {
            let Ok(parsed) = sni_name(name.get_ref()) else { continue };
            match first.get(&parsed) {
                Some(&line) => self.report(
                    &name.span(),
                    format!("duplicate sni name {parsed}; first listed at line {line} (a name routes to one group)"),
                ),
                None => {
                    let line = self.line_of(name.span().start);
                    first.insert(parsed, line);
                }
            }
        }
    }

    /// A backend whose group no route names gets no traffic: likely a typo.
    fn groups_routed(&mut self, routes: &[RawRoute], backends: &[RawBackend]) {
        for g in backends.iter().filter_map(|b| b.group.as_ref()) {
            if !routes.iter().any(|r| r.group.get_ref() == g.get_ref()) {
                self.warn(
                    &g.span(),
                    format!("no [[service.route]] names group {:?}: this backend gets no connections", g.get_ref()),
                );
            }
        }
    }

    /// `send_proxy` on an `http` service: the pool cannot share a connection between
    /// clients, so it is off (one upstream connection per client request).
    pub(super) fn warn_unpooled(&mut self, raw: &RawService, proxy_mode: Option<ProxyMode>) {
        if proxy_mode != Some(ProxyMode::Http) {
            return;
        }
        if let Some(s) = &raw.send_proxy {
            self.warn(
                &s.span(),
                "send_proxy with proxy_mode = \"http\": upstream connections are not pooled (each one's \
                 PROXY header names one client), so every request opens its own backend connection",
            );
        }
    }
}

fn send_proxy(text: &str) -> Result<ProxyHeaderVersion, String> {
    match text {
        "v1" => Ok(ProxyHeaderVersion::V1),
        "v2" => Ok(ProxyHeaderVersion::V2),
        other => Err(format!("send_proxy must be \"v1\" or \"v2\", not {other:?}")),
    }
}

fn tcp_only(protocol: Protocol, key: &str) -> Result<(), String> {
    match protocol {
        Protocol::Tcp => Ok(()),
        Protocol::Udp => Err(format!("{key} is for TCP services; this one is \"udp\"")),
    }
}

fn sni_timeout(value: &super::schema::TextOrNumber) -> Result<std::time::Duration, String> {
    let t = positive_duration(value, "sni_timeout")?;
    if t > MAX_SNI_TIMEOUT {
        return Err(format!("sni_timeout {} is longer than {}", format_duration(t), format_duration(MAX_SNI_TIMEOUT)));
    }
    Ok(t)
}

/// A group's name: a label in metrics and `lb list`, so short and plain.
fn group_name(name: &str) -> Result<String, String> {
    if name.is_empty() || name.len() > MAX_GROUP_LEN {
        return Err(format!("group name {name:?} must be 1 to {MAX_GROUP_LEN} bytes"));
    }
    if let Some(c) = name.chars().find(|&c| !(c.is_ascii_alphanumeric() || "_.-".contains(c))) {
        return Err(format!("group name {name:?} contains {c:?}; use only letters, digits, '_', '.' and '-'"));
    }
    Ok(name.to_string())
}

/// `api.example.com` or `*.example.org`: a DNS name (labels of letters, digits, '-' and
/// '_', 1-63 bytes each, 253 in all), lowercased; a wildcard only as the whole first
/// label, over at least two more.
pub(super) fn sni_name(text: &str) -> Result<SniName, String> {
    let lower = text.to_ascii_lowercase();
    let (wildcard, name) = match lower.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, lower.as_str()),
    };
    let bad = |why: &str| Err(format!("sni name {text:?} {why}"));
    if name.is_empty() || name.len() > 253 {
        return bad("must be a DNS name of 1 to 253 bytes");
    }
    if name.contains('*') {
        return bad("may hold a wildcard only as its whole first label (\"*.example.org\")");
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return bad("has an empty label or one longer than 63 bytes");
        }
        if let Some(c) = label.chars().find(|&c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')) {
            return bad(&format!("contains {c:?}"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad("has a label that starts or ends with '-'");
        }
    }
    if wildcard && !name.contains('.') {
        return bad("is a wildcard over a single label; write at least two after \"*.\"");
    }
    Ok(if wildcard { SniName::Wildcard(name.to_string()) } else { SniName::Exact(name.to_string()) })
}

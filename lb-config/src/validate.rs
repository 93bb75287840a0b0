//! Semantic validation: turns the raw schema into the public model, applying defaults and
//! collecting every error at the position of the value that causes it.
//!
//! Each value is converted by a small pure function (`fn(&raw) -> Result<T, String>`); the
//! `Validator` runs them, records errors and carries on, so one run reports everything.
//! Checks across values (duplicates, limits) re-read the raw values they need, which keeps
//! each check independent of whether unrelated values were valid.

use std::{
    collections::{hash_map::Entry, HashMap},
    hash::Hash,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    ops::Range,
    str::FromStr,
    time::Duration,
};

use toml::Spanned;

use super::{
    acl::SourceAcl,
    cidr::Cidr,
    cluster::Cluster,
    duration::{format_duration, parse_duration, DurationError},
    enums::{Forwarding, HealthCheckType, Mode, Protocol, ProxyMode},
    error::{ConfigError, Diagnostic, Source},
    model::{
        Backend, Checked, Config, Daemon, HealthCheck, Pool, Service, DEFAULT_MAX_SERVICES, DEFAULT_WEIGHT,
        MAX_ACL_PER_SERVICE, MAX_BACKENDS, MAX_HTTP_HEADER_SIZE, MAX_HTTP_HEADER_TIMEOUT, MAX_IDLE_PER_BACKEND,
        MAX_SERVICES, MAX_SERVICE_NAME_LEN, MAX_SOFT_TIMEOUT, MAX_TUNNEL_MTU, MAX_WEIGHT, MAX_WORKERS,
        MIN_FLOW_TABLE_SIZE, MIN_HTTP_HEADER_SIZE, MIN_TUNNEL_MTU_V4, MIN_TUNNEL_MTU_V6,
    },
    ports::PortRange,
    protection::{self, CircuitBreaker, ConnectionCaps, RateLimit},
    proxy_options_rules::PathChoice,
    schema::{
        RawBackend, RawCircuitBreaker, RawConfig, RawDaemon, RawHealthCheck, RawInterfaces, RawPool, RawRateLimit,
        RawService, TextOrNumber,
    },
    status::StatusRanges,
    traffic::{self, Traffic},
};

/// Validates a parsed file; `Ok` only if nothing at all is wrong, with the warnings about
/// what is valid but likely not meant.
pub(super) fn validate(raw: &RawConfig, source: &Source<'_>) -> Result<Checked, ConfigError> {
    let mut validator = Validator { source, diagnostics: Vec::new(), warnings: Vec::new() };
    let daemon = validator.daemon(&raw.daemon);
    // A written mode is a valid keyword even when `daemon` rejected it (xdp, no interface).
    let mode = raw.daemon.mode.as_ref().map(|m| *m.get_ref()).unwrap_or_default();
    let path = PathChoice { mode, has_interface: raw.daemon.interface.is_some() };
    let services: Vec<Option<Service>> = raw.services.iter().map(|s| validator.service(s, path)).collect();
    validator.unique_service_names(&raw.services);
    validator.unique_vips(&raw.services);
    validator.within_limits(&raw.daemon, &raw.services);
    validator.tunnel_mtu_fits(&raw.daemon, &raw.services);
    let cluster = raw.cluster.as_ref().map(|c| {
        validator.cluster_warnings(c, &raw.services);
        validator.cluster(c)
    });
    validator.finish(daemon, services, cluster)
}

pub(super) struct Validator<'a> {
    source: &'a Source<'a>,
    diagnostics: Vec<Diagnostic>,
    /// Valid, but probably not what was meant: printed by `lb check` and logged by the
    /// daemon, never a reason to refuse the file.
    warnings: Vec<Diagnostic>,
}

/// The per-value steps: every `None` returned here comes with a diagnostic.
impl Validator<'_> {
    pub(super) fn report(&mut self, span: &Range<usize>, message: impl Into<String>) {
        self.diagnostics.push(self.source.at(span, message));
    }

    /// The line of a byte offset in the file.
    pub(super) fn line_of(&self, offset: usize) -> usize {
        self.source.line_of(offset)
    }

    pub(super) fn warn(&mut self, span: &Range<usize>, message: impl Into<String>) {
        self.warnings.push(self.source.at(span, message));
    }

    /// Converts a value, reporting a failure at its position.
    pub(super) fn required<R, T>(
        &mut self,
        raw: &Spanned<R>,
        convert: impl FnOnce(&R) -> Result<T, String>,
    ) -> Option<T> {
        match convert(raw.get_ref()) {
            Ok(value) => Some(value),
            Err(message) => {
                self.report(&raw.span(), message);
                None
            }
        }
    }

    /// Converts a value if the key is present; a missing key takes `default`.
    pub(super) fn optional<R, T>(
        &mut self,
        raw: Option<&Spanned<R>>,
        default: T,
        convert: impl FnOnce(&R) -> Result<T, String>,
    ) -> Option<T> {
        match raw {
            Some(raw) => self.required(raw, convert),
            None => Some(default),
        }
    }

    fn daemon(&mut self, raw: &RawDaemon) -> Option<Daemon> {
        let default = Daemon::default();
        let interfaces = self.optional(raw.interface.as_ref(), Vec::new(), interface_names);
        let mode =
            self.optional(raw.mode.as_ref(), default.mode, |&mode| mode_has_interface(mode, raw.interface.is_some()));
        let admin_listen = self.optional(raw.admin_listen.as_ref(), default.admin_listen, |text| {
            socket_addr(text, "admin_listen", "\"127.0.0.1:9100\"")
        });
        let snat_ipv4 = self.optional(raw.snat_ipv4.as_ref(), None, |text| {
            ip::<Ipv4Addr>(text, "snat_ipv4", "an IPv4 address, e.g. \"172.20.0.10\"").map(Some)
        });
        let snat_ipv6 = self.optional(raw.snat_ipv6.as_ref(), None, |text| {
            ip::<Ipv6Addr>(text, "snat_ipv6", "an IPv6 address, e.g. \"fd00:20::10\"").map(Some)
        });
        let snat_ports = self.optional(raw.snat_ports.as_ref(), default.snat_ports, |text| snat_ports(text));
        let encap_source_ipv4 =
            self.optional(raw.encap_source_ipv4.as_ref(), None, |text| encap_source(text, "encap_source_ipv4", true));
        let encap_source_ipv6 =
            self.optional(raw.encap_source_ipv6.as_ref(), None, |text| encap_source(text, "encap_source_ipv6", false));
        let gue_port = self.optional(raw.gue_port.as_ref(), default.gue_port, |&n| gue_port(n));
        let tunnel_mtu = self.optional(raw.tunnel_mtu.as_ref(), None, |&n| tunnel_mtu(n).map(Some));
        let flow_table_size =
            self.optional(raw.flow_table_size.as_ref(), default.flow_table_size, |&n| flow_table_size(n));
        let max_services = self.optional(raw.max_services.as_ref(), default.max_services, |&n| max_services(n));
        let tcp_idle_timeout = self.optional(raw.tcp_idle_timeout.as_ref(), default.tcp_idle_timeout, |v| {
            positive_duration(v, "tcp_idle_timeout")
        });
        let udp_idle_timeout = self.optional(raw.udp_idle_timeout.as_ref(), default.udp_idle_timeout, |v| {
            positive_duration(v, "udp_idle_timeout")
        });
        let tcp_handshake_timeout =
            self.optional(raw.tcp_handshake_timeout.as_ref(), default.tcp_handshake_timeout, |v| {
                soft_timeout(v, "tcp_handshake_timeout")
            });
        let udp_unreplied_timeout =
            self.optional(raw.udp_unreplied_timeout.as_ref(), default.udp_unreplied_timeout, |v| {
                soft_timeout(v, "udp_unreplied_timeout")
            });
        let workers = self.optional(raw.workers.as_ref(), default.workers, |&n| workers(n));
        let connect_timeout = self.optional(raw.connect_timeout.as_ref(), default.connect_timeout, |v| {
            positive_duration(v, "connect_timeout")
        });
        let drain_timeout =
            self.optional(raw.drain_timeout.as_ref(), default.drain_timeout, |v| positive_duration(v, "drain_timeout"));
        let http_header_timeout =
            self.optional(raw.http_header_timeout.as_ref(), default.http_header_timeout, http_header_timeout);
        let http_max_header_size =
            self.optional(raw.http_max_header_size.as_ref(), default.http_max_header_size, |&n| {
                http_max_header_size(n)
            });
        Some(Daemon {
            interface: interfaces.as_ref().and_then(|list| list.first().cloned()),
            interfaces: interfaces?,
            mode: mode?,
            xdp_attach: raw.xdp_attach.unwrap_or(default.xdp_attach),
            admin_listen: admin_listen?,
            token_file: raw.token_file.clone().unwrap_or(default.token_file),
            pin_path: raw.pin_path.clone().unwrap_or(default.pin_path),
            state_file: raw.state_file.clone().unwrap_or(default.state_file),
            snat_ipv4: snat_ipv4?,
            snat_ipv6: snat_ipv6?,
            snat_ports: snat_ports?,
            encap_source_ipv4: encap_source_ipv4?,
            encap_source_ipv6: encap_source_ipv6?,
            gue_port: gue_port?,
            tunnel_mtu: tunnel_mtu?,
            flow_table_size: flow_table_size?,
            max_services: max_services?,
            tcp_idle_timeout: tcp_idle_timeout?,
            udp_idle_timeout: udp_idle_timeout?,
            tcp_handshake_timeout: tcp_handshake_timeout?,
            udp_unreplied_timeout: udp_unreplied_timeout?,
            workers: workers?,
            connect_timeout: connect_timeout?,
            drain_timeout: drain_timeout?,
            http_header_timeout: http_header_timeout?,
            http_max_header_size: http_max_header_size?,
        })
    }

    /// `path.mode` is the daemon's, as written or defaulted.
    fn service(&mut self, raw: &RawService, path: PathChoice) -> Option<Service> {
        let mode = path.mode;
        let name = self.required(&raw.name, |name| service_name(name));
        let vip = self.required(&raw.vip, |text| {
            let vip = vip(text)?;
            vip_fits_mode(vip, mode)?;
            Ok(vip)
        });
        let protocol = raw.protocol.unwrap_or_default();
        let forwarding = raw.forwarding.unwrap_or_default();
        let proxy_mode = self
            .optional(raw.proxy_mode.as_ref(), ProxyMode::default(), |&mode| proxy_mode_fits_protocol(mode, protocol));
        let health_check = self.health_check(&raw.health_check, protocol);
        let pool = self.pool(&raw.pool);
        let acl = self.source_acl(raw);
        let rate_limit = self.rate_limit(&raw.rate_limit);
        let circuit_breaker = self.circuit_breaker(&raw.circuit_breaker);
        self.breaker_needs_replies(&raw.circuit_breaker, forwarding, mode);
        let connection_caps = self.connection_caps(raw);
        let backends = self.backends(&raw.backends, vip, forwarding);
        let allow_registration_from = self.registration_prefixes(&raw.allow_registration_from);
        let traffic = self.traffic(raw);
        let proxy_options = self.proxy_options(raw, protocol, proxy_mode, path);
        self.warn_unpooled(raw, proxy_mode);
        Some(Service {
            name: name?,
            vip: vip?,
            protocol,
            algorithm: raw.algorithm.unwrap_or_default(),
            forwarding,
            proxy_mode: proxy_mode?,
            health_check: health_check?,
            pool: pool?,
            acl: acl?,
            rate_limit: rate_limit?,
            circuit_breaker: circuit_breaker?,
            connection_caps: connection_caps?,
            backends: backends?,
            allow_registration_from: allow_registration_from?,
            traffic: traffic?,
            proxy_options: proxy_options?,
        })
    }

    /// `slow_start` and `persistence_timeout` (see `traffic`).
    fn traffic(&mut self, raw: &RawService) -> Option<Traffic> {
        let slow_start = self.optional(raw.slow_start.as_ref(), None, |v| traffic::slow_start(v).map(Some));
        let algorithm = raw.algorithm.unwrap_or_default();
        let persistence_timeout = self.optional(raw.persistence_timeout.as_ref(), None, |v| {
            traffic::persistence_fits_algorithm(algorithm)?;
            traffic::persistence_timeout(v).map(Some)
        });
        Some(Traffic { slow_start: slow_start?, persistence_timeout: persistence_timeout? })
    }

    /// `allow_registration_from`: every prefix valid, each reported where it is written.
    fn registration_prefixes(&mut self, raw: &[Spanned<String>]) -> Option<Vec<Cidr>> {
        let prefixes: Vec<Option<Cidr>> = raw
            .iter()
            .map(|p| self.required(p, |text| text.parse::<Cidr>().map_err(|e| format!("allow_registration_from: {e}"))))
            .collect();
        prefixes.into_iter().collect()
    }

    /// `allow` and `deny`: each prefix checked at its position, and their number.
    fn source_acl(&mut self, raw: &RawService) -> Option<SourceAcl> {
        let mut list = |items: &[Spanned<String>]| -> Option<Vec<Cidr>> {
            let parsed: Vec<Option<Cidr>> = items.iter().map(|c| self.required(c, |text| text.parse())).collect();
            parsed.into_iter().collect()
        };
        let (allow, deny) = (list(&raw.allow), list(&raw.deny));
        if raw.allow.len() + raw.deny.len() > MAX_ACL_PER_SERVICE {
            let span = raw.allow.get(MAX_ACL_PER_SERVICE).or(raw.deny.last()).map(|c| c.span()).unwrap_or_default();
            self.report(
                &span,
                format!("too many allow and deny prefixes; a service may have at most {MAX_ACL_PER_SERVICE}"),
            );
            return None;
        }
        Some(SourceAcl { allow: allow?, deny: deny? })
    }

    fn health_check(&mut self, raw: &RawHealthCheck, protocol: Protocol) -> Option<HealthCheck> {
        let default = HealthCheck::default();
        let kind = self
            .optional(raw.kind.as_ref(), default_check(protocol), |&kind| health_check_fits_protocol(kind, protocol));
        if let Some(written) = raw.kind.as_ref().filter(|k| *k.get_ref() == HealthCheckType::Tcp) {
            if protocol == Protocol::Udp {
                self.warn(
                    &written.span(),
                    "health check type \"tcp\" connects over TCP, but this service is \"udp\": \
                     backends that serve only UDP will be marked down (type = \"none\" checks nothing)",
                );
            }
        }
        let path = self.optional(raw.path.as_ref(), default.path, |path| http_path(path));
        let expected_status = self.optional(raw.expected_status.as_ref(), default.expected_status, expected_status);
        let interval = self.optional(raw.interval.as_ref(), default.interval, |v| positive_duration(v, "interval"));
        let timeout = self.optional(raw.timeout.as_ref(), default.timeout, |v| positive_duration(v, "timeout"));
        if let (Some(interval), Some(timeout)) = (interval, timeout) {
            self.timeout_within_interval(raw, interval, timeout);
        }
        let healthy_threshold = self.optional(raw.healthy_threshold.as_ref(), default.healthy_threshold, |&n| {
            threshold(n, "healthy_threshold")
        });
        let unhealthy_threshold = self.optional(raw.unhealthy_threshold.as_ref(), default.unhealthy_threshold, |&n| {
            threshold(n, "unhealthy_threshold")
        });
        let keys = self.health_check_type_keys(raw, kind);
        Some(HealthCheck {
            send: keys.send?,
            expect: keys.expect?,
            tls: keys.tls?,
            agent_port: keys.agent_port?,
            kind: kind?,
            path: path?,
            expected_status: expected_status?,
            interval: interval?,
            timeout: timeout?,
            healthy_threshold: healthy_threshold?,
            unhealthy_threshold: unhealthy_threshold?,
        })
    }

    /// A check still running when the next one starts would overlap it. Reported at the
    /// timeout if it was written, else at the interval (one of them was: the defaults fit).
    fn timeout_within_interval(&mut self, raw: &RawHealthCheck, interval: Duration, timeout: Duration) {
        if timeout <= interval {
            return;
        }
        if let Some(at) = raw.timeout.as_ref().or(raw.interval.as_ref()) {
            self.report(
                &at.span(),
                format!(
                    "health check timeout {} is longer than its interval {}",
                    format_duration(timeout),
                    format_duration(interval)
                ),
            );
        }
    }

    fn pool(&mut self, raw: &RawPool) -> Option<Pool> {
        let default = Pool::default();
        let max_idle_per_backend =
            self.optional(raw.max_idle_per_backend.as_ref(), default.max_idle_per_backend, |&n| {
                max_idle_per_backend(n)
            });
        let idle_timeout =
            self.optional(raw.idle_timeout.as_ref(), default.idle_timeout, |v| positive_duration(v, "idle_timeout"));
        Some(Pool { max_idle_per_backend: max_idle_per_backend?, idle_timeout: idle_timeout? })
    }

    fn rate_limit(&mut self, raw: &RawRateLimit) -> Option<RateLimit> {
        let (rate, burst) = self.bucket(&raw.new_flows_per_second, &raw.burst, "new_flows_per_second", "burst");
        let (per_source_rate, per_source_burst) = self.bucket(
            &raw.per_source_new_flows_per_second,
            &raw.per_source_burst,
            "per_source_new_flows_per_second",
            "per_source_burst",
        );
        Some(RateLimit {
            new_flows_per_second: rate?,
            burst: burst?,
            per_source_new_flows_per_second: per_source_rate?,
            per_source_burst: per_source_burst?,
        })
    }

    /// A rate and its burst; the burst defaults to one second's worth and means nothing
    /// without a rate.
    fn bucket(
        &mut self,
        rate: &Option<Spanned<u32>>,
        burst: &Option<Spanned<u32>>,
        rate_key: &str,
        burst_key: &str,
    ) -> (Option<u32>, Option<u32>) {
        let r = self.optional(rate.as_ref(), 0, |&n| protection::rate(n, rate_key));
        let b = self.optional(burst.as_ref(), r.unwrap_or(0), |&n| protection::burst(n, burst_key));
        if let (Some(at), Some(0)) = (burst, r) {
            self.report(&at.span(), format!("{burst_key} needs {rate_key} (a burst of what rate?)"));
            return (r, None);
        }
        (r, b)
    }

    /// With `dsr` the backends' replies bypass the XDP path, so the only passive signal
    /// left is the client's own retransmitted SYN: any client can send one (or a bare ACK
    /// and then a SYN) and eject a backend of a quiet service. Passive ejection there would
    /// act on what clients say, so it is refused; the proxy (`mode = "proxy"`) ignores
    /// `forwarding` and judges backends by its own connections, so it may keep it.
    fn breaker_needs_replies(&mut self, raw: &RawCircuitBreaker, forwarding: Forwarding, mode: Mode) {
        let Some(n) = raw.consecutive_failures.as_ref().filter(|n| *n.get_ref() > 0) else { return };
        if forwarding.is_direct_return() && mode != Mode::Proxy {
            self.report(
                &n.span(),
                format!(
                    "consecutive_failures needs forwarding = \"nat\": with \"{}\" the backends' replies \
                     bypass the LB, so the only failure it could see is a client's resent SYN, which any \
                     client can forge to eject a backend; use the active health_check, or forwarding = \"nat\"",
                    forwarding.as_str()
                ),
            );
        }
    }

    fn connection_caps(&mut self, raw: &RawService) -> Option<ConnectionCaps> {
        let per_service = self.optional(raw.max_client_connections.as_ref(), 0, |&n| {
            protection::connection_cap(n, "max_client_connections")
        });
        let per_source = self.optional(raw.max_connections_per_source.as_ref(), 0, |&n| {
            protection::connection_cap(n, "max_connections_per_source")
        });
        Some(ConnectionCaps { per_service: per_service?, per_source: per_source? })
    }

    fn circuit_breaker(&mut self, raw: &RawCircuitBreaker) -> Option<CircuitBreaker> {
        let default = CircuitBreaker::default();
        let consecutive_failures =
            self.optional(raw.consecutive_failures.as_ref(), default.consecutive_failures, |&n| Ok(n));
        let base_ejection =
            self.optional(raw.base_ejection.as_ref(), default.base_ejection, |v| positive_duration(v, "base_ejection"));
        let max_ejection =
            self.optional(raw.max_ejection.as_ref(), default.max_ejection, |v| positive_duration(v, "max_ejection"));
        if let (Some(base), Some(max)) = (base_ejection, max_ejection) {
            if max < base {
                if let Some(at) = raw.max_ejection.as_ref().or(raw.base_ejection.as_ref()) {
                    self.report(
                        &at.span(),
                        format!(
                            "max_ejection {} is shorter than base_ejection {}",
                            format_duration(max),
                            format_duration(base)
                        ),
                    );
                }
                return None;
            }
        }
        let max_ejected_percent =
            self.optional(raw.max_ejected_percent.as_ref(), default.max_ejected_percent, |&n| protection::percent(n));
        let max_connections =
            self.optional(raw.max_connections.as_ref(), default.max_connections, |&n| protection::max_connections(n));
        Some(CircuitBreaker {
            consecutive_failures: consecutive_failures?,
            base_ejection: base_ejection?,
            max_ejection: max_ejection?,
            max_ejected_percent: max_ejected_percent?,
            max_connections: max_connections?,
        })
    }

    fn backends(
        &mut self,
        raw: &[RawBackend],
        vip: Option<SocketAddr>,
        forwarding: Forwarding,
    ) -> Option<Vec<Backend>> {
        let backends: Vec<Option<Backend>> = raw.iter().map(|backend| self.backend(backend, vip, forwarding)).collect();
        self.unique_backends(raw);
        backends.into_iter().collect()
    }

    /// `vip` is `None` when the VIP itself is invalid: then only the backend's own rules apply.
    fn backend(&mut self, raw: &RawBackend, vip: Option<SocketAddr>, forwarding: Forwarding) -> Option<Backend> {
        let address = self.required(&raw.address, |text| {
            let address = backend_address(text)?;
            if let Some(vip) = vip {
                backend_fits_vip(address, vip, forwarding)?;
            }
            Ok(address)
        });
        let weight = self.optional(raw.weight.as_ref(), DEFAULT_WEIGHT, |&w| weight(w));
        Some(Backend { address: address?, weight: weight?, state: raw.state.unwrap_or_default() })
    }
}

/// The checks across values, and the end.
impl Validator<'_> {
    /// Reports every item whose key an earlier item already had. `message` gets the key, the
    /// earlier item's payload and its line.
    fn report_duplicates<K: Hash + Eq, P>(
        &mut self,
        items: impl IntoIterator<Item = (K, Range<usize>, P)>,
        message: impl Fn(&K, &P, usize) -> String,
    ) {
        let mut first: HashMap<K, (usize, P)> = HashMap::new();
        for (key, span, payload) in items {
            match first.entry(key) {
                Entry::Occupied(earlier) => {
                    let (offset, payload) = earlier.get();
                    let text = message(earlier.key(), payload, self.source.line_of(*offset));
                    self.report(&span, text);
                }
                Entry::Vacant(slot) => {
                    slot.insert((span.start, payload));
                }
            }
        }
    }

    /// Names key the admin API, metric labels and `lb list`: they must be unique.
    fn unique_service_names(&mut self, services: &[RawService]) {
        let names = services.iter().map(|s| (s.name.get_ref().as_str(), s.name.span(), ()));
        self.report_duplicates(names, |name, (), line| {
            format!("duplicate service name {name:?}; first defined at line {line}")
        });
    }

    /// The data path finds a service by (address, port, protocol): two services on one key
    /// would leave one unreachable. Invalid VIPs were reported already and are skipped.
    fn unique_vips(&mut self, services: &[RawService]) {
        let vips = services.iter().filter_map(|s| {
            let vip: SocketAddr = s.vip.get_ref().parse().ok()?;
            let protocol = s.protocol.unwrap_or_default();
            Some(((vip.ip(), vip.port(), protocol), s.vip.span(), s.name.get_ref().as_str()))
        });
        self.report_duplicates(vips, |&(ip, port, protocol), first_name, line| {
            let vip = SocketAddr::new(ip, port);
            format!("duplicate VIP {vip} ({protocol}): service {first_name:?} already uses it (line {line})")
        });
    }

    /// One backend listed twice would get twice its share under one identity.
    fn unique_backends(&mut self, backends: &[RawBackend]) {
        let addresses = backends.iter().filter_map(|b| {
            let address: SocketAddr = b.address.get_ref().parse().ok()?;
            Some((address, b.address.span(), ()))
        });
        self.report_duplicates(addresses, |address, (), line| {
            format!("duplicate backend {address}; first listed at line {line}")
        });
    }

    /// The data path's maps have fixed sizes (the services' tables: `max_services`).
    /// Reported once, at the first item over the limit.
    fn within_limits(&mut self, daemon: &RawDaemon, services: &[RawService]) {
        // An out-of-range `max_services` is reported at its value; the count is then held
        // to the most any setting allows.
        let limit = match daemon.max_services.as_ref().map(|n| max_services(*n.get_ref())) {
            Some(Ok(n)) => n as usize,
            Some(Err(_)) => MAX_SERVICES,
            None => DEFAULT_MAX_SERVICES,
        };
        if let Some(first_extra) = services.get(limit) {
            let count = services.len();
            let message = if limit < MAX_SERVICES {
                format!(
                    "too many services: {count} defined, daemon.max_services is {limit}; raise it (at most \
                     {MAX_SERVICES}, each service's Maglev tables take 1 MiB of kernel memory)"
                )
            } else {
                format!("too many services: {count} defined, at most {MAX_SERVICES} are supported")
            };
            self.report(&first_extra.name.span(), message);
        }
        let mut all_backends = services.iter().flat_map(|s| &s.backends);
        if let Some(first_extra) = all_backends.nth(MAX_BACKENDS) {
            let count = services.iter().map(|s| s.backends.len()).sum::<usize>();
            self.report(
                &first_extra.address.span(),
                format!("too many backends: {count} in all services together, at most {MAX_BACKENDS} are supported"),
            );
        }
    }

    /// `tunnel_mtu` must leave every encapsulating service room for the smallest packets its
    /// clients may send: 68 bytes for IPv4 (RFC 791), 1280 for IPv6 (RFC 8200), after the
    /// outer headers of each outer family its backends use (a service without configured
    /// backends is taken to use its VIP's). Reported at the key, once, for the first service
    /// it does not fit.
    fn tunnel_mtu_fits(&mut self, daemon: &RawDaemon, services: &[RawService]) {
        let Some(raw) = &daemon.tunnel_mtu else { return };
        let mtu = *raw.get_ref();
        if tunnel_mtu(mtu).is_err() {
            return;
        }
        for s in services {
            let forwarding = s.forwarding.unwrap_or_default();
            let Ok(vip) = s.vip.get_ref().parse::<SocketAddr>() else { continue };
            if !forwarding.encapsulates() {
                continue;
            }
            let mut outer_v6 = vip.is_ipv6();
            for b in &s.backends {
                if let Ok(address) = b.address.get_ref().parse::<SocketAddr>() {
                    outer_v6 |= address.is_ipv6();
                }
            }
            if let Some(message) = tunnel_too_small(mtu, s.name.get_ref(), forwarding, vip.is_ipv6(), outer_v6) {
                self.report(&raw.span(), message);
                return;
            }
        }
    }

    fn finish(
        mut self,
        daemon: Option<Daemon>,
        services: Vec<Option<Service>>,
        cluster: Option<Option<Cluster>>,
    ) -> Result<Checked, ConfigError> {
        if !self.diagnostics.is_empty() {
            return Err(ConfigError::new(self.diagnostics));
        }
        self.warnings.sort_by_key(|d| d.position);
        let cluster = cluster.map_or(Some(None), |c| c.map(Some));
        match (daemon, services.into_iter().collect::<Option<Vec<_>>>(), cluster) {
            (Some(daemon), Some(services), Some(cluster)) => {
                Ok(Checked { config: Config { daemon, services, cluster }, warnings: self.warnings })
            }
            // Every `None` comes with a diagnostic, so this is a bug in this module: say so
            // rather than panic or accept a half-converted config.
            _ => Err(ConfigError::new(vec![self
                .source
                .unplaced("internal error: a value was rejected without a message")])),
        }
    }
}

/// Names appear in URLs (`/v1/services/{service}`), metric labels and a 48-byte map field, so
/// they are short and plain.
fn service_name(name: &str) -> Result<String, String> {
    if name.is_empty() {
        return Err("service name must not be empty".to_string());
    }
    if name.len() > MAX_SERVICE_NAME_LEN {
        return Err(format!(
            "service name {name:?} is {} bytes long; at most {MAX_SERVICE_NAME_LEN} are allowed",
            name.len()
        ));
    }
    if let Some(c) = name.chars().find(|&c| !(c.is_ascii_alphanumeric() || "_.-".contains(c))) {
        return Err(format!(
            "service name {name:?} contains {c:?}; use only letters A-Z a-z, digits, '_', '.' and '-'"
        ));
    }
    Ok(name.to_string())
}

/// Linux's rules (`dev_valid_name`): 1-15 bytes, not "." or "..", no '/', ':' or whitespace.
fn interface_name(name: &str) -> Result<String, String> {
    const IFNAMSIZ: usize = 16;
    if name.is_empty() {
        return Err("interface must not be empty".to_string());
    }
    if name.len() >= IFNAMSIZ {
        return Err(format!("interface name {name:?} is longer than {} bytes", IFNAMSIZ - 1));
    }
    if name == "." || name == ".." || name.contains(|c: char| c == '/' || c == ':' || c.is_whitespace()) {
        return Err(format!("{name:?} is not a valid interface name"));
    }
    Ok(name.to_string())
}

/// `interface`: one name, or a non-empty list of distinct names.
fn interface_names(raw: &RawInterfaces) -> Result<Vec<String>, String> {
    let names = match raw {
        RawInterfaces::One(name) => return Ok(vec![interface_name(name)?]),
        RawInterfaces::Many(names) => names,
    };
    if names.is_empty() {
        return Err("interface list must not be empty: name at least one NIC, e.g. [\"eth0\"]".to_string());
    }
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        let name = interface_name(name)?;
        if out.contains(&name) {
            return Err(format!("interface {name:?} is listed twice"));
        }
        out.push(name);
    }
    if out.len() > lb_common::consts::MAX_TX_PORTS as usize {
        return Err(format!("at most {} interfaces", lb_common::consts::MAX_TX_PORTS));
    }
    Ok(out)
}

/// XDP needs a NIC to attach to; `auto` without one just uses the proxy.
fn mode_has_interface(mode: Mode, has_interface: bool) -> Result<Mode, String> {
    if mode == Mode::Xdp && !has_interface {
        return Err("mode \"xdp\" needs an interface: set daemon.interface to the NIC to attach to".to_string());
    }
    Ok(mode)
}

fn socket_addr(text: &str, key: &str, example: &str) -> Result<SocketAddr, String> {
    text.parse().map_err(|_| format!("invalid {key} {text:?}: expected IP:PORT, e.g. {example}"))
}

fn ip<T: FromStr>(text: &str, key: &str, expected: &str) -> Result<T, String> {
    text.parse().map_err(|_| format!("invalid {key} {text:?}: expected {expected}"))
}

fn vip(text: &str) -> Result<SocketAddr, String> {
    let vip = socket_addr(text, "vip", "\"172.20.0.100:80\" or \"[fd00:20::100]:80\"")?;
    if vip.port() == 0 {
        return Err("VIP port must not be 0".to_string());
    }
    Ok(vip)
}

/// An unspecified address (`0.0.0.0`, `::`) means every address: the proxy can listen on it,
/// but the XDP program matches packets by their exact destination address.
fn vip_fits_mode(vip: SocketAddr, mode: Mode) -> Result<(), String> {
    if mode == Mode::Xdp && vip.ip().is_unspecified() {
        return Err(format!(
            "VIP {vip} has no specific address; only the proxy path can serve it \
             (mode = \"proxy\" or \"auto\")"
        ));
    }
    Ok(())
}

fn backend_address(text: &str) -> Result<SocketAddr, String> {
    let address = socket_addr(text, "backend address", "\"172.20.0.11:80\" or \"[fd00:20::11]:80\"")?;
    if address.port() == 0 {
        return Err("backend port must not be 0".to_string());
    }
    Ok(address)
}

/// The data path translates within one address family only (no NAT46/64); an encapsulating
/// service may wrap an IPv4 client packet in an outer IPv6 header (4-in-6), never the other
/// way (an IPv6 packet does not fit the IPv4 path MTU rules). A direct-return backend
/// answers on the VIP itself, so it must listen on the VIP's port.
fn backend_fits_vip(backend: SocketAddr, vip: SocketAddr, forwarding: Forwarding) -> Result<(), String> {
    if let Some(why) = forwarding.family_misfit(vip, backend) {
        return Err(why);
    }
    if forwarding.is_direct_return() && backend.port() != vip.port() {
        return Err(format!(
            "backend port {} differs from the VIP port {}: {} backends hold the VIP on loopback, \
             so the port must equal the VIP's",
            backend.port(),
            vip.port(),
            forwarding.as_str()
        ));
    }
    Ok(())
}

/// The check a service gets when `type` is not written. TCP services: a TCP connect. UDP
/// services: none, as long as no UDP check exists: a TCP connect to a backend that serves
/// only UDP fails, and would take every backend out of rotation.
fn default_check(protocol: Protocol) -> HealthCheckType {
    match protocol {
        Protocol::Tcp => HealthCheckType::Tcp,
        Protocol::Udp => HealthCheckType::None,
    }
}

/// An HTTP (or HTTPS) health check over UDP cannot work.
fn health_check_fits_protocol(kind: HealthCheckType, protocol: Protocol) -> Result<HealthCheckType, String> {
    if matches!(kind, HealthCheckType::Http | HealthCheckType::Https) && protocol == Protocol::Udp {
        return Err(format!("health check type \"{kind}\" needs protocol \"tcp\"; this service is \"udp\""));
    }
    Ok(kind)
}

/// HTTP proxying over UDP cannot work either.
fn proxy_mode_fits_protocol(mode: ProxyMode, protocol: Protocol) -> Result<ProxyMode, String> {
    if mode == ProxyMode::Http && protocol == Protocol::Udp {
        return Err("proxy_mode \"http\" needs protocol \"tcp\"; this service is \"udp\"".to_string());
    }
    Ok(mode)
}

/// An HTTP request target in origin form.
fn http_path(path: &str) -> Result<String, String> {
    if !path.starts_with('/') {
        return Err(format!("health check path {path:?} must start with \"/\""));
    }
    Ok(path.to_string())
}

fn expected_status(value: &TextOrNumber) -> Result<StatusRanges, String> {
    let (TextOrNumber::Text(text) | TextOrNumber::Number(text)) = value;
    text.parse().map_err(|e| format!("invalid expected_status {text:?}: {e}"))
}

/// A timeout that frees what unanswered flows hold: short by nature.
fn soft_timeout(value: &TextOrNumber, key: &str) -> Result<Duration, String> {
    let duration = positive_duration(value, key)?;
    if duration > MAX_SOFT_TIMEOUT {
        return Err(format!(
            "{key} {} is too long; the maximum is {}",
            format_duration(duration),
            format_duration(MAX_SOFT_TIMEOUT)
        ));
    }
    Ok(duration)
}

/// Every duration in the schema is a period or a timeout: zero never makes sense.
pub(super) fn positive_duration(value: &TextOrNumber, key: &str) -> Result<Duration, String> {
    let duration = match value {
        TextOrNumber::Number(_) => Err(DurationError::MissingUnit),
        TextOrNumber::Text(text) => parse_duration(text),
    }
    .map_err(|e| e.to_string())?;
    if duration.is_zero() {
        return Err(format!("{key} must be greater than 0"));
    }
    Ok(duration)
}

fn threshold(n: u32, key: &str) -> Result<u32, String> {
    if n == 0 {
        return Err(format!("{key} must be at least 1"));
    }
    Ok(n)
}

fn weight(weight: u32) -> Result<u32, String> {
    if weight > MAX_WEIGHT {
        return Err(format!("weight {weight} is too large; the maximum is {MAX_WEIGHT}"));
    }
    Ok(weight)
}

fn workers(workers: u32) -> Result<u32, String> {
    if workers > MAX_WORKERS {
        return Err(format!("workers {workers} is too large; the maximum is {MAX_WORKERS} (0: one per CPU core)"));
    }
    Ok(workers)
}

fn max_idle_per_backend(n: u32) -> Result<u32, String> {
    if n > MAX_IDLE_PER_BACKEND {
        return Err(format!("max_idle_per_backend {n} is too large; the maximum is {MAX_IDLE_PER_BACKEND}"));
    }
    Ok(n)
}

/// Not zero (a head cannot arrive in no time), and bounded: a long wait is what a slow
/// client needs to hold a socket.
fn http_header_timeout(value: &TextOrNumber) -> Result<Duration, String> {
    let timeout = positive_duration(value, "http_header_timeout")?;
    if timeout > MAX_HTTP_HEADER_TIMEOUT {
        return Err(format!(
            "http_header_timeout {} is too long; the maximum is {}",
            format_duration(timeout),
            format_duration(MAX_HTTP_HEADER_TIMEOUT)
        ));
    }
    Ok(timeout)
}

fn http_max_header_size(n: u32) -> Result<u32, String> {
    if !(MIN_HTTP_HEADER_SIZE..=MAX_HTTP_HEADER_SIZE).contains(&n) {
        return Err(format!(
            "http_max_header_size {n} is out of range; it must be between {MIN_HTTP_HEADER_SIZE} and \
             {MAX_HTTP_HEADER_SIZE} bytes"
        ));
    }
    Ok(n)
}

fn max_services(n: u32) -> Result<u32, String> {
    if n == 0 || n as usize > MAX_SERVICES {
        return Err(format!("max_services {n} is out of range; it must be between 1 and {MAX_SERVICES}"));
    }
    Ok(n)
}

fn flow_table_size(size: u32) -> Result<u32, String> {
    if size < MIN_FLOW_TABLE_SIZE {
        return Err(format!("flow_table_size {size} is too small; the minimum is {MIN_FLOW_TABLE_SIZE}"));
    }
    Ok(size)
}

/// `encap_source_ipv4` / `encap_source_ipv6`: a prefix (or one address) of the key's family.
fn encap_source(text: &str, key: &str, v4: bool) -> Result<Option<Cidr>, String> {
    let prefix: Cidr = text.parse().map_err(|e| format!("{key}: {e}"))?;
    if prefix.network().is_ipv4() != v4 {
        let (want, example) = if v4 { ("IPv4", "\"172.20.0.0/24\"") } else { ("IPv6", "\"fd00:20::/64\"") };
        return Err(format!("invalid {key} {text:?}: expected an {want} prefix or address, e.g. {example}"));
    }
    Ok(Some(prefix))
}

fn gue_port(n: u32) -> Result<u16, String> {
    match u16::try_from(n) {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(format!("gue_port {n} is not a UDP port; use 1 to 65535")),
    }
}

/// The range alone; what the services need is `tunnel_too_small`'s.
fn tunnel_mtu(n: u32) -> Result<u32, String> {
    if n > MAX_TUNNEL_MTU {
        return Err(format!("tunnel_mtu {n} is larger than any IP packet; at most {MAX_TUNNEL_MTU}"));
    }
    Ok(n)
}

/// Why `mtu` is too small for any encapsulation of service `name`, if it is.
fn tunnel_too_small(mtu: u32, name: &str, forwarding: Forwarding, inner_v6: bool, outer_v6: bool) -> Option<String> {
    use lb_common::consts::{FAMILY_V4, FAMILY_V6, FWD_GUE, FWD_IPIP};
    let fwd = if forwarding == Forwarding::Gue { FWD_GUE } else { FWD_IPIP };
    let overhead = lb_common::encap::overhead(fwd, if outer_v6 { FAMILY_V6 } else { FAMILY_V4 }) as u32;
    let (inner, min) = if inner_v6 { ("IPv6", MIN_TUNNEL_MTU_V6) } else { ("IPv4", MIN_TUNNEL_MTU_V4) };
    let need = min + overhead;
    (mtu < need).then(|| {
        format!(
            "tunnel_mtu {mtu} is too small for any encapsulation: service {name:?} ({}) adds {overhead} bytes of \
             outer {} headers to {inner} packets that may be {min} bytes long, so it needs at least {need}",
            forwarding.as_str(),
            if outer_v6 { "IPv6" } else { "IPv4" },
        )
    })
}

fn snat_ports(text: &str) -> Result<PortRange, String> {
    text.parse().map_err(|e| format!("invalid snat_ports {text:?}: {e}"))
}

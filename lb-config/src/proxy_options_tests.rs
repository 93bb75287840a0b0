//! Spec tests for the proxy path's traffic keys: `send_proxy`,
//! `accept_proxy`, `accept_proxy_from`, `[[service.route]]`, a backend's `group` and
//! `sni_timeout`: what parses to what, and each error at its position.
use std::time::Duration;

use super::tests::{error, errors, parse, warnings};
use super::*;

const PROXY: &str = "[daemon]\nmode = \"proxy\"\n";

fn svc(extra: &str) -> String {
    format!("{PROXY}[[service]]\nname = \"tls\"\nvip = \"172.20.0.100:443\"\n{extra}")
}

/// Two groups and a default backend, two routes.
const ROUTED: &str = r#"[daemon]
mode = "proxy"
[[service]]
name = "tls"
vip = "172.20.0.100:443"
sni_timeout = "2s"
[[service.route]]
sni = ["API.example.com"]
group = "api"
[[service.route]]
sni = ["*.example.org", "example.org"]
group = "org"
[[service.backend]]
address = "172.20.0.11:443"
group = "api"
[[service.backend]]
address = "172.20.0.12:443"
group = "org"
[[service.backend]]
address = "172.20.0.13:443"
"#;

#[test]
fn proxy_protocol_keys_parse_and_default_to_off() {
    let c = parse(&svc(
        "send_proxy = \"v2\"\naccept_proxy = true\naccept_proxy_from = [\"172.20.0.0/24\", \"fd00:20::1\"]\n",
    ));
    let pp = &c.services[0].proxy_options.proxy_protocol;
    assert_eq!(pp.send, Some(ProxyHeaderVersion::V2));
    assert!(pp.accepts());
    assert!(pp.trusts("172.20.0.9".parse().unwrap()) && pp.trusts("::ffff:172.20.0.9".parse().unwrap()));
    assert!(!pp.trusts("172.20.1.9".parse().unwrap()));
    assert_eq!(
        parse(&svc("send_proxy = \"v1\"\n")).services[0].proxy_options.proxy_protocol.send,
        Some(ProxyHeaderVersion::V1)
    );
    let off = parse(&svc(""));
    assert_eq!(off.services[0].proxy_options, ProxyOptions::default());
    // auto without an interface can only run the proxy.
    let auto = parse("[[service]]\nname = \"a\"\nvip = \"172.20.0.100:80\"\nsend_proxy = \"v2\"\n");
    assert!(auto.services[0].proxy_options.proxy_protocol.send.is_some());
}

#[test]
fn routes_and_groups_parse_and_route_exact_names_before_wildcards() {
    let c = parse(ROUTED);
    let sni = &c.services[0].proxy_options.sni;
    assert_eq!(sni.timeout, Duration::from_secs(2));
    assert_eq!(sni.routes.len(), 2);
    assert_eq!(sni.group_of("api.EXAMPLE.com"), Some("api"));
    assert_eq!(sni.group_of("www.example.org"), Some("org"));
    assert_eq!(sni.group_of("example.org"), Some("org"));
    assert_eq!(sni.group_of("a.b.example.org"), None, "a wildcard covers one label only");
    assert_eq!(sni.group_of("example.com"), None);
    assert_eq!(sni.group_of_backend("172.20.0.11:443".parse().unwrap()), Some("api"));
    assert_eq!(sni.group_of_backend("172.20.0.13:443".parse().unwrap()), None);
    // The default timeout.
    let plain = parse(&svc(""));
    assert_eq!(plain.services[0].proxy_options.sni.timeout, DEFAULT_SNI_TIMEOUT);
    // The desired state carries it to the proxy.
    assert_eq!(desired::Desired::from_config(&c).services[0].proxy_options, c.services[0].proxy_options);
}

#[test]
fn an_exact_name_wins_over_a_wildcard_in_another_route() {
    let text = ROUTED.replace("[\"API.example.com\"]", "[\"api.example.org\"]");
    let sni = parse(&text).services[0].proxy_options.sni.clone();
    assert_eq!(sni.group_of("api.example.org"), Some("api"));
    assert_eq!(sni.group_of("web.example.org"), Some("org"));
}

#[test]
fn a_group_no_route_names_is_a_warning_and_send_proxy_on_http_says_no_pooling() {
    let text = ROUTED.replace("address = \"172.20.0.13:443\"", "address = \"172.20.0.13:443\"\ngroup = \"spare\"");
    let w = warnings(&text);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("lb.toml:21:9") && w[0].contains("no [[service.route]] names group \"spare\""), "{w:?}");
    let w = warnings(&svc("proxy_mode = \"http\"\nsend_proxy = \"v2\"\n"));
    assert!(w.iter().any(|w| w.contains("not pooled")), "{w:?}");
}

#[test]
fn several_traffic_errors_are_all_reported() {
    let e = errors(&svc("send_proxy = \"v3\"\naccept_proxy_from = [\"nope\"]\n"));
    assert_eq!(e.len(), 3, "{e:?}");
}

/// As `tests`' table: each file refused with exactly this one diagnostic.
macro_rules! refused {
    ($($case:ident: $text:expr => $error:expr;)*) => {
        $(
            #[test]
            fn $case() {
                assert_eq!(error(&$text), $error);
            }
        )*
    };
}

refused! {
    send_proxy_must_be_v1_or_v2:
        svc("send_proxy = \"v3\"\n")
        => "lb.toml:6:14: send_proxy must be \"v1\" or \"v2\", not \"v3\"";
    send_proxy_is_for_tcp:
        svc("protocol = \"udp\"\nsend_proxy = \"v2\"\n")
        => "lb.toml:7:14: send_proxy is for TCP services; this one is \"udp\"";
    send_proxy_needs_the_proxy_path_with_xdp:
        "[daemon]\nmode = \"xdp\"\ninterface = \"eth0\"\n[[service]]\nname = \"a\"\nvip = \"172.20.0.100:80\"\nsend_proxy = \"v2\"\n"
        => "lb.toml:7:14: send_proxy needs the proxy path, but daemon.mode is \"xdp\", which cannot honour it; set daemon.mode = \"proxy\"";
    send_proxy_needs_the_proxy_path_with_auto_and_an_interface:
        "[daemon]\ninterface = \"eth0\"\n[[service]]\nname = \"a\"\nvip = \"172.20.0.100:80\"\nsend_proxy = \"v2\"\n"
        => "lb.toml:6:14: send_proxy needs the proxy path, but daemon.mode \"auto\" with an interface may run XDP, which cannot honour it; set daemon.mode = \"proxy\"";
    accept_proxy_needs_accept_proxy_from:
        svc("accept_proxy = true\n")
        => "lb.toml:6:16: accept_proxy = true needs accept_proxy_from = [\"CIDR\", ...]: the front load balancers trusted to send PROXY headers (a client that could send one could claim any address)";
    accept_proxy_from_must_not_be_empty:
        svc("accept_proxy = true\naccept_proxy_from = []\n")
        => "lb.toml:7:21: accept_proxy = true needs accept_proxy_from = [\"CIDR\", ...]: the front load balancers trusted to send PROXY headers (a client that could send one could claim any address)";
    accept_proxy_from_without_accept_proxy:
        svc("accept_proxy_from = [\"10.0.0.0/8\"]\n")
        => "lb.toml:6:21: accept_proxy_from is set but accept_proxy is not true";
    accept_proxy_from_entries_are_prefixes:
        svc("accept_proxy = true\naccept_proxy_from = [\"10.0.0.0/40\"]\n")
        => "lb.toml:7:22: accept_proxy_from: invalid prefix \"10.0.0.0/40\": the length must be 0 to 32";
    accept_proxy_is_a_boolean:
        svc("accept_proxy = \"yes\"\n")
        => "lb.toml:6:16: invalid type: string \"yes\", expected a boolean";
    route_needs_l4:
        ROUTED.replace("sni_timeout = \"2s\"", "proxy_mode = \"http\"")
        => "lb.toml:9:9: [[service.route]] routes TLS connections by their server name: it needs proxy_mode = \"l4\", not \"http\"";
    route_needs_the_proxy_path:
        ROUTED.replace("mode = \"proxy\"", "mode = \"xdp\"\ninterface = \"eth0\"")
        => "lb.toml:10:9: [[service.route]] needs the proxy path, but daemon.mode is \"xdp\", which cannot honour it; set daemon.mode = \"proxy\"";
    route_group_needs_a_backend:
        ROUTED.replacen("group = \"org\"\n[[service.backend]]", "group = \"org2\"\n[[service.backend]]", 1)
        => "lb.toml:12:9: route group \"org2\": no [[service.backend]] has group = \"org2\"";
    route_sni_must_not_be_empty:
        ROUTED.replace("[\"API.example.com\"]", "[]")
        => "lb.toml:8:7: sni must name at least one server name";
    duplicate_sni_name_across_routes:
        ROUTED.replace("[\"*.example.org\", \"example.org\"]", "[\"*.example.org\", \"api.example.COM\"]")
        => "lb.toml:11:25: duplicate sni name api.example.com; first listed at line 8 (a name routes to one group)";
    sni_wildcard_only_as_first_label:
        ROUTED.replace("[\"API.example.com\"]", "[\"api.*.com\"]")
        => "lb.toml:8:8: sni name \"api.*.com\" may hold a wildcard only as its whole first label (\"*.example.org\")";
    sni_wildcard_over_one_label:
        ROUTED.replace("[\"API.example.com\"]", "[\"*.com\"]")
        => "lb.toml:8:8: sni name \"*.com\" is a wildcard over a single label; write at least two after \"*.\"";
    sni_name_characters:
        ROUTED.replace("[\"API.example.com\"]", "[\"api example.com\"]")
        => "lb.toml:8:8: sni name \"api example.com\" contains ' '";
    sni_name_empty_label:
        ROUTED.replace("[\"API.example.com\"]", "[\"api..com\"]")
        => "lb.toml:8:8: sni name \"api..com\" has an empty label or one longer than 63 bytes";
    backend_group_name:
        ROUTED.replace("address = \"172.20.0.13:443\"", "address = \"172.20.0.13:443\"\ngroup = \"a b\"")
        => "lb.toml:21:9: group name \"a b\" contains ' '; use only letters, digits, '_', '.' and '-'";
    sni_timeout_bounded:
        ROUTED.replace("\"2s\"", "\"61s\"")
        => "lb.toml:6:15: sni_timeout 1m1s is longer than 1m";
    sni_timeout_not_zero:
        ROUTED.replace("\"2s\"", "\"0s\"")
        => "lb.toml:6:15: sni_timeout must be greater than 0";
    route_keys_are_known:
        ROUTED.replace("group = \"api\"\n[[service.route]]", "group = \"api\"\nbackends = 1\n[[service.route]]")
        => "lb.toml:10:1: unknown key `backends`, expected `sni` or `group`";
}

//! Spec tests for `lb.toml`: what parses to what, and every error with its exact position.
//! Each TOML text starts on line 1 right after `r#"`, so line numbers can be read off.

use std::{
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use super::*;

const FILE: &str = "lb.toml";

pub(super) fn parse(text: &str) -> Config {
    match Config::from_str(text, FILE) {
        Ok(config) => config,
        Err(e) => panic!("expected a valid config, got:\n{e}"),
    }
}

/// All diagnostics, as printed.
pub(super) fn errors(text: &str) -> Vec<String> {
    match Config::from_str(text, FILE) {
        Ok(config) => panic!("expected errors, got {config:#?}"),
        Err(e) => e.diagnostics().iter().map(ToString::to_string).collect(),
    }
}

/// The only diagnostic, as printed.
pub(super) fn error(text: &str) -> String {
    let mut all = errors(text);
    assert_eq!(all.len(), 1, "expected exactly one error, got {all:#?}");
    all.remove(0)
}

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Files that must be refused with exactly one diagnostic: one row per rule of parsing
/// and validation, with the position and message it must print. Each row is a test of its
/// own, named after what it shows.
macro_rules! rejected {
    ($($case:ident: $text:expr => $error:expr;)*) => {
        $(
            #[test]
            fn $case() {
                assert_eq!(error($text), $error);
            }
        )*
    };
}

rejected! {
    slow_start_of_zero_is_rejected:
        "[[service]]\nname = \"web\"\nvip = \"172.20.0.100:80\"\nslow_start = \"0s\"\n"
        => "lb.toml:4:14: slow_start must be greater than 0";
    slow_start_over_an_hour_is_rejected:
        "[[service]]\nname = \"web\"\nvip = \"172.20.0.100:80\"\nslow_start = \"2h\"\n"
        => "lb.toml:4:14: slow_start 2h is too long; the maximum is 1h";
    slow_start_without_a_unit_is_rejected:
        "[[service]]\nname = \"web\"\nvip = \"172.20.0.100:80\"\nslow_start = 30\n"
        => "lb.toml:4:14: duration needs a unit, e.g. \"2s\"";
    persistence_timeout_under_a_second_is_rejected:
        "[[service]]\nname = \"web\"\nvip = \"172.20.0.100:80\"\npersistence_timeout = \"500ms\"\n"
        => "lb.toml:4:23: persistence_timeout 500ms is out of range; it must be 1s to 24h";
    persistence_timeout_over_a_day_is_rejected:
        "[[service]]\nname = \"web\"\nvip = \"172.20.0.100:80\"\npersistence_timeout = \"25h\"\n"
        => "lb.toml:4:23: persistence_timeout 25h is out of range; it must be 1s to 24h";
    persistence_timeout_with_source_hash_is_rejected:
        "[[service]]\nname = \"web\"\nvip = \"172.20.0.100:80\"\nalgorithm = \"source_hash\"\npersistence_timeout = \"5m\"\n"
        => "lb.toml:5:23: persistence_timeout does nothing with algorithm \"source_hash\", which already keeps \
            each client on one backend; remove it or choose another algorithm";
    circuit_breaker_with_dsr_is_rejected_at_consecutive_failures:
        r#"[[service]]
name = "web"
vip = "172.20.0.100:80"
forwarding = "dsr"
[service.circuit_breaker]
consecutive_failures = 3
"#
        => "lb.toml:6:24: consecutive_failures needs forwarding = \"nat\": with \"dsr\" the backends' replies \
            bypass the LB, so the only failure it could see is a client's resent SYN, which any client can forge \
            to eject a backend; use the active health_check, or forwarding = \"nat\"";
    toml_syntax_error_is_reported_at_its_position:
        "[daemon]\nmode = auto\n"
        => "lb.toml:2:8: invalid string: expected `\"`, `'`";
    unknown_top_level_key_is_rejected_at_the_key_listing_valid_ones:
        "daemon_mode = \"xdp\"\n"
        => "lb.toml:1:1: unknown key `daemon_mode`, expected one of `daemon`, `service`, `cluster`";
    unknown_pool_key_is_rejected_at_the_key:
        r#"[[service]]
name = "web"
vip = "172.20.0.100:80"
[service.pool]
max_idle = 8
"#
        => "lb.toml:5:1: unknown key `max_idle`, expected `max_idle_per_backend` or `idle_timeout`";
    unknown_backend_key_is_rejected_at_the_key:
        r#"[[service]]
name = "web"
vip = "172.20.0.100:80"
[[service.backend]]
address = "172.20.0.11:80"
wieght = 2
"#
        => "lb.toml:6:1: unknown key `wieght`, expected one of `address`, `weight`, `state`, `group`";
    unknown_key_in_inline_backend_is_rejected_at_the_key:
        r#"[[service]]
name = "web"
vip = "172.20.0.100:80"
backend = [{ address = "172.20.0.11:80", port = 80 }]
"#
        => "lb.toml:4:42: unknown key `port`, expected one of `address`, `weight`, `state`, `group`";
    unknown_keyword_value_lists_the_valid_ones:
        "[daemon]\nmode = \"fast\"\n"
        => "lb.toml:2:8: unknown value `fast`, expected one of `xdp`, `proxy`, `auto`";
    missing_service_name_is_reported_at_the_service_header:
        "[[service]]\nvip = \"172.20.0.100:80\"\n"
        => "lb.toml:1:1: missing key `name`";
    missing_backend_address_is_reported_at_the_backend_header:
        r#"[[service]]
name = "web"
vip = "172.20.0.100:80"
[[service.backend]]
weight = 2
"#
        => "lb.toml:4:1: missing key `address`";
    duration_with_unknown_unit_is_rejected_at_its_value:
        r#"[[service]]
name = "web"
vip = "172.20.0.100:80"
health_check = { interval = "2sec" }
"#
        => "lb.toml:4:29: unknown duration unit \"sec\" in \"2sec\"; use ms, s, m or h";
    zero_handshake_timeout_is_rejected_at_its_value:
        "[daemon]\ntcp_handshake_timeout = \"0s\"\n"
        => "lb.toml:2:25: tcp_handshake_timeout must be greater than 0";
    long_handshake_timeout_is_rejected_at_its_value:
        "[daemon]\ntcp_handshake_timeout = \"2m\"\n"
        => "lb.toml:2:25: tcp_handshake_timeout 2m is too long; the maximum is 1m";
    long_unreplied_timeout_is_rejected_at_its_value:
        "[daemon]\nudp_unreplied_timeout = \"90s\"\n"
        => "lb.toml:2:25: udp_unreplied_timeout 1m30s is too long; the maximum is 1m";
    unitless_unreplied_timeout_is_rejected_at_its_value:
        "[daemon]\nudp_unreplied_timeout = 5\n"
        => "lb.toml:2:25: duration needs a unit, e.g. \"2s\"";
    source_prefix_with_host_bits_is_rejected_at_the_prefix:
        "[[service]]\nname = \"web\"\nvip = \"172.20.0.100:80\"\nallow = [\"10.0.0.0/8\", \"192.168.1.1/24\"]\n"
        => "lb.toml:4:24: invalid prefix \"192.168.1.1/24\": bits are set past the length; did you mean \"192.168.1.0/24\"?";
    source_prefix_too_long_is_rejected_at_the_prefix:
        "[[service]]\nname = \"web\"\nvip = \"172.20.0.100:80\"\ndeny = [\"fd00::/129\"]\n"
        => "lb.toml:4:9: invalid prefix \"fd00::/129\": the length must be 0 to 128";
    source_prefix_not_an_address_is_rejected_at_the_prefix:
        "[[service]]\nname = \"web\"\nvip = \"172.20.0.100:80\"\ndeny = [\"example.com\"]\n"
        => "lb.toml:4:9: invalid prefix \"example.com\": expected ADDRESS/LENGTH or an address, e.g. \"10.0.0.0/8\" or \"fd00::1\"";
    zero_idle_timeout_is_rejected_at_its_value:
        "[daemon]\nudp_idle_timeout = \"0s\"\n"
        => "lb.toml:2:20: udp_idle_timeout must be greater than 0";
    health_timeout_longer_than_interval_is_rejected_at_the_timeout:
        r#"[[service]]
name = "web"
vip = "172.20.0.100:80"
[service.health_check]
interval = "2s"
timeout = "2500ms"
"#
        => "lb.toml:6:11: health check timeout 2s500ms is longer than its interval 2s";
    interval_shorter_than_the_default_timeout_is_rejected_at_the_interval:
        r#"[[service]]
name = "web"
vip = "172.20.0.100:80"
[service.health_check]
interval = "500ms"
"#
        => "lb.toml:5:12: health check timeout 1s is longer than its interval 500ms";
    http_health_check_on_udp_service_is_rejected_at_its_type:
        r#"[[service]]
name = "dns"
vip = "172.20.0.100:53"
protocol = "udp"
[service.health_check]
type = "http"
"#
        => "lb.toml:6:8: health check type \"http\" needs protocol \"tcp\"; this service is \"udp\"";
    http_proxy_mode_on_udp_service_is_rejected_at_its_value:
        r#"[[service]]
name = "dns"
vip = "172.20.0.100:53"
protocol = "udp"
proxy_mode = "http"
"#
        => "lb.toml:5:14: proxy_mode \"http\" needs protocol \"tcp\"; this service is \"udp\"";
    invalid_vip_is_rejected_at_its_value:
        "[[service]]\nname = \"web\"\nvip = \"fd00:20::100:80\"\n"
        => "lb.toml:3:7: invalid vip \"fd00:20::100:80\": expected IP:PORT, e.g. \"172.20.0.100:80\" or \"[fd00:20::100]:80\"";
    vip_port_zero_is_rejected_at_the_vip:
        "[[service]]\nname = \"web\"\nvip = \"172.20.0.100:0\"\n"
        => "lb.toml:3:7: VIP port must not be 0";
    duplicate_vip_with_the_same_protocol_is_rejected_at_the_second_vip:
        r#"[[service]]
name = "web"
vip = "172.20.0.100:80"
[[service]]
name = "web2"
vip = "172.20.0.100:80"
protocol = "tcp"
"#
        => "lb.toml:6:7: duplicate VIP 172.20.0.100:80 (tcp): service \"web\" already uses it (line 3)";
    duplicate_service_name_is_rejected_at_the_second_name:
        r#"[[service]]
name = "web"
vip = "172.20.0.100:80"
[[service]]
name = "web"
vip = "172.20.0.100:443"
"#
        => "lb.toml:5:8: duplicate service name \"web\"; first defined at line 2";
    empty_service_name_is_rejected_at_the_name:
        "[[service]]\nname = \"\"\nvip = \"172.20.0.100:80\"\n"
        => "lb.toml:2:8: service name must not be empty";
    invalid_backend_address_is_rejected_at_its_address:
        r#"[[service]]
name = "web"
vip = "172.20.0.100:80"
[[service.backend]]
address = "server1:80"
"#
        => "lb.toml:5:11: invalid backend address \"server1:80\": expected IP:PORT, \
         e.g. \"172.20.0.11:80\" or \"[fd00:20::11]:80\"";
    backend_port_zero_is_rejected_at_its_address:
        r#"[[service]]
name = "web"
vip = "172.20.0.100:80"
[[service.backend]]
address = "172.20.0.11:0"
"#
        => "lb.toml:5:11: backend port must not be 0";
    dsr_backend_on_other_port_is_rejected_at_its_address:
        r#"[[service]]
name = "web"
vip = "172.20.0.100:80"
forwarding = "dsr"
[[service.backend]]
address = "172.20.0.11:80"
[[service.backend]]
address = "172.20.0.12:8080"
"#
        => "lb.toml:8:11: backend port 8080 differs from the VIP port 80: dsr backends hold the VIP on \
         loopback, so the port must equal the VIP's";
    ipip_backend_on_other_port_is_rejected_at_its_address:
        r#"[[service]]
name = "web"
vip = "172.20.0.100:80"
forwarding = "ipip"
[[service.backend]]
address = "10.30.0.11:8080"
"#
        => "lb.toml:6:11: backend port 8080 differs from the VIP port 80: ipip backends hold the VIP on \
         loopback, so the port must equal the VIP's";
    gue_to_an_ipv4_backend_of_an_ipv6_vip_is_rejected_at_its_address:
        r#"[[service]]
name = "web6"
vip = "[fd00:20::100]:80"
forwarding = "gue"
[[service.backend]]
address = "10.30.0.11:80"
"#
        => "lb.toml:6:11: backend 10.30.0.11:80 is IPv4 but the VIP [fd00:20::100]:80 is IPv6: gue carries \
         IPv4 inside IPv6, not IPv6 inside IPv4; give this service IPv6 backends";
    tunnel_mtu_too_small_for_ipip_over_ipv4_is_rejected_at_the_key:
        r#"[daemon]
tunnel_mtu = 87
[[service]]
name = "web"
vip = "172.20.0.100:80"
forwarding = "ipip"
[[service.backend]]
address = "10.30.0.11:80"
"#
        => "lb.toml:2:14: tunnel_mtu 87 is too small for any encapsulation: service \"web\" (ipip) adds 20 bytes \
            of outer IPv4 headers to IPv4 packets that may be 68 bytes long, so it needs at least 88";
    tunnel_mtu_too_small_for_gue_over_ipv6_is_rejected_at_the_key:
        r#"[daemon]
tunnel_mtu = 1327
[[service]]
name = "web6"
vip = "[fd00:20::100]:80"
forwarding = "gue"
[[service.backend]]
address = "[fd00:30::11]:80"
"#
        => "lb.toml:2:14: tunnel_mtu 1327 is too small for any encapsulation: service \"web6\" (gue) adds 48 bytes \
            of outer IPv6 headers to IPv6 packets that may be 1280 bytes long, so it needs at least 1328";
    tunnel_mtu_too_small_for_ipv4_in_ipv6_is_rejected_at_the_key:
        r#"[daemon]
tunnel_mtu = 115
[[service]]
name = "web"
vip = "172.20.0.100:80"
forwarding = "gue"
[[service.backend]]
address = "[fd00:30::11]:80"
"#
        => "lb.toml:2:14: tunnel_mtu 115 is too small for any encapsulation: service \"web\" (gue) adds 48 bytes \
            of outer IPv6 headers to IPv4 packets that may be 68 bytes long, so it needs at least 116";
    tunnel_mtu_beyond_an_ip_packet_is_rejected_at_the_value:
        "[daemon]\ntunnel_mtu = 70000\n"
        => "lb.toml:2:14: tunnel_mtu 70000 is larger than any IP packet; at most 65535";
    gue_port_zero_is_rejected_at_the_value:
        "[daemon]\ngue_port = 0\n"
        => "lb.toml:2:12: gue_port 0 is not a UDP port; use 1 to 65535";
    gue_port_beyond_65535_is_rejected_at_the_value:
        "[daemon]\ngue_port = 65536\n"
        => "lb.toml:2:12: gue_port 65536 is not a UDP port; use 1 to 65535";
    encap_source_ipv4_of_the_wrong_family_is_rejected_at_the_value:
        "[daemon]\nencap_source_ipv4 = \"fd00:31::/64\"\n"
        => "lb.toml:2:21: invalid encap_source_ipv4 \"fd00:31::/64\": expected an IPv4 prefix or address, \
            e.g. \"172.20.0.0/24\"";
    encap_source_ipv6_of_the_wrong_family_is_rejected_at_the_value:
        "[daemon]\nencap_source_ipv6 = \"172.31.0.0/16\"\n"
        => "lb.toml:2:21: invalid encap_source_ipv6 \"172.31.0.0/16\": expected an IPv6 prefix or address, \
            e.g. \"fd00:20::/64\"";
    encap_source_with_host_bits_is_rejected_at_the_value:
        "[daemon]\nencap_source_ipv4 = \"172.31.0.1/16\"\n"
        => "lb.toml:2:21: encap_source_ipv4: invalid prefix \"172.31.0.1/16\": bits are set past the length; \
            did you mean \"172.31.0.0/16\"?";
    duplicate_backend_in_a_service_is_rejected_at_the_second_address:
        r#"[[service]]
name = "web"
vip = "172.20.0.100:80"
[[service.backend]]
address = "172.20.0.11:80"
[[service.backend]]
address = "172.20.0.11:80"
weight = 3
"#
        => "lb.toml:7:11: duplicate backend 172.20.0.11:80; first listed at line 5";
    weight_above_10000_is_rejected_at_the_weight:
        r#"[[service]]
name = "web"
vip = "172.20.0.100:80"
[[service.backend]]
address = "172.20.0.11:80"
weight = 10001
"#
        => "lb.toml:6:10: weight 10001 is too large; the maximum is 10000";
    reversed_snat_ports_are_rejected_at_the_value:
        "[daemon]\nsnat_ports = \"32767-20000\"\n"
        => "lb.toml:2:14: invalid snat_ports \"32767-20000\": start 32767 is greater than end 20000";
    snat_ports_starting_at_zero_are_rejected_at_the_value:
        "[daemon]\nsnat_ports = \"0-1000\"\n"
        => "lb.toml:2:14: invalid snat_ports \"0-1000\": port 0 cannot be used; ranges start at 1 or above";
    malformed_snat_ports_are_rejected_at_the_value:
        "[daemon]\nsnat_ports = \"20000:32767\"\n"
        => "lb.toml:2:14: invalid snat_ports \"20000:32767\": expected \"START-END\" or one port, \
         with ports 1-65535, e.g. \"20000-32767\"";
    max_services_of_zero_is_rejected_at_the_value:
        "[daemon]\nmax_services = 0\n"
        => "lb.toml:2:16: max_services 0 is out of range; it must be between 1 and 1024";
    max_services_above_1024_is_rejected_at_the_value:
        "[daemon]\nmax_services = 1025\n"
        => "lb.toml:2:16: max_services 1025 is out of range; it must be between 1 and 1024";
    flow_table_size_below_1024_is_rejected_at_the_value:
        "[daemon]\nflow_table_size = 1023\n"
        => "lb.toml:2:19: flow_table_size 1023 is too small; the minimum is 1024";
    an_empty_interface_list_is_rejected_at_the_list:
        "[daemon]\ninterface = []\n"
        => "lb.toml:2:13: interface list must not be empty: name at least one NIC, e.g. [\"eth0\"]";
    an_interface_listed_twice_is_rejected_at_the_list:
        "[daemon]\ninterface = [\"eth0\", \"eth1\", \"eth0\"]\n"
        => "lb.toml:2:13: interface \"eth0\" is listed twice";
    a_bad_name_in_the_interface_list_is_rejected_at_the_list:
        "[daemon]\ninterface = [\"eth0\", \"eth 1\"]\n"
        => "lb.toml:2:13: \"eth 1\" is not a valid interface name";
    xdp_mode_without_interface_is_rejected_at_the_mode:
        "[daemon]\nmode = \"xdp\"\n"
        => "lb.toml:2:8: mode \"xdp\" needs an interface: set daemon.interface to the NIC to attach to";
    workers_above_1024_are_rejected_at_the_value:
        "[daemon]\nworkers = 1025\n"
        => "lb.toml:2:11: workers 1025 is too large; the maximum is 1024 (0: one per CPU core)";
    max_idle_per_backend_above_10000_is_rejected_at_the_value:
        r#"[[service]]
name = "web"
vip = "172.20.0.100:80"
[service.pool]
max_idle_per_backend = 10001
"#
        => "lb.toml:5:24: max_idle_per_backend 10001 is too large; the maximum is 10000";
    zero_http_header_timeout_is_rejected_at_its_value:
        "[daemon]\nhttp_header_timeout = \"0s\"\n"
        => "lb.toml:2:23: http_header_timeout must be greater than 0";
    http_header_timeout_over_an_hour_is_rejected_at_its_value:
        "[daemon]\nhttp_header_timeout = \"61m\"\n"
        => "lb.toml:2:23: http_header_timeout 1h1m is too long; the maximum is 1h";
    http_max_header_size_below_1024_is_rejected_at_its_value:
        "[daemon]\nhttp_max_header_size = 1023\n"
        => "lb.toml:2:24: http_max_header_size 1023 is out of range; it must be between 1024 and 262144 bytes";
    http_max_header_size_above_256_kib_is_rejected_at_its_value:
        "[daemon]\nhttp_max_header_size = 262145\n"
        => "lb.toml:2:24: http_max_header_size 262145 is out of range; it must be between 1024 and 262144 bytes";
    max_connections_per_source_above_a_million_is_rejected_at_its_value:
        r#"[[service]]
name = "web"
vip = "172.20.0.100:80"
max_connections_per_source = 1000001
"#
        => "lb.toml:4:30: max_connections_per_source 1000001 is too large; the maximum is 1000000 (0: no cap)";
    max_client_connections_above_a_million_is_rejected_at_its_value:
        r#"[[service]]
name = "web"
vip = "172.20.0.100:80"
max_client_connections = 2000000
"#
        => "lb.toml:4:26: max_client_connections 2000000 is too large; the maximum is 1000000 (0: no cap)";
    negative_max_connections_per_source_is_a_type_error:
        r#"[[service]]
name = "web"
vip = "172.20.0.100:80"
max_connections_per_source = -1
"#
        => "lb.toml:4:30: invalid value: integer `-1`, expected u32";
    zero_pool_idle_timeout_is_rejected_at_its_value:
        r#"[[service]]
name = "web"
vip = "172.20.0.100:80"
[service.pool]
idle_timeout = "0s"
"#
        => "lb.toml:5:16: idle_timeout must be greater than 0";
    allow_registration_from_prefix_with_host_bits_is_rejected_at_the_prefix:
        "[[service]]\nname = \"web\"\nvip = \"172.20.0.100:80\"\nallow_registration_from = [\"127.0.0.0/8\", \"10.0.0.1/8\"]\n"
        => "lb.toml:4:43: allow_registration_from: invalid prefix \"10.0.0.1/8\": bits are set past the length; did you mean \"10.0.0.0/8\"?";
    allow_registration_from_not_an_address_is_rejected_at_it:
        "[[service]]\nname = \"web\"\nvip = \"172.20.0.100:80\"\nallow_registration_from = [\"localhost/8\"]\n"
        => "lb.toml:4:28: allow_registration_from: invalid prefix \"localhost/8\": expected ADDRESS/LENGTH or an address, e.g. \"10.0.0.0/8\" or \"fd00::1\"";
    allow_registration_from_length_out_of_range_is_rejected_at_it:
        "[[service]]\nname = \"web\"\nvip = \"172.20.0.100:80\"\nallow_registration_from = [\"10.0.0.0/33\"]\n"
        => "lb.toml:4:28: allow_registration_from: invalid prefix \"10.0.0.0/33\": the length must be 0 to 32";
    // The keys of the udp, https and agent health checks.
    udp_check_without_send_is_rejected_at_its_type:
        "[[service]]\nname = \"dns\"\nvip = \"172.20.0.100:53\"\nprotocol = \"udp\"\n[service.health_check]\ntype = \"udp\"\n"
        => "lb.toml:6:8: health check type \"udp\" needs send, the datagram to send";
    send_on_a_tcp_check_is_rejected_at_send:
        "[[service]]\nname = \"web\"\nvip = \"172.20.0.100:80\"\n[service.health_check]\nsend = \"ping\"\n"
        => "lb.toml:5:8: send applies to health checks of type \"udp\"; this one is \"tcp\"";
    expect_on_an_http_check_is_rejected_at_expect:
        "[[service]]\nname = \"web\"\nvip = \"172.20.0.100:80\"\n[service.health_check]\ntype = \"http\"\nexpect = \"pong\"\n"
        => "lb.toml:6:10: expect applies to health checks of type \"udp\"; this one is \"http\"";
    empty_send_is_rejected_at_send:
        "[[service]]\nname = \"dns\"\nvip = \"172.20.0.100:53\"\nprotocol = \"udp\"\n[service.health_check]\ntype = \"udp\"\nsend = \"\"\n"
        => "lb.toml:7:8: send must not be empty";
    oversized_send_is_rejected_at_send:
        "[[service]]\nname = \"dns\"\nvip = \"172.20.0.100:53\"\nprotocol = \"udp\"\n[service.health_check]\ntype = \"udp\"\nsend = \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"\n"
        => "lb.toml:7:8: send is 1025 bytes; at most 1024";
    https_check_on_a_udp_service_is_rejected_at_its_type:
        "[[service]]\nname = \"dns\"\nvip = \"172.20.0.100:53\"\nprotocol = \"udp\"\n[service.health_check]\ntype = \"https\"\n"
        => "lb.toml:6:8: health check type \"https\" needs protocol \"tcp\"; this service is \"udp\"";
    verify_without_ca_file_is_rejected_at_verify:
        "[[service]]\nname = \"web\"\nvip = \"172.20.0.100:80\"\n[service.health_check]\ntype = \"https\"\nverify = true\n"
        => "lb.toml:6:10: verify = true needs ca_file, the PEM certificates to trust";
    ca_file_without_verify_is_rejected_at_ca_file:
        "[[service]]\nname = \"web\"\nvip = \"172.20.0.100:80\"\n[service.health_check]\ntype = \"https\"\nca_file = \"/etc/lb/ca.pem\"\n"
        => "lb.toml:6:11: ca_file is read only with verify = true";
    sni_on_a_tcp_check_is_rejected_at_sni:
        "[[service]]\nname = \"web\"\nvip = \"172.20.0.100:80\"\n[service.health_check]\nsni = \"api.example.com\"\n"
        => "lb.toml:5:7: sni applies to health checks of type \"https\"; this one is \"tcp\"";
    verify_on_an_http_check_is_rejected_at_verify:
        "[[service]]\nname = \"web\"\nvip = \"172.20.0.100:80\"\n[service.health_check]\ntype = \"http\"\nverify = false\n"
        => "lb.toml:6:10: verify applies to health checks of type \"https\"; this one is \"http\"";
    sni_that_is_not_a_dns_name_is_rejected_at_sni:
        "[[service]]\nname = \"web\"\nvip = \"172.20.0.100:80\"\n[service.health_check]\ntype = \"https\"\nsni = \"10.0.0.1\"\n"
        => "lb.toml:6:7: sni \"10.0.0.1\" is not a DNS name, e.g. \"api.example.com\"";
    agent_check_without_agent_port_is_rejected_at_its_type:
        "[[service]]\nname = \"web\"\nvip = \"172.20.0.100:80\"\n[service.health_check]\ntype = \"agent\"\n"
        => "lb.toml:5:8: health check type \"agent\" needs agent_port, the port the agent answers on";
    agent_port_out_of_range_is_rejected_at_it:
        "[[service]]\nname = \"web\"\nvip = \"172.20.0.100:80\"\n[service.health_check]\ntype = \"agent\"\nagent_port = 70000\n"
        => "lb.toml:6:14: agent_port 70000 is not a port; expected 1-65535";
    agent_port_on_a_tcp_check_is_rejected_at_it:
        "[[service]]\nname = \"web\"\nvip = \"172.20.0.100:80\"\n[service.health_check]\nagent_port = 5555\n"
        => "lb.toml:5:14: agent_port applies to health checks of type \"agent\"; this one is \"tcp\"";
}

/// The example of docs/configuration.md, "The contract", verbatim.
const CONTRACT_EXAMPLE: &str = r#"[daemon]
interface = "eth0"              # NIC for XDP (modes xdp and auto)
mode = "auto"                   # "xdp" | "proxy" | "auto" (XDP, else proxy, with a warning)
xdp_attach = "native"           # "native" | "generic"
admin_listen = "127.0.0.1:9100" # metrics, health, admin and registration API
token_file = "/etc/lb/token"    # bearer token for every mutating API call
pin_path = "/sys/fs/bpf/lb"
state_file = "/var/lib/lb/state.json"
snat_ipv4 = "172.20.0.10"       # default: the interface's first IPv4 address
snat_ipv6 = "fd00:20::10"       # default: the interface's first global IPv6 address
snat_ports = "20000-32767"       # kept out of the kernel's ephemeral range (32768-60999) and
                                # added to net.ipv4.ip_local_reserved_ports, so the LB's own
                                # connections (health checks) never collide with NAT flows
flow_table_size = 1048576
tcp_idle_timeout = "300s"
udp_idle_timeout = "30s"

[[service]]
name = "web"
vip = "172.20.0.100:80"         # "[fd00:20::100]:80" for IPv6
protocol = "tcp"                # "tcp" | "udp"
algorithm = "maglev"            # see Data path
forwarding = "nat"              # "nat" | "dsr"          (XDP path)
proxy_mode = "l4"               # "l4" | "http"          (proxy path)

[service.health_check]
type = "http"                   # "tcp" | "http" | "none"
path = "/"
expected_status = "200-399"
interval = "2s"
timeout = "1s"
healthy_threshold = 2
unhealthy_threshold = 3

[[service.backend]]
address = "172.20.0.11:80"
weight = 1                      # 0 behaves like drain
state = "ready"                 # "ready" | "drain" | "maint"
"#;

const MINIMAL: &str = r#"[[service]]
name = "web"
vip = "172.20.0.100:80"
[[service.backend]]
address = "172.20.0.11:80"
"#;

// ---------------------------------------------------------------------------------------
// What parses, and to what
// ---------------------------------------------------------------------------------------

#[test]
fn contract_example_parses_with_every_value_as_written() {
    let config = parse(CONTRACT_EXAMPLE);
    let daemon = &config.daemon;
    assert_eq!(daemon.interface.as_deref(), Some("eth0"));
    assert_eq!(daemon.mode, Mode::Auto);
    assert_eq!(daemon.xdp_attach, XdpAttach::Native);
    assert_eq!(daemon.admin_listen, addr("127.0.0.1:9100"));
    assert_eq!(daemon.token_file, PathBuf::from("/etc/lb/token"));
    assert_eq!(daemon.pin_path, PathBuf::from("/sys/fs/bpf/lb"));
    assert_eq!(daemon.state_file, PathBuf::from("/var/lib/lb/state.json"));
    assert_eq!(daemon.snat_ipv4, Some(Ipv4Addr::new(172, 20, 0, 10)));
    assert_eq!(daemon.snat_ipv6, Some("fd00:20::10".parse::<Ipv6Addr>().unwrap()));
    assert_eq!(daemon.snat_ports, PortRange { start: 20_000, end: 32_767 });
    assert_eq!(daemon.flow_table_size, 1_048_576);
    assert_eq!(daemon.tcp_idle_timeout, secs(300));
    assert_eq!(daemon.udp_idle_timeout, secs(30));
    // Not in the example: the proxy's keys take their defaults.
    assert_eq!(daemon.workers, 0);
    assert_eq!(daemon.connect_timeout, secs(2));
    assert_eq!(daemon.drain_timeout, secs(10));
    assert_eq!(daemon.http_header_timeout, secs(10));
    assert_eq!(daemon.http_max_header_size, 65_536);

    assert_eq!(config.services.len(), 1);
    let web = &config.services[0];
    assert_eq!(web.name, "web");
    assert_eq!(web.vip, addr("172.20.0.100:80"));
    assert_eq!(web.protocol, Protocol::Tcp);
    assert_eq!(web.algorithm, Algorithm::Maglev);
    assert_eq!(web.forwarding, Forwarding::Nat);
    assert_eq!(web.proxy_mode, ProxyMode::L4);

    let check = &web.health_check;
    assert_eq!(check.kind, HealthCheckType::Http);
    assert_eq!(check.path, "/");
    assert_eq!(check.expected_status, "200-399".parse().unwrap());
    assert_eq!(check.interval, secs(2));
    assert_eq!(check.timeout, secs(1));
    assert_eq!(check.healthy_threshold, 2);
    assert_eq!(check.unhealthy_threshold, 3);

    assert_eq!(web.pool, Pool::default());
    assert_eq!(web.connection_caps, ConnectionCaps::default(), "no connection cap unless written");

    assert_eq!(web.backends, [Backend { address: addr("172.20.0.11:80"), weight: 1, state: AdminState::Ready }]);
}

#[test]
fn minimal_service_gets_every_default() {
    let config = parse(MINIMAL);
    // Literal values, not `Default::default()`, so the defaults themselves are checked too.
    let daemon = &config.daemon;
    assert_eq!(daemon.interface, None);
    assert_eq!(daemon.mode, Mode::Auto);
    assert_eq!(daemon.xdp_attach, XdpAttach::Native);
    assert_eq!(daemon.admin_listen, addr("127.0.0.1:9100"));
    assert_eq!(daemon.token_file, PathBuf::from("/etc/lb/token"));
    assert_eq!(daemon.pin_path, PathBuf::from("/sys/fs/bpf/lb"));
    assert_eq!(daemon.state_file, PathBuf::from("/var/lib/lb/state.json"));
    assert_eq!(daemon.snat_ipv4, None);
    assert_eq!(daemon.snat_ipv6, None);
    assert_eq!(daemon.snat_ports, PortRange { start: 20_000, end: 32_767 });
    assert_eq!(daemon.encap_source_ipv4, None);
    assert_eq!(daemon.encap_source_ipv6, None);
    assert_eq!(daemon.gue_port, 6080);
    assert_eq!(daemon.tunnel_mtu, None);
    assert_eq!(daemon.flow_table_size, 1_048_576);
    assert_eq!(daemon.tcp_idle_timeout, secs(300));
    assert_eq!(daemon.udp_idle_timeout, secs(30));
    assert_eq!(daemon.workers, 0);
    assert_eq!(daemon.connect_timeout, secs(2));
    assert_eq!(daemon.drain_timeout, secs(10));
    assert_eq!(*daemon, Daemon::default());

    let web = &config.services[0];
    assert_eq!(web.protocol, Protocol::Tcp);
    assert_eq!(web.algorithm, Algorithm::Maglev);
    assert_eq!(web.forwarding, Forwarding::Nat);
    assert_eq!(web.proxy_mode, ProxyMode::L4);

    let check = &web.health_check;
    assert_eq!(check.kind, HealthCheckType::Tcp);
    assert_eq!(check.path, "/");
    assert_eq!(check.expected_status.to_string(), "200-399");
    assert_eq!(check.interval, secs(2));
    assert_eq!(check.timeout, secs(1));
    assert_eq!(check.healthy_threshold, 2);
    assert_eq!(check.unhealthy_threshold, 3);
    assert_eq!(*check, HealthCheck::default());

    let pool = &web.pool;
    assert_eq!(pool.max_idle_per_backend, 32);
    assert_eq!(pool.idle_timeout, secs(60));
    assert_eq!(*pool, Pool::default());

    assert_eq!(web.backends, [Backend { address: addr("172.20.0.11:80"), weight: 1, state: AdminState::Ready }]);
    assert_eq!(web.backends[0], Backend::new(addr("172.20.0.11:80")));
}

#[test]
fn empty_file_is_a_default_daemon_with_no_services() {
    let config = parse("");
    assert_eq!(config, Config { daemon: Daemon::default(), services: vec![], cluster: None });
}

#[test]
fn ipv6_vip_and_backends_parse() {
    let config = parse(
        r#"[[service]]
name = "web6"
vip = "[fd00:20::100]:80"
[[service.backend]]
address = "[fd00:20::11]:80"
"#,
    );
    assert_eq!(config.services[0].vip, addr("[fd00:20::100]:80"));
    assert!(config.services[0].vip.is_ipv6());
    assert_eq!(config.services[0].backends[0].address, addr("[fd00:20::11]:80"));
}

#[test]
fn service_without_backends_is_accepted() {
    let config = parse(
        r#"[[service]]
name = "empty"
vip = "172.20.0.100:80"
"#,
    );
    assert!(config.services[0].backends.is_empty());
}

#[test]
fn services_and_backends_keep_file_order_and_their_settings() {
    let config = parse(
        r#"[[service]]
name = "web"
vip = "172.20.0.100:80"
algorithm = "source_hash"
forwarding = "dsr"
[[service.backend]]
address = "172.20.0.12:80"
weight = 0
state = "drain"
[[service.backend]]
address = "172.20.0.11:80"
weight = 10000
state = "maint"

[[service]]
name = "dns"
vip = "172.20.0.100:53"
protocol = "udp"
health_check = { type = "none" }
backend = [{ address = "172.20.0.13:53" }]
"#,
    );
    let names: Vec<&str> = config.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["web", "dns"]);
    let web = &config.services[0];
    assert_eq!((web.algorithm, web.forwarding), (Algorithm::SourceHash, Forwarding::Dsr));
    assert_eq!(
        web.backends,
        [
            Backend { address: addr("172.20.0.12:80"), weight: 0, state: AdminState::Drain },
            Backend { address: addr("172.20.0.11:80"), weight: 10_000, state: AdminState::Maint },
        ]
    );
    let dns = &config.services[1];
    assert_eq!(dns.protocol, Protocol::Udp);
    assert_eq!(dns.health_check.kind, HealthCheckType::None);
    assert_eq!(dns.backends, [Backend::new(addr("172.20.0.13:53"))]);
}

/// The warnings, as `lb check` prints them; the file must be valid.
pub(super) fn warnings(text: &str) -> Vec<String> {
    match Config::check_str(text, FILE) {
        Ok(checked) => checked.warnings.iter().map(Diagnostic::warning).collect(),
        Err(e) => panic!("expected a valid config, got:\n{e}"),
    }
}

#[test]
fn a_udp_service_is_not_health_checked_unless_asked_and_a_tcp_one_is() {
    let config = parse(
        r#"[[service]]
name = "dns"
vip = "172.20.0.100:53"
protocol = "udp"
[[service]]
name = "web"
vip = "172.20.0.100:80"
[service.health_check]
interval = "5s"
"#,
    );
    assert_eq!(config.services[0].health_check.kind, HealthCheckType::None, "a TCP connect says nothing of UDP");
    assert_eq!(config.services[1].health_check.kind, HealthCheckType::Tcp);
    assert!(warnings("[[service]]\nname = \"dns\"\nvip = \"172.20.0.100:53\"\nprotocol = \"udp\"\n").is_empty());
}

#[test]
fn a_tcp_check_written_on_a_udp_service_is_kept_with_a_warning_at_its_type() {
    let text = r#"[[service]]
name = "dns"
vip = "172.20.0.100:53"
protocol = "udp"
[service.health_check]
type = "tcp"
[[service]]
name = "web"
vip = "172.20.0.100:80"
health_check = { type = "tcp" }
"#;
    assert_eq!(parse(text).services[0].health_check.kind, HealthCheckType::Tcp, "written, so kept");
    assert_eq!(
        warnings(text),
        ["lb.toml:6:8: warning: health check type \"tcp\" connects over TCP, but this service is \"udp\": \
          backends that serve only UDP will be marked down (type = \"none\" checks nothing)"],
        "only the UDP service's, at its `type`"
    );
}

#[test]
fn same_vip_is_allowed_once_per_protocol() {
    let config = parse(
        r#"[[service]]
name = "dns-tcp"
vip = "172.20.0.100:53"
[[service]]
name = "dns-udp"
vip = "172.20.0.100:53"
protocol = "udp"
"#,
    );
    assert_eq!(config.services.len(), 2);
}

#[test]
fn durations_accept_milliseconds_minutes_hours_and_compounds() {
    let config = parse(
        r#"[daemon]
tcp_idle_timeout = "1h"
udp_idle_timeout = "1m30s"
[[service]]
name = "web"
vip = "172.20.0.100:80"
[service.health_check]
interval = "500ms"
timeout = "250ms"
"#,
    );
    assert_eq!(config.daemon.tcp_idle_timeout, secs(3600));
    assert_eq!(config.daemon.udp_idle_timeout, secs(90));
    assert_eq!(config.services[0].health_check.interval, Duration::from_millis(500));
    assert_eq!(config.services[0].health_check.timeout, Duration::from_millis(250));
}

#[test]
fn health_timeout_equal_to_interval_is_accepted() {
    let config = parse(
        r#"[[service]]
name = "web"
vip = "172.20.0.100:80"
health_check = { interval = "1s", timeout = "1s" }
"#,
    );
    assert_eq!(config.services[0].health_check.timeout, secs(1));
}

#[test]
fn snat_ports_accepts_a_single_port() {
    let config = parse("[daemon]\nsnat_ports = \"40000\"\n");
    assert_eq!(config.daemon.snat_ports, PortRange { start: 40_000, end: 40_000 });
}

#[test]
fn expected_status_accepts_a_list_or_a_bare_number() {
    let config = parse(
        r#"[[service]]
name = "a"
vip = "172.20.0.100:80"
health_check = { type = "http", expected_status = "200,204,300-399" }
[[service]]
name = "b"
vip = "172.20.0.100:81"
health_check = { type = "http", expected_status = 204 }
"#,
    );
    let a = &config.services[0].health_check.expected_status;
    assert!(a.contains(204) && a.contains(302) && !a.contains(201));
    let b = &config.services[1].health_check.expected_status;
    assert!(b.contains(204) && !b.contains(200));
}

#[test]
fn service_name_of_47_allowed_characters_is_accepted() {
    let name = format!("{}_.-9", "a".repeat(MAX_SERVICE_NAME_LEN - 4));
    let config = parse(&format!("[[service]]\nname = \"{name}\"\nvip = \"172.20.0.100:80\"\n"));
    assert_eq!(config.services[0].name.len(), 47);
}

#[test]
fn the_default_max_services_and_16384_backends_are_accepted() {
    let config = parse(&services_with_backends(DEFAULT_MAX_SERVICES, MAX_BACKENDS / DEFAULT_MAX_SERVICES));
    assert_eq!(config.daemon.max_services, 128);
    assert_eq!(config.services.len(), DEFAULT_MAX_SERVICES);
    assert_eq!(config.services.iter().map(|s| s.backends.len()).sum::<usize>(), 16_384);
}

#[test]
fn max_services_1024_takes_1024_services_and_16384_backends() {
    let text = format!("[daemon]\nmax_services = 1024\n{}", services_with_backends(1024, 16));
    let config = parse(&text);
    assert_eq!((config.daemon.max_services, MAX_SERVICES), (1024, 1024));
    assert_eq!(config.services.len(), 1024);
    assert_eq!(config.services.iter().map(|s| s.backends.len()).sum::<usize>(), MAX_BACKENDS);
}

#[test]
fn more_services_than_max_services_are_rejected_at_the_first_extra_one() {
    let text = format!("[daemon]\nmax_services = 2\n{}", services_with_backends(3, 0));
    // Lines 1-2 the daemon; each service is 3 lines: the 3rd's name is on line 2 + 6 + 2.
    assert_eq!(
        error(&text),
        "lb.toml:10:8: too many services: 3 defined, daemon.max_services is 2; raise it (at most 1024, each \
         service's Maglev tables take 1 MiB of kernel memory)"
    );
}

#[test]
fn more_than_1024_services_are_rejected_at_the_1025th() {
    let text = format!("[daemon]\nmax_services = 1024\n{}", services_with_backends(1025, 0));
    assert_eq!(error(&text), "lb.toml:3076:8: too many services: 1025 defined, at most 1024 are supported");
}

#[test]
fn xdp_mode_with_an_interface_is_accepted() {
    let config = parse("[daemon]\nmode = \"xdp\"\ninterface = \"eth0\"\nxdp_attach = \"generic\"\n");
    assert_eq!(config.daemon.mode, Mode::Xdp);
    assert_eq!(config.daemon.xdp_attach, XdpAttach::Generic);
}

#[test]
fn every_algorithm_is_accepted() {
    for &algorithm in Algorithm::ALL {
        let config =
            parse(&format!("[[service]]\nname = \"web\"\nvip = \"172.20.0.100:80\"\nalgorithm = \"{algorithm}\"\n"));
        assert_eq!(config.services[0].algorithm, algorithm);
    }
    assert_eq!(Algorithm::ALL.len(), 7);
}

#[test]
fn proxy_workers_and_timeouts_parse() {
    let config = parse(
        r#"[daemon]
workers = 8
connect_timeout = "500ms"
drain_timeout = "1m"
"#,
    );
    assert_eq!(config.daemon.workers, 8);
    assert_eq!(config.daemon.connect_timeout, Duration::from_millis(500));
    assert_eq!(config.daemon.drain_timeout, secs(60));
}

#[test]
fn http_limits_and_connection_caps_are_read() {
    let config = parse(
        r#"[daemon]
http_header_timeout = "2500ms"
http_max_header_size = 8192
[[service]]
name = "web"
vip = "172.20.0.100:80"
proxy_mode = "http"
max_client_connections = 10000
max_connections_per_source = 64
[[service]]
name = "dns"
vip = "172.20.0.100:53"
protocol = "udp"
max_connections_per_source = 0
"#,
    );
    assert_eq!(config.daemon.http_header_timeout, Duration::from_millis(2500));
    assert_eq!(config.daemon.http_max_header_size, 8192);
    assert_eq!(config.services[0].connection_caps, ConnectionCaps { per_service: 10_000, per_source: 64 });
    assert_eq!(config.services[1].connection_caps, ConnectionCaps::default());
    let desired = desired::Desired::from_config(&config);
    assert_eq!(desired.settings.http_header_timeout, Duration::from_millis(2500));
    assert_eq!(desired.settings.http_max_header_size, 8192);
    assert_eq!(desired.services[0].connection_caps.per_source, 64);
}

#[test]
fn workers_of_1024_is_accepted() {
    let config = parse("[daemon]\nworkers = 1024\n");
    assert_eq!(config.daemon.workers, MAX_WORKERS);
}

#[test]
fn pool_table_sets_the_http_proxys_keep_alive_pool() {
    let config = parse(
        r#"[[service]]
name = "web"
vip = "172.20.0.100:80"
proxy_mode = "http"
[service.pool]
max_idle_per_backend = 10000
idle_timeout = "90s"
[[service]]
name = "api"
vip = "172.20.0.100:81"
pool = { idle_timeout = "5s" }
"#,
    );
    assert_eq!(config.services[0].pool, Pool { max_idle_per_backend: 10_000, idle_timeout: secs(90) });
    assert_eq!(config.services[1].pool, Pool { max_idle_per_backend: 32, idle_timeout: secs(5) });
}

#[test]
fn pool_with_zero_max_idle_per_backend_is_accepted_and_disables_pooling() {
    let config = parse(
        r#"[[service]]
name = "web"
vip = "172.20.0.100:80"
pool = { max_idle_per_backend = 0 }
"#,
    );
    assert_eq!(config.services[0].pool.max_idle_per_backend, 0);
}

#[test]
fn unspecified_vip_is_accepted_with_modes_auto_and_proxy() {
    for daemon in ["", "[daemon]\nmode = \"auto\"\n", "[daemon]\nmode = \"proxy\"\n"] {
        let config = parse(&format!(
            r#"{daemon}[[service]]
name = "web"
vip = "0.0.0.0:8080"
[[service.backend]]
address = "172.20.0.11:80"
[[service]]
name = "web6"
vip = "[::]:8080"
[[service.backend]]
address = "[fd00:20::11]:80"
"#
        ));
        assert_eq!(config.services[0].vip, addr("0.0.0.0:8080"));
        assert_eq!(config.services[1].vip, addr("[::]:8080"));
    }
}

#[test]
fn service_name_limit_matches_the_pinned_map_field() {
    let meta = lb_common::maps::ServiceMeta::default();
    assert_eq!(meta.name.len(), MAX_SERVICE_NAME_LEN + 1, "the name field keeps a NUL");
}

// ---------------------------------------------------------------------------------------
// Syntax, type and unknown-key errors: the parser stops at the first
// ---------------------------------------------------------------------------------------

#[test]
fn unknown_daemon_key_is_rejected_at_the_key() {
    let message = error("[daemon]\nmode = \"auto\"\nsnat_port = \"1-2\"\n");
    assert!(message.starts_with("lb.toml:3:1: unknown key `snat_port`, expected one of `interface`, "), "{message}");
    assert!(message.contains("`snat_ports`"), "{message}");
}

#[test]
fn unknown_service_key_is_rejected_at_the_key() {
    let message = error(
        r#"[[service]]
name = "web"
vip = "172.20.0.100:80"
  port = 80
"#,
    );
    assert!(message.starts_with("lb.toml:4:3: unknown key `port`, expected one of `name`, `vip`, "), "{message}");
}

#[test]
fn unknown_health_check_key_is_rejected_at_the_key() {
    let message = error(
        r#"[[service]]
name = "web"
vip = "172.20.0.100:80"
[service.health_check]
type = "tcp"
retries = 3
"#,
    );
    assert!(message.starts_with("lb.toml:6:1: unknown key `retries`, expected one of `type`, "), "{message}");
}

#[test]
fn single_bracket_service_table_says_to_write_double_brackets() {
    assert_eq!(
        error("[service]\nname = \"web\"\nvip = \"172.20.0.100:80\"\n"),
        "lb.toml:1:1: [service] must be written [[service]], once per service"
    );
    assert_eq!(
        error(
            r#"[[service]]
name = "web"
vip = "172.20.0.100:80"
[service.backend]
address = "172.20.0.11:80"
"#
        ),
        "lb.toml:4:1: [service.backend] must be written [[service.backend]], once per backend"
    );
}

#[test]
fn wrong_value_type_is_rejected_at_the_value() {
    assert_eq!(
        error("[daemon]\nflow_table_size = \"big\"\n"),
        "lb.toml:2:19: invalid type: string \"big\", expected u32"
    );
    assert_eq!(
        error(
            r#"[[service]]
name = "web"
vip = "172.20.0.100:80"
backend = [{ address = "172.20.0.11:80", weight = -1 }]
"#
        ),
        "lb.toml:4:51: invalid value: integer `-1`, expected u32"
    );
}

// ---------------------------------------------------------------------------------------
// Value and semantic errors: all collected, each at its value
// ---------------------------------------------------------------------------------------

#[test]
fn duration_without_unit_is_rejected_at_its_value() {
    assert_eq!(
        errors(
            r#"[daemon]
tcp_idle_timeout = "300"
udp_idle_timeout = 30
"#
        ),
        ["lb.toml:2:20: duration needs a unit, e.g. \"2s\"", "lb.toml:3:20: duration needs a unit, e.g. \"2s\"",]
    );
}

#[test]
fn zero_interval_and_timeout_are_rejected_at_their_values() {
    assert_eq!(
        errors(
            r#"[[service]]
name = "web"
vip = "172.20.0.100:80"
[service.health_check]
interval = "0s"
timeout = "0ms"
"#
        ),
        ["lb.toml:5:12: interval must be greater than 0", "lb.toml:6:11: timeout must be greater than 0"]
    );
}

#[test]
fn zero_thresholds_are_rejected_at_their_values() {
    assert_eq!(
        errors(
            r#"[[service]]
name = "web"
vip = "172.20.0.100:80"
[service.health_check]
healthy_threshold = 0
unhealthy_threshold = 0
"#
        ),
        ["lb.toml:5:21: healthy_threshold must be at least 1", "lb.toml:6:23: unhealthy_threshold must be at least 1",]
    );
}

#[test]
fn invalid_expected_status_is_rejected_at_its_value() {
    assert_eq!(
        errors(
            r#"[[service]]
name = "web"
vip = "172.20.0.100:80"
[service.health_check]
expected_status = "2xx"
path = "healthz"
"#
        ),
        [
            "lb.toml:5:19: invalid expected_status \"2xx\": expected status codes or ranges separated by commas, \
             e.g. \"200-399\" or \"200,204,300-399\"",
            "lb.toml:6:8: health check path \"healthz\" must start with \"/\"",
        ]
    );
}

#[test]
fn service_name_longer_than_47_bytes_is_rejected_at_the_name() {
    let name = "a".repeat(48);
    assert_eq!(
        error(&format!("[[service]]\nname = \"{name}\"\nvip = \"172.20.0.100:80\"\n")),
        format!("lb.toml:2:8: service name \"{name}\" is 48 bytes long; at most 47 are allowed")
    );
}

#[test]
fn service_name_with_other_characters_is_rejected_at_the_name() {
    assert_eq!(
        errors(
            r#"[[service]]
name = "web site"
vip = "172.20.0.100:80"
[[service]]
name = "wéb"
vip = "172.20.0.100:81"
[[service]]
name = "a/b"
vip = "172.20.0.100:82"
"#
        ),
        [
            "lb.toml:2:8: service name \"web site\" contains ' '; use only letters A-Z a-z, digits, '_', '.' and '-'",
            "lb.toml:5:8: service name \"wéb\" contains 'é'; use only letters A-Z a-z, digits, '_', '.' and '-'",
            "lb.toml:8:8: service name \"a/b\" contains '/'; use only letters A-Z a-z, digits, '_', '.' and '-'",
        ]
    );
}

#[test]
fn backend_of_the_other_address_family_is_rejected_at_its_address() {
    assert_eq!(
        errors(
            r#"[[service]]
name = "web"
vip = "172.20.0.100:80"
[[service.backend]]
address = "[fd00:20::11]:80"
[[service]]
name = "web6"
vip = "[fd00:20::100]:80"
[[service.backend]]
address = "172.20.0.11:80"
"#
        ),
        [
            "lb.toml:5:11: backend [fd00:20::11]:80 is IPv6 but the VIP 172.20.0.100:80 is IPv4; \
             backends must use their VIP's address family",
            "lb.toml:10:11: backend 172.20.0.11:80 is IPv4 but the VIP [fd00:20::100]:80 is IPv6; \
             backends must use their VIP's address family",
        ]
    );
}

#[test]
fn nat_backend_on_other_port_is_accepted() {
    let config = parse(
        r#"[[service]]
name = "web"
vip = "172.20.0.100:80"
[[service.backend]]
address = "172.20.0.12:8080"
"#,
    );
    assert_eq!(config.services[0].backends[0].address.port(), 8080);
}

#[test]
fn same_backend_in_two_services_is_accepted() {
    let config = parse(
        r#"[[service]]
name = "web"
vip = "172.20.0.100:80"
backend = [{ address = "172.20.0.11:80" }]
[[service]]
name = "web-alt"
vip = "172.20.0.100:8080"
backend = [{ address = "172.20.0.11:80" }]
"#,
    );
    assert_eq!(config.services.len(), 2);
}

#[test]
fn invalid_interface_name_is_rejected_at_the_value() {
    assert_eq!(
        errors("[daemon]\ninterface = \"a-very-long-nic-name\"\n"),
        ["lb.toml:2:13: interface name \"a-very-long-nic-name\" is longer than 15 bytes"]
    );
    assert_eq!(error("[daemon]\ninterface = \"eth 0\"\n"), "lb.toml:2:13: \"eth 0\" is not a valid interface name");
}

#[test]
fn invalid_daemon_addresses_are_rejected_at_their_values() {
    assert_eq!(
        errors(
            r#"[daemon]
admin_listen = "localhost:9100"
snat_ipv4 = "fd00:20::10"
snat_ipv6 = "172.20.0.10"
"#
        ),
        [
            "lb.toml:2:16: invalid admin_listen \"localhost:9100\": expected IP:PORT, e.g. \"127.0.0.1:9100\"",
            "lb.toml:3:13: invalid snat_ipv4 \"fd00:20::10\": expected an IPv4 address, e.g. \"172.20.0.10\"",
            "lb.toml:4:13: invalid snat_ipv6 \"172.20.0.10\": expected an IPv6 address, e.g. \"fd00:20::10\"",
        ]
    );
}

#[test]
fn zero_connect_and_drain_timeouts_are_rejected_at_their_values() {
    assert_eq!(
        errors(
            r#"[daemon]
connect_timeout = "0s"
drain_timeout = "0ms"
"#
        ),
        ["lb.toml:2:19: connect_timeout must be greater than 0", "lb.toml:3:17: drain_timeout must be greater than 0",]
    );
}

#[test]
fn connect_and_drain_timeouts_without_unit_are_rejected_at_their_values() {
    assert_eq!(
        errors("[daemon]\nconnect_timeout = 2\ndrain_timeout = \"10\"\n"),
        ["lb.toml:2:19: duration needs a unit, e.g. \"2s\"", "lb.toml:3:17: duration needs a unit, e.g. \"2s\"",]
    );
}

#[test]
fn unspecified_vip_with_xdp_mode_is_rejected_at_the_vip() {
    assert_eq!(
        errors(
            r#"[daemon]
mode = "xdp"
interface = "eth0"
[[service]]
name = "web"
vip = "0.0.0.0:8080"
[[service]]
name = "web6"
vip = "[::]:8080"
"#
        ),
        [
            "lb.toml:6:7: VIP 0.0.0.0:8080 has no specific address; only the proxy path can serve it \
             (mode = \"proxy\" or \"auto\")",
            "lb.toml:9:7: VIP [::]:8080 has no specific address; only the proxy path can serve it \
             (mode = \"proxy\" or \"auto\")",
        ]
    );
}

#[test]
fn xdp_mode_without_interface_still_rejects_an_unspecified_vip() {
    assert_eq!(
        errors("[daemon]\nmode = \"xdp\"\n[[service]]\nname = \"web\"\nvip = \"0.0.0.0:80\"\n"),
        [
            "lb.toml:2:8: mode \"xdp\" needs an interface: set daemon.interface to the NIC to attach to",
            "lb.toml:5:7: VIP 0.0.0.0:80 has no specific address; only the proxy path can serve it \
             (mode = \"proxy\" or \"auto\")",
        ]
    );
}

#[test]
fn more_than_128_services_without_max_services_are_rejected_at_the_129th() {
    let text = services_with_backends(DEFAULT_MAX_SERVICES + 1, 0);
    // Each service is 3 lines: the 129th starts on line 128 * 3 + 1, its name is on the next.
    assert_eq!(
        error(&text),
        "lb.toml:386:8: too many services: 129 defined, daemon.max_services is 128; raise it (at most 1024, each \
         service's Maglev tables take 1 MiB of kernel memory)"
    );
}

#[test]
fn more_than_16384_backends_in_total_are_rejected_at_the_16385th() {
    let text = services_with_backends(2, 8193);
    // Service 1: lines 1-3 and backends on lines 4-16389. Service 2: lines 16390-16392, then
    // its backend j has its address on line 16394 + 2j; the 16385th overall is its j = 8191.
    assert_eq!(
        error(&text),
        "lb.toml:32776:11: too many backends: 16386 in all services together, at most 16384 are supported"
    );
}

/// `services` services of `backends` backends each, all valid, 3 lines per service header
/// and 2 per backend.
fn services_with_backends(services: usize, backends: usize) -> String {
    let mut text = String::new();
    for s in 0..services {
        text.push_str(&format!("[[service]]\nname = \"s{s}\"\nvip = \"10.0.0.1:{}\"\n", 1000 + s));
        for b in 0..backends {
            let (hi, lo) = (b / 256, b % 256);
            text.push_str(&format!("[[service.backend]]\naddress = \"10.1.{hi}.{lo}:80\"\n"));
        }
    }
    text
}

#[test]
fn every_semantic_error_is_reported_together_in_file_order() {
    let errors = errors(
        r#"[daemon]
flow_table_size = 10
snat_ports = "9-1"

[[service]]
name = "web"
vip = "172.20.0.100:80"
forwarding = "dsr"
pool = { idle_timeout = "0s" }
[service.health_check]
interval = "1"
healthy_threshold = 0
[[service.backend]]
address = "172.20.0.11:8080"
weight = 20000
[[service.backend]]
address = "172.20.0.11:8080"

[[service]]
name = "web"
vip = "172.20.0.100:80"
"#,
    );
    assert_eq!(
        errors,
        [
            "lb.toml:2:19: flow_table_size 10 is too small; the minimum is 1024",
            "lb.toml:3:14: invalid snat_ports \"9-1\": start 9 is greater than end 1",
            "lb.toml:9:25: idle_timeout must be greater than 0",
            "lb.toml:11:12: duration needs a unit, e.g. \"2s\"",
            "lb.toml:12:21: healthy_threshold must be at least 1",
            "lb.toml:14:11: backend port 8080 differs from the VIP port 80: dsr backends hold the VIP on \
             loopback, so the port must equal the VIP's",
            "lb.toml:15:10: weight 20000 is too large; the maximum is 10000",
            "lb.toml:17:11: backend port 8080 differs from the VIP port 80: dsr backends hold the VIP on \
             loopback, so the port must equal the VIP's",
            "lb.toml:17:11: duplicate backend 172.20.0.11:8080; first listed at line 14",
            "lb.toml:20:8: duplicate service name \"web\"; first defined at line 6",
            "lb.toml:21:7: duplicate VIP 172.20.0.100:80 (tcp): service \"web\" already uses it (line 7)",
        ]
    );
}

#[test]
fn display_prints_one_error_per_line() {
    let error = Config::from_str("[daemon]\nflow_table_size = 1\nsnat_ports = \"0\"\n", "etc/lb.toml").unwrap_err();
    assert_eq!(
        error.to_string(),
        "etc/lb.toml:2:19: flow_table_size 1 is too small; the minimum is 1024\n\
         etc/lb.toml:3:14: invalid snat_ports \"0\": port 0 cannot be used; ranges start at 1 or above"
    );
}

// ---------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------

#[test]
fn from_file_names_the_file_in_messages() {
    let dir = std::env::temp_dir().join(format!("lb-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("lb.toml");
    std::fs::write(&path, "[daemon]\nflow_table_size = 1\n").unwrap();
    let result = Config::from_file(&path);
    std::fs::write(&path, MINIMAL).unwrap();
    let valid = Config::from_file(&path);
    std::fs::remove_dir_all(&dir).unwrap();

    let expected = format!("{}:2:19: flow_table_size 1 is too small; the minimum is 1024", path.display());
    assert_eq!(result.unwrap_err().to_string(), expected);
    assert_eq!(valid.unwrap().services[0].name, "web");
}

#[test]
fn unreadable_file_is_reported_without_a_position() {
    let path = std::path::Path::new("/nonexistent/lb.toml");
    let error = Config::from_file(path).unwrap_err();
    assert_eq!(error.diagnostics().len(), 1);
    assert_eq!(error.diagnostics()[0].position, None);
    assert_eq!(error.to_string(), "/nonexistent/lb.toml: cannot read: No such file or directory (os error 2)");
}

const PROTECTED: &str = r#"[[service]]
name = "web"
vip = "172.20.0.100:80"
"#;

#[test]
fn handshake_and_unreplied_timeouts_default_to_five_seconds_and_parse() {
    let d = parse(PROTECTED).daemon;
    assert_eq!((d.tcp_handshake_timeout, d.udp_unreplied_timeout), (secs(5), secs(5)));
    let d = parse(&format!("[daemon]\ntcp_handshake_timeout = \"3s\"\nudp_unreplied_timeout = \"500ms\"\n{PROTECTED}"))
        .daemon;
    assert_eq!((d.tcp_handshake_timeout, d.udp_unreplied_timeout), (secs(3), Duration::from_millis(500)));
}

#[test]
fn source_lists_parse_both_families_and_default_to_empty() {
    assert!(parse(PROTECTED).services[0].acl.is_empty());
    let acl = parse(&format!(
        "{PROTECTED}allow = [\"10.0.0.0/8\", \"fd00::/16\"]\ndeny = [\"10.1.0.0/16\", \"192.0.2.7\"]\n"
    ))
    .services[0]
        .acl
        .clone();
    assert_eq!(acl.allow.len(), 2);
    assert_eq!(acl.deny[1].to_string(), "192.0.2.7/32");
    assert!(acl.permits("10.2.0.1".parse().unwrap()) && !acl.permits("10.1.0.1".parse().unwrap()));
    let many: Vec<String> = (0..1025).map(|i| format!("\"10.{}.{}.0/24\"", i / 256, i % 256)).collect();
    assert!(error(&format!("{PROTECTED}deny = [{}]\n", many.join(", "))).contains("at most 1024"));
}

#[test]
fn rate_limit_and_circuit_breaker_are_off_unless_written() {
    let config = parse(PROTECTED);
    assert_eq!(config.services[0].rate_limit, RateLimit::default());
    assert!(!config.services[0].rate_limit.is_limited());
    assert_eq!(config.services[0].circuit_breaker, CircuitBreaker::default());
    assert_eq!(config.services[0].circuit_breaker.consecutive_failures, 0);
}

#[test]
fn rate_limit_bursts_default_to_one_seconds_worth() {
    let config = parse(&format!(
        "{PROTECTED}[service.rate_limit]\nnew_flows_per_second = 100\nper_source_new_flows_per_second = 5\nper_source_burst = 2\n"
    ));
    assert_eq!(
        config.services[0].rate_limit,
        RateLimit { new_flows_per_second: 100, burst: 100, per_source_new_flows_per_second: 5, per_source_burst: 2 }
    );
}

#[test]
fn rate_limit_errors_point_at_the_value() {
    assert_eq!(
        error(&format!("{PROTECTED}[service.rate_limit]\nburst = 10\n")),
        format!("{FILE}:5:9: burst needs new_flows_per_second (a burst of what rate?)")
    );
    assert_eq!(
        error(&format!("{PROTECTED}[service.rate_limit]\nper_source_new_flows_per_second = 2000000\n")),
        format!(
            "{FILE}:5:35: per_source_new_flows_per_second 2000000 is too large; the maximum is 1000000 (0: no limit)"
        )
    );
    assert_eq!(
        error(&format!("{PROTECTED}[service.rate_limit]\nnew_flows_per_second = 5\nburst = 0\n")),
        format!("{FILE}:6:9: burst must be between 1 and 1000000")
    );
    assert!(error(&format!("{PROTECTED}[service.rate_limit]\nrate = 5\n")).contains("unknown key `rate`"));
}

#[test]
fn circuit_breaker_parses_and_checks_its_values() {
    let config = parse(&format!(
        "{PROTECTED}[service.circuit_breaker]\nconsecutive_failures = 3\nbase_ejection = \"2s\"\nmax_ejection = \"1m\"\nmax_ejected_percent = 34\nmax_connections = 100\n"
    ));
    assert_eq!(
        config.services[0].circuit_breaker,
        CircuitBreaker {
            consecutive_failures: 3,
            base_ejection: secs(2),
            max_ejection: secs(60),
            max_ejected_percent: 34,
            max_connections: 100,
        }
    );
    assert_eq!(
        error(&format!("{PROTECTED}[service.circuit_breaker]\nbase_ejection = \"10s\"\nmax_ejection = \"5s\"\n")),
        format!("{FILE}:6:16: max_ejection 5s is shorter than base_ejection 10s")
    );
    assert_eq!(
        error(&format!("{PROTECTED}[service.circuit_breaker]\nmax_ejected_percent = 101\n")),
        format!("{FILE}:5:23: max_ejected_percent 101 is not a percentage (0-100)")
    );
    assert!(error(&format!("{PROTECTED}[service.circuit_breaker]\nbase_ejection = 30\n")).contains("unit"));
}

#[test]
fn allow_registration_from_takes_ipv4_and_ipv6_prefixes_and_defaults_to_none() {
    let config = parse(
        "[[service]]\nname = \"web\"\nvip = \"172.20.0.100:80\"\n\
         allow_registration_from = [\"127.0.0.0/8\", \"fd00:20::/64\"]\n\
         [[service]]\nname = \"api\"\nvip = \"172.20.0.100:81\"\n",
    );
    let prefixes: Vec<String> = config.services[0].allow_registration_from.iter().map(ToString::to_string).collect();
    assert_eq!(prefixes, ["127.0.0.0/8", "fd00:20::/64"]);
    assert!(config.services[1].allow_registration_from.is_empty());
}

#[test]
fn encapsulation_settings_parse_and_a_tunnel_mtu_exactly_large_enough_is_accepted() {
    let config = parse(
        r#"[daemon]
encap_source_ipv4 = "172.31.0.0/16"
encap_source_ipv6 = "fd00:31::7"
gue_port = 7777
tunnel_mtu = 88
[[service]]
name = "web"
vip = "172.20.0.100:80"
forwarding = "ipip"
[[service.backend]]
address = "10.30.0.11:80"
"#,
    );
    let d = &config.daemon;
    assert_eq!(d.encap_source_ipv4, Some("172.31.0.0/16".parse().unwrap()));
    let v6 = d.encap_source_ipv6.unwrap();
    assert_eq!((v6.network(), v6.prefix_len()), ("fd00:31::7".parse().unwrap(), 128));
    assert_eq!(d.gue_port, 7777);
    assert_eq!(d.tunnel_mtu, Some(88));
    // No encapsulating service: any MTU in range will do.
    assert_eq!(parse("[daemon]\ntunnel_mtu = 1\n").daemon.tunnel_mtu, Some(1));
}

#[test]
fn interface_is_one_name_or_a_list_and_the_first_gives_the_defaults() {
    let one = parse("[daemon]\ninterface = \"eth0\"\n");
    assert_eq!(one.daemon.interface.as_deref(), Some("eth0"));
    assert_eq!(one.daemon.interfaces, vec!["eth0".to_string()]);
    let two = parse("[daemon]\nmode = \"xdp\"\ninterface = [\"eth1\", \"eth0\"]\n");
    assert_eq!(two.daemon.interface.as_deref(), Some("eth1"));
    assert_eq!(two.daemon.interfaces, vec!["eth1".to_string(), "eth0".to_string()]);
    assert!(parse("").daemon.interfaces.is_empty());
    let e = errors("[daemon]\ninterface = 7\n");
    assert!(e.len() == 1 && e[0].starts_with("lb.toml:2:13: "), "{e:?}");
}

/// The udp, https and agent checks' keys reach the model.
#[test]
fn udp_https_and_agent_checks_carry_their_keys() {
    let udp = parse(
        "[[service]]\nname = \"dns\"\nvip = \"172.20.0.100:53\"\nprotocol = \"udp\"\n\
         [service.health_check]\ntype = \"udp\"\nsend = \"ping\\n\"\nexpect = \"pong\"\n",
    );
    let check = &udp.services[0].health_check;
    assert_eq!(
        (check.kind, check.send.as_str(), check.expect.as_deref()),
        (HealthCheckType::Udp, "ping\n", Some("pong"))
    );
    let https = parse(
        "[[service]]\nname = \"web\"\nvip = \"172.20.0.100:443\"\n[service.health_check]\ntype = \"https\"\n\
         sni = \"API.example.com\"\nverify = true\nca_file = \"/etc/lb/ca.pem\"\npath = \"/ready\"\n",
    );
    let check = &https.services[0].health_check;
    assert_eq!(check.kind, HealthCheckType::Https);
    assert_eq!(check.tls.sni.as_deref(), Some("api.example.com"), "names compare lowercased");
    assert!(check.tls.verify);
    assert_eq!(check.tls.ca_file.as_deref(), Some(std::path::Path::new("/etc/lb/ca.pem")));
    assert_eq!(check.path, "/ready");
    let agent = parse(
        "[[service]]\nname = \"web\"\nvip = \"172.20.0.100:80\"\n[service.health_check]\ntype = \"agent\"\nagent_port = 5555\n",
    );
    assert_eq!(agent.services[0].health_check.agent_port, 5555);
    // A UDP service may have an agent check: the agent's port is TCP whatever the service.
    let udp_agent = parse(
        "[[service]]\nname = \"dns\"\nvip = \"172.20.0.100:53\"\nprotocol = \"udp\"\n\
         [service.health_check]\ntype = \"agent\"\nagent_port = 5555\n",
    );
    assert_eq!(udp_agent.services[0].health_check.kind, HealthCheckType::Agent);
}

#[test]
fn slow_start_and_persistence_timeout_reach_the_model_and_the_desired_state() {
    let c = Config::from_str(
        "[[service]]\nname = \"web\"\nvip = \"172.20.0.100:80\"\nslow_start = \"30s\"\npersistence_timeout = \"5m\"\n",
        "lb.toml",
    )
    .unwrap();
    let t = c.services[0].traffic;
    assert_eq!((t.slow_start, t.persistence_timeout), (Some(secs(30)), Some(secs(300))));
    assert_eq!(crate::desired::Desired::from_config(&c).services[0].traffic, t);
    let plain = Config::from_str("[[service]]\nname = \"web\"\nvip = \"172.20.0.100:80\"\n", "lb.toml").unwrap();
    assert_eq!(plain.services[0].traffic, crate::Traffic::default(), "both off unless written");
}

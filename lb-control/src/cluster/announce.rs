//! Which VIP addresses this node announces by BGP: a pure function of the desired state
//! and the drain flag, so every reason a VIP is withdrawn is testable without a speaker.
//!
//! An address is announced while at least one service on it has a backend that may take
//! new flows (ready, not down, positive weight, circuit closed: `in_rotation`) and the node
//! is not draining. A VIP whose services have no such backend is withdrawn: the routers
//! then send its new flows to nodes that can serve them (on one node alone, the clients get
//! no route instead of a reset from a VIP with nobody behind it).
use std::collections::BTreeSet;
use std::net::IpAddr;

use lb_config::desired::{Desired, DesiredService};

/// What the controller hands the speaker after each reconcile.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Announcement {
    /// The addresses to announce (each as a host route, /32 or /128).
    pub vips: BTreeSet<IpAddr>,
    /// The node drains: nothing is announced, and `lb_draining` says why.
    pub draining: bool,
}

/// The announcement for `desired` (empty while `draining`).
pub fn announcement(desired: &Desired, draining: bool) -> Announcement {
    let vips = if draining {
        BTreeSet::new()
    } else {
        desired.services.iter().filter(|s| serves_new_flows(s)).filter_map(announceable).collect()
    };
    Announcement { vips, draining }
}

/// At least one backend may take a new flow.
pub fn serves_new_flows(service: &DesiredService) -> bool {
    service.backends.iter().any(|b| b.in_rotation())
}

/// The service's address as a route; an unspecified VIP (`0.0.0.0`, the proxy's any
/// address) names no host to route to.
fn announceable(service: &DesiredService) -> Option<IpAddr> {
    let ip = service.vip.ip();
    (!ip.is_unspecified()).then_some(ip)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_config::desired::{Circuit, DesiredBackend, Health, SOURCE_CONFIG};
    use lb_config::AdminState;

    fn backend(port: u16) -> DesiredBackend {
        DesiredBackend {
            address: format!("10.61.0.21:{port}").parse().unwrap(),
            weight: 1,
            state: AdminState::Ready,
            health: Health::Up,
            sources: SOURCE_CONFIG,
            circuit: Circuit::Closed,
            ramp: None,
        }
    }

    /// Two services on 10.100.0.1 (ports 80, 443) and one on 10.100.0.2, each with one
    /// backend in rotation.
    fn desired() -> Desired {
        let toml = r#"
            [daemon]
            mode = "proxy"
            [[service]]
            name = "web"
            vip = "10.100.0.1:80"
            [[service.backend]]
            address = "10.61.0.21:80"
            [[service]]
            name = "tls"
            vip = "10.100.0.1:443"
            [[service.backend]]
            address = "10.61.0.21:443"
            [[service]]
            name = "dns"
            vip = "10.100.0.2:53"
            protocol = "udp"
            [[service.backend]]
            address = "10.61.0.21:53"
        "#;
        let cfg = lb_config::Config::from_str(toml, "lb.toml").expect("valid config");
        let mut d = Desired::from_config(&cfg);
        for s in &mut d.services {
            let port = s.backends[0].address.port();
            s.backends = vec![backend(port)];
        }
        d
    }

    /// One way to take a backend out of rotation.
    type Change = fn(&mut DesiredBackend);

    fn ips(a: &Announcement) -> Vec<String> {
        a.vips.iter().map(ToString::to_string).collect()
    }

    fn service<'d>(d: &'d mut Desired, name: &str) -> &'d mut DesiredService {
        d.services.iter_mut().find(|s| s.name == name).unwrap()
    }

    #[test]
    fn every_vip_with_a_backend_in_rotation_is_announced_once() {
        assert_eq!(ips(&announcement(&desired(), false)), ["10.100.0.1", "10.100.0.2"]);
    }

    #[test]
    fn draining_withdraws_everything() {
        let a = announcement(&desired(), true);
        assert!(a.vips.is_empty());
        assert!(a.draining);
    }

    /// Each way a backend leaves rotation withdraws a VIP whose only backend it is.
    #[test]
    fn a_vip_without_a_backend_for_new_flows_is_withdrawn() {
        let reasons: [(&str, Change); 6] = [
            ("maint", |b| b.state = AdminState::Maint),
            ("drain", |b| b.state = AdminState::Drain),
            ("down", |b| b.health = Health::Down),
            ("weight 0", |b| b.weight = 0),
            ("circuit open", |b| b.circuit = Circuit::Open),
            ("circuit half-open", |b| b.circuit = Circuit::HalfOpen),
        ];
        for (why, change) in reasons {
            let mut d = desired();
            change(&mut service(&mut d, "dns").backends[0]);
            assert_eq!(ips(&announcement(&d, false)), ["10.100.0.1"], "{why}");
        }
    }

    #[test]
    fn a_service_without_backends_is_withdrawn() {
        let mut d = desired();
        service(&mut d, "dns").backends.clear();
        assert_eq!(ips(&announcement(&d, false)), ["10.100.0.1"]);
    }

    /// One service on the address that can serve keeps it announced for all of them.
    #[test]
    fn an_address_stays_while_any_service_on_it_serves() {
        let mut d = desired();
        service(&mut d, "web").backends[0].state = AdminState::Maint;
        assert_eq!(ips(&announcement(&d, false)), ["10.100.0.1", "10.100.0.2"]);
        service(&mut d, "tls").backends[0].health = Health::Down;
        assert_eq!(ips(&announcement(&d, false)), ["10.100.0.2"]);
    }

    /// Health not yet checked counts as up (as for new flows), and one backend in rotation
    /// among several out of it is enough.
    #[test]
    fn unknown_health_and_one_good_backend_of_several_announce() {
        let mut d = desired();
        let dns = service(&mut d, "dns");
        dns.backends[0].health = Health::Unknown;
        let mut out = backend(54);
        out.state = AdminState::Maint;
        dns.backends.insert(0, out);
        assert_eq!(ips(&announcement(&d, false)), ["10.100.0.1", "10.100.0.2"]);
    }

    #[test]
    fn an_unspecified_vip_is_never_announced() {
        let mut d = desired();
        for s in &mut d.services {
            s.vip = format!("0.0.0.0:{}", s.vip.port()).parse().unwrap();
        }
        assert!(announcement(&d, false).vips.is_empty());
    }

    #[test]
    fn ipv6_vips_are_announced() {
        let mut d = desired();
        service(&mut d, "dns").vip = "[2001:db8::1]:53".parse().unwrap();
        assert_eq!(ips(&announcement(&d, false)), ["10.100.0.1", "2001:db8::1"]);
    }
}

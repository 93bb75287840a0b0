//! One lb per VIP, in process: two proxies stand for two daemons (flock keeps their lock
//! files' open descriptions apart as it keeps processes apart). A VIP the other serves is
//! refused at start and on reconcile, before anything is bound, and the refused proxy keeps
//! what it serves; a VIP given up is free for the other at once. No root; the proxy harness
//! checks that nothing leaks (tasks, fds: the lock files included).
mod common;

use common::proxy_harness::*;
use lb_config::desired::Desired;
use lb_proxy::{ProxyDataplane, VipBusy};

#[test]
fn a_vip_another_proxy_serves_is_refused_at_start_and_on_reconcile_and_free_once_given_up() {
    run(async {
        let fds = fd_count();
        let servers = vec![tagged_echo("first").await, tagged_echo("second").await];
        let (vip, own) = (vip_tcp(), vip_tcp());
        let first_cfg = config("", &service("web", vip, "", &w1(&[servers[0].addr])));
        let first = start(&first_cfg);

        // A second proxy on the same VIP: refused, naming this process (the first's holder).
        let same = config("", &service("web", vip, "", &w1(&[servers[1].addr])));
        let err = ProxyDataplane::start(&Desired::from_config(&same)).err().expect("the VIP is the first one's");
        assert!(err.chain().any(|c| c.is::<VipBusy>()), "{err:#}");
        let text = format!("{err:#}");
        assert!(text.contains(&format!("pid {}", std::process::id())), "{text}");
        assert!(text.contains(&format!("service web: VIP {vip} (tcp) is already served by another lb")), "{text}");

        // A second proxy on its own VIP, whose reload would add the first one's: refused,
        // and it keeps serving what it had.
        let mut second = start(&config("", &service("own", own, "", &w1(&[servers[1].addr]))));
        let onto = config(
            "",
            &(service("own", own, "", &w1(&[servers[1].addr])) + &service("web", vip, "", &w1(&[servers[1].addr]))),
        );
        let err = second.reconcile(&Desired::from_config(&onto)).expect_err("refused");
        assert!(err.chain().any(|c| c.is::<VipBusy>()), "{err:#}");
        assert_eq!(second.listening("web"), None);
        assert_eq!(second.listening("own"), Some(own));
        assert_eq!(ask_name(own).await, "second");
        for _ in 0..10 {
            assert_eq!(ask_name(vip).await, "first", "nothing shares the first one's VIP");
        }

        // The first gives the VIP up (its service goes): the second may take it at once.
        let mut first = first;
        first.reconcile(&Desired::from_config(&config("", ""))).unwrap();
        second.reconcile(&Desired::from_config(&onto)).unwrap();
        assert_eq!(second.listening("web"), Some(vip));
        assert_eq!(ask_name(vip).await, "second");
        let stats = first.stats();
        within(std::time::Duration::from_secs(10), "first shutdown", first.shutdown(std::time::Duration::from_secs(1)))
            .await;
        assert_eq!(stats.live_tasks(), 0);
        finish(second, servers, fds).await;
    });
}

//! Issue 16's reconcile bugs, each as the sequence that showed it, on the in-memory model of
//! the maps (host, no root): after each reconcile the maps are what a fresh start writes,
//! the VIPs answer, and a failed write leaves the running state. `packet_reconcile.rs`
//! repeats them on the real maps, with packets.
mod support;

use lb_config::Protocol::{Tcp, Udp};
use lb_xdp::store::read_installed;
use support::*;

/// Services `names[i]` on VIP `vips[i]` (tcp), two backends each.
fn world(services: &[(&str, u32, u16)]) -> World {
    let mut w = World::default();
    for (i, &(name, vip, port)) in services.iter().enumerate() {
        let backends = (0..2).map(|b| backend(backend_address(i as u32 * 2 + b, false, 8080))).collect();
        w.desired.services.push(service(name, vip_address(vip, false, port), Tcp, backends));
    }
    w
}

/// `n` services named `prefix{i}` on VIPs from `first_vip` on, `backends` each, backend
/// addresses from `first_backend` on.
fn many(prefix: &str, n: u32, first_vip: u32, backends: u32, first_backend: u32) -> World {
    let mut w = World::default();
    for i in 0..n {
        let list =
            (0..backends).map(|b| backend(backend_address(first_backend + i * backends + b, false, 80))).collect();
        w.desired.services.push(service(&format!("{prefix}{i}"), vip_address(first_vip + i, false, 80), Tcp, list));
    }
    w
}

#[test]
fn renaming_a_service_keeps_its_vip_answering() {
    let mut w = world(&[("web", 1, 80), ("dns", 2, 53)]);
    let mut d = Daemon::default();
    d.reconcile(&w).unwrap();
    w.desired.services[0].name = "www".into();
    d.reconcile(&w).unwrap();
    assert_serves(&d.view(), "www", "tcp 10.0.0.2:80", "after the rename");
    assert_like_fresh(&d, &w, "after the rename");
    // And back, with the other one renamed at the same time.
    w.desired.services[0].name = "web".into();
    w.desired.services[1].name = "resolver".into();
    d.reconcile(&w).unwrap();
    assert_serves(&d.view(), "web", "tcp 10.0.0.2:80", "after renaming back");
    assert_serves(&d.view(), "resolver", "tcp 10.0.0.3:53", "after renaming back");
    assert_like_fresh(&d, &w, "after renaming back");
}

#[test]
fn renaming_a_service_across_a_restart_keeps_its_vip_answering() {
    let mut w = world(&[("web", 1, 80)]);
    let mut d = Daemon::default();
    d.reconcile(&w).unwrap();
    w.desired.services[0].name = "www".into();
    d.restart();
    d.reconcile(&w).unwrap();
    assert_serves(&d.view(), "www", "tcp 10.0.0.2:80", "after the restart with the renamed service");
    assert_like_fresh(&d, &w, "after the restart with the renamed service");
}

#[test]
fn swapping_two_services_vips_keeps_both_answering() {
    let mut w = world(&[("a", 1, 80), ("b", 1, 81)]);
    let mut d = Daemon::default();
    d.reconcile(&w).unwrap();
    w.desired.services[0].vip.set_port(81);
    w.desired.services[1].vip.set_port(80);
    d.reconcile(&w).unwrap();
    assert_serves(&d.view(), "a", "tcp 10.0.0.2:81", "after the swap");
    assert_serves(&d.view(), "b", "tcp 10.0.0.2:80", "after the swap");
    assert_like_fresh(&d, &w, "after the swap");
    // A rotation of three, one of them changing protocol too.
    let mut w = world(&[("a", 1, 80), ("b", 2, 80), ("c", 3, 80)]);
    let mut d = Daemon::default();
    d.reconcile(&w).unwrap();
    let vips: Vec<_> = w.desired.services.iter().map(|s| s.vip).collect();
    for (i, s) in w.desired.services.iter_mut().enumerate() {
        s.vip = vips[(i + 1) % 3];
    }
    w.desired.services[2].protocol = Udp;
    d.reconcile(&w).unwrap();
    assert_serves(&d.view(), "a", "tcp 10.0.0.3:80", "after the rotation");
    assert_serves(&d.view(), "b", "tcp 10.0.0.4:80", "after the rotation");
    assert_serves(&d.view(), "c", "udp 10.0.0.2:80", "after the rotation");
    assert!(!d.view().services.contains_key("tcp 10.0.0.2:80"), "the VIP that became udp-only still answers tcp");
    assert_like_fresh(&d, &w, "after the rotation");
}

#[test]
fn a_reload_from_61_services_to_121_others_fits_the_maps() {
    let old = many("old", 61, 0, 2, 0);
    let new = many("new", 121, 100, 2, 1000);
    let mut d = Daemon::default();
    d.reconcile(&old).unwrap();
    d.reconcile(&new).unwrap_or_else(|e| panic!("the reload failed: {e:#}"));
    let view = d.view();
    for s in &new.desired.services {
        assert_serves(&view, &s.name, &vip_name(s.vip, s.protocol), "after the reload");
    }
    assert_like_fresh(&d, &new, "after the reload");
    // And back.
    d.reconcile(&old).unwrap_or_else(|e| panic!("reloading the old config failed: {e:#}"));
    assert_like_fresh(&d, &old, "after reloading the old config");
}

/// 61 renamed and 60 more: 182 names, but ids go by VIP, so the renamed keep theirs.
#[test]
fn renaming_61_services_while_adding_60_keeps_them_answering() {
    let old = many("old", 61, 0, 2, 0);
    let new = many("new", 121, 0, 2, 0);
    let mut d = Daemon::default();
    d.reconcile(&old).unwrap();
    d.reconcile(&new).unwrap_or_else(|e| panic!("the reload failed: {e:#}"));
    assert_serves(&d.view(), "new0", "tcp 10.0.0.1:80", "after the reload");
    assert_like_fresh(&d, &new, "after the reload");
}

/// 16384 backends replaced by 16384 others: every backend id passes from a retired backend
/// to a new one.
#[test]
fn replacing_every_backend_at_the_cap_fits_the_maps() {
    let old = many("s", 32, 0, 512, 0);
    let mut new = many("s", 32, 0, 512, 20_000);
    assert_eq!(new.backends(), lb_common::consts::MAX_BACKENDS as usize);
    let mut d = Daemon::default();
    d.reconcile(&old).unwrap();
    d.reconcile(&new).unwrap_or_else(|e| panic!("the reload failed: {e:#}"));
    assert_like_fresh(&d, &new, "after replacing every backend");
    // All services, all backends, all VIPs new: old and new together are twice every cap.
    new = many("t", 128, 200, 32, 20_000);
    let full = many("s", 128, 0, 32, 0);
    d.reconcile(&full).unwrap();
    assert_like_fresh(&d, &full, "at the caps");
    d.reconcile(&new).unwrap_or_else(|e| panic!("the reload failed: {e:#}"));
    assert_like_fresh(&d, &new, "after replacing everything at the caps");
}

/// How many map writes reconciling `world` takes from `d`'s state (on a copy).
fn writes_needed(d: &Daemon, world: &World) -> usize {
    let mut probe = Daemon { writer: d.writer.clone(), ids: d.ids.clone() };
    let before = probe.writer.maps.writes;
    probe.reconcile(world).unwrap();
    probe.writer.maps.writes - before
}

#[test]
fn a_reload_that_fails_midway_leaves_the_running_state_and_says_so() {
    let old = many("old", 61, 0, 2, 0);
    let new = many("new", 121, 100, 2, 1000);
    let mut d = Daemon::default();
    d.reconcile(&old).unwrap();
    let installed = read_installed(&d.writer.maps).unwrap();
    // Failures at the first writes, then spread over the rest and at the last. Each try
    // leaves tables written in generations no VIP reads, so the next needs fewer writes.
    for step in 0..16 {
        let needed = writes_needed(&d, &new);
        let at = match step {
            0..=2 => step,
            15 => needed - 1,
            _ => needed * (step - 2) / 13,
        };
        let before = exact(&d.writer.maps);
        d.writer.maps.fail_at.insert(d.writer.maps.writes + at);
        let e = d.reconcile(&new).expect_err("the injected failure");
        let message = format!("{e:#}");
        assert!(message.contains("the data path is unchanged"), "failure at write {at}: {message}");
        assert!(message.contains("failure injected"), "failure at write {at}: the cause is lost: {message}");
        let after = exact(&d.writer.maps);
        let diffs = after.differences(&before);
        assert!(diffs.is_empty(), "failure at write {at}: the maps are not as they were:\n{}", diffs.join("\n"));
        assert_like_fresh(&d, &old, &format!("after the failure at write {at}"));
        // The ids are as they were too: the old state reconciled again keeps them.
        d.reconcile(&old).unwrap();
        assert_eq!(format!("{:?}", read_installed(&d.writer.maps).unwrap()), format!("{installed:?}"));
    }
    d.reconcile(&new).unwrap();
    assert_like_fresh(&d, &new, "after the reload that went through");
}

#[test]
fn a_rollback_that_fails_too_says_so_and_the_next_reconcile_repairs_it() {
    let old = many("old", 61, 0, 2, 0);
    let new = many("new", 121, 100, 2, 1000);
    let mut d = Daemon::default();
    d.reconcile(&old).unwrap();
    let at = d.writer.maps.writes + writes_needed(&d, &new) / 2;
    // The write in the middle fails, and so does the first write of the rollback.
    d.writer.maps.fail_at.extend([at, at + 1]);
    let e = d.reconcile(&new).expect_err("the injected failures");
    assert!(format!("{e:#}").contains("partly changed"), "{e:#}");
    d.writer.check_mirror().unwrap_or_else(|e| panic!("the mirror was not read back: {e:#}"));
    d.reconcile(&new).unwrap();
    assert_like_fresh(&d, &new, "after the next reconcile");
}

/// 16384 backends replaced by a new service's three: their ids are all still held, so the
/// new ones take retired services' ids; a failure anywhere rolls back without a VIP ever
/// reading a backend row of another service.
#[test]
fn a_failed_write_that_hands_backend_ids_over_rolls_back_cleanly() {
    let old = many("s", 32, 0, 512, 0);
    let new = many("t", 1, 200, 3, 50_000);
    let mut d = Daemon::default();
    d.reconcile(&old).unwrap();
    for step in 0..6 {
        let needed = writes_needed(&d, &new);
        let at = [0, 1, 2, 5, needed / 2, needed - 1][step];
        let before = exact(&d.writer.maps);
        d.writer.maps.fail_at.insert(d.writer.maps.writes + at);
        d.reconcile(&new).expect_err("the injected failure");
        let diffs = exact(&d.writer.maps).differences(&before);
        assert!(diffs.is_empty(), "failure at write {at}: the maps are not as they were:\n{}", diffs.join("\n"));
        assert_like_fresh(&d, &old, &format!("after the failure at write {at}"));
    }
    d.reconcile(&new).unwrap();
    assert_like_fresh(&d, &new, "after the reload that went through");
}

/// Two services at the backend cap swap names (and so backends): ids go by VIP, so each
/// VIP's backends take over its own removed backends' ids, and nothing passes between
/// the two while either reads it.
#[test]
fn two_services_at_the_backend_cap_swapping_names_hand_nothing_under_a_live_vip() {
    let mut w = World::default();
    for (i, n) in [(0u32, 1000u32), (1, 3096)] {
        let backends = (0..n).map(|b| backend(backend_address(i * 5000 + b, false, 80))).collect();
        w.desired.services.push(service(&format!("s{i}"), vip_address(i, false, 80), Tcp, backends));
    }
    let mut d = Daemon::default();
    d.reconcile(&w).unwrap();
    let name = w.desired.services[0].name.clone();
    w.desired.services[0].name = std::mem::replace(&mut w.desired.services[1].name, name);
    d.reconcile(&w).unwrap_or_else(|e| panic!("the reload failed: {e:#}"));
    assert_like_fresh(&d, &w, "after the swap of names");
    // And the backends swap between the two VIPs: every id changes hands at the cap.
    let backends = std::mem::take(&mut w.desired.services[0].backends);
    w.desired.services[0].backends = std::mem::replace(&mut w.desired.services[1].backends, backends);
    d.reconcile(&w).unwrap_or_else(|e| panic!("the reload failed: {e:#}"));
    assert_like_fresh(&d, &w, "after the swap of backends");
}

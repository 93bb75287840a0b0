//! The reconcile invariant as a model-based property test (host, no root): random
//! sequences of desired states drive one long-lived daemon's writer against an in-memory
//! model of the maps, and after every step its maps must be those a fresh start on that
//! step's state writes (compared by VIP, service name and backend address; ids and table
//! generations may differ), its mirror must be the maps, and no write on the way may break
//! a promise the model watches (see `testkit::model`). The steps rename services, swap
//! and move VIPs across families and protocols, add and remove services and backends up
//! to the caps (128 services, the default `max_services`; 16384 backends), change algorithms, forwarding, rate limits,
//! weights, states, health, circuits and neighbours, register backends, restart the
//! daemon (adoption), and make some writes fail halfway, after which the maps must be
//! exactly as before and the next try must go through.
//!
//! By default it runs a fixed set of 8 sequences (up to 40 steps each), the same on every
//! run, as CI does; `PROPTEST_CASES=N` searches N fresh random sequences. The test prints
//! how many steps it ran.
mod support;

use std::sync::atomic::{AtomicUsize, Ordering};

use lb_xdp::store::MapStore;
use support::sequence::*;
use support::*;

static STEPS: AtomicUsize = AtomicUsize::new(0);
static FAILED_WRITES: AtomicUsize = AtomicUsize::new(0);

/// Make the next write fail at `per_mille` of the writes it needs: it must fail, say so,
/// and leave the maps exactly as they were.
fn fail_once(d: &mut Daemon, w: &World, per_mille: u16, what: &str) {
    let mut probe = Daemon { writer: d.writer.clone(), ids: d.ids.clone() };
    let start = probe.writer.maps.writes;
    probe.reconcile(w).unwrap_or_else(|e| panic!("{what}: the probe failed: {e:#}"));
    let needed = probe.writer.maps.writes - start;
    if needed == 0 {
        return;
    }
    let before = exact(&d.writer.maps);
    let vips_before = d.writer.maps.vips().unwrap().len();
    d.writer.maps.fail_at.insert(d.writer.maps.writes + needed * per_mille as usize / 1000);
    let e = d.reconcile(w).expect_err("a write with a failure injected went through");
    assert!(format!("{e:#}").contains("the data path is unchanged"), "{what}: {e:#}");
    let diffs = exact(&d.writer.maps).differences(&before);
    assert!(diffs.is_empty(), "{what}: the failed write left the maps changed:\n{}", diffs.join("\n"));
    assert_eq!(d.writer.maps.vips().unwrap().len(), vips_before);
    d.writer.check_mirror().unwrap_or_else(|e| panic!("{what}: after the rollback the mirror is not the maps: {e:#}"));
    assert!(d.writer.maps.violations.is_empty(), "{what}: {:?}", d.writer.maps.violations);
    FAILED_WRITES.fetch_add(1, Ordering::Relaxed);
}

fn run(steps: &[Step]) {
    let mut w = World::default();
    let mut fresh = Fresh::default();
    let mut d = Daemon::default();
    for (n, step) in steps.iter().enumerate() {
        if apply(&mut w, &mut fresh, &step.change) == Then::Restart {
            d.restart();
        }
        let what =
            format!("step {n} ({:?}; {} services, {} backends)", step.change, w.desired.services.len(), w.backends());
        if let Some(per_mille) = step.fail {
            fail_once(&mut d, &w, per_mille, &what);
        }
        d.reconcile(&w).unwrap_or_else(|e| panic!("{what}: the reconcile failed: {e:#}"));
        assert_like_fresh(&d, &w, &what);
        STEPS.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn reconciled_maps_equal_a_fresh_start_after_every_step() {
    // A fixed set of 8 sequences by default; `PROPTEST_CASES=N` searches N fresh ones.
    let (mut runner, cases) = runner(8);
    let result = runner.run(&sequence(), |steps| {
        run(&steps);
        Ok(())
    });
    println!(
        "reconcile property: {cases} sequences, {} steps checked against a fresh start, {} of them after a failed \
         and rolled back write",
        STEPS.load(Ordering::Relaxed),
        FAILED_WRITES.load(Ordering::Relaxed)
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}

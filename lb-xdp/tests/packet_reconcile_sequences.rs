//! The property test's sequences on the real maps of the loaded XDP object: the same
//! generator as `reconcile_property.rs` (a fixed set by default, `PROPTEST_CASES=N` for N
//! fresh ones) drives one long-lived writer on the kernel's maps, and after every step every
//! map the writer owns is read back from the kernel and compared with what a fresh start on
//! that step's state writes (on the model; compared by VIP, service name and backend
//! address), and the writer's mirror with the kernel's maps. Steps that ask for a failed
//! write are run without the failure: the kernel's maps cannot be told to fail on cue (the
//! model covers rollbacks, and `packet_reconcile.rs` a write the kernel refuses). The
//! sequences run two at a time, each on an object of its own (a step's time is mostly the
//! kernel copying tables, on one CPU each); a failing one is run again under proptest, one
//! at a time, to shrink it.
//! Root only: `cargo xtask test` runs it (`--ignored`).
mod support;

use std::path::PathBuf;

use anyhow::Result;
use aya::Ebpf;
use lb_common::consts::DEFAULT_MAX_SERVICES;
use lb_xdp::layout::MapSizes;
use lb_xdp::load;
use lb_xdp::maps::Maps;
use lb_xdp::plan::Ids;
use lb_xdp::reconcile::reconcile;
use lb_xdp::store::read_installed;
use lb_xdp::testkit::harness::{pin_dir, read_back, require_root};
use lb_xdp::writer::Writer;
use support::sequence::*;
use support::*;

/// A daemon's writer on the maps of a loaded object, pinned in a directory of its own.
struct Kernel {
    writer: Writer<Maps>,
    ids: Ids,
    pin: PathBuf,
    _ebpf: Ebpf,
}

impl Kernel {
    fn load() -> Kernel {
        let pin = pin_dir();
        let mut ebpf = load::load(&pin, &MapSizes { flow_table_size: 4096, max_services: DEFAULT_MAX_SERVICES })
            .expect("load the XDP object");
        let writer = Writer::new(Maps::take(&mut ebpf).expect("take maps"));
        Kernel { writer, ids: Ids::default(), pin, _ebpf: ebpf }
    }

    fn reconcile(&mut self, w: &World) -> Result<()> {
        reconcile(&mut self.writer, &mut self.ids, &w.desired, w.global, &w.facts()).map(|_| ())
    }

    /// A new writer and ids on the pinned maps, adopting what they hold, as `lb run` does.
    fn restart(&mut self) {
        let maps = Maps::open_pinned(&self.pin).expect("open the pinned maps");
        let adopted = read_installed(&maps).expect("read the maps back");
        self.writer = Writer::new(maps);
        self.writer.adopt(&adopted);
        self.ids = Ids::default();
        self.ids.seed(&adopted);
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        load::unpin_all(&self.pin);
    }
}

fn run(steps: &[Step]) -> usize {
    let mut w = World::default();
    let mut fresh = Fresh::default();
    let mut k = Kernel::load();
    for (n, step) in steps.iter().enumerate() {
        if apply(&mut w, &mut fresh, &step.change) == Then::Restart {
            k.restart();
        }
        let what =
            format!("step {n} ({:?}; {} services, {} backends)", step.change, w.desired.services.len(), w.backends());
        k.reconcile(&w).unwrap_or_else(|e| panic!("{what}: the reconcile failed: {e:#}"));
        let (got, mirror) = read_back(&k.writer);
        let diffs = got.differences(&fresh_view(&w), 12);
        assert!(diffs.is_empty(), "{what}: the kernel's maps differ from a fresh start's:\n{}", diffs.join("\n"));
        assert!(got.strays.is_empty(), "{what}: {:?}", got.strays);
        mirror.unwrap_or_else(|e| panic!("{what}: the writer's mirror is not the maps: {e:#}"));
    }
    steps.len()
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn the_property_sequences_on_the_kernels_maps_equal_a_fresh_start() {
    require_root();
    let sequences = generated();
    let steps: usize = sequences.iter().map(Vec::len).sum();
    if let Some(failure) = run_side_by_side(&sequences) {
        // Again one at a time under proptest, which shrinks the failing sequence to a short
        // one; the generator is deterministic, so it meets the same sequences.
        let (mut runner, _) = runner(DEFAULT_CASES);
        runner
            .run(&sequence(), |s| {
                run(&s);
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{e}"));
        panic!("{failure}, but it passed again alone under proptest");
    }
    println!("{} sequences, {steps} steps checked on the kernel's maps", sequences.len());
}

/// The sequences to run (the fixed set, or `PROPTEST_CASES` fresh ones), as proptest's
/// runner generates them: only collected here, none run yet.
fn generated() -> Vec<Vec<Step>> {
    let (mut runner, _) = runner(DEFAULT_CASES);
    let collected = std::sync::Mutex::new(Vec::new());
    runner
        .run(&sequence(), |s| {
            collected.lock().unwrap().push(s);
            Ok(())
        })
        .expect("collecting the sequences fails nothing");
    collected.into_inner().unwrap()
}

const DEFAULT_CASES: u32 = 3;

/// Runs every sequence, each on a kernel of its own, on two threads: a step's time is
/// mostly the kernel copying tables, on one CPU per thread. The first failure, if any.
fn run_side_by_side(sequences: &[Vec<Step>]) -> Option<String> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let worker = || {
        let mut failures = Vec::new();
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(steps) = sequences.get(i) else { return failures };
            if let Err(panic) = std::panic::catch_unwind(|| run(steps)) {
                let message = panic.downcast_ref::<String>().map(String::as_str).unwrap_or("a panic");
                failures.push(format!("sequence {i} failed ({message})"));
            }
        }
    };
    std::thread::scope(|s| {
        let other = s.spawn(worker);
        let mut failures = worker();
        failures.extend(other.join().expect("a worker catches its sequences' panics"));
        failures.into_iter().next()
    })
}

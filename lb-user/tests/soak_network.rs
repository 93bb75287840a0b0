//! The soak: real clients through `lb run` (XDP, nat) on the test network for
//! `LB_SOAK_MINUTES` (default 2: what `cargo xtask test` runs; `cargo xtask soak --minutes N`
//! runs longer), while the balancer churns: a reload every few seconds (weights, a backend
//! added and removed), a backend registered and deregistered through the API, a backend's
//! server killed and restarted, the daemon SIGKILLed and restarted (adopting the data
//! path), a flood of new connections from a second client held back by its per-source rate
//! limit.
//!
//! Strict: no request may fail, but for one window (soak/README in docs/testing.md): while
//! a killed server's backend is still in rotation (from the kill until the health check
//! reports it down, plus the half second a request in flight may take on either side), a
//! request whose
//! flow went to that backend (as the flow table names it) may fail. The daemon's memory,
//! descriptors and live flows must stay flat: the last samples against the first ones
//! after warm-up, within tolerances, on the daemon that ran the longest.
#[path = "soak/churn.rs"]
mod churn;
#[path = "soak/clients.rs"]
mod clients;
mod common;
#[path = "soak/samples.rs"]
mod samples;

use std::time::{Duration, Instant};

use churn::Churn;
use clients::{Failure, Requests};
use common::net::Net;
use samples::Sampler;

fn minutes() -> f64 {
    std::env::var("LB_SOAK_MINUTES").ok().map(|m| m.parse().expect("LB_SOAK_MINUTES: a number")).unwrap_or(2.0)
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn real_clients_lose_nothing_while_the_balancer_churns_and_it_stays_flat() {
    let run = Duration::from_secs_f64(minutes() * 60.0);
    let _net = Net::up(false);
    let mut churn = Churn::start();
    let requests = Requests::start(run);
    let sampler = Sampler::start(churn.pid_cell());
    let started = Instant::now();
    // The daemon is SIGKILLed and restarted once, a fifth of the way in: the flatness
    // check then watches the successor for the rest of the run.
    let restart_at = run / 5;
    let mut restarted = false;
    let mut step = 0;
    while started.elapsed() + Duration::from_secs(4) < run {
        if !restarted && started.elapsed() >= restart_at {
            churn.restart_daemon();
            restarted = true;
        } else {
            churn.step(step);
            step += 1;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    let outcomes = requests.finish();
    let samples = sampler.finish();
    let events = churn.finish();

    let failures: Vec<&Failure> = outcomes.failures.iter().collect();
    let excused: Vec<&&Failure> = failures.iter().filter(|f| events.excuses(f)).collect();
    let strict: Vec<&&Failure> = failures.iter().filter(|f| !events.excuses(f)).collect();
    println!(
        "soak: {:.1} min, {} requests ({} ok, {} failed: {} inside a killed backend's detection window, {} outside)",
        started.elapsed().as_secs_f64() / 60.0,
        outcomes.ok + failures.len() as u64,
        outcomes.ok,
        failures.len(),
        excused.len(),
        strict.len()
    );
    for f in &failures {
        let verdict = if events.excuses(f) { "excused" } else { "FAILED" };
        println!("  {verdict}: {}", f.describe());
    }
    println!("{}", events.summary());
    println!("{}", outcomes.summary());
    println!("{}", samples.summary());
    assert!(strict.is_empty(), "{} requests failed outside the detection windows (above)", strict.len());
    assert!(restarted, "the run was too short for the daemon's restart");
    events.assert_every_kind_ran();
    assert!(
        outcomes.ok as f64 >= run.as_secs_f64() * 10.0,
        "the clients kept up at least 10 requests a second ({} in {run:?})",
        outcomes.ok
    );
    samples.assert_flat();
}

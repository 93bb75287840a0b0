//! The proxy's worker threads: one per worker, each its own runtime. A binary of its own,
//! with one test: it counts the process's `lb-proxy-N` threads, which any other proxy test
//! running beside it in the same process would add to.

mod common;

use std::time::{Duration, Instant};

use common::proxy_harness::*;
use lb_config::desired::Desired;

/// The names of this process's threads that serve the proxy (`lb-proxy-N`), sorted.
fn proxy_threads() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                .map(|n| n.trim().to_string())
                .filter(|n| n.starts_with("lb-proxy-"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The proxy threads once they are `want` (a thread names itself when it first runs, a
/// moment after it was spawned; one that ends takes a moment to go), or as they are
/// after 5 s.
fn proxy_threads_settled(want: &[&str]) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = proxy_threads();
        if now == want || Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn each_worker_is_a_thread_of_its_own_and_a_reload_adding_workers_starts_theirs() {
    run(async {
        let fds = fd_count();
        let servers = vec![tagged_echo("a").await, tagged_echo("b").await];
        let vip = vip_tcp();
        let backends = w1(&servers.iter().map(|s| s.addr).collect::<Vec<_>>());
        let with_workers = |n: u32| {
            let svc = service("web", vip, "algorithm = \"round_robin\"", &backends);
            let text = format!("[daemon]\nmode = \"proxy\"\nworkers = {n}\nconnect_timeout = \"300ms\"\n{svc}");
            lb_config::Config::from_str(&text, "test.toml").unwrap()
        };
        let mut dp = start(&with_workers(2));
        assert_eq!(proxy_threads_settled(&["lb-proxy-0", "lb-proxy-1"]), ["lb-proxy-0", "lb-proxy-1"]);
        let mut names = Vec::new();
        for _ in 0..20 {
            names.push(ask_name(vip).await);
        }
        assert_eq!(count(names).values().copied().collect::<Vec<_>>(), vec![10, 10]);
        // Three workers: the listeners are rebound, one per worker, on a third thread too.
        dp.reconcile(&Desired::from_config(&with_workers(3))).unwrap();
        let three = ["lb-proxy-0", "lb-proxy-1", "lb-proxy-2"];
        assert_eq!(proxy_threads_settled(&three), three);
        for _ in 0..20 {
            ask_name(vip).await;
        }
        finish(dp, servers, fds).await;
        // Every worker thread ended with the proxy.
        assert_eq!(proxy_threads_settled(&[]), Vec::<String>::new());
    });
}

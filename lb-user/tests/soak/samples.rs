//! The daemon's footprint over the soak, sampled every few seconds: resident memory, open
//! descriptors, live flows (as `lb list flows` counts them) and the entries the flow and
//! reverse-NAT maps hold. Flat means: on the daemon that ran longest, the last sample is
//! within a tolerance of the first ones after its warm-up.
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const EVERY: Duration = Duration::from_secs(5);
/// A fresh daemon's first seconds (allocator pools, runtime threads, first scrapes) are not
/// the baseline.
const WARM_UP: Duration = Duration::from_secs(15);
/// Tolerances: memory may grow by 10% plus 8 MiB, descriptors by 8 (health checks and API
/// calls in flight), live flows to twice the baseline plus 100 (they follow the
/// request rate, which varies with the churn).
const RSS_GROWTH: f64 = 1.10;
const RSS_SLACK_KB: u64 = 8 * 1024;
const FD_SLACK: u64 = 8;
/// Flow and NAT table entries settle once the first ended flows are swept (the closing
/// timeout, the sweep's grace and its period: under a minute and a half); from then on the
/// table is judged against its size in the next minute. A shorter life is not judged.
const ENTRIES_SETTLED: Duration = Duration::from_secs(90);
const ENTRIES_BASE_SPAN: Duration = Duration::from_secs(60);
const ENTRIES_GROWTH: f64 = 1.5;
const ENTRIES_SLACK: u64 = 500;

#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub at: Duration,
    pub pid: i32,
    pub rss_kb: u64,
    pub fds: u64,
    pub live_flows: u64,
    pub flow_entries: u64,
    pub nat_entries: u64,
}

pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Sample>>,
}

impl Sampler {
    pub fn start(pid: Arc<AtomicI32>) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let begun = Instant::now();
            let mut out = Vec::new();
            while !flag.load(Ordering::SeqCst) {
                if let Some(s) = sample(pid.load(Ordering::SeqCst), begun.elapsed()) {
                    out.push(s);
                }
                let next = Instant::now() + EVERY;
                while Instant::now() < next && !flag.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            out
        });
        Sampler { stop, thread }
    }

    pub fn finish(self) -> Samples {
        self.stop.store(true, Ordering::SeqCst);
        Samples(self.thread.join().expect("sampler"))
    }
}

fn sample(pid: i32, at: Duration) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some(Sample {
        at,
        pid,
        rss_kb,
        fds,
        live_flows: live_flows(),
        flow_entries: map_entries("LB_FLOWS"),
        nat_entries: map_entries("LB_NAT"),
    })
}

fn live_flows() -> u64 {
    let out = std::process::Command::new(testenv::lb_binary())
        .args(["list", "flows", "--json", "--pin-path", testenv::LB_PIN_PATH])
        .output()
        .expect("lb list flows");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v.as_array().map_or(0, |a| a.len() as u64)
}

/// Entries a pinned map holds, live or expired (bpftool walks it).
fn map_entries(map: &str) -> u64 {
    let path = format!("{}/{map}", testenv::LB_PIN_PATH);
    let out = std::process::Command::new("bpftool").args(["-j", "map", "dump", "pinned", &path]).output();
    let Ok(out) = out else { return 0 };
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v.as_array().map_or(0, |a| a.len() as u64)
}

pub struct Samples(Vec<Sample>);

impl Samples {
    /// The samples of the daemon that was sampled most, after its warm-up.
    fn longest_lived(&self) -> Vec<Sample> {
        let mut pids: Vec<i32> = self.0.iter().map(|s| s.pid).collect();
        pids.dedup();
        let pid = pids.into_iter().max_by_key(|p| self.0.iter().filter(|s| s.pid == *p).count()).unwrap_or(0);
        let mine: Vec<Sample> = self.0.iter().copied().filter(|s| s.pid == pid).collect();
        let born = mine.first().map_or(Duration::ZERO, |s| s.at);
        mine.into_iter().filter(|s| s.at >= born + WARM_UP).collect()
    }

    pub fn summary(&self) -> String {
        let mut out = String::from("samples (time, pid, RSS, fds, live flows, LB_FLOWS entries, LB_NAT entries):");
        for s in &self.0 {
            out += &format!(
                "\n  +{:5.0}s pid {} RSS {} KiB, {} fds, {} live flows, {} / {} map entries",
                s.at.as_secs_f64(),
                s.pid,
                s.rss_kb,
                s.fds,
                s.live_flows,
                s.flow_entries,
                s.nat_entries
            );
        }
        out
    }

    pub fn assert_flat(&self) {
        let s = self.longest_lived();
        assert!(s.len() >= 3, "too few samples after warm-up to judge: {}", self.summary());
        let (first, last) = (&s[..2], s.last().unwrap());
        let base = |f: fn(&Sample) -> u64| first.iter().map(f).max().unwrap_or(0);
        let rss_limit = (base(|x| x.rss_kb) as f64 * RSS_GROWTH) as u64 + RSS_SLACK_KB;
        assert!(last.rss_kb <= rss_limit, "RSS grew to {} KiB (limit {rss_limit}): {}", last.rss_kb, self.summary());
        let fd_limit = base(|x| x.fds) + FD_SLACK;
        assert!(last.fds <= fd_limit, "descriptors grew to {} (limit {fd_limit}): {}", last.fds, self.summary());
        let flows_limit = base(|x| x.live_flows) * 2 + 100;
        assert!(
            last.live_flows <= flows_limit,
            "live flows grew to {} (limit {flows_limit}): {}",
            last.live_flows,
            self.summary()
        );
        self.assert_entries_flat(&s);
    }

    /// The flow and NAT tables hold what lives and what ended lately, not every flow the
    /// run ever had: their entries at the end against the most in the minute after they
    /// settled (see `ENTRIES_SETTLED`).
    fn assert_entries_flat(&self, s: &[Sample]) {
        let (Some(first), Some(last)) = (s.first(), s.last()) else { return };
        let from = first.at - WARM_UP + ENTRIES_SETTLED;
        if last.at < from + 2 * ENTRIES_BASE_SPAN {
            println!("map entries not judged: the longest-lived daemon ran too briefly after they settled");
            return;
        }
        let span = s.iter().filter(|x| x.at >= from && x.at < from + ENTRIES_BASE_SPAN);
        let base = span.map(|x| x.flow_entries.max(x.nat_entries)).max().unwrap_or(0);
        let limit = (base as f64 * ENTRIES_GROWTH) as u64 + ENTRIES_SLACK;
        let end = last.flow_entries.max(last.nat_entries);
        assert!(end <= limit, "flow/NAT table entries grew to {end} (limit {limit}): {}", self.summary());
    }
}

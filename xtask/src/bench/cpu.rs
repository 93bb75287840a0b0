//! CPU time spent during a run: machine-wide softirq time (/proc/stat), a process tree's
//! user + system time (/proc/PID/stat), and the XDP program's own run time (the kernel's
//! BPF statistics, enabled only while the bench holds the BPF_ENABLE_STATS fd).
use std::collections::HashMap;
use std::os::fd::{FromRawFd, OwnedFd};

use anyhow::{bail, Context, Result};
use serde_json::Value;

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).max(1) as f64
}

/// Seconds of softirq time, summed over all CPUs (the `cpu` line of /proc/stat, field 7).
/// Network namespaces share the CPUs: this is every namespace's softirq time.
pub fn softirq_seconds() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let line = stat.lines().next().context("/proc/stat is empty")?;
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.first() != Some(&"cpu") || fields.len() < 8 {
        bail!("unexpected first line of /proc/stat: {line}");
    }
    Ok(fields[7].parse::<u64>().context("softirq ticks")? as f64 / ticks_per_second())
}

/// (pid, parent pid, utime + stime ticks) of every process.
fn processes() -> Vec<(i32, i32, u64)> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // `pid (comm) state ppid ...`: comm may hold spaces; fields follow the last ')'.
            let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let ppid = rest.get(1)?.parse().ok()?;
            let utime: u64 = rest.get(11)?.parse().ok()?;
            let stime: u64 = rest.get(12)?.parse().ok()?;
            Some((pid, ppid, utime + stime))
        })
        .collect()
}

/// User + system seconds of `root` and all its descendants (nginx's workers, for example).
pub fn tree_seconds(root: i32) -> f64 {
    let procs = processes();
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    let mut ticks: HashMap<i32, u64> = HashMap::new();
    for &(pid, ppid, t) in &procs {
        children.entry(ppid).or_default().push(pid);
        ticks.insert(pid, t);
    }
    let (mut total, mut stack) = (0u64, vec![root]);
    while let Some(pid) = stack.pop() {
        total += ticks.get(&pid).copied().unwrap_or(0);
        stack.extend(children.get(&pid).into_iter().flatten());
    }
    total as f64 / ticks_per_second()
}

/// While alive, the kernel accounts run time and run count of every BPF program.
pub struct BpfStats {
    _fd: OwnedFd,
}

impl BpfStats {
    pub fn enable() -> Result<Self> {
        const BPF_ENABLE_STATS: libc::c_long = 32;
        // union bpf_attr { struct { __u32 type; } enable_stats; }, BPF_STATS_RUN_TIME = 0.
        let attr: [u32; 2] = [0, 0];
        // SAFETY: attr is a live, zeroed prefix of union bpf_attr of the given size.
        let fd = unsafe {
            libc::syscall(libc::SYS_bpf, BPF_ENABLE_STATS, attr.as_ptr(), std::mem::size_of_val(&attr) as u32)
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("bpf(BPF_ENABLE_STATS)");
        }
        // SAFETY: a successful BPF_ENABLE_STATS returns a new fd we own.
        Ok(BpfStats { _fd: unsafe { OwnedFd::from_raw_fd(fd as i32) } })
    }
}

/// Run time (seconds) and run count of the XDP program attached to `dev` in `ns`.
pub fn xdp_run_time(ns: &str, dev: &str) -> Result<(f64, u64)> {
    let link: Value = serde_json::from_str(&testenv::exec_ok(ns, &["ip", "-j", "link", "show", "dev", dev])?)
        .context("ip -j link")?;
    let id = link[0]["xdp"]["prog"]["id"].as_u64().with_context(|| format!("no XDP program on {dev} in {ns}"))?;
    let out = std::process::Command::new("bpftool")
        .args(["-j", "prog", "show", "id", &id.to_string()])
        .output()
        .context("running bpftool")?;
    let prog: Value = serde_json::from_slice(&out.stdout).context("bpftool -j prog show")?;
    let ns_total = prog["run_time_ns"].as_u64().unwrap_or(0);
    Ok((ns_total as f64 / 1e9, prog["run_cnt"].as_u64().unwrap_or(0)))
}

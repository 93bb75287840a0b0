//! Stopping processes by pid, without mistaking a zombie for a live process.

use std::thread::sleep;
use std::time::{Duration, Instant};

pub(crate) type Pid = libc::pid_t;

const POLL: Duration = Duration::from_millis(20);

/// Alive means present and not a zombie: a backend we spawned and killed stays
/// a zombie until reaped, and `kill(pid, 0)` would still succeed on it.
pub(crate) fn is_alive(pid: Pid) -> bool {
    reap(pid);
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `pid (comm) S ...`: comm may hold spaces and parentheses, the state
    // follows the last ')'.
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, Some('Z') | Some('X') | None)
}

/// The command line of `pid`, NULs turned into spaces ("" if gone).
pub(crate) fn command_line(pid: Pid) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', " ").trim().to_string())
        .unwrap_or_default()
}

/// SIGTERM, then SIGKILL for whatever is still alive after `grace`.
pub(crate) fn terminate(pids: &[Pid], grace: Duration) {
    let me = std::process::id() as Pid;
    let pids: Vec<Pid> = pids.iter().copied().filter(|&pid| pid > 1 && pid != me).collect();
    signal(&pids, libc::SIGTERM);
    if wait_gone(&pids, grace) {
        return;
    }
    signal(&pids, libc::SIGKILL);
    wait_gone(&pids, Duration::from_secs(2));
}

fn signal(pids: &[Pid], signal: libc::c_int) {
    for &pid in pids {
        // SAFETY: kill has no memory preconditions; a vanished pid gives ESRCH.
        unsafe { libc::kill(pid, signal) };
    }
}

fn wait_gone(pids: &[Pid], limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if !pids.iter().any(|&pid| is_alive(pid)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        sleep(POLL);
    }
}

/// Collects the exit status if `pid` is our child; harmless (ECHILD) if not.
fn reap(pid: Pid) {
    let mut status = 0;
    // SAFETY: status is a valid out-pointer; WNOHANG never blocks.
    unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
}

//! The daemon's file descriptor limit. Health checks, the admin API, the proxy's
//! connections and the BPF maps all take descriptors, and the soft `RLIMIT_NOFILE` most
//! shells and units start with (1024) is far below what a busy balancer holds; the hard
//! limit is what the administrator allows. So the daemon raises its soft limit to the hard
//! one at start (bounded by `fs.nr_open`, above which the kernel refuses), and logs both.
use std::io;

/// The soft and hard `RLIMIT_NOFILE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NofileLimit {
    pub soft: u64,
    pub hard: u64,
}

pub fn current() -> io::Result<NofileLimit> {
    let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(NofileLimit { soft: l.rlim_cur, hard: l.rlim_max })
}

/// Raise the soft limit to the hard one; returns the limits (before, after).
pub fn raise_to_hard() -> io::Result<(NofileLimit, NofileLimit)> {
    let before = current()?;
    let target = before.hard.min(nr_open());
    if target > before.soft {
        let l = libc::rlimit { rlim_cur: target, rlim_max: before.hard };
        // SAFETY: setrlimit reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &l) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((before, current()?))
}

/// The kernel's ceiling for any process's descriptor limit (`fs.nr_open`); an unlimited
/// hard limit cannot be a soft one above it.
fn nr_open() -> u64 {
    std::fs::read_to_string("/proc/sys/fs/nr_open").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(1 << 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let start = current().unwrap();
        // Lowered first (any process may lower its soft limit), so the raise is seen.
        let low = libc::rlimit { rlim_cur: 512.min(start.hard), rlim_max: start.hard };
        // SAFETY: as in raise_to_hard.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &low) }, 0);
        let (before, after) = raise_to_hard().unwrap();
        assert_eq!(before.soft, 512.min(start.hard));
        assert_eq!(after.hard, start.hard, "the hard limit is left alone");
        assert_eq!(after.soft, start.hard.min(nr_open()));
        assert!(after.soft >= start.soft, "never lowered");
    }
}

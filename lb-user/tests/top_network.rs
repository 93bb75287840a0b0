//! `lb top` in a real terminal (a detached tmux session in the LB's namespace) while the
//! client sends new connections through the VIP, on both paths: the busy backends' rows
//! show non-zero rates, `a` and `r` reorder the rows, a `/` filter hides the other
//! service, a daemon that goes away is named in the header while `lb top` keeps running,
//! and `q` (or a SIGTERM) gives the shell back its terminal (cooked mode, the normal
//! screen); without a terminal it exits 1 pointing to `lb list backends --json`. Root
//! only: `cargo xtask test`.
mod common;

use std::time::{Duration, Instant};

use common::net::*;
use testenv::{LbDaemon, LB_NS, LB_PIN_PATH, VIP_V4, VIP_V6};

/// A tmux server of the test's own (`tmux -L`), apart from anyone else's.
const TMUX_SOCKET: &str = "lbt-top";
const SESSION: &str = "top";
const SERVER1: &str = "172.20.0.11:80";
const SERVER2: &str = "172.20.0.12:80";
/// The other service's one backend.
const API_BACKEND: &str = "[fd00:20::13]:80";
/// What the pane prints once `lb top` has exited.
const EXITED: &str = "lb top exited";
/// How long a screen may take to show what is expected.
const WAIT: Duration = Duration::from_secs(5);

fn config(mode: &str) -> String {
    format!(
        "[daemon]\ninterface = \"eth0\"\nmode = \"{mode}\"\npin_path = \"{LB_PIN_PATH}\"\n\
         admin_listen = \"172.20.0.10:9100\"\nworkers = 1\n\n\
         [[service]]\nname = \"web\"\nvip = \"{VIP_V4}:80\"\nalgorithm = \"round_robin\"\n\
         [[service.backend]]\naddress = \"{SERVER1}\"\n[[service.backend]]\naddress = \"{SERVER2}\"\n\n\
         [[service]]\nname = \"api\"\nvip = \"[{VIP_V6}]:80\"\n\
         [[service.backend]]\naddress = \"{API_BACKEND}\"\n"
    )
}

fn tmux(args: &[&str]) -> String {
    let mut all = vec!["tmux", "-L", TMUX_SOCKET];
    all.extend_from_slice(args);
    testenv::exec_ok(LB_NS, &all).unwrap_or_else(|e| panic!("tmux {args:?}: {e:#}"))
}

/// `lb top` running in a 160x40 terminal; the tmux server goes when this does.
struct Top;

impl Top {
    /// After `lb top` exits, the shell prints its exit code and whether the terminal is
    /// back in cooked mode (`icanon echo`, not `-icanon -echo`), then waits to be read.
    fn start() -> Top {
        let _ = testenv::exec(LB_NS, &["tmux", "-L", TMUX_SOCKET, "kill-server"]);
        let lb = testenv::lb_binary();
        let command = format!(
            "{} top --pin-path {LB_PIN_PATH} --api http://172.20.0.10:9100 --interval 500ms; \
             echo \"{EXITED} $?\"; \
             for f in $(stty -a); do case $f in icanon|-icanon|echo|-echo) printf '%s ' $f;; esac; done; echo; \
             sleep 60",
            lb.display()
        );
        tmux(&["new-session", "-d", "-x", "160", "-y", "40", "-s", SESSION, &command]);
        Top
    }

    fn screen(&self) -> String {
        tmux(&["capture-pane", "-p", "-t", SESSION])
    }

    /// SIGTERM to `lb top` (the pane's shell's child).
    fn sigterm(&self) {
        let shell = tmux(&["list-panes", "-t", SESSION, "-F", "#{pane_pid}"]);
        let pid = testenv::exec_ok(LB_NS, &["pgrep", "-P", shell.trim(), "-x", "lb"])
            .unwrap_or_else(|e| panic!("lb top's pid: {e:#}"));
        let pid: i32 = pid.trim().parse().unwrap_or_else(|_| panic!("one lb top under the shell, not {pid:?}"));
        // SAFETY: kill(2) on a pid just read; a stale one at worst fails with ESRCH.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "{}", std::io::Error::last_os_error());
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", SESSION];
        args.extend_from_slice(keys);
        tmux(&args);
    }

    /// The screen once `ready` holds (polled for at most `WAIT`); fails with the last one.
    fn wait_for(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if ready(&screen) {
                return screen;
            }
            assert!(start.elapsed() < WAIT, "lb top did not show {what} within {WAIT:?}; the screen:\n{screen}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Top {
    fn drop(&mut self) {
        let _ = testenv::exec(LB_NS, &["tmux", "-L", TMUX_SOCKET, "kill-server"]);
    }
}

enum Quit {
    Key,
    Sigterm,
}

/// The table line of backend `address`, split at whitespace: SERVICE VIP BACKEND STATE
/// HEALTH CIRCUIT WEIGHT NEW/s PKTS/s … (the byte columns hold a space: read no further).
fn row<'a>(screen: &'a str, address: &str) -> Option<Vec<&'a str>> {
    screen.lines().map(|l| l.split_whitespace().collect::<Vec<_>>()).find(|w| w.get(2) == Some(&address))
}

/// Where backend `address`'s row is on the screen (line number).
fn line_of(screen: &str, address: &str) -> Option<usize> {
    screen.lines().position(|l| l.split_whitespace().nth(2) == Some(address))
}

/// Both web backends' rows show new flows (and, on the XDP path, packets) per second.
fn busy(screen: &str, packets_counted: bool) -> bool {
    [SERVER1, SERVER2].iter().all(|a| {
        row(screen, a).is_some_and(|w| {
            let rate = |s: &str| s != "0" && s != "-";
            w.len() > 8 && w[0] == "web" && rate(w[7]) && (rate(w[8]) == packets_counted)
        })
    })
}

fn in_order(screen: &str, addresses: &[&str]) -> bool {
    let lines: Option<Vec<usize>> = addresses.iter().map(|a| line_of(screen, a)).collect();
    lines.is_some_and(|l| l.windows(2).all(|w| w[0] < w[1]))
}

/// The checks on one path, with the daemon serving and the client sending.
fn rates_sort_and_filter(top: &Top, path: &str) {
    let screen = top.wait_for("both web backends busy", |s| busy(s, path == "xdp"));
    assert!(screen.contains(&format!("path {path}")), "{screen}");
    assert!(row(&screen, API_BACKEND).is_some_and(|w| w[0] == "api" && w[7] == "0"), "the idle service:\n{screen}");
    let total = screen.lines().find(|l| l.starts_with("total/s")).unwrap_or_default();
    assert!(!total.contains("new flows 0 ") && !total.contains("new flows -"), "{screen}");
    let shown: Vec<&str> = screen.lines().filter(|l| !l.trim().is_empty()).collect();
    eprintln!("{path}: lb top's screen with traffic (blank lines left out):\n{}", shown.join("\n"));

    top.keys(&["a"]);
    top.wait_for("rows by address", |s| {
        s.contains("sort backend address ascending") && in_order(s, &[SERVER1, SERVER2, API_BACKEND])
    });
    top.keys(&["r"]);
    top.wait_for("rows by address reversed", |s| {
        s.contains("sort backend address descending") && in_order(s, &[API_BACKEND, SERVER2, SERVER1])
    });

    top.keys(&["/", "w", "e", "b"]);
    top.wait_for("the filter prompt", |s| s.contains("filter: web_"));
    top.keys(&["Enter"]);
    let filtered = top.wait_for("only web's rows", |s| {
        s.contains("filter \"web\"") && row(s, API_BACKEND).is_none() && busy(s, path == "xdp")
    });
    assert!(filtered.contains("backends 3 (shown 2)"), "{filtered}");
    top.keys(&["/", "Escape"]);
    top.wait_for("every row after Esc", |s| row(s, API_BACKEND).is_some() && !s.contains("filter \""));
}

/// `q` (or a SIGTERM): `lb top` exits 0 and the shell has its terminal back.
fn quit(top: &Top, how: Quit) {
    match how {
        Quit::Key => top.keys(&["q"]),
        Quit::Sigterm => top.sigterm(),
    }
    let screen = top.wait_for("the shell after lb top", |s| s.contains(EXITED) && s.contains("icanon"));
    assert!(screen.contains(&format!("{EXITED} 0")), "{screen}");
    assert!(screen.contains("icanon echo") && !screen.contains("-icanon"), "raw mode left on:\n{screen}");
    assert!(!screen.contains("SERVICE") && !screen.contains("q quit"), "the table stayed on screen:\n{screen}");
}

/// Without a terminal (a script, a pipe) `lb top` says what to use instead.
fn without_a_terminal() {
    let lb = testenv::lb_binary();
    let out = testenv::exec(LB_NS, &[lb.to_str().unwrap(), "top", "--pin-path", LB_PIN_PATH]).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("lb top draws on a terminal") && stderr.contains("lb list backends --json"), "{stderr}");
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn top_shows_rates_sorts_filters_and_restores_the_terminal() {
    let _net = Net::up(false);
    let url = format!("http://{VIP_V4}/");

    // The XDP path, from the pinned maps; detached on exit, so the proxy can serve next.
    let mut lb = LbDaemon::start_with(&testenv::lb_binary(), &config("xdp"), &["--detach-on-exit"])
        .unwrap_or_else(|e| panic!("lb run: {e:#}"));
    without_a_terminal();
    let traffic = ClientLoop::start(&url);
    let top = Top::start();
    rates_sort_and_filter(&top, "xdp");
    quit(&top, Quit::Key);
    drop(top);
    assert!(failures(&traffic.finish()).is_empty(), "requests failed on the XDP path");
    lb.stop().unwrap();

    // The proxy path, through the admin API (nothing pinned any more).
    for (vip, len) in [(VIP_V4, "32"), (VIP_V6, "128")] {
        testenv::exec_ok(LB_NS, &["ip", "addr", "add", &format!("{vip}/{len}"), "dev", "lo"]).unwrap();
    }
    let mut lb = start(&config("proxy"));
    let traffic = ClientLoop::start(&url);
    let top = Top::start();
    rates_sort_and_filter(&top, "proxy");
    assert!(failures(&traffic.finish()).is_empty(), "requests failed on the proxy path");

    // The daemon goes: the header says why, and lb top keeps running until told to quit.
    lb.stop().unwrap();
    let screen = top.wait_for("the error in the header", |s| s.contains("nothing is pinned under"));
    assert!(screen.contains("error (retrying every 500ms; rows as of "), "{screen}");
    assert!(!screen.contains(EXITED), "{screen}");
    quit(&top, Quit::Sigterm);
}

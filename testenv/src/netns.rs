//! Running commands, in the root namespace or inside a test namespace.
//!
//! Everything goes through `std::process::Command`; a failure is an error that
//! names the command line and carries its stderr.

use anyhow::{anyhow, bail, Context, Result};
use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// Runs `program args...` in the current (root) namespace; returns stdout.
pub(crate) fn run(program: &str, args: &[&str]) -> Result<String> {
    let output = output_of(Command::new(program).args(args), program, args)?;
    stdout_if_ok(output, program, args)
}

/// `ip -n <ns> args...`: iproute2 switches namespace itself, no extra exec.
pub(crate) fn ip_in(ns: &str, args: &[&str]) -> Result<String> {
    let mut full = vec!["-n", ns];
    full.extend_from_slice(args);
    run("ip", &full)
}

/// Sets sysctls (`key=value`) inside `ns`: /proc/sys/net is per namespace.
pub(crate) fn sysctl_in(ns: &str, settings: &[&str]) -> Result<()> {
    let mut args = vec!["sysctl", "-q", "-w"];
    args.extend_from_slice(settings);
    exec_ok(ns, &args).map(drop)
}

/// Runs `ip netns exec <ns> args...` and returns its output whatever the exit
/// status; the error case is a command that could not be run at all.
pub fn exec(ns: &str, args: &[&str]) -> Result<Output> {
    let full = netns_exec_args(ns, args)?;
    output_of(Command::new("ip").args(&full), "ip", &full)
}

/// Like [`exec`], but a non-zero exit is an error naming the command and its
/// stderr; returns stdout.
pub fn exec_ok(ns: &str, args: &[&str]) -> Result<String> {
    let full = netns_exec_args(ns, args)?;
    stdout_if_ok(exec(ns, args)?, "ip", &full)
}

/// Starts `args` inside `ns` with stdout and stderr piped (read them, or use
/// `wait_with_output`, or the child blocks once a pipe is full).
pub fn spawn(ns: &str, args: &[&str]) -> Result<Child> {
    spawn_with(ns, args, Stdio::piped(), Stdio::piped(), Group::Caller, Stdio::piped())
}

/// Starts `args` inside `ns` with stdout and stderr appended to `log`: for
/// long-running processes (backends, daemons). The child gets its own
/// process group, so a Ctrl-C aimed at the caller does not reach it.
pub fn spawn_logged(ns: &str, args: &[&str], log: &Path) -> Result<Child> {
    let open = || {
        File::options().create(true).append(true).open(log).with_context(|| format!("opening log {}", log.display()))
    };
    spawn_with(ns, args, open()?.into(), open()?.into(), Group::Own, Stdio::null())
}

/// Which process group a spawned child joins.
enum Group {
    /// The caller's: a Ctrl-C of the caller stops it too.
    Caller,
    /// Its own: it outlives the caller (`cargo xtask testenv up` returns).
    Own,
}

fn spawn_with(ns: &str, args: &[&str], stdout: Stdio, stderr: Stdio, group: Group, stdin: Stdio) -> Result<Child> {
    use std::os::unix::process::CommandExt;
    let full = netns_exec_args(ns, args)?;
    let mut command = Command::new("ip");
    command.args(&full).stdin(stdin).stdout(stdout).stderr(stderr);
    if let Group::Own = group {
        command.process_group(0);
    }
    command.spawn().with_context(|| format!("starting `{}`", command_line("ip", &full)))
}

/// GETs `url` with curl from inside `ns` and returns the body. An HTTP error
/// status (4xx/5xx), a refused connection or the timeout is an error.
pub fn curl(ns: &str, url: &str, timeout: Duration) -> Result<String> {
    let secs = format!("{:.3}", timeout.as_secs_f64());
    exec_ok(
        ns,
        // -g: IPv6 literals in brackets are not globs. --noproxy: a proxy set in
        // the environment is unreachable from the test network.
        &["curl", "-sS", "-g", "--fail", "--noproxy", "*", "--max-time", &secs, url],
    )
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// For root-only tests: panics with a clear message when not root, so such a
/// test fails instead of passing without having run.
pub fn require_root() {
    if !is_root() {
        panic!(
            "this test needs root (network namespaces, veth, XDP); \
             run it as root, e.g. with `cargo xtask test`"
        );
    }
}

/// Names of the existing network namespaces (`ip netns list`).
pub(crate) fn namespaces() -> Result<Vec<String>> {
    let list = run("ip", &["netns", "list"])?;
    // Lines look like `lbt-lb (id: 3)` or just `lbt-lb`.
    Ok(list.lines().filter_map(|line| line.split_whitespace().next()).map(str::to_string).collect())
}

pub(crate) fn namespace_exists(ns: &str) -> Result<bool> {
    Ok(namespaces()?.iter().any(|name| name == ns))
}

fn netns_exec_args<'a>(ns: &'a str, args: &[&'a str]) -> Result<Vec<&'a str>> {
    if args.is_empty() {
        bail!("no command given to run in namespace {ns}");
    }
    let mut full = vec!["netns", "exec", ns];
    full.extend_from_slice(args);
    Ok(full)
}

fn output_of(command: &mut Command, program: &str, args: &[&str]) -> Result<Output> {
    command.stdin(Stdio::null()).output().with_context(|| format!("running `{}`", command_line(program, args)))
}

fn stdout_if_ok(output: Output, program: &str, args: &[&str]) -> Result<String> {
    if !output.status.success() {
        return Err(anyhow!(
            "`{}` failed ({}): {}",
            command_line(program, args),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

pub(crate) fn command_line(program: &str, args: &[&str]) -> String {
    std::iter::once(program).chain(args.iter().copied()).collect::<Vec<_>>().join(" ")
}

//! The systemd notification protocol (`sd_notify`): a `Type=notify` unit learns from these
//! datagrams when the daemon serves, reloads and stops, instead of guessing from the
//! process having started. `$NOTIFY_SOCKET` names a unix datagram socket, a path or, when
//! it starts with `@`, an abstract name. Without it (not started by systemd) every call is
//! a no-op.
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

use tracing::warn;

/// The variable systemd sets for a `Type=notify` service.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// The data path serves and the admin API answers: systemd starts the units ordered after
/// this one. `status` is shown by `systemctl status`.
pub fn ready(status: &str) {
    send_or_warn(&ready_message(status));
}

/// Each line of a notification is one `KEY=value`: a status of several lines (a reload's
/// diagnostics) is joined into one.
fn ready_message(status: &str) -> String {
    let one_line: Vec<&str> = status.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    format!("READY=1\nSTATUS={}", one_line.join("; "))
}

/// A reload (SIGHUP) begins; `ready` must follow when it has ended, whatever its outcome.
pub fn reloading() {
    send_or_warn(&reloading_message(monotonic_usec()));
}

/// The daemon is stopping (SIGTERM/SIGINT): systemd waits for the exit without a new start.
pub fn stopping() {
    send_or_warn("STOPPING=1");
}

/// `RELOADING=1` with the `CLOCK_MONOTONIC` time it began, which systemd 253 and later
/// require to tell this reload from an earlier one.
fn reloading_message(usec: u64) -> String {
    format!("RELOADING=1\nMONOTONIC_USEC={usec}")
}

/// Notifications are advisory: a socket that has gone away must not stop the daemon.
fn send_or_warn(message: &str) {
    if let Err(e) = send(message) {
        warn!("could not notify systemd ({NOTIFY_SOCKET}): {e}");
    }
}

/// Send `message` to `$NOTIFY_SOCKET`. `Ok(false)`: the variable is not set.
pub fn send(message: &str) -> io::Result<bool> {
    match std::env::var_os(NOTIFY_SOCKET) {
        Some(socket) if !socket.is_empty() => send_to(&socket, message).map(|()| true),
        _ => Ok(false),
    }
}

/// Send one datagram to the socket `name` (a path, or `@name` for an abstract one).
pub fn send_to(name: &OsStr, message: &str) -> io::Result<()> {
    let address = address(name)?;
    let socket = UnixDatagram::unbound()?;
    let sent = socket.send_to_addr(message.as_bytes(), &address)?;
    if sent != message.len() {
        return Err(io::Error::other(format!("sent {sent} of {} bytes", message.len())));
    }
    Ok(())
}

fn address(name: &OsStr) -> io::Result<SocketAddr> {
    match name.as_bytes() {
        [b'@', abstract_name @ ..] => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(abstract_name)
        }
        [b'/', ..] => SocketAddr::from_pathname(name),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{NOTIFY_SOCKET}={name:?} is neither an absolute path nor an abstract name (@...)"),
        )),
    }
}

fn monotonic_usec() -> u64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec it is given and nothing else.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn receive(socket: &UnixDatagram) -> String {
        socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).expect("a datagram within 5 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn a_message_reaches_a_socket_named_by_its_path() {
        let dir = std::env::temp_dir().join(format!("lb-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path).unwrap();
        send_to(path.as_os_str(), "READY=1\nSTATUS=serving").unwrap();
        assert_eq!(receive(&socket), "READY=1\nSTATUS=serving");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_name_starting_with_at_is_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("lb-notify-test-{}", std::process::id());
        let socket = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
        send_to(OsStr::new(&format!("@{name}")), "STOPPING=1").unwrap();
        assert_eq!(receive(&socket), "STOPPING=1");
    }

    #[test]
    fn a_status_of_several_lines_becomes_one() {
        assert_eq!(ready_message("serving"), "READY=1\nSTATUS=serving");
        assert_eq!(
            ready_message("reload failed:\n  lb.toml:3:1: bad\n\n  lb.toml:4:1: worse\n"),
            "READY=1\nSTATUS=reload failed:; lb.toml:3:1: bad; lb.toml:4:1: worse"
        );
    }

    #[test]
    fn a_reload_names_its_monotonic_start() {
        assert_eq!(reloading_message(1_234_567), "RELOADING=1\nMONOTONIC_USEC=1234567");
        let (a, b) = (monotonic_usec(), monotonic_usec());
        assert!(a > 0 && b >= a, "{a} {b}");
    }

    #[test]
    fn a_relative_name_is_refused_and_a_missing_socket_is_an_error() {
        let err = send_to(OsStr::new("relative.sock"), "READY=1").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        assert!(send_to(OsStr::new("/nonexistent/lb/notify.sock"), "READY=1").is_err());
    }
}

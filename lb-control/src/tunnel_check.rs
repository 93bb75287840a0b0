//! Health checks of encapsulating services (`forwarding = "ipip"` / `"gue"`) go the way the
//! traffic goes: the checker connects to the VIP, not to the backend, on a socket marked
//! with the backend's slot (`SO_MARK`) and bound to the interface where the data path's tc
//! program runs; the program finds the mark and encapsulates the packets to the backend,
//! which answers from the VIP directly. A backend without the VIP on `lo` or without
//! decapsulation never answers, and is marked down like any backend that fails its check.
//!
//! Here: where a checker connects (`Target`), the marks (`Marks`) and what the data path is
//! told (`TunnelRoute`). The checker itself (`health`) does not know about tunnels.
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};

use lb_common::tunnel::{check_mark, CHECK_TARGETS_MAX};
use lb_config::desired::BackendKey;
use lb_config::Forwarding;
use tokio::net::{TcpSocket, TcpStream, UdpSocket};

/// One marked check, as the data path's tunnel program needs it: packets marked `mark`
/// go encapsulated (`forwarding`) to `backend`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunnelRoute {
    pub mark: u32,
    pub backend: IpAddr,
    pub forwarding: Forwarding,
}

/// Where a checker connects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// The backend's own address (nat and dsr, and any data path without a tunnel program).
    Direct(SocketAddr),
    /// The service's VIP, through the tunnel program on `device`.
    Tunnel { vip: SocketAddr, mark: u32, device: String },
}

impl From<SocketAddr> for Target {
    fn from(a: SocketAddr) -> Self {
        Target::Direct(a)
    }
}

impl Target {
    /// The address the check connects to (and names in an HTTP check's Host header).
    pub fn address(&self) -> SocketAddr {
        match self {
            Target::Direct(a) => *a,
            Target::Tunnel { vip, .. } => *vip,
        }
    }

    pub async fn connect(&self) -> io::Result<TcpStream> {
        match self {
            Target::Direct(a) => TcpStream::connect(a).await,
            Target::Tunnel { vip, mark, device } => marked_socket(*vip, *mark, device)?.connect(*vip).await,
        }
    }

    /// A UDP socket connected to the target (marked and bound to the tunnel's device for
    /// a tunnelled one), so that it receives only the target's replies and the ICMP errors
    /// about what it sent.
    pub async fn udp_socket(&self) -> io::Result<UdpSocket> {
        let address = self.address();
        let socket = match self {
            Target::Direct(a) => {
                let any: SocketAddr = if a.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
                UdpSocket::bind(any).await?
            }
            Target::Tunnel { vip, mark, device } => marked_udp_socket(*vip, *mark, device)?,
        };
        socket.connect(address).await?;
        Ok(socket)
    }

    /// What a failure to connect means, said for this target: through the tunnel, an
    /// unreachable network is this host's routing (the VIP must leave by the device the
    /// tunnel program is on), not the backend's.
    pub fn connect_failure(&self, e: &io::Error) -> String {
        match self {
            Target::Direct(_) => format!("connect: {e}"),
            Target::Tunnel { vip, device, .. } => match e.raw_os_error() {
                Some(libc::ENETUNREACH) | Some(libc::EHOSTUNREACH) => format!(
                    "connect to VIP {vip} through the tunnel: {e}; the VIP must route out of {device}, where the \
                     tunnel program runs (e.g. `ip route add {} via GATEWAY dev {device}`)",
                    vip.ip()
                ),
                _ => format!("connect to VIP {vip} through the tunnel: {e}"),
            },
        }
    }

    /// Said after a timeout: what a silent tunnelled check usually means.
    pub fn timeout_hint(&self) -> String {
        match self {
            Target::Direct(_) => String::new(),
            Target::Tunnel { device, .. } => format!(
                " (through the tunnel to the VIP: the backend needs decapsulation, e.g. `lb decap`, and the VIP on \
                 lo; this host needs a route for the VIP out of {device})"
            ),
        }
    }
}

/// A TCP socket whose packets the tunnel program takes (`SO_MARK`), leaving by `device`
/// (`SO_BINDTODEVICE`), whatever route the VIP has otherwise.
fn marked_socket(vip: SocketAddr, mark: u32, device: &str) -> io::Result<TcpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(vip), Type::STREAM, Some(Protocol::TCP))?;
    s.set_mark(mark)?;
    s.bind_device(Some(device.as_bytes()))?;
    s.set_nonblocking(true)?;
    Ok(TcpSocket::from_std_stream(std::net::TcpStream::from(s)))
}

/// [`marked_socket`]'s UDP twin, for `udp` checks of encapsulating services.
fn marked_udp_socket(vip: SocketAddr, mark: u32, device: &str) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(vip), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_mark(mark)?;
    s.bind_device(Some(device.as_bytes()))?;
    s.set_nonblocking(true)?;
    UdpSocket::from_std(std::net::UdpSocket::from(s))
}

/// Slots (the low 16 bits of the marks) for the backends of encapsulating services. A
/// backend keeps its slot for as long as it is checked, so a reload that leaves it alone
/// leaves its check and its map entry alone.
#[derive(Debug, Default)]
pub struct Marks {
    slots: HashMap<BackendKey, u16>,
    free: Vec<u16>,
    next: u32,
}

impl Marks {
    /// The marks of exactly `wanted`: kept keys keep theirs, gone keys free theirs, new
    /// ones take a free slot. A key beyond the capacity gets none (its check goes to the
    /// backend directly, with a warning from the caller).
    pub fn assign<'a>(&mut self, wanted: impl IntoIterator<Item = &'a BackendKey>) -> HashMap<BackendKey, u32> {
        let wanted: Vec<&BackendKey> = wanted.into_iter().collect();
        let keep: std::collections::HashSet<&BackendKey> = wanted.iter().copied().collect();
        let free = &mut self.free;
        self.slots.retain(|k, slot| {
            let kept = keep.contains(k);
            if !kept {
                free.push(*slot);
            }
            kept
        });
        for k in wanted {
            if self.slots.contains_key(k) {
                continue;
            }
            let slot = match self.free.pop() {
                Some(s) => s,
                None if self.next < CHECK_TARGETS_MAX => {
                    self.next += 1;
                    (self.next - 1) as u16
                }
                None => continue,
            };
            self.slots.insert(k.clone(), slot);
        }
        self.slots.iter().map(|(k, s)| (k.clone(), check_mark(*s))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> BackendKey {
        BackendKey::new("svc", SocketAddr::from(([10, 0, 0, n], 80)))
    }

    #[test]
    fn backends_keep_their_marks_and_freed_ones_are_reused() {
        let mut m = Marks::default();
        let first = m.assign(&[key(1), key(2)]);
        assert_eq!(first.len(), 2);
        assert!(first.values().all(|&v| lb_common::tunnel::is_check_mark(v)));
        assert_ne!(first[&key(1)], first[&key(2)]);
        let second = m.assign(&[key(2), key(3)]);
        assert_eq!(second[&key(2)], first[&key(2)], "a kept backend keeps its mark");
        assert_eq!(second[&key(3)], first[&key(1)], "the freed slot is reused");
        assert!(!second.contains_key(&key(1)));
    }

    #[test]
    fn tunnel_failures_name_the_route_they_need() {
        let t = Target::Tunnel { vip: "10.9.9.9:80".parse().unwrap(), mark: check_mark(1), device: "eth0".into() };
        let msg = t.connect_failure(&io::Error::from_raw_os_error(libc::ENETUNREACH));
        assert!(msg.contains("must route out of eth0") && msg.contains("ip route add 10.9.9.9"), "{msg}");
        assert_eq!(t.address(), "10.9.9.9:80".parse().unwrap());
        assert!(t.timeout_hint().contains("VIP on lo") && t.timeout_hint().contains("out of eth0"));
        let d = Target::Direct("10.0.0.1:80".parse().unwrap());
        assert!(d.connect_failure(&io::Error::from(io::ErrorKind::ConnectionRefused)).starts_with("connect: "));
    }
}

//! Listening sockets. Every worker gets its own socket on the VIP with `SO_REUSEPORT`, so
//! the kernel spreads new connections (and UDP flows, by 4-tuple hash) over them instead of
//! all workers contending on one accept queue.
//!
//! - `IP_FREEBIND`: a VIP that is not (yet) on any interface can still be bound; traffic
//!   arrives once the address does (keepalived moving it over, an upstream route).
//! - `IPV6_V6ONLY` on every IPv6 socket: `[::]:80` takes IPv6 only, as the XDP path's VIPs
//!   are per family, and `0.0.0.0:80` can be another service beside it.
use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Kernel backlog per listener (capped by `net.core.somaxconn`).
const BACKLOG: i32 = 4096;

fn socket(vip: SocketAddr, ty: Type, proto: Protocol) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(vip), ty, Some(proto))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    if vip.is_ipv6() {
        s.set_only_v6(true)?;
        // Best effort: without it, binding a VIP not on the host fails with a clear error.
        let _ = s.set_freebind_v6(true);
    } else {
        let _ = s.set_freebind_v4(true);
    }
    s.set_nonblocking(true)?;
    s.bind(&SockAddr::from(vip))?;
    Ok(s)
}

/// `n` TCP listeners on `vip` sharing its port.
pub fn tcp_listeners(vip: SocketAddr, n: usize) -> io::Result<Vec<std::net::TcpListener>> {
    (0..n.max(1))
        .map(|_| {
            let s = socket(vip, Type::STREAM, Protocol::TCP)?;
            s.listen(BACKLOG)?;
            Ok(s.into())
        })
        .collect()
}

/// `n` UDP sockets on `vip` sharing its port.
pub fn udp_sockets(vip: SocketAddr, n: usize) -> io::Result<Vec<std::net::UdpSocket>> {
    (0..n.max(1)).map(|_| socket(vip, Type::DGRAM, Protocol::UDP).map(Into::into)).collect()
}

/// A UDP socket connected to `backend` (the session's own: its replies come back on it and
/// nowhere else).
pub fn udp_upstream(backend: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let s = Socket::new(Domain::for_address(backend), Type::DGRAM, Some(Protocol::UDP))?;
    if backend.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_nonblocking(true)?;
    let any: SocketAddr =
        if backend.is_ipv6() { "[::]:0".parse().expect("literal") } else { "0.0.0.0:0".parse().expect("literal") };
    s.bind(&SockAddr::from(any))?;
    s.connect(&SockAddr::from(backend))?;
    Ok(s.into())
}

/// Number of workers: `workers`, or one per core when 0.
pub fn worker_count(workers: u32) -> usize {
    if workers > 0 {
        return workers as usize;
    }
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

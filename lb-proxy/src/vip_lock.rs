//! One lb per VIP. The listeners set `SO_REUSEPORT` (one per worker), which also lets a
//! second `lb run` of the same user bind the same VIP: the kernel then spreads connections
//! over both daemons, each with its own backends. So before binding, the proxy locks each
//! VIP with a lock file under the runtime directory, held while it serves the VIP, and
//! refuses a VIP another daemon holds, naming that daemon's pid.
//!
//! The lock files (`flock`, see `lb_control::lock`): one per (network namespace, protocol,
//! address, port), as `vip-net<netns inode>-<tcp|udp>-<address>-<port>.lock`. The network
//! namespace is part of the name because `/run` is shared across namespaces while the
//! sockets are not: daemons in two namespaces may serve the same VIP.
//!
//! An unspecified address (`0.0.0.0:80`, `[::]:80`) takes the port on every address of its
//! family, and the kernel prefers a more specific socket: a daemon on `10.0.0.1:80` would
//! take that address's traffic from one on `0.0.0.0:80`. So the unspecified address's lock
//! file is also the port's: a specific VIP holds it shared (beside its own, exclusive), an
//! unspecified VIP exclusive. Specific VIPs of different daemons on one port coexist; an
//! unspecified one and any other VIP of its port and family do not.
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use lb_config::Protocol;
use lb_control::lock::{self, Acquired, FileLock, Holder, Mode};
use tracing::warn;

/// What one lock file stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VipKey {
    pub protocol: ProtocolKey,
    pub ip: IpAddr,
    pub port: u16,
}

/// `Protocol` with an order, for the lock table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProtocolKey {
    Tcp,
    Udp,
}

impl From<Protocol> for ProtocolKey {
    fn from(p: Protocol) -> Self {
        match p {
            Protocol::Tcp => ProtocolKey::Tcp,
            Protocol::Udp => ProtocolKey::Udp,
        }
    }
}

impl fmt::Display for VipKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = match self.protocol {
            ProtocolKey::Tcp => "tcp",
            ProtocolKey::Udp => "udp",
        };
        write!(f, "{} ({proto})", SocketAddr::new(self.ip, self.port))
    }
}

impl VipKey {
    fn new(vip: SocketAddr, protocol: Protocol) -> Self {
        VipKey { protocol: protocol.into(), ip: vip.ip(), port: vip.port() }
    }

    /// The unspecified address of this key's family and port: the port's lock.
    fn port_key(&self) -> VipKey {
        let ip = match self.ip {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        VipKey { ip, ..*self }
    }

    fn file_name(&self, netns: u64) -> String {
        let proto = match self.protocol {
            ProtocolKey::Tcp => "tcp",
            ProtocolKey::Udp => "udp",
        };
        format!("vip-net{netns}-{proto}-{}-{}.lock", self.ip, self.port)
    }
}

/// The locks a set of VIPs needs, each with the service that needs it (for messages).
pub fn needed<'a>(
    vips: impl IntoIterator<Item = (&'a str, SocketAddr, Protocol)>,
) -> BTreeMap<VipKey, (Mode, &'a str, SocketAddr)> {
    let mut out: BTreeMap<VipKey, (Mode, &'a str, SocketAddr)> = BTreeMap::new();
    let mut need = |key: VipKey, mode: Mode, service: &'a str, vip: SocketAddr| {
        let entry = out.entry(key).or_insert((mode, service, vip));
        if mode > entry.0 {
            *entry = (mode, service, vip);
        }
    };
    for (service, vip, protocol) in vips {
        let key = VipKey::new(vip, protocol);
        need(key, Mode::Exclusive, service, vip);
        if !vip.ip().is_unspecified() {
            need(key.port_key(), Mode::Shared, service, vip);
        }
    }
    out
}

/// The VIP locks this proxy holds.
pub struct VipLocks {
    dir: PathBuf,
    netns: u64,
    held: HashMap<VipKey, FileLock>,
}

impl VipLocks {
    pub fn new() -> Self {
        VipLocks { dir: runtime_dir(), netns: netns_inode(), held: HashMap::new() }
    }

    /// Take every lock `vips` needs that is not held yet (or held shared where exclusive is
    /// needed). On refusal nothing changes: what this call took is given back.
    pub fn claim<'a>(&mut self, vips: impl IntoIterator<Item = (&'a str, SocketAddr, Protocol)>) -> Result<()> {
        let needed = needed(vips);
        let mut taken: Vec<VipKey> = Vec::new();
        let mut raised: Vec<VipKey> = Vec::new();
        let result = self.take(&needed, &mut taken, &mut raised);
        if result.is_err() {
            for key in taken {
                self.held.remove(&key);
            }
            for key in raised {
                if let Some(l) = self.held.get_mut(&key) {
                    if let Err(e) = l.convert(Mode::Shared) {
                        warn!("VIP lock {}: {e}", l.path().display());
                    }
                }
            }
        }
        result
    }

    fn take(
        &mut self,
        needed: &BTreeMap<VipKey, (Mode, &str, SocketAddr)>,
        taken: &mut Vec<VipKey>,
        raised: &mut Vec<VipKey>,
    ) -> Result<()> {
        for (key, &(mode, service, vip)) in needed {
            let refused = match self.held.get_mut(key) {
                Some(l) if l.mode() >= mode => continue,
                Some(l) => match l.convert(mode).with_context(|| format!("locking VIP {key}"))? {
                    None => {
                        raised.push(*key);
                        continue;
                    }
                    Some(holders) => holders,
                },
                None => {
                    std::fs::create_dir_all(&self.dir)
                        .with_context(|| format!("creating the lock directory {}", self.dir.display()))?;
                    let path = self.dir.join(key.file_name(self.netns));
                    match lock::lock_file(&path, mode)
                        .with_context(|| format!("locking VIP {key} ({})", path.display()))?
                    {
                        Acquired::Held(l) => {
                            self.held.insert(*key, l);
                            taken.push(*key);
                            continue;
                        }
                        Acquired::Busy(holders) => holders,
                    }
                }
            };
            return Err(refusal(service, vip, key, mode, &refused));
        }
        Ok(())
    }

    /// Hold exactly what `vips` needs: release the rest, lower exclusive to shared where
    /// shared is enough. After a reconcile, with the VIPs now served.
    pub fn settle<'a>(&mut self, vips: impl IntoIterator<Item = (&'a str, SocketAddr, Protocol)>) {
        let needed = needed(vips);
        self.held.retain(|key, _| needed.contains_key(key));
        for (key, l) in self.held.iter_mut() {
            if let Some(&(mode, ..)) = needed.get(key) {
                if mode < l.mode() {
                    if let Err(e) = l.convert(mode) {
                        warn!("VIP lock {key}: {e}");
                    }
                }
            }
        }
    }

    /// The VIPs held.
    #[cfg(test)]
    pub fn held(&self) -> Vec<(VipKey, Mode)> {
        let mut v: Vec<(VipKey, Mode)> = self.held.iter().map(|(k, l)| (*k, l.mode())).collect();
        v.sort();
        v
    }

    #[cfg(test)]
    fn in_dir(dir: PathBuf) -> Self {
        VipLocks { dir, netns: netns_inode(), held: HashMap::new() }
    }
}

impl Default for VipLocks {
    fn default() -> Self {
        Self::new()
    }
}

/// Another lb serves the VIP.
#[derive(Debug)]
pub struct VipBusy {
    pub message: String,
    pub holders: Vec<Holder>,
}

impl fmt::Display for VipBusy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for VipBusy {}

fn refusal(service: &str, vip: SocketAddr, key: &VipKey, mode: Mode, holders: &[Holder]) -> anyhow::Error {
    let who = lock::describe(holders);
    let vip_key = VipKey { ip: vip.ip(), port: vip.port(), protocol: key.protocol };
    let why = if *key == vip_key && !vip.ip().is_unspecified() {
        format!("VIP {vip_key} is already served by another lb: {who}")
    } else if mode == Mode::Shared {
        // Ours is specific; theirs is the port on every address.
        format!("another lb serves {key}, which takes VIP {vip_key}'s traffic too: {who}")
    } else if holders.iter().all(|h| h.mode == Mode::Shared) && !holders.is_empty() {
        format!("another lb serves a VIP on port {} of this family, which {vip_key} would take over: {who}", vip.port())
    } else {
        format!("VIP {vip_key} is already served by another lb: {who}")
    };
    anyhow!(VipBusy {
        message: format!(
            "service {service}: {why}. Two daemons on one VIP would share its connections \
             (SO_REUSEPORT), each with its own backends, so this one does not bind it; stop the \
             other first, or give this service another VIP"
        ),
        holders: holders.to_vec(),
    })
}

/// Where the lock files live: `/run/lb` for root; otherwise the user's runtime directory
/// (a user's sockets cannot share a port with another user's anyway).
pub fn runtime_dir() -> PathBuf {
    let uid = std::fs::read_to_string("/proc/self/status").ok().and_then(|s| effective_uid(&s));
    match uid {
        Some(0) => PathBuf::from("/run/lb"),
        _ => match std::env::var_os("XDG_RUNTIME_DIR") {
            Some(d) if !d.is_empty() => PathBuf::from(d).join("lb"),
            _ => std::env::temp_dir().join(format!("lb-{}", uid.unwrap_or(u32::MAX))),
        },
    }
}

/// The effective uid from `/proc/self/status` (`Uid: real effective saved fs`).
fn effective_uid(status: &str) -> Option<u32> {
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// This process's network namespace (its nsfs inode); 0 if unknown.
fn netns_inode() -> u64 {
    std::fs::metadata("/proc/self/ns/net").map(|m| m.ino()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("lb-viplock-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn vip(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn tcp(list: &[(&'static str, &str)]) -> Vec<(&'static str, SocketAddr, Protocol)> {
        list.iter().map(|(n, v)| (*n, vip(v), Protocol::Tcp)).collect()
    }

    fn busy_text(r: Result<()>) -> String {
        let e = r.expect_err("refused");
        assert!(e.downcast_ref::<VipBusy>().is_some(), "a VipBusy: {e:#}");
        format!("{e:#}")
    }

    // Two VipLocks in one process stand for two daemons: flock keeps open file descriptions
    // apart as it keeps processes apart.

    #[test]
    fn a_vip_another_daemon_serves_is_refused_naming_its_pid_and_the_service() {
        let s = Scratch::new("same");
        let mut first = VipLocks::in_dir(s.0.clone());
        first.claim(tcp(&[("web", "10.0.0.1:80")])).unwrap();
        let mut second = VipLocks::in_dir(s.0.clone());
        let text = busy_text(second.claim(tcp(&[("other", "10.0.0.2:80"), ("web", "10.0.0.1:80")])));
        assert!(text.contains("service web") && text.contains("10.0.0.1:80 (tcp)"), "{text}");
        assert!(text.contains(&format!("pid {}", std::process::id())), "{text}");
        assert!(second.held().is_empty(), "a refused claim gives back what it took: {:?}", second.held());
        // The same address over UDP, or in another port, is another VIP.
        second.claim([("dns", vip("10.0.0.1:80"), Protocol::Udp)]).unwrap();
        second.claim(tcp(&[("alt", "10.0.0.1:81")])).unwrap();
        // Once the first is gone (its locks dropped with it), the VIP is free.
        drop(first);
        second.claim(tcp(&[("web", "10.0.0.1:80")])).unwrap();
    }

    #[test]
    fn specific_vips_of_two_daemons_share_a_port_but_not_with_the_unspecified_address() {
        let s = Scratch::new("wild");
        let mut a = VipLocks::in_dir(s.0.clone());
        a.claim(tcp(&[("a", "10.0.0.1:80")])).unwrap();
        let mut b = VipLocks::in_dir(s.0.clone());
        b.claim(tcp(&[("b", "10.0.0.2:80")])).unwrap();
        let mut c = VipLocks::in_dir(s.0.clone());
        let text = busy_text(c.claim(tcp(&[("any", "0.0.0.0:80")])));
        assert!(text.contains("would take over"), "{text}");
        // IPv6's unspecified address is another family: no overlap (IPV6_V6ONLY).
        c.claim(tcp(&[("any6", "[::]:80")])).unwrap();
        drop((a, b));
        c.claim(tcp(&[("any", "0.0.0.0:80")])).unwrap();
        let mut d = VipLocks::in_dir(s.0.clone());
        let text = busy_text(d.claim(tcp(&[("d", "10.0.0.3:80")])));
        assert!(text.contains("0.0.0.0:80 (tcp), which takes VIP 10.0.0.3:80 (tcp)'s traffic too"), "{text}");
    }

    #[test]
    fn one_daemon_moves_and_swaps_its_own_vips_freely() {
        let s = Scratch::new("own");
        let mut mine = VipLocks::in_dir(s.0.clone());
        let before = tcp(&[("a", "10.0.0.1:80"), ("b", "10.0.0.1:81")]);
        mine.claim(before.clone()).unwrap();
        mine.settle(before);
        // a and b swap VIPs: both locks are already ours.
        let swapped = tcp(&[("a", "10.0.0.1:81"), ("b", "10.0.0.1:80")]);
        mine.claim(swapped.clone()).unwrap();
        mine.settle(swapped);
        // Then b goes and a adds the unspecified address of its port: ours, so allowed.
        let next = tcp(&[("a", "10.0.0.1:81"), ("any", "0.0.0.0:81")]);
        mine.claim(next.clone()).unwrap();
        mine.settle(next);
        let held: Vec<String> = mine.held().iter().map(|(k, m)| format!("{k} {m:?}")).collect();
        assert_eq!(held, ["0.0.0.0:81 (tcp) Exclusive", "10.0.0.1:81 (tcp) Exclusive"]);
        // The lock files of released VIPs go, and the VIPs are free for another daemon.
        assert_eq!(std::fs::read_dir(&s.0).unwrap().count(), 2);
        let mut other = VipLocks::in_dir(s.0.clone());
        other.claim(tcp(&[("x", "10.0.0.1:80")])).unwrap();
        // Dropping the unspecified address lowers its port lock to shared: another daemon's
        // specific VIP on that port fits beside.
        let last = tcp(&[("a", "10.0.0.1:81")]);
        mine.settle(last);
        other.claim(tcp(&[("y", "10.0.0.2:81")])).unwrap();
    }

    #[test]
    fn needed_locks_are_the_vip_exclusive_and_its_port_shared() {
        let n = needed(tcp(&[("a", "10.0.0.1:80"), ("any", "0.0.0.0:80"), ("six", "[fd00::1]:80")]));
        let got: Vec<String> = n.iter().map(|(k, (m, s, _))| format!("{k} {m:?} {s}")).collect();
        assert_eq!(
            got,
            [
                "0.0.0.0:80 (tcp) Exclusive any",
                "10.0.0.1:80 (tcp) Exclusive a",
                "[::]:80 (tcp) Shared six",
                "[fd00::1]:80 (tcp) Exclusive six",
            ]
        );
    }

    #[test]
    fn lock_files_are_named_by_namespace_protocol_address_and_port() {
        let k = VipKey::new(vip("[fd00::1]:443"), Protocol::Udp);
        assert_eq!(k.file_name(4026531840), "vip-net4026531840-udp-fd00::1-443.lock");
        assert_eq!(VipKey::new(vip("10.0.0.1:80"), Protocol::Tcp).file_name(7), "vip-net7-tcp-10.0.0.1-80.lock");
    }

    #[test]
    fn the_effective_uid_is_the_second_of_proc_status() {
        assert_eq!(effective_uid("Name:\tlb\nUid:\t1000\t0\t0\t0\nGid:\t0\n"), Some(0));
        assert_eq!(effective_uid("Name:\tlb\n"), None);
        assert_ne!(netns_inode(), 0);
    }
}

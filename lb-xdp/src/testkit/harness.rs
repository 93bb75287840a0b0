//! Packet tests run the real compiled XDP object through BPF_PROG_TEST_RUN, with its maps
//! filled by the daemon's own code path: config text → `Config` → `Desired` → `plan` →
//! `Writer::apply` (`reconcile`). Like Katran's fixture tester, each case compares whole
//! output frames.
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use crate::adopt::read_existing;
use crate::global::{fresh_seed, global_config_from, keep_live_snat_ports};
use crate::layout::MapSizes;
use crate::load;
use crate::maps::Maps;
use crate::plan::{HostFacts, Ids, Plan};
use crate::reconcile::reconcile;
use crate::store::MapStore;
use crate::writer::Writer;
use aya::programs::{TestRun, TestRunOptions, Xdp};
use aya::Ebpf;
use lb_common::addr::{ip_words, port_be};
use lb_common::consts::RING_SIZE;
use lb_common::hash::{flow_hash, snat_probe_start, source_hash};
use lb_common::maps::GlobalConfig;
use lb_common::reason::DropReason;
use lb_config::desired::Desired;
use lb_config::Config;

use super::model::ModelMaps;
use super::packet::{server_mac, Pkt, ACK, LB_MAC, SYN, TCP};
use super::view::View;

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;
pub const XDP_REDIRECT: u32 = 4;

const BPFFS: &str = "/run/lb-packet-tests";
static NEXT: AtomicU32 = AtomicU32::new(0);

pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("packet tests load XDP programs and need root; run them with `cargo xtask test` as root");
    }
}

/// Mounts the tests' bpffs unless it is mounted. One thread at a time: two tests that both
/// found it unmounted would mount it twice, and the second mount hides what the first
/// test pinned on the first (its pins then fail with ENOENT).
fn mount_bpffs() {
    static MOUNTING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = MOUNTING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    std::fs::create_dir_all(BPFFS).expect("create bpffs mount point");
    if !load::is_bpffs(std::path::Path::new(BPFFS)) {
        let ok = std::process::Command::new("mount").args(["-t", "bpf", "bpf", BPFFS]).status().expect("run mount");
        assert!(ok.success() || load::is_bpffs(std::path::Path::new(BPFFS)), "cannot mount a bpffs at {BPFFS}");
    }
}

/// A fresh, not yet created pin directory on the tests' bpffs (mounted on first use).
pub fn pin_dir() -> PathBuf {
    mount_bpffs();
    PathBuf::from(format!("{BPFFS}/t{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)))
}

/// The fixtures' services: nat and dsr, IPv4 and IPv6, TCP and UDP, and the seed's service
/// on the LB's own address (which is also the SNAT address).
pub const CONFIG: &str = r#"
[daemon]
interface = "eth0"
snat_ipv4 = "172.20.0.10"
snat_ipv6 = "fd00:20::10"
flow_table_size = 4096

[[service]]
name = "web"
vip = "172.20.0.100:80"
[[service.backend]]
address = "172.20.0.11:80"
[[service.backend]]
address = "172.20.0.12:80"
[[service.backend]]
address = "172.20.0.13:80"

[[service]]
name = "web6"
vip = "[fd00:20::100]:80"
[[service.backend]]
address = "[fd00:20::11]:80"
[[service.backend]]
address = "[fd00:20::12]:80"
[[service.backend]]
address = "[fd00:20::13]:80"

[[service]]
name = "dns"
vip = "172.20.0.100:53"
protocol = "udp"
[[service.backend]]
address = "172.20.0.11:53"
[[service.backend]]
address = "172.20.0.12:53"

[[service]]
name = "direct"
vip = "172.20.0.101:80"
forwarding = "dsr"
[[service.backend]]
address = "172.20.0.11:80"
[[service.backend]]
address = "172.20.0.12:80"

[[service]]
name = "direct6"
vip = "[fd00:20::101]:80"
forwarding = "dsr"
[[service.backend]]
address = "[fd00:20::12]:80"

[[service]]
name = "seed"
vip = "172.20.0.10:8080"
[[service.backend]]
address = "172.20.0.13:80"
"#;

pub struct Harness {
    writer: Writer,
    ebpf: Ebpf,
    pub config: Config,
    pub plan: Plan,
    ids: Ids,
    facts: HostFacts,
    pin: PathBuf,
    /// This "daemon"'s SNAT probe seed: drawn at `new` and `restart`, kept by reloads.
    seed: u32,
}

/// The test network's neighbours: servers .11-.13 (and fd00:20::11-13) with MACs 02::1N.
pub fn test_facts() -> HostFacts {
    let mut f = HostFacts::default();
    for n in 1..=3u8 {
        f.neighbours.insert(format!("172.20.0.1{n}").parse().unwrap(), server_mac(n));
        f.neighbours.insert(format!("fd00:20::1{n}").parse().unwrap(), server_mac(n));
    }
    f.own_addresses.insert("172.20.0.10".parse().unwrap());
    f.own_addresses.insert("fd00:20::10".parse().unwrap());
    f
}

impl Harness {
    pub fn new(toml: &str) -> Self {
        Self::with_facts(toml, test_facts())
    }

    pub fn with_facts(toml: &str, facts: HostFacts) -> Self {
        require_root();
        let config = Config::from_str(toml, "test.toml").unwrap_or_else(|e| panic!("test config: {e}"));
        let pin = pin_dir();
        let mut ebpf = load::load(&pin, &MapSizes::of(&config.daemon)).expect("load the XDP object");
        let writer = Writer::new(Maps::take(&mut ebpf).expect("take maps"));
        let ids = Ids::new(writer.maps.ring_services());
        let mut h = Harness { writer, ebpf, plan: empty_plan(), config, ids, facts, pin, seed: fresh_seed() };
        h.reconcile();
        h
    }

    /// Apply a new config the way the daemon does (same ids, shadow tables, flip).
    pub fn reload(&mut self, toml: &str) {
        self.try_reload(toml).unwrap_or_else(|e| panic!("reconcile: {e:#}"));
    }

    /// `reload`, with the reconcile's error returned; on an error the config stays the old
    /// one, as the daemon's does.
    pub fn try_reload(&mut self, toml: &str) -> anyhow::Result<()> {
        let config = Config::from_str(toml, "test.toml").unwrap_or_else(|e| panic!("test config: {e}"));
        let old = std::mem::replace(&mut self.config, config);
        self.try_reconcile(|_| {}).inspect_err(|_| self.config = old)
    }

    /// A restarted daemon with `toml`, as `lb run` adopts a running data path: the program
    /// loaded again on the pinned maps, the ids in use read back and kept, the new tables
    /// written by a new writer. The previous program goes (in the daemon, the link would
    /// switch to the new one).
    pub fn restart(&mut self, toml: &str) {
        self.config = Config::from_str(toml, "test.toml").unwrap_or_else(|e| panic!("test config: {e}"));
        let sizes = MapSizes::of(&self.config.daemon);
        let mut ebpf = load::load(&self.pin, &sizes).expect("load the XDP object again");
        let maps = Maps::take(&mut ebpf).expect("take maps");
        let adopted = read_existing(&maps).expect("read the pinned maps back");
        let mut ids = Ids::new(maps.ring_services());
        let mut writer = Writer::new(maps);
        writer.adopt(&adopted);
        ids.seed(&adopted);
        self.writer = writer;
        self.ebpf = ebpf;
        self.ids = ids;
        self.seed = fresh_seed();
        self.reconcile();
    }

    pub fn set_facts(&mut self, facts: HostFacts) {
        self.facts = facts;
        self.reconcile();
    }

    fn reconcile(&mut self) {
        self.reconcile_with(|_| {});
    }

    /// Reconcile the config's desired state as `change` leaves it (a breaker's state, say).
    pub fn reconcile_with(&mut self, change: impl FnOnce(&mut Desired)) {
        self.try_reconcile(change).unwrap_or_else(|e| panic!("reconcile: {e:#}"));
    }

    fn try_reconcile(&mut self, change: impl FnOnce(&mut Desired)) -> anyhow::Result<()> {
        let mut global = settings_of(&self.config);
        global.snat_seed = self.seed;
        // As the daemon's reload does: the live flows' SNAT ports stay valid.
        let global = keep_live_snat_ports(&self.plan.global, global);
        let mut desired = Desired::from_config(&self.config);
        change(&mut desired);
        self.plan = reconcile(&mut self.writer, &mut self.ids, &desired, global, &self.facts)?;
        Ok(())
    }

    pub fn maps(&self) -> &Maps {
        &self.writer.maps
    }

    /// For what the daemon does to the maps outside a reconcile (the flow sweep).
    pub fn maps_mut(&mut self) -> &mut Maps {
        &mut self.writer.maps
    }

    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    /// Run one frame: (action, output frame). It arrives on the loopback of a network
    /// namespace private to the calling thread, with forwarding off: the data path's FIB
    /// lookups then take the neighbour-table fallback (lb-ebpf `egress.rs`) whatever the
    /// host's own routes and sysctls, so the fixtures' frames are the same on every host.
    /// (`run_on` is for tests that build a namespace of their own.)
    pub fn run(&self, frame: &[u8]) -> (u32, Vec<u8>) {
        isolate_thread();
        let prog: &Xdp = self.ebpf.program(load::PROGRAM).expect("program").try_into().expect("xdp");
        let mut out = vec![0u8; frame.len() + 256];
        let r = prog
            .test_run(TestRunOptions { data_in: Some(frame), data_out: Some(&mut out), ..Default::default() })
            .expect("BPF_PROG_TEST_RUN");
        out.truncate(r.data_size_out as usize);
        (r.return_value, out)
    }

    /// Run one frame as if it arrived on interface `ifindex` (of the calling thread's network
    /// namespace): the FIB lookups of egress.rs then answer from that NIC.
    pub fn run_on(&self, ifindex: u32, frame: &[u8]) -> (u32, Vec<u8>) {
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index,
        // egress_ifindex. The kernel wants data_end = the frame's length, the rest 0.
        let md: [u32; 6] = [0, frame.len() as u32, 0, ifindex, 0, 0];
        let ctx: Vec<u8> = md.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let mut out = vec![0u8; frame.len() + 256];
        let r = self
            .program()
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ctx_in: Some(&ctx),
                ..Default::default()
            })
            .expect("BPF_PROG_TEST_RUN with an ingress interface");
        out.truncate(r.data_size_out as usize);
        (r.return_value, out)
    }

    pub fn drops(&self, reason: DropReason) -> u64 {
        self.maps().drop_stats.get(&(reason as u32), 0).expect("drop stats").iter().sum()
    }

    pub fn action_count(&self, action: u32) -> u64 {
        self.maps().action_stats.get(&action, 0).expect("action stats").iter().sum()
    }

    /// Where the data path must send a new flow: the service's table slot for the flow's
    /// hash (computed here from the plan, not read from the maps), and the first SNAT port
    /// it probes (from the seed the plan's settings carry).
    pub fn expected(&self, client: SocketAddr, vip: SocketAddr, proto: u8) -> (SocketAddr, u16) {
        let (src, _) = ip_words(client.ip());
        let (dst, _) = ip_words(vip.ip());
        let hash = flow_hash(&src, &dst, port_be(client.port()), port_be(vip.port()), proto);
        let service = self
            .plan
            .services
            .iter()
            .find(|s| s.vip.addr == dst && s.vip.port == port_be(vip.port()) && s.vip.proto == proto)
            .expect("service for VIP");
        let h = if service.info.algorithm == lb_common::consts::ALG_SOURCE_HASH { source_hash(&src) } else { hash };
        let id = service.table[(h % RING_SIZE) as usize];
        let backend = self.plan.backends.iter().find(|b| b.id == id).expect("backend in plan").address;
        let g = &self.plan.global;
        let range = (g.snat_port_max - g.snat_port_min) as u32 + 1;
        let start = snat_probe_start(g.snat_seed, &src, &dst, port_be(client.port()), port_be(vip.port()), proto);
        let port = g.snat_port_min + (start % range) as u16;
        (backend, port)
    }
}

/// For callers that drive BPF_PROG_TEST_RUN themselves (the data-path benchmark:
/// `repeat`, timing) or open the pinned maps a second time to fill them.
impl Harness {
    pub fn program(&self) -> &Xdp {
        self.ebpf.program(load::PROGRAM).expect("program").try_into().expect("xdp")
    }

    /// The bench entry point `lb_xdp_bench` (lb-ebpf `bench.rs`), loaded on first use
    /// beside `lb_xdp`, over the same maps.
    pub fn bench_program(&mut self) -> &Xdp {
        let p: &mut Xdp = self.ebpf.program_mut(load::BENCH_PROGRAM).expect("bench program").try_into().expect("xdp");
        if p.fd().is_err() {
            p.load().expect("load lb_xdp_bench");
        }
        self.ebpf.program(load::BENCH_PROGRAM).expect("bench program").try_into().expect("xdp")
    }

    /// Run `frame` `repeat` times through the bench entry point in one `BPF_PROG_TEST_RUN`,
    /// every repetition seeing the frame as given, or with the big-endian 32-bit word at
    /// `vary_at` (non-zero) counted up by one per repetition. (Action of the last
    /// repetition, the frame as the call left it, the kernel's mean time per repetition.)
    pub fn run_bench(&mut self, frame: &[u8], repeat: u32, vary_at: u32) -> (u32, Vec<u8>, std::time::Duration) {
        isolate_thread();
        let cpus = aya::util::nr_cpus().expect("number of CPUs");
        let mut map: aya::maps::PerCpuArray<_, lb_common::maps::BenchFrame> =
            aya::maps::PerCpuArray::try_from(self.private_map("LB_BENCH_FRAME")).expect("LB_BENCH_FRAME");
        let armed = vec![lb_common::maps::BenchFrame::armed(vary_at); cpus];
        map.set(0, aya::maps::PerCpuValues::try_from(armed).expect("per-CPU values"), 0).expect("arm LB_BENCH_FRAME");
        let mut out = vec![0u8; frame.len() + 256];
        let r = self
            .bench_program()
            .test_run(TestRunOptions { data_in: Some(frame), data_out: Some(&mut out), repeat, ..Default::default() })
            .expect("BPF_PROG_TEST_RUN of lb_xdp_bench");
        out.truncate(r.data_size_out as usize);
        (r.return_value, out, r.duration)
    }

    pub fn pin_path(&self) -> &std::path::Path {
        &self.pin
    }

    /// A map of the program that is not pinned (a module's private one), by name.
    pub fn private_map(&mut self, name: &str) -> &mut aya::maps::Map {
        self.ebpf.map_mut(name).unwrap_or_else(|| panic!("the XDP object has no map {name}"))
    }
}

thread_local! {
    static ISOLATED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Move the calling thread (once) into a network namespace of its own, gone with the
/// thread, with IPv4 and IPv6 forwarding off (a new namespace inherits IPv4's from the
/// host's).
fn isolate_thread() {
    if ISOLATED.with(|i| i.replace(true)) {
        return;
    }
    // SAFETY: unshare affects only this thread's network namespace.
    assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare(CLONE_NEWNET)");
    for key in ["ipv4/conf/all/forwarding", "ipv4/conf/lo/forwarding", "ipv6/conf/all/forwarding"] {
        // /proc/sys/net is the opening thread's namespace's.
        std::fs::write(format!("/proc/sys/net/{key}"), "0").unwrap_or_else(|e| panic!("{key}: {e}"));
    }
}

/// The data-path settings the harness's daemon gives `config` (the SNAT seed aside).
fn settings_of(config: &Config) -> GlobalConfig {
    let mut global = global_config_from(config, "eth0", None, None).expect("global config");
    global.if_mac = LB_MAC;
    global
}

/// What a fresh start on `toml` writes to the maps, reconciled on their in-memory model:
/// the reference a long-lived harness's maps are compared with. No program is loaded (the
/// verifier makes a load cost seconds), and the model's watch must see no broken promise.
pub fn fresh_view(toml: &str, facts: &HostFacts) -> View {
    let config = Config::from_str(toml, "test.toml").unwrap_or_else(|e| panic!("test config: {e}"));
    let mut maps = ModelMaps::new();
    maps.ring_services = MapSizes::of(&config.daemon).max_services;
    let mut ids = Ids::new(maps.ring_services);
    let mut writer = Writer::new(maps);
    let desired = Desired::from_config(&config);
    reconcile(&mut writer, &mut ids, &desired, settings_of(&config), facts)
        .unwrap_or_else(|e| panic!("a fresh start failed: {e:#}"));
    let broken = &writer.maps.violations;
    assert!(broken.is_empty(), "a fresh start broke a promise: {broken:?}");
    View::read(&writer.maps).expect("read the model")
}

/// The maps `writer` wrote, read back from the kernel, and its mirror checked against
/// them. Each reads every table, a syscall's copy of 65,537 slots per Maglev table: on two
/// threads, the wait is the longer read, not both.
pub fn read_back(writer: &Writer) -> (View, anyhow::Result<()>) {
    std::thread::scope(|s| {
        let mirror = s.spawn(|| writer.check_mirror());
        let view = View::read(&writer.maps).expect("read the maps back");
        (view, mirror.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
    })
}

fn empty_plan() -> Plan {
    Plan { global: Default::default(), services: Vec::new(), backends: Vec::new() }
}

impl Drop for Harness {
    fn drop(&mut self) {
        load::unpin_all(&self.pin);
    }
}

pub fn mac_of(addr: IpAddr) -> [u8; 6] {
    let last = match addr {
        IpAddr::V4(a) => a.octets()[3],
        IpAddr::V6(a) => a.octets()[15],
    };
    // .11 -> server 1, and fd00:20::11 (0x11 = 17) -> server 1
    let n = if last >= 0x11 && addr.is_ipv6() { last - 0x10 } else { last - 10 };
    server_mac(n)
}

/// The frame a client packet must leave the LB as in nat mode: from our SNAT address and
/// port to the backend, MACs from us to the backend, checksums recomputed from scratch.
pub fn natted(input: &Pkt, h: &Harness) -> (Pkt, std::net::SocketAddr, u16) {
    let (backend, port) = h.expected(input.src, input.dst, input.proto);
    let snat: std::net::IpAddr =
        if backend.is_ipv4() { "172.20.0.10".parse().unwrap() } else { "fd00:20::10".parse().unwrap() };
    let mut out = input.clone();
    out.src = std::net::SocketAddr::new(snat, port);
    out.dst = backend;
    out.src_mac = LB_MAC;
    out.dst_mac = mac_of(backend.ip());
    (out, backend, port)
}

/// A backend's reply to the LB's SNAT address:port.
pub fn reply_from(backend: std::net::SocketAddr, snat: &str, proto: u8) -> Pkt {
    let mut p = if proto == TCP {
        Pkt::tcp(&backend.to_string(), snat, SYN | ACK)
    } else {
        Pkt::udp(&backend.to_string(), snat)
    };
    p.src_mac = mac_of(backend.ip());
    p.dst_mac = LB_MAC;
    p.payload = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
    p
}

pub fn assert_frame(got: (u32, Vec<u8>), action: u32, want: &[u8], what: &str) {
    assert_eq!(got.0, action, "{what}: action");
    assert_eq!(hex(&got.1), hex(want), "{what}: output frame");
}

pub fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .chunks(16)
        .map(|c| c.join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

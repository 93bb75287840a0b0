//! `cargo xtask bench`'s control-plane measurements, printed as one JSON object on stdout:
//! how the daemon's costs grow with the number of services. Root only: the reconciles
//! write the real maps of the loaded XDP object (the packet tests' harness), and the map
//! memory is what the kernel charges for the maps it created.
//!
//! ```sh
//! cargo run --release -p lb-xdp --example bench_control -- [--quick]
//! ```
//!
//! - `maglev`: one Maglev table (M = 65537) for 10, 100 and 1000 backends, median of
//!   `maglev_builds` builds.
//! - `plan`: every table of a config of N services built from scratch (the daemon's `plan`
//!   with fresh ids, as at a start): what a whole-config build costs.
//! - `reconcile`: the daemon's reconcile of N services (config → desired state → plan →
//!   map writes, shadow tables, flip) into empty maps, then a reload changing one weight in
//!   every service (every table rebuilt and rewritten).
//! - `memory`: the kernel's `memlock` (`/proc/self/fdinfo`) of every map of a fresh load,
//!   per `flow_table_size` and `max_services`.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use lb_common::consts::{DEFAULT_MAX_SERVICES, MAX_BACKENDS, MAX_SERVICES, RING_SIZE};
use lb_common::maglev::{build, MaglevBackend};
use lb_common::maps::GlobalConfig;
use lb_config::desired::Desired;
use lb_config::Config;
use lb_xdp::layout::MapSizes;
use lb_xdp::load;
use lb_xdp::plan::{plan, HostFacts, Ids};
use lb_xdp::testkit::harness::{pin_dir, require_root, Harness};
use lb_xdp::testkit::packet::server_mac;
use serde_json::{json, Value};

/// Backends of every service: 16, so that 1000 services hold 16000 of the 16384.
const BACKENDS_PER_SERVICE: u32 = 16;

/// Sizes for one run of the benchmark.
struct Counts {
    /// Service counts for the plan and reconcile rows.
    services: &'static [u32],
    /// Maglev builds per size (the median is reported).
    maglev_builds: u32,
    /// (flow_table_size, max_services) of each memory row.
    memory: &'static [(u32, u32)],
}

const FULL: Counts = Counts {
    services: &[1, 100, 1000],
    maglev_builds: 5,
    memory: &[
        (1 << 10, DEFAULT_MAX_SERVICES),
        (1 << 20, DEFAULT_MAX_SERVICES),
        (10 << 20, DEFAULT_MAX_SERVICES),
        (1 << 20, MAX_SERVICES),
    ],
};
/// The quick run (a debug build, in CI) only shows every measurement works: fewer services
/// and no 10M-entry table.
const QUICK: Counts =
    Counts { services: &[1, 10, 100], maglev_builds: 1, memory: &[(1 << 10, DEFAULT_MAX_SERVICES), (1 << 20, 16)] };

fn main() {
    require_root();
    let quick = std::env::args().any(|a| a == "--quick");
    let c = if quick { QUICK } else { FULL };
    let started = Instant::now();
    let out = json!({
        "quick": quick,
        "backends_per_service": BACKENDS_PER_SERVICE,
        "limits": { "max_services": MAX_SERVICES, "max_backends": MAX_BACKENDS },
        "maglev": maglev(&c),
        "plan": c.services.iter().map(|&n| plan_all(n)).collect::<Vec<_>>(),
        "reconcile": c.services.iter().map(|&n| reconcile(n)).collect::<Vec<_>>(),
        "memory": c.memory.iter().map(|&(flows, services)| memory(flows, services)).collect::<Vec<_>>(),
        "seconds": started.elapsed().as_secs_f64(),
    });
    println!("{out}");
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// Maglev table builds at the data path's size, median of `maglev_builds`.
fn maglev(c: &Counts) -> Vec<Value> {
    [10u32, 100, 1000]
        .iter()
        .map(|&n| {
            let backends: Vec<MaglevBackend> = (0..n)
                .map(|i| MaglevBackend::new(i, format!("10.1.{}.{}:80", i / 256, i % 256).as_bytes(), 1))
                .collect();
            let mut times: Vec<f64> = (0..c.maglev_builds)
                .map(|_| {
                    let t = Instant::now();
                    let table = build(&backends, RING_SIZE);
                    assert_eq!(table.len(), RING_SIZE as usize);
                    ms_since(t)
                })
                .collect();
            times.sort_by(f64::total_cmp);
            json!({ "backends": n, "m": RING_SIZE, "ms": times[times.len() / 2] })
        })
        .collect()
}

/// Service `s`'s VIP: one address per service, as many services on many addresses have.
fn vip(s: u32) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, (s >> 8) as u8, s as u8)), 80)
}

/// Backend `j` of service `s`: every one a different address.
fn backend(s: u32, j: u32) -> SocketAddr {
    let g = s * BACKENDS_PER_SERVICE + j;
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 64 + (g >> 16) as u8, (g >> 8) as u8, g as u8)), 80)
}

/// The daemon settings for `services` services: the default `max_services` when it is
/// enough (what such a user runs), else the most.
fn daemon(services: u32) -> String {
    let max_services = if services <= DEFAULT_MAX_SERVICES { DEFAULT_MAX_SERVICES } else { MAX_SERVICES };
    format!(
        "[daemon]\ninterface = \"eth0\"\nsnat_ipv4 = \"172.20.0.10\"\nflow_table_size = 4096\nmax_services = {max_services}\n"
    )
}

/// `services` nat services of `BACKENDS_PER_SERVICE` backends; `weight` is the first
/// backend's of every service (the reload changes it).
fn config(services: u32, weight: u32) -> String {
    let mut t = daemon(services);
    for s in 0..services {
        let _ = write!(t, "\n[[service]]\nname = \"s{s}\"\nvip = \"{}\"\n", vip(s));
        for j in 0..BACKENDS_PER_SERVICE {
            let w = if j == 0 { weight } else { 1 };
            let _ = write!(t, "[[service.backend]]\naddress = \"{}\"\nweight = {w}\n", backend(s, j));
        }
    }
    t
}

/// Every backend's next hop resolved, so every backend is in its table.
fn facts(services: u32) -> HostFacts {
    let mut f = HostFacts::default();
    for s in 0..services {
        for j in 0..BACKENDS_PER_SERVICE {
            f.neighbours.insert(backend(s, j).ip(), server_mac(1));
        }
    }
    f
}

/// Every table of `services` services built from nothing, by the daemon's own planner.
fn plan_all(services: u32) -> Value {
    assert!(services * BACKENDS_PER_SERVICE <= MAX_BACKENDS);
    let cfg = Config::from_str(&config(services, 1), "bench.toml").expect("the bench config is valid");
    let desired = Desired::from_config(&cfg);
    let facts = facts(services);
    let mut ids = Ids::new(cfg.daemon.max_services);
    let t = Instant::now();
    let p = plan(&desired, GlobalConfig::default(), &facts, &mut ids).expect("plan");
    let ms = ms_since(t);
    assert_eq!(p.services.len(), services as usize);
    assert!(p.services.iter().all(|s| s.table.iter().all(|&id| id != lb_common::consts::NO_BACKEND)));
    json!({ "services": services, "backends_per_service": BACKENDS_PER_SERVICE, "ms": ms })
}

/// A reconcile of `services` services into empty maps, then a reload changing one weight
/// in each.
fn reconcile(services: u32) -> Value {
    let mut h = Harness::with_facts(&daemon(services), facts(services));
    let t = Instant::now();
    h.reload(&config(services, 1));
    let initial = ms_since(t);
    assert_eq!(h.plan.services.len(), services as usize);
    let t = Instant::now();
    h.reload(&config(services, 2));
    let change = ms_since(t);
    let first = h
        .plan
        .backends
        .iter()
        .find(|b| b.address == backend(services - 1, 0))
        .expect("the last service's first backend");
    assert_eq!(first.meta.weight, 2, "the reload changed the weight");
    json!({
        "services": services,
        "backends_per_service": BACKENDS_PER_SERVICE,
        "max_services": h.config.daemon.max_services,
        "initial_ms": initial,
        "change_all_ms": change,
    })
}

/// What the kernel charges for the maps of one fresh load: `memlock` of every map fd this
/// process holds once the object is loaded (it holds no other), by map.
fn memory(flow_table_size: u32, max_services: u32) -> Value {
    let pin = pin_dir();
    let ebpf = load::load(&pin, &MapSizes { flow_table_size, max_services }).expect("load the XDP object");
    let maps = map_memory();
    drop(ebpf);
    load::unpin_all(&pin);
    let sum = |names: &[&str]| maps.iter().filter(|(n, _)| names.contains(&n.as_str())).map(|(_, b)| b).sum::<u64>();
    let flows = sum(&["LB_FLOWS", "LB_NAT"]);
    let tables = sum(&["LB_RING", "LB_SEQ"]);
    let total: u64 = maps.iter().map(|(_, b)| b).sum();
    assert!(flows > 0 && tables > 0, "the flow tables and table arrays were not found: {maps:?}");
    json!({
        "flow_table_size": flow_table_size,
        "max_services": max_services,
        "maps": maps.len(),
        "flow_tables_bytes": flows,
        "service_tables_bytes": tables,
        "other_bytes": total - flows - tables,
        "total_bytes": total,
    })
}

/// (kernel name, memlock bytes) of every BPF map fd open in this process.
fn map_memory() -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").expect("list /proc/self/fd").flatten() {
        let is_map = std::fs::read_link(entry.path()).is_ok_and(|t| t.to_string_lossy() == "anon_inode:bpf-map");
        if !is_map {
            continue;
        }
        let fd = entry.file_name();
        let Ok(info) = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.to_string_lossy())) else {
            continue;
        };
        let field =
            |key: &str| info.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.trim().parse::<u64>().ok());
        let (Some(id), Some(memlock)) = (field("map_id:"), field("memlock:")) else { continue };
        let name = aya::maps::MapInfo::from_id(id as u32)
            .ok()
            .and_then(|m| m.name_as_str().map(str::to_string))
            .unwrap_or_default();
        // The loader's own maps (`.rodata`, aya's probes) are not the data path's.
        if name.starts_with("LB_") {
            out.push((name, memlock));
        }
    }
    out.sort();
    out
}

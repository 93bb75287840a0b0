//! The pinned-map ABI against the real XDP object on a real bpffs: the object holds exactly
//! the table's maps and the declared scratch maps, the pins are exactly the table's, and
//! `load` refuses pins of another layout before it reuses any of them. Root only, like the
//! other packet tests: `cargo xtask test` runs them (`--ignored`).

use std::collections::BTreeSet;
use std::path::Path;

use aya::maps::{Array, Map, MapData, MapInfo};
use lb_common::abi::map_names;
use lb_common::abi::{LAYOUT_VERSION, PINNED_MAPS, SCRATCH_MAPS};
use lb_common::consts::{DEFAULT_MAX_SERVICES, MAX_BACKENDS};
use lb_common::maps::{BackendMeta, ServiceMeta};
use lb_xdp::layout::{LayoutMismatch, MapSizes};
use lb_xdp::load;
use lb_xdp::maps::Maps;
use lb_xdp::testkit::harness::{pin_dir, require_root};

/// The sizes the loads here give the maps sized at load time.
const SIZES: MapSizes = MapSizes { flow_table_size: 4096, max_services: DEFAULT_MAX_SERVICES };

fn table_names() -> BTreeSet<String> {
    PINNED_MAPS.iter().map(|s| s.name.to_string()).collect()
}

fn pins(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .expect("read the pin directory")
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

/// Pin a one-entry `LB_LAYOUT` holding `version`, as some lb would have.
fn pin_layout(dir: &Path, version: u32) {
    let mut layout = Array::<MapData, u32>::create(1, 0).expect("create a layout map");
    layout.set(0, version, 0).expect("write the version");
    layout.pin(dir.join(map_names::LAYOUT)).expect("pin LB_LAYOUT");
}

fn pinned_layout(dir: &Path) -> Array<MapData, u32> {
    let data = MapData::from_pin(dir.join(map_names::LAYOUT)).expect("open LB_LAYOUT");
    Map::from_map_data(data).unwrap().try_into().unwrap()
}

fn refusal(dir: &Path) -> String {
    let err = load::load(dir, &SIZES).expect_err("load must refuse these pins");
    assert!(err.is::<LayoutMismatch>(), "refused for another reason: {err:#}");
    format!("{err:#}")
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn the_object_holds_the_pinned_table_and_the_declared_scratch_maps_only() {
    require_root();
    let dir = pin_dir();
    let ebpf = load::load(&dir, &SIZES).expect("load the XDP object");
    let in_object: BTreeSet<String> = ebpf.maps().map(|(name, _)| name.to_string()).collect();
    let mut declared = table_names();
    declared.extend(SCRATCH_MAPS.iter().map(|s| s.to_string()));
    assert_eq!(in_object, declared, "maps in the object vs the table and SCRATCH_MAPS");
    assert_eq!(pins(&dir), table_names(), "pinned: every table map, and no scratch map");
    for spec in PINNED_MAPS {
        let info = MapInfo::from_pin(dir.join(spec.name)).expect("pinned map info");
        let entries = SIZES.entries(spec.name).unwrap_or(spec.max_entries);
        assert_eq!(
            (info.map_type().unwrap() as u32, info.key_size(), info.value_size(), info.max_entries()),
            (spec.kind as u32, spec.key_size, spec.value_size, entries),
            "{} as pinned vs its table row",
            spec.name
        );
    }
    drop(ebpf);
    load::unpin_all(&dir);
    assert!(!dir.exists(), "unpin_all leaves {:?}", pins(&dir));
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn loading_twice_with_the_same_layout_adopts_the_pins_with_what_they_hold() {
    require_root();
    let dir = pin_dir();
    let mut first = load::load(&dir, &SIZES).expect("first load");
    let mut maps = Maps::take(&mut first).expect("take maps");
    maps.active.set(7, 42, 0).expect("write LB_ACTIVE");
    drop((maps, first));
    let mut second = load::load(&dir, &SIZES).expect("second load adopts the pins");
    let maps = Maps::take(&mut second).expect("take maps");
    assert_eq!(maps.active.get(&7, 0).unwrap(), 42, "the adopted map is the pinned one");
    assert_eq!(maps.layout.get(&0, 0).unwrap(), LAYOUT_VERSION);
    drop((maps, second));
    Maps::open_pinned(&dir).expect("lb list opens pins of its own layout");
    load::unpin_all(&dir);
    assert!(!dir.exists());
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_pinned_map_of_another_size_is_refused_naming_the_map_and_both_sizes() {
    require_root();
    let dir = pin_dir();
    std::fs::create_dir_all(&dir).unwrap();
    pin_layout(&dir, LAYOUT_VERSION);
    // BackendMeta before it grew from 8 to 12 bytes.
    let old = Array::<MapData, [u8; 8]>::create(MAX_BACKENDS, 0).expect("create an 8-byte LB_BACKEND_META");
    old.pin(dir.join(map_names::BACKEND_META)).expect("pin it");
    let msg = refusal(&dir);
    assert!(msg.contains("LB_BACKEND_META has value size 8 bytes, this lb's is 12 bytes"), "{msg}");
    assert!(msg.contains("--detach-on-exit") && msg.contains(&dir.display().to_string()), "no way out in: {msg}");
    assert_eq!(
        pins(&dir),
        BTreeSet::from([map_names::LAYOUT.to_string(), map_names::BACKEND_META.to_string()]),
        "nothing created or replaced"
    );
    let info = MapInfo::from_pin(dir.join(map_names::BACKEND_META)).unwrap();
    assert_eq!(info.value_size(), 8, "the old map is left as it was");
    load::unpin_all(&dir);
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn pins_of_another_layout_version_are_refused_naming_both_versions() {
    require_root();
    let dir = pin_dir();
    drop(load::load(&dir, &SIZES).expect("first load"));
    let newer = LAYOUT_VERSION + 1;
    pinned_layout(&dir).set(0, newer, 0).expect("write the version");
    let msg = refusal(&dir);
    assert!(msg.contains(&format!("layout version {newer}; this lb has layout version {LAYOUT_VERSION}")), "{msg}");
    let err = Maps::open_pinned(&dir).err().expect("lb list refuses them too");
    assert!(err.is::<LayoutMismatch>(), "{err:#}");
    assert_eq!(pinned_layout(&dir).get(&0, 0).unwrap(), newer, "the pinned version is left as it was");
    load::unpin_all(&dir);
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn pins_without_a_layout_version_are_refused() {
    require_root();
    let dir = pin_dir();
    drop(load::load(&dir, &SIZES).expect("first load"));
    // As an lb from before layout versions leaves them.
    std::fs::remove_file(dir.join(map_names::LAYOUT)).unwrap();
    let msg = refusal(&dir);
    assert!(
        msg.contains("carry no layout version") && msg.contains(&format!("layout version {LAYOUT_VERSION}")),
        "{msg}"
    );
    load::unpin_all(&dir);
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn unpin_all_removes_the_pin_directory_with_whatever_another_lb_left_in_it() {
    require_root();
    let dir = pin_dir();
    drop(load::load(&dir, &SIZES).expect("load"));
    let stray = Array::<MapData, u32>::create(1, 0).unwrap();
    stray.pin(dir.join("LB_RETIRED")).expect("pin a map no table row names");
    load::unpin_all(&dir);
    assert!(!dir.exists(), "left behind: {:?}", pins(&dir));
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn a_fresh_load_that_fails_part_way_leaves_no_pins_and_the_next_load_succeeds() {
    require_root();
    let dir = pin_dir();
    // A flow table no kernel will allocate: the maps sized by it fail to be created, after
    // the loader has created (and pinned) some of the others.
    let too_big = MapSizes { flow_table_size: u32::MAX, ..SIZES };
    let err = load::load(&dir, &too_big).expect_err("a flow table of u32::MAX entries cannot be created");
    assert!(!err.is::<LayoutMismatch>(), "failed at the layout check, not the load: {err:#}");
    let left: BTreeSet<String> = if dir.exists() { pins(&dir) } else { BTreeSet::new() };
    assert!(left.is_disjoint(&table_names()), "a failed fresh load left maps pinned: {left:?}");
    // Were any left, they would carry no layout version and the next start would refuse them.
    let ebpf = load::load(&dir, &SIZES).unwrap_or_else(|e| panic!("the next load, with sizes that fit: {e:#}"));
    drop(ebpf);
    load::unpin_all(&dir);
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn the_slots_in_use_are_read_whole_in_a_batch_as_slot_by_slot_lookups_read_them() {
    require_root();
    let dir = pin_dir();
    let mut ebpf = load::load(&dir, &SIZES).expect("load");
    let mut maps = Maps::take(&mut ebpf).expect("take maps");
    // The first and last slots, and some between, each with a meta of its own.
    let used: Vec<u32> = vec![0, 1, 7, 4096, MAX_BACKENDS - 2, MAX_BACKENDS - 1];
    for (i, &id) in used.iter().enumerate() {
        let meta =
            BackendMeta { weight: 100 + i as u32, state: 1, health: 2, source: 3, in_use: 1, circuit: 2, _pad: [0; 3] };
        maps.backend_meta.set(id, meta, 0).expect("write a backend meta");
    }
    let mut service = ServiceMeta { in_use: 1, backend_count: 6, algorithm: 3, ..Default::default() };
    service.name[..3].copy_from_slice(b"web");
    maps.service_meta.set(DEFAULT_MAX_SERVICES - 1, service, 0).expect("write a service meta");

    let started = std::time::Instant::now();
    let batch = maps.backends_in_use().expect("read in a batch");
    let batch_took = started.elapsed();
    let started = std::time::Instant::now();
    let one_by_one: Vec<(u32, BackendMeta)> = (0..MAX_BACKENDS)
        .map(|id| (id, maps.backend_meta.get(&id, 0).unwrap()))
        .filter(|(_, m)| m.in_use != 0)
        .collect();
    let one_by_one_took = started.elapsed();
    assert_eq!(batch.iter().map(|(id, _)| *id).collect::<Vec<_>>(), used);
    assert_eq!(batch, one_by_one, "the batch reads what slot-by-slot lookups read");
    assert_eq!(maps.services_in_use().expect("services"), vec![(DEFAULT_MAX_SERVICES - 1, service)]);
    println!("{MAX_BACKENDS} backend slots: one batch {batch_took:?}, one lookup each {one_by_one_took:?}");
    drop((maps, ebpf));
    load::unpin_all(&dir);
}

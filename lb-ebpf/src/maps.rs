//! The pinned maps, one `#[map]` static per row of lb-common's pinned-map table
//! (`lb_common::pinned_maps!`), named as the row names it (`LB_VIPS`, ...): pinned by that
//! name under the daemon's `pin_path`. Capacities are the table's; the daemon sets the flow
//! tables' size from `flow_table_size` at load time. Only lb-common is used here: the
//! modules' private scratch maps live in the modules themselves.

use aya_ebpf::{
    macros::map,
    maps::{Array, DevMapHash, HashMap, LpmTrie, LruHashMap, PerCpuArray},
};

/// One row of the table as a pinned `#[map]` static of its kind. Arrays take no key type:
/// aya-ebpf keys them by `u32`, as the table does.
macro_rules! pinned_static {
    ($(#[$doc:meta])* $name:ident, Array, $k:ty, $v:ty, $cap:expr) => {
        $(#[$doc])* #[map] pub static $name: Array<$v> = Array::pinned($cap, 0);
    };
    ($(#[$doc:meta])* $name:ident, PerCpuArray, $k:ty, $v:ty, $cap:expr) => {
        $(#[$doc])* #[map] pub static $name: PerCpuArray<$v> = PerCpuArray::pinned($cap, 0);
    };
    ($(#[$doc:meta])* $name:ident, HashMap, $k:ty, $v:ty, $cap:expr) => {
        $(#[$doc])* #[map] pub static $name: HashMap<$k, $v> = HashMap::pinned($cap, 0);
    };
    ($(#[$doc:meta])* $name:ident, LpmTrie, $k:ty, $v:ty, $cap:expr) => {
        $(#[$doc])* #[map] pub static $name: LpmTrie<$k, $v> = LpmTrie::pinned($cap, 0);
    };
    ($(#[$doc:meta])* $name:ident, LruHashMap, $k:ty, $v:ty, $cap:expr) => {
        $(#[$doc])* #[map] pub static $name: LruHashMap<$k, $v> = LruHashMap::pinned($cap, 0);
    };
    // aya-ebpf's DevMapHash fixes its own key (u32) and value (`bpf_devmap_val`, which
    // the row's `TxPort` mirrors).
    ($(#[$doc:meta])* $name:ident, DevMapHash, $k:ty, $v:ty, $cap:expr) => {
        $(#[$doc])* #[map] pub static $name: DevMapHash = DevMapHash::pinned($cap, 0);
    };
}

macro_rules! pinned_statics {
    ($($(#[$doc:meta])* $name:ident ($short:ident, $field:ident): $kind:ident ($k:ty => $v:ty) [$cap:expr];)*) => {
        $(pinned_static!($(#[$doc])* $name, $kind, $k, $v, $cap);)*
    };
}

lb_common::pinned_maps!(pinned_statics);

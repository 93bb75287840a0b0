//! The pinned maps' layout, checked before anything reuses them: the version in
//! `LB_LAYOUT`, and each pin's kind, key size, value size and capacity against lb-common's
//! pinned-map table. aya reuses a pinned map by name without comparing any of that, so a
//! daemon of another layout would otherwise read and write the maps wrongly.
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use aya::maps::{Array, Map, MapData, MapInfo};
use lb_common::abi::map_names;
use lb_common::abi::{MapSpec, LAYOUT_VERSION, PINNED_MAPS};
use lb_common::consts::{ring_entries, seq_entries};
use tracing::warn;

/// The maps whose capacity is `flow_table_size`, set at load time over the object's.
pub const SIZED_BY_FLOW_TABLE: [&str; 3] = [map_names::FLOWS, map_names::NAT, map_names::PERSIST];
/// `LB_PERSIST` holds one entry per persisting client, not per flow: an eighth of the flow
/// table (clients with several flows at once are the reason to persist at all).
pub const PERSIST_SHARE: u32 = 8;
/// The smallest `LB_PERSIST`, whatever the flow table.
pub const MIN_PERSIST_ENTRIES: u32 = 1024;
/// The maps whose capacity follows `max_services`, set at load time over the object's: the
/// table arrays, two Maglev tables (1 MiB of kernel memory) per service, which at the most
/// services (`consts::MAX_SERVICES`) would take 1 GiB whether used or not.
pub const SIZED_BY_MAX_SERVICES: [&str; 2] = [map_names::RING, map_names::SEQ];

/// The capacities the daemon's settings give the maps sized at load time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapSizes {
    /// `daemon.flow_table_size`: entries of `LB_FLOWS` and `LB_NAT`.
    pub flow_table_size: u32,
    /// `daemon.max_services`: services `LB_RING` and `LB_SEQ` hold tables for.
    pub max_services: u32,
}

impl MapSizes {
    pub fn of(daemon: &lb_config::Daemon) -> Self {
        Self { flow_table_size: daemon.flow_table_size, max_services: daemon.max_services }
    }

    /// The entries these settings give map `name`; `None` for a map of fixed capacity.
    pub fn entries(&self, name: &str) -> Option<u32> {
        if name == map_names::PERSIST {
            Some((self.flow_table_size / PERSIST_SHARE).max(MIN_PERSIST_ENTRIES))
        } else if SIZED_BY_FLOW_TABLE.contains(&name) {
            Some(self.flow_table_size)
        } else if name == map_names::RING {
            Some(ring_entries(self.max_services))
        } else if name == map_names::SEQ {
            Some(seq_entries(self.max_services))
        } else {
            None
        }
    }
}

/// The setting that sizes map `name` at load time, for messages.
fn sizing_setting(name: &str) -> Option<&'static str> {
    if SIZED_BY_FLOW_TABLE.contains(&name) {
        Some("flow_table_size")
    } else if SIZED_BY_MAX_SERVICES.contains(&name) {
        Some("max_services")
    } else {
        None
    }
}

/// Pins this build must not adopt: another layout version, or a map whose kind, key size,
/// value size or capacity is not the pinned-map table's.
#[derive(Debug, thiserror::Error)]
pub struct LayoutMismatch {
    pub pin_dir: PathBuf,
    /// `LB_LAYOUT`'s version; `None` when the pins carry none.
    pub found: Option<u32>,
    /// One line per map that differs, naming both sides.
    pub maps: Vec<String>,
}

impl fmt::Display for LayoutMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = self.pin_dir.display();
        match self.found {
            Some(v) if v == LAYOUT_VERSION => {
                write!(f, "the maps pinned under {dir} have this lb's layout version {v}, yet differ from it")?
            }
            Some(v) => write!(f, "the maps pinned under {dir} have layout version {v}; this lb has layout version {LAYOUT_VERSION}")?,
            None => write!(f, "the maps pinned under {dir} carry no layout version (an lb older than layout versions pinned them); this lb has layout version {LAYOUT_VERSION}")?,
        }
        if !self.maps.is_empty() {
            write!(f, " ({})", self.maps.join("; "))?;
        }
        write!(
            f,
            ". This lb would misread them, so it neither adopts nor reads them. Crossing a layout \
             change drops the live flows: take the running data path away (start the lb that \
             pinned it as `lb run --detach-on-exit` and stop it, or `rm -r {dir}`), then start \
             this lb"
        )
    }
}

/// Check the pins under `pin_dir` against the pinned-map table before anything reuses them:
/// aya's loader and `MapData::from_pin` take a pin by name, whatever its layout, and would
/// then read and write it with this build's sizes. Nothing pinned: nothing to check.
/// `sizes`, when starting, is what the maps sized at load time would be sized to: a pin of
/// another size is kept as it is, with a warning (it still holds the same entries; the
/// writer reads the services the table arrays hold from the maps themselves).
pub fn check_pinned_layout(pin_dir: &Path, sizes: Option<&MapSizes>) -> Result<()> {
    let pinned: Vec<&MapSpec> = PINNED_MAPS.iter().filter(|s| pin_dir.join(s.name).exists()).collect();
    if pinned.is_empty() {
        return Ok(());
    }
    let mut maps = Vec::new();
    let mut layout_readable = true;
    for spec in pinned {
        let path = pin_dir.join(spec.name);
        let info = MapInfo::from_pin(&path).with_context(|| format!("cannot read pinned map {}", path.display()))?;
        let differs = differences(spec, &info, sizes);
        layout_readable &= spec.name != map_names::LAYOUT || differs.is_empty();
        maps.extend(differs);
    }
    // LB_LAYOUT is read only as the one-entry u32 array it always is; another shape is
    // already named in `maps`.
    let found = if layout_readable { pinned_version(pin_dir)? } else { None };
    if found != Some(LAYOUT_VERSION) || !maps.is_empty() {
        return Err(LayoutMismatch { pin_dir: pin_dir.to_path_buf(), found, maps }.into());
    }
    Ok(())
}

/// How a pinned map differs from its table row, one phrase per attribute.
fn differences(spec: &MapSpec, info: &MapInfo, sizes: Option<&MapSizes>) -> Vec<String> {
    let name = spec.name;
    let mut out = Vec::new();
    let kind = info.map_type().map_or(u32::MAX, |t| t as u32);
    if kind != spec.kind as u32 {
        out.push(format!(
            "{name} is a map of kernel type {kind}, this lb's is {:?} (type {})",
            spec.kind, spec.kind as u32
        ));
    }
    for (what, pinned, ours) in [("key", info.key_size(), spec.key_size), ("value", info.value_size(), spec.value_size)]
    {
        if pinned != ours {
            out.push(format!("{name} has {what} size {pinned} bytes, this lb's is {ours} bytes"));
        }
    }
    let entries = info.max_entries();
    if let Some(setting) = sizing_setting(name) {
        if let Some(size) = sizes.and_then(|s| s.entries(name)).filter(|size| *size != entries) {
            warn!("{name} stays at its pinned {entries} entries, not the {size} {setting} asks for; {setting} applies after a fresh start (--detach-on-exit)");
        }
    } else if entries != spec.max_entries {
        out.push(format!("{name} has {entries} entries, this lb's has {}", spec.max_entries));
    }
    out
}

/// The version in the pinned `LB_LAYOUT`, if there is one.
fn pinned_version(pin_dir: &Path) -> Result<Option<u32>> {
    let path = pin_dir.join(map_names::LAYOUT);
    if !path.exists() {
        return Ok(None);
    }
    let data = MapData::from_pin(&path).with_context(|| format!("cannot open {}", path.display()))?;
    let layout: Array<MapData, u32> = Map::from_map_data(data)?.try_into()?;
    Ok(Some(layout.get(&0, 0).with_context(|| format!("cannot read {}", path.display()))?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(found: Option<u32>, maps: &[&str]) -> String {
        let e = LayoutMismatch {
            pin_dir: "/sys/fs/bpf/lb".into(),
            found,
            maps: maps.iter().map(|m| m.to_string()).collect(),
        };
        e.to_string()
    }

    #[test]
    fn a_refusal_names_both_versions_and_the_way_out() {
        let m = message(Some(LAYOUT_VERSION + 1), &[]);
        assert!(
            m.contains(&format!("layout version {}; this lb has layout version {LAYOUT_VERSION}", LAYOUT_VERSION + 1)),
            "{m}"
        );
        assert!(m.contains("lb run --detach-on-exit") && m.contains("rm -r /sys/fs/bpf/lb"), "{m}");
        assert!(message(None, &[]).contains("carry no layout version"));
    }

    #[test]
    fn a_refusal_at_the_same_version_names_the_maps_that_differ() {
        let m = message(Some(LAYOUT_VERSION), &["LB_BACKEND_META has value size 8 bytes, this lb's is 12 bytes"]);
        assert!(
            m.contains("yet differ from it (LB_BACKEND_META has value size 8 bytes, this lb's is 12 bytes)"),
            "{m}"
        );
    }
}

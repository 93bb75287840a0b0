//! Several NICs (`daemon.interface` as a list). The program runs on each through its own
//! pinned link: the first NIC's at `pin_path/link` (where a single-NIC daemon always put
//! it, so an upgrade adopts it), every other NIC's at `pin_path/link-<name>`, so a
//! restarted daemon swaps its program into each link in place (hitless, per NIC). A NIC
//! dropped from the list loses its link (and the program) when its pin is removed.
//!
//! `LB_TX_PORTS` holds exactly the configured NICs: the data path redirects a frame to the
//! FIB's egress NIC only when it is one of them (lb-ebpf `egress.rs`).
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::load::LINK_PIN;
use crate::maps::Maps;

/// Pins of the links on the NICs after the first.
pub const EXTRA_LINK_PREFIX: &str = "link-";

/// Where the link on the `position`th configured NIC (`name`) is pinned.
pub fn link_pin(pin_path: &Path, position: usize, name: &str) -> PathBuf {
    if position == 0 {
        pin_path.join(LINK_PIN)
    } else {
        pin_path.join(format!("{EXTRA_LINK_PREFIX}{name}"))
    }
}

/// Link pins under `pin_path` of NICs that are no longer configured after the first.
pub fn stale_link_pins(pin_path: &Path, interfaces: &[String]) -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir(pin_path) else { return Vec::new() };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let nic = name.strip_prefix(EXTRA_LINK_PREFIX)?;
            (!interfaces.iter().skip(1).any(|i| i == nic)).then(|| e.path())
        })
        .collect()
}

/// Make `LB_TX_PORTS` exactly `ifindexes`: entries of NICs no longer configured go first.
pub fn write_tx_ports(maps: &mut Maps, ifindexes: &[u32]) -> Result<()> {
    let stale: Vec<u32> = maps.tx_ports.keys().filter_map(|k| k.ok()).filter(|k| !ifindexes.contains(k)).collect();
    for k in stale {
        maps.tx_ports.remove(k).with_context(|| format!("removing ifindex {k} from LB_TX_PORTS"))?;
    }
    for &i in ifindexes {
        maps.tx_ports.insert(i, i, None, 0).with_context(|| format!("adding ifindex {i} to LB_TX_PORTS"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_nic_keeps_the_single_nic_pin_and_others_are_named() {
        let p = Path::new("/sys/fs/bpf/lb");
        assert_eq!(link_pin(p, 0, "eth0"), p.join("link"));
        assert_eq!(link_pin(p, 1, "eth1"), p.join("link-eth1"));
    }

    #[test]
    fn pins_of_nics_no_longer_listed_are_stale() {
        let dir = std::env::temp_dir().join(format!("lb-ports-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["link", "link-eth1", "link-eth2", "LB_VIPS"] {
            std::fs::write(dir.join(f), b"").unwrap();
        }
        let nics = ["eth0".to_string(), "eth1".to_string()];
        assert_eq!(stale_link_pins(&dir, &nics), vec![dir.join("link-eth2")]);
        // eth1 first now: its pin as an extra NIC is stale (the first NIC's link is `link`).
        let swapped = ["eth1".to_string(), "eth0".to_string()];
        let mut stale = stale_link_pins(&dir, &swapped);
        stale.sort();
        assert_eq!(stale, vec![dir.join("link-eth1"), dir.join("link-eth2")]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

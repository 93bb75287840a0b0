//! Finding the root-only tests: every integration test file that holds a test marked
//! `#[ignore = "needs root …"]`. Files named `packet_*.rs` are the packet layer (the XDP
//! object through BPF_PROG_TEST_RUN), `docker_*.rs` the Docker layer (the seed's Docker
//! environment with a real engine); the others are the network layer. A new root test
//! file is picked up by its marker alone: nothing lists them by hand.
use std::path::Path;

use anyhow::{Context, Result};

/// How every root-only test is marked (plain `cargo test` skips it, saying why).
pub const ROOT_MARKER: &str = "#[ignore = \"needs root";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    Packet,
    Network,
    Docker,
}

/// The root test files of one package.
#[derive(Debug, PartialEq, Eq)]
pub struct RootTests {
    pub package: String,
    pub tests: Vec<String>,
}

/// Packages (each with its root test files of `layer`), in a stable order.
pub fn discover(workspace: &Path, layer: Layer) -> Result<Vec<RootTests>> {
    let mut found = Vec::new();
    for dir in member_dirs(workspace)? {
        let tests_dir = dir.join("tests");
        let Ok(entries) = std::fs::read_dir(&tests_dir) else { continue };
        let mut tests: Vec<String> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "rs"))
            .filter(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains(ROOT_MARKER)))
            .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .filter(|name| layer_of(name) == layer)
            .collect();
        if tests.is_empty() {
            continue;
        }
        tests.sort();
        found.push(RootTests { package: package_name(&dir)?, tests });
    }
    found.sort_by(|a, b| a.package.cmp(&b.package));
    Ok(found)
}

pub fn layer_of(test_file: &str) -> Layer {
    if test_file.starts_with("packet_") {
        Layer::Packet
    } else if test_file.starts_with("docker_") {
        Layer::Docker
    } else {
        Layer::Network
    }
}

/// The directories of the workspace's members, from the root manifest's `members` list.
fn member_dirs(workspace: &Path) -> Result<Vec<std::path::PathBuf>> {
    let manifest = std::fs::read_to_string(workspace.join("Cargo.toml")).context("reading the workspace manifest")?;
    let members = manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("members = "))
        .context("the workspace manifest has no members list")?;
    Ok(quoted(members).into_iter().map(|m| workspace.join(m)).collect())
}

fn package_name(dir: &Path) -> Result<String> {
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml"))
        .with_context(|| format!("reading {}/Cargo.toml", dir.display()))?;
    manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("name = "))
        .and_then(|v| quoted(v).into_iter().next())
        .with_context(|| format!("{}/Cargo.toml names no package", dir.display()))
}

/// The double-quoted strings of a TOML line.
fn quoted(line: &str) -> Vec<String> {
    line.split('"').skip(1).step_by(2).map(String::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_files_are_the_packet_layer_docker_files_the_docker_layer_and_the_rest_the_network_layer() {
        assert_eq!(layer_of("packet_fixtures"), Layer::Packet);
        assert_eq!(layer_of("packet_new_thing"), Layer::Packet);
        assert_eq!(layer_of("docker_network"), Layer::Docker);
        assert_eq!(layer_of("control_plane"), Layer::Network);
    }

    #[test]
    fn the_workspace_root_tests_are_found_by_their_marker() {
        let ws = crate::cmd::workspace();
        let packet = discover(&ws, Layer::Packet).unwrap();
        let network = discover(&ws, Layer::Network).unwrap();
        let docker = discover(&ws, Layer::Docker).unwrap();
        let of = |v: &[RootTests], package: &str| {
            v.iter().find(|r| r.package == package).map(|r| r.tests.clone()).unwrap_or_default()
        };
        assert!(of(&packet, "lb-xdp").contains(&"packet_fixtures".to_string()), "{packet:?}");
        assert!(of(&network, "lb-user").contains(&"control_plane".to_string()), "{network:?}");
        assert!(!of(&network, "lb-user").contains(&"proxy".to_string()), "proxy.rs has no root test");
        assert_eq!(of(&network, "testenv"), ["cluster_topology", "network"], "{network:?}");
        assert_eq!(of(&docker, "lb-user"), ["docker_network"], "{docker:?}");
        assert!(!of(&network, "lb-user").contains(&"docker_network".to_string()), "not in the netns layer");
    }

    #[test]
    fn quoted_strings_are_read_from_a_toml_line() {
        assert_eq!(quoted(r#"["a", "b-c"]"#), ["a", "b-c"]);
        assert_eq!(quoted(r#""lb-user""#), ["lb-user"]);
    }
}

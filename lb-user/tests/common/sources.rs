//! The workspace's own files, read by the tests that hold docs and contrib files against
//! the code (`readme.rs`, `grafana.rs`): where the workspace is, its Rust sources, and the
//! metric families those sources expose.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What every `lb-*` crate directory's name starts with.
pub const CRATE_PREFIX: &str = "lb-";
pub const METRIC_KINDS: [&str; 3] = ["counter", "gauge", "histogram"];

pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A file of the workspace, by its path relative to it.
pub fn read(relative: &str) -> String {
    let path = workspace().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Every `.rs` file under `dir`, build output (`target/`) left out, sorted.
pub fn rust_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() && entry.file_name() != "target" {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, &mut files);
    files.sort();
    files
}

/// Every `.rs` file under `src/` of every `lb-*` crate, with its text.
pub fn crate_sources() -> Vec<(PathBuf, String)> {
    let mut crates: Vec<PathBuf> = std::fs::read_dir(workspace())
        .expect("the workspace lists")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(CRATE_PREFIX))
        .map(|e| e.path().join("src"))
        .collect();
    crates.sort();
    crates
        .iter()
        .flat_map(|src| rust_files(src))
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            (path, text)
        })
        .collect()
}

/// The string literal at the start of `text` (which starts with `"`) and what follows it.
pub fn literal(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix('"')?;
    let end = rest.find('"')?;
    Some((&rest[..end], &rest[end + 1..]))
}

/// Metric family → its types, from every `"lb_name", "kind"` pair in the sources: how both
/// the controller's and the proxy's exposition code name a family (`family(out, "lb_x",
/// "counter", help, ...)`).
pub fn metric_families() -> BTreeMap<String, BTreeSet<String>> {
    let mut families: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (_, text) in crate_sources() {
        for (at, _) in text.match_indices("\"lb_") {
            let Some((name, rest)) = literal(&text[at..]) else { continue };
            if !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
                continue;
            }
            let Some(rest) = rest.trim_start().strip_prefix(',') else { continue };
            let Some((kind, _)) = literal(rest.trim_start()) else { continue };
            if METRIC_KINDS.contains(&kind) {
                families.entry(name.to_string()).or_default().insert(kind.to_string());
            }
        }
    }
    families
}

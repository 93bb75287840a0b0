//! The local base image `python:3.11-slim` for machines without an image registry: a minimal
//! Debian bookworm root (debootstrap, minbase, with `python3`: bookworm's is 3.11), imported
//! into Docker under the name the seed's Dockerfile starts `FROM`, so it builds unchanged.
//!
//! Built once: the root's tarball is kept under target/docker/base/, so a second machine
//! state costs an import (seconds), and an image already present costs one query.
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use testenv::docker::{base_image_present, target_dir, BASE_IMAGE};

use crate::cmd::{is_root, status};

const SUITE: &str = "bookworm";
const FALLBACK_MIRROR: &str = "http://deb.debian.org/debian";
/// The official image's environment, which the compose file's images rely on.
const IMAGE_CHANGES: [&str; 3] =
    ["ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "ENV LANG=C.UTF-8", "CMD [\"python3\"]"];

/// Present, imported from the cached tarball, or built and imported. Needs a running engine.
pub fn ensure() -> Result<()> {
    if base_image_present(BASE_IMAGE) {
        println!("==> base image {BASE_IMAGE} present");
        return Ok(());
    }
    if !tarball().exists() {
        build_tarball()?;
    }
    import()
}

/// The root's tarball, built when missing (as root), with no engine involved: the package
/// test installs the .deb into a copy of the same clean root.
pub fn ensure_tarball() -> Result<PathBuf> {
    if !tarball().exists() {
        build_tarball()?;
    }
    Ok(tarball())
}

fn dir() -> PathBuf {
    target_dir().join("base")
}

fn tarball() -> PathBuf {
    dir().join("bookworm-python3.tar")
}

fn rootfs() -> PathBuf {
    dir().join("rootfs")
}

fn build_tarball() -> Result<()> {
    if !is_root() {
        bail!("building the base image {BASE_IMAGE} runs debootstrap, which needs root");
    }
    let root = rootfs();
    remove_tree(&root)?;
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let mirror = mirror();
    println!("==> debootstrap {SUITE} (minbase, python3) from {mirror} into {}: about a minute", root.display());
    let mut debootstrap = Command::new("debootstrap");
    debootstrap.args(["--variant=minbase", "--include=python3", SUITE]).arg(&root).arg(&mirror);
    // Its `I: Retrieving ...` lines are the progress.
    status(debootstrap)?;
    trim(&root)?;
    std::os::unix::fs::symlink("python3", root.join("usr/bin/python")).context("linking python to python3")?;
    check_python(&root)?;
    println!("==> packing {}", tarball().display());
    let partial = tarball().with_extension("tar.partial");
    let mut tar = Command::new("tar");
    tar.arg("-C").arg(&root).arg("-cf").arg(&partial).arg(".");
    status(tar)?;
    std::fs::rename(&partial, tarball()).context("keeping the tarball")?;
    remove_tree(&root)
}

/// What a container never needs: the downloaded packages, the package lists, documentation.
fn trim(root: &Path) -> Result<()> {
    for dir in ["var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/locale"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else { continue };
        for entry in entries.flatten() {
            let p = entry.path();
            let gone =
                if p.is_dir() && !p.is_symlink() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
            gone.with_context(|| format!("removing {}", p.display()))?;
        }
    }
    Ok(())
}

/// The root's `python` runs, and is 3.11 as the image's name promises.
fn check_python(root: &Path) -> Result<()> {
    let out = Command::new("chroot").arg(root).args(["/usr/bin/python", "--version"]).output().context("chroot")?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || !version.starts_with("Python 3.11") {
        bail!("the debootstrapped python is {version:?}, not 3.11: {}", String::from_utf8_lossy(&out.stderr));
    }
    println!("==> {version} in the root");
    Ok(())
}

fn import() -> Result<()> {
    println!("==> docker import {} as {BASE_IMAGE}", tarball().display());
    let mut import = Command::new("docker");
    import.arg("import");
    for change in IMAGE_CHANGES {
        import.args(["--change", change]);
    }
    import.arg(tarball()).arg(BASE_IMAGE);
    status(import)
}

/// The machine's own Debian mirror (deb822 or one-line sources), else deb.debian.org.
fn mirror() -> String {
    let deb822 = std::fs::read_to_string("/etc/apt/sources.list.d/debian.sources").unwrap_or_default();
    let from_deb822 = deb822
        .lines()
        .filter_map(|l| l.strip_prefix("URIs:"))
        .flat_map(str::split_whitespace)
        .find(|uri| !uri.contains("security"));
    let classic = std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    let from_classic = classic
        .lines()
        .filter(|l| l.starts_with("deb ") && l.contains(&format!(" {SUITE} ")))
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("http")))
        .next();
    from_deb822.or(from_classic).unwrap_or(FALLBACK_MIRROR).trim_end_matches('/').to_string()
}

/// Removes a debootstrap tree, after unmounting whatever a failed run left mounted in it
/// (its /proc and /sys): removing through a mount would reach the host's.
fn remove_tree(root: &Path) -> Result<()> {
    if !root.exists() {
        return Ok(());
    }
    let root_s = root.canonicalize()?.to_string_lossy().into_owned();
    let prefix = format!("{root_s}/");
    let mounts = std::fs::read_to_string("/proc/self/mounts").context("reading /proc/self/mounts")?;
    let mut under: Vec<&str> =
        mounts.lines().filter_map(|l| l.split_whitespace().nth(1)).filter(|m| m.starts_with(&prefix)).collect();
    under.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for mount in under {
        let mut umount = Command::new("umount");
        umount.arg(mount);
        status(umount)?;
    }
    std::fs::remove_dir_all(root).with_context(|| format!("removing {}", root.display()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_mirror_is_an_http_url_without_a_trailing_slash() {
        let mirror = super::mirror();
        assert!(mirror.starts_with("http"), "{mirror}");
        assert!(!mirror.ends_with('/'), "{mirror}");
    }
}

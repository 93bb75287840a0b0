//! `cargo xtask deps`: everything a fresh Debian 12 machine lacks, installed idempotently
//! (apt packages, nightly's components, bpf-linker, cargo-fuzz, cargo-deb, the Dockerfile
//! linter, the test tools from PyPI).
//! Each step first checks whether its result is already there, so a complete machine costs
//! a few fast queries.
use std::process::Command;

use anyhow::{bail, Result};

use crate::cmd::{cargo_bin, is_root, path_with_llvm, status};

/// Debian packages: LLVM 22 for bpf-linker, and the tools the tests, demo and benchmarks use.
const APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libclang-common-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "build-essential",
    "iproute2",
    "ethtool",
    "bpftool",
    "tcpdump",
    "curl",
    // Test-time certificates for the https health-check test.
    "openssl",
    "python3",
    "python3-scapy",
    "wrk",
    "iperf3",
    "nftables",
    // `cargo xtask bench`: fast backends and the peers the balancer is compared with.
    "nginx-light",
    "libnginx-mod-stream",
    "haproxy",
    // The traffic-management network tests: TLS backends and clients with certificates made at test
    // time (`openssl s_server`, `s_client`, `req`).
    "openssl",
    // The chart's text (plotters draws with ab_glyph from a TTF file).
    "fonts-dejavu-core",
    "procps",
    "mount",
    // The cluster layer: the BGP speaker `lb` drives, and the shared registry's store (its
    // `etcdctl` too, for the tests' and the demo's look at what the fleet wrote).
    "bird2",
    "etcd-server",
    "etcd-client",
    // The `etcd-client` crate's build script compiles etcd's .proto files with it.
    "protobuf-compiler",
    // The status page's browser test: headless Chromium driven over WebDriver.
    "chromium",
    "chromium-driver",
    // Virtual environments for the test tools from PyPI (schemathesis).
    "python3-venv",
    // `lb top`'s network test runs it in a terminal of its own, types keys and reads the screen.
    "tmux",
];

/// Whether something already provides what a package would (a command that runs).
type Provided = fn() -> bool;

/// Debian packages installed only when nothing provides their command yet: another
/// source's package of the same tool would conflict with Debian's.
const PROVIDED_PACKAGES: [(&str, Provided); 5] = [
    // The Docker set-up checked without an engine (`docker-compose config`), and the engine's
    // compose for the Docker layer; Docker's own plugin (`docker compose`) does as well.
    ("docker-compose", || runs("docker-compose", &["version"]) || runs("docker", &["compose", "version"])),
    // The Docker layer's base image and the package test's clean root.
    ("debootstrap", || runs("debootstrap", &["--version"])),
    // The package test: `systemd-analyze verify` on the units, `man -l` on the man pages.
    ("systemd", || runs("systemd-analyze", &["--version"])),
    ("man-db", || runs("man", &["--version"])),
    // The Dockerfile linter's installer (a Node.js from another source brings its own npm).
    ("npm", || runs("npm", &["--version"])),
];

/// `cargo xtask deps --docker`: the Docker environment's engine, when nothing already
/// provides one (an engine from Docker's own packages conflicts with Debian's `docker.io`).
const DOCKER_PACKAGES: [(&str, Provided); 1] = [("docker.io", || runs("dockerd", &["--version"]))];

const BPF_LINKER_VERSION: &str = "0.13.0";
const CARGO_FUZZ_VERSION: &str = "0.13.2";
/// `cargo xtask package` relies on its handling of `--profile` and of assets under
/// `target/`: pinned.
const CARGO_DEB_VERSION: &str = "3.8.0";
/// The Dockerfile linter (npm), installed under target/tools/npm.
const DOCKERFILELINT_VERSION: &str = "1.8.0";
const TOOLS_NPM: &str = "target/tools/npm";

pub fn install() -> Result<()> {
    apt()?;
    nightly()?;
    bpf_linker()?;
    cargo_fuzz()?;
    cargo_deb()?;
    dockerfilelint()?;
    crate::python_tools::install()?;
    println!("==> dependencies present");
    Ok(())
}

/// The Docker environment on top of `install`: its packages, an engine (dockerd started when
/// none answers; stopping the returned engine stops it again) and the base image.
pub fn docker() -> Result<testenv::docker::Engine> {
    let missing: Vec<&str> =
        DOCKER_PACKAGES.iter().filter(|(pkg, present)| !installed(pkg) && !present()).map(|(pkg, _)| *pkg).collect();
    apt_install(&missing)?;
    if !is_root() {
        bail!("the Docker environment starts dockerd and builds its base image as root: run it as root");
    }
    let engine = testenv::docker::Engine::ensure()?;
    crate::base_image::ensure()?;
    println!("==> Docker environment present");
    Ok(engine)
}

fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program).args(args).output().is_ok_and(|o| o.status.success())
}

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

fn need_root(what: &str) -> Result<()> {
    if !is_root() {
        bail!("{what} must be installed, which needs root: run `sudo cargo xtask deps` (or the command again as root)");
    }
    Ok(())
}

fn apt() -> Result<()> {
    let mut missing: Vec<&str> = APT_PACKAGES.iter().copied().filter(|p| !installed(p)).collect();
    missing
        .extend(PROVIDED_PACKAGES.iter().filter(|(pkg, present)| !installed(pkg) && !present()).map(|(pkg, _)| *pkg));
    apt_install(&missing)
}

fn apt_install(missing: &[&str]) -> Result<()> {
    if missing.is_empty() {
        return Ok(());
    }
    need_root(&format!("Debian packages {}", missing.join(" ")))?;
    println!("==> apt-get install {}", missing.join(" "));
    let mut update = Command::new("apt-get");
    update.args(["update", "-qq"]);
    status(update)?;
    let mut install = Command::new("apt-get");
    // RUNLEVEL=1: invoke-rc.d starts no service, so nginx and haproxy do not come up in the
    // root namespace on port 80 (the bench starts its own instances inside the test network),
    // nor dockerd (the Docker environment starts one when it needs it, and stops it).
    install.env("DEBIAN_FRONTEND", "noninteractive").env("RUNLEVEL", "1").args(["install", "-y", "-qq"]).args(missing);
    status(install)
}

fn rustup_out(args: &[&str]) -> String {
    Command::new("rustup")
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// The eBPF crate builds with nightly's `-Z build-std=core`, which needs rust-src.
fn nightly() -> Result<()> {
    if !rustup_out(&["toolchain", "list"]).lines().any(|l| l.starts_with("nightly")) {
        println!("==> rustup toolchain install nightly");
        let mut c = Command::new("rustup");
        c.args(["toolchain", "install", "nightly", "--profile", "minimal"]);
        status(c)?;
    }
    component("nightly", "rust-src")?;
    // `cargo xtask lint`: clippy for the eBPF crate (nightly) and the host crates, rustfmt.
    component("nightly", "clippy")?;
    component("stable", "clippy")?;
    component("stable", "rustfmt")
}

fn component(toolchain: &str, name: &str) -> Result<()> {
    if rustup_out(&["component", "list", "--toolchain", toolchain, "--installed"]).lines().any(|l| l.starts_with(name))
    {
        return Ok(());
    }
    println!("==> rustup component add {name} --toolchain {toolchain}");
    let mut c = Command::new("rustup");
    c.args(["component", "add", name, "--toolchain", toolchain]);
    status(c)
}

/// bpf-linker 0.13.0 built against Debian's LLVM 22 (not its bundled LLVM download).
fn bpf_linker() -> Result<()> {
    let linker = format!("{}/bpf-linker", cargo_bin());
    let version = Command::new(&linker)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if version.contains(BPF_LINKER_VERSION) {
        return Ok(());
    }
    println!("==> cargo install bpf-linker@{BPF_LINKER_VERSION} (LLVM 22), a few minutes");
    let mut c = Command::new("cargo");
    c.env("PATH", path_with_llvm()).args([
        "install",
        &format!("bpf-linker@{BPF_LINKER_VERSION}"),
        "--no-default-features",
        "--features",
        "llvm-22",
    ]);
    status(c)
}

/// cargo-fuzz, for `cargo xtask fuzz`'s libFuzzer targets (fuzz/, built with nightly).
fn cargo_fuzz() -> Result<()> {
    let version = Command::new(format!("{}/cargo-fuzz", cargo_bin()))
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if version.contains(CARGO_FUZZ_VERSION) {
        return Ok(());
    }
    println!("==> cargo install cargo-fuzz@{CARGO_FUZZ_VERSION}");
    let mut c = Command::new("cargo");
    c.args(["install", &format!("cargo-fuzz@{CARGO_FUZZ_VERSION}"), "--locked"]);
    status(c)
}

/// cargo-deb, for `cargo xtask package`.
fn cargo_deb() -> Result<()> {
    let version = Command::new(format!("{}/cargo-deb", cargo_bin()))
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if version.contains(CARGO_DEB_VERSION) {
        return Ok(());
    }
    println!("==> cargo install cargo-deb@{CARGO_DEB_VERSION}");
    let mut c = Command::new("cargo");
    c.args(["install", &format!("cargo-deb@{CARGO_DEB_VERSION}"), "--locked"]);
    status(c)
}

/// The Dockerfile linter the Docker set-up's host test runs: dockerfilelint from npm, in a
/// prefix of the workspace's own (nothing global). Debian does not package hadolint, whose
/// PyPI and npm wrappers download it from elsewhere at install time.
fn dockerfilelint() -> Result<()> {
    let prefix = crate::cmd::workspace().join(TOOLS_NPM);
    let version = Command::new(dockerfilelint_bin())
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if version.trim() == DOCKERFILELINT_VERSION {
        return Ok(());
    }
    println!("==> npm install dockerfilelint@{DOCKERFILELINT_VERSION} into {}", prefix.display());
    std::fs::create_dir_all(&prefix)?;
    let mut c = Command::new("npm");
    c.args(["install", "--no-audit", "--no-fund", "--no-save", "--prefix"])
        .arg(&prefix)
        .arg(format!("dockerfilelint@{DOCKERFILELINT_VERSION}"));
    status(c)
}

/// Where `dockerfilelint` lands (the Docker set-up's test runs it from there).
fn dockerfilelint_bin() -> std::path::PathBuf {
    crate::cmd::workspace().join(TOOLS_NPM).join("node_modules/.bin/dockerfilelint")
}

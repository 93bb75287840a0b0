//! `cargo xtask package`: the Debian package of `lb` (cargo-deb, configured in
//! lb-user/Cargo.toml's `[package.metadata.deb]`): the release binary (the XDP object
//! embedded, as in every build), the systemd units and the default config from packaging/,
//! the documentation, and the shell completions and man pages generated here from `lb`'s
//! own clap command, so they cannot drift from it.
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::cmd::{cargo, status, workspace};

/// Where the generated completions and man pages go, in the packaged build's directory:
/// lb-user/Cargo.toml's assets name them under `target/release/`, which cargo-deb reads as
/// that directory.
const GENERATED: &str = "lb-package";
/// Where the .deb goes.
const OUTPUT: &str = "target/debian";

/// Which build the package carries.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Profile {
    /// The release build: what a package is for.
    Release,
    /// The debug build `cargo xtask build` already made: for the package test, which checks
    /// the packaging, not the optimiser, and must not cost a second full build.
    Dev,
}

impl Profile {
    fn cargo_name(self) -> &'static str {
        match self {
            Profile::Release => "release",
            Profile::Dev => "dev",
        }
    }

    /// The build's directory under target/.
    fn dir(self) -> &'static str {
        match self {
            Profile::Release => "release",
            Profile::Dev => "debug",
        }
    }
}

/// Build the package; returns the path of the .deb.
pub fn run(profile: Profile) -> Result<PathBuf> {
    // The debug build of every target: the generator below is one of lb-user's examples.
    crate::cmd::build()?;
    if profile == Profile::Release {
        println!("==> building lb (release)");
        let mut build = cargo();
        build.args(["build", "--release", "-p", "lb-user", "--bin", "lb"]);
        status(build)?;
    }
    generate_assets(profile)?;
    let out = workspace().join(OUTPUT);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let before = debs(&out)?;
    println!("==> cargo deb ({} build)", profile.cargo_name());
    let mut deb = cargo();
    deb.args(["deb", "-p", "lb-user", "--no-build", "--profile", profile.cargo_name(), "--output"]).arg(&out);
    status(deb)?;
    let deb = newest_deb(&out, &before)?;
    println!("==> {}", deb.display());
    Ok(deb)
}

/// Shell completions (bash, zsh, fish) and man pages (`lb.1`, one per subcommand), written
/// by lb-user's `package_assets` example from `lb_user::cli::Cli`; the man pages gzipped as
/// Debian wants them (`-9n`: no name or time stamp, so the same pages give the same bytes).
fn generate_assets(profile: Profile) -> Result<()> {
    let dir = workspace().join("target").join(profile.dir()).join(GENERATED);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    let generator = workspace().join("target/debug/examples/package_assets");
    println!("==> completions and man pages into {}", dir.display());
    let mut generate = Command::new(&generator);
    generate.arg(&dir);
    status(generate)?;
    let mut pages = Vec::new();
    for entry in std::fs::read_dir(dir.join("man")).context("listing the man pages")?.flatten() {
        pages.push(entry.path());
    }
    let mut gzip = Command::new("gzip");
    gzip.arg("-9n").args(&pages);
    status(gzip)?;
    for expected in ["completions/lb.bash", "completions/_lb", "completions/lb.fish", "man/lb.1.gz", "man/lb-run.1.gz"]
    {
        if !dir.join(expected).is_file() {
            bail!("{} did not write {expected}", generator.display());
        }
    }
    Ok(())
}

fn debs(dir: &Path) -> Result<Vec<(PathBuf, std::time::SystemTime)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "deb") {
            found.push((path, entry.metadata()?.modified()?));
        }
    }
    Ok(found)
}

/// The .deb cargo-deb just wrote (its name carries the version and architecture).
fn newest_deb(dir: &Path, before: &[(PathBuf, std::time::SystemTime)]) -> Result<PathBuf> {
    debs(dir)?
        .into_iter()
        .filter(|d| !before.contains(d))
        .max_by_key(|(_, modified)| *modified)
        .map(|(path, _)| path)
        .with_context(|| format!("cargo deb wrote no new .deb into {}", dir.display()))
}

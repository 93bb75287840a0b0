//! The Debian package, installed for real into a clean Debian bookworm root: the .deb that
//! `cargo xtask package --dev` builds (the debug build `cargo xtask build` made, so that no
//! second full build is needed; the packaging is the same as for release), unpacked into a
//! copy of the minimal root the Docker layer's base image comes from (`cargo xtask
//! base-root`: debootstrap once, a cached tarball after that), installed there with apt so
//! that the dependencies it declares come from Debian itself, then checked: the files where
//! they belong, the conffile, gzip-valid man pages that `man -l` reads, completions, `lb
//! --version` and `lb check` in the root, the `lb` user and the directories' owners and
//! modes, `systemd-analyze verify` on both units inside the root (so ExecStart's
//! `/usr/bin/lb` is the package's, and `/bin/kill` must be there too), and a purge that
//! takes it all away again.
//!
//! Root: chroot, and files owned by other users. About a minute with the tarball cached
//! (apt fetches the package lists and the dependencies from the Debian mirror).
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().expect("the workspace")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn ok(mut command: Command) -> String {
    let what = format!("{command:?}");
    let out = command.output().unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(out.status.success(), "{what} failed ({}):\n{}", out.status, text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `cargo xtask ARGS` in the workspace; its stdout.
fn xtask(args: &[&str]) -> String {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(workspace()).arg("xtask").args(args);
    ok(command)
}

fn chroot(root: &Path, args: &[&str]) -> Command {
    let mut command = Command::new("chroot");
    command.arg(root).args(args).env("DEBIAN_FRONTEND", "noninteractive").env("LC_ALL", "C");
    command
}

/// The clean root, fresh from the tarball, with the host's resolver for apt.
fn fresh_root(tarball: &Path) -> PathBuf {
    let root = workspace().join("target/package-test/root");
    if root.exists() {
        std::fs::remove_dir_all(&root).expect("clearing the last run's root");
    }
    std::fs::create_dir_all(&root).unwrap();
    let mut untar = Command::new("tar");
    untar.arg("-C").arg(&root).arg("-xf").arg(tarball);
    ok(untar);
    std::fs::copy("/etc/resolv.conf", root.join("etc/resolv.conf")).expect("copying /etc/resolv.conf");
    root
}

fn mode_owner_group(path: &Path) -> (u32, u32, u32) {
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (meta.permissions().mode() & 0o7777, meta.uid(), meta.gid())
}

/// uid or gid of `name` in the root's passwd or group file.
fn id_in(root: &Path, file: &str, name: &str) -> Option<u32> {
    let text = std::fs::read_to_string(root.join("etc").join(file)).unwrap();
    text.lines().map(|l| l.split(':').collect::<Vec<_>>()).find(|f| f[0] == name).and_then(|f| f[2].parse().ok())
}

const FILES: [&str; 13] = [
    "usr/bin/lb",
    "lib/systemd/system/lb.service",
    "lib/systemd/system/lb-agent@.service",
    "etc/lb/lb.toml",
    "usr/share/bash-completion/completions/lb",
    "usr/share/zsh/vendor-completions/_lb",
    "usr/share/fish/vendor_completions.d/lb.fish",
    "usr/share/man/man1/lb.1.gz",
    "usr/share/man/man1/lb-run.1.gz",
    "usr/share/man/man1/lb-agent.1.gz",
    "usr/share/doc/lb/docs/install.md",
    "usr/share/doc/lb/agent.env.example",
    "usr/share/doc/lb/copyright",
];

#[test]
#[ignore = "needs root: installs the package into a chroot"]
fn the_package_installs_into_a_clean_debian_root_and_purges_cleanly() {
    let built = xtask(&["package", "--dev"]);
    let deb = built
        .lines()
        .filter_map(|l| l.strip_prefix("==> "))
        .rfind(|l| l.ends_with(".deb"))
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("cargo xtask package named no .deb:\n{built}"));
    let tarball = PathBuf::from(xtask(&["base-root"]).lines().last().expect("base-root prints its tarball"));
    let root = fresh_root(&tarball);
    std::fs::copy(&deb, root.join("tmp/lb.deb")).unwrap();
    ok(chroot(&root, &["apt-get", "update", "-qq"]));
    // systemd too: `systemd-analyze verify --root` needs the targets the units' default
    // dependencies name, as on any machine the package is for.
    ok(chroot(&root, &["apt-get", "install", "-y", "-qq", "--no-install-recommends", "/tmp/lb.deb", "systemd"]));

    for file in FILES {
        assert!(root.join(file).is_file(), "the package installed no /{file}");
    }
    assert_eq!(mode_owner_group(&root.join("usr/bin/lb")).0, 0o755);
    let conffiles = std::fs::read_to_string(root.join("var/lib/dpkg/info/lb.conffiles")).unwrap_or_default();
    assert!(conffiles.lines().any(|l| l.trim() == "/etc/lb/lb.toml"), "conffiles: {conffiles:?}");

    // Man pages: valid gzip, and man reads them (NAME names the page).
    for page in ["lb", "lb-run", "lb-agent", "lb-check"] {
        let path = root.join(format!("usr/share/man/man1/{page}.1.gz"));
        let mut gzip = Command::new("gzip");
        gzip.arg("-t").arg(&path);
        ok(gzip);
        let mut man = Command::new("man");
        man.arg("-l").arg(&path).env("MANPAGER", "cat").env("MANWIDTH", "100");
        let shown = ok(man);
        assert!(shown.contains("NAME") && shown.contains(page), "man -l {}:\n{shown}", path.display());
    }
    let bash = std::fs::read_to_string(root.join("usr/share/bash-completion/completions/lb")).unwrap();
    assert!(bash.contains("complete") && bash.contains("run"), "bash completion: {bash:.200}");

    // The binary runs in the root and reads the shipped config.
    let version = ok(chroot(&root, &["/usr/bin/lb", "--version"]));
    assert_eq!(version.trim(), format!("lb {}", env!("CARGO_PKG_VERSION")));
    assert_eq!(ok(chroot(&root, &["/usr/bin/lb", "check", "--config", "/etc/lb/lb.toml"])).trim(), "ok");

    // The user, and who owns what.
    let uid = id_in(&root, "passwd", "lb").expect("postinst created the user lb");
    let gid = id_in(&root, "group", "lb").expect("postinst created the group lb");
    assert!(uid > 0 && uid < 1000, "lb is a system user: uid {uid}");
    assert_eq!(mode_owner_group(&root.join("etc/lb")), (0o750, 0, gid));
    assert_eq!(mode_owner_group(&root.join("etc/lb/lb.toml")), (0o640, 0, gid));
    assert_eq!(mode_owner_group(&root.join("etc/lb/token")), (0o640, 0, gid));
    assert_eq!(mode_owner_group(&root.join("var/lib/lb")), (0o750, 0, gid));
    let token = std::fs::read_to_string(root.join("etc/lb/token")).unwrap();
    assert!(token.trim().len() >= 40, "a 32-byte token in base64: {token:?}");

    // The units, verified against the root's files: the commands they run are the root's
    // (`/usr/bin/lb`, `/bin/kill`), and so are the man pages `Documentation=` names.
    let root_arg = format!("--root={}", root.display());
    for unit in ["lb.service", "lb-agent@web.service"] {
        let mut verify = Command::new("systemd-analyze");
        verify.args(["verify", &root_arg, unit]).env("MANPATH", root.join("usr/share/man"));
        let out = verify.output().expect("systemd-analyze");
        assert!(out.status.success(), "systemd-analyze verify {unit}:\n{}", text(&out));
    }

    // Purge: the package's files, the user, the group and the directories go.
    ok(chroot(&root, &["dpkg", "--purge", "lb"]));
    for gone in ["usr/bin/lb", "etc/lb", "var/lib/lb", "lib/systemd/system/lb.service"] {
        assert!(!root.join(gone).exists(), "/{gone} is still there after the purge");
    }
    assert_eq!(id_in(&root, "passwd", "lb"), None, "the user lb outlived the purge");
    assert_eq!(id_in(&root, "group", "lb"), None, "the group lb outlived the purge");
    std::fs::remove_dir_all(&root).unwrap();
}

//! The seed's Docker set-up (testenv/docker/) checked without an engine, so that a broken
//! file shows up in the host layer and not only where a Docker engine runs: the compose file
//! is valid for Debian's docker-compose (`config -q` parses and validates it against the
//! Compose schema), the Dockerfile passes a real linter, and the lb container's config passes
//! `lb check`. Each check is first shown to fail on a broken copy, so it cannot pass by not
//! running.
//!
//! The linter is dockerfilelint from npm (`cargo xtask deps` installs it under
//! target/tools/npm): hadolint is not packaged in Debian, and its PyPI and npm wrappers
//! download the binary from elsewhere at install time. No root; each tool runs in well
//! under a second.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn docker_dir() -> PathBuf {
    workspace().join("testenv/docker")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lb-container-setup-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(program: impl AsRef<std::ffi::OsStr>, args: &[&std::ffi::OsStr]) -> Output {
    let program = program.as_ref();
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program:?} ({e}): `cargo xtask deps` installs it"))
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn compose_config(file: &Path) -> Output {
    // No LB_BIN: the file's default (the debug build) stands.
    Command::new("docker-compose")
        .env_remove("LB_BIN")
        .arg("-f")
        .arg(file)
        .args(["config", "-q"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run docker-compose ({e}): `cargo xtask deps` installs it"))
}

#[test]
fn the_compose_file_is_valid_for_docker_compose() {
    let broken_dir = scratch("compose");
    let original = std::fs::read_to_string(docker_dir().join("docker-compose.yml")).unwrap();
    // A key the Compose schema does not have, in the lb service.
    let broken = original.replacen(
        "    container_name: lb_balancer\n",
        "    container_name: lb_balancer\n    bogus_key: 1\n",
        1,
    );
    assert_ne!(broken, original, "the lb service's container_name line moved: update this test");
    std::fs::write(broken_dir.join("docker-compose.yml"), broken).unwrap();
    let out = compose_config(&broken_dir.join("docker-compose.yml"));
    assert!(!out.status.success() && text(&out).contains("bogus_key"), "a broken file passed: {}", text(&out));

    let out = compose_config(&docker_dir().join("docker-compose.yml"));
    assert!(out.status.success(), "docker-compose config: {}", text(&out));
    std::fs::remove_dir_all(&broken_dir).unwrap();
}

fn dockerfilelint() -> PathBuf {
    workspace().join("target/tools/npm/node_modules/.bin/dockerfilelint")
}

/// The linter's findings for one Dockerfile, as (line, title).
fn lint(dockerfile: &Path) -> Vec<(String, String)> {
    let out = run(dockerfilelint(), &["--output".as_ref(), "json".as_ref(), dockerfile.as_os_str()]);
    let report: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("dockerfilelint's JSON ({e}): {}", text(&out)));
    let file = &report["files"][0];
    assert!(file["issues_count"].is_u64(), "no issues_count in {report}");
    file["issues"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| (i["line"].as_str().unwrap_or("?").to_string(), i["title"].as_str().unwrap_or("?").to_string()))
        .collect()
}

#[test]
fn the_dockerfile_passes_the_linter() {
    let dir = scratch("dockerfile");
    let broken = dir.join("Dockerfile");
    std::fs::write(&broken, "FROM python:3.11-slim\nRUN apt-get install curl\nEXPOSE 99999\n").unwrap();
    let findings = lint(&broken);
    assert!(findings.iter().any(|(line, _)| line == "3"), "the port 99999 was not found: {findings:?}");
    assert!(findings.iter().any(|(line, _)| line == "2"), "apt-get without -y was not found: {findings:?}");

    let findings = lint(&docker_dir().join("Dockerfile"));
    assert!(findings.is_empty(), "testenv/docker/Dockerfile: {findings:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn lb_check(config: &Path) -> Output {
    run(env!("CARGO_BIN_EXE_lb"), &["check".as_ref(), "--config".as_ref(), config.as_os_str()])
}

#[test]
fn the_lb_container_config_passes_lb_check() {
    let dir = scratch("config");
    let original = std::fs::read_to_string(docker_dir().join("lb.toml")).unwrap();
    let broken = dir.join("lb.toml");
    std::fs::write(&broken, original.replacen("algorithm = \"maglev\"", "algorithm = \"magleb\"", 1)).unwrap();
    let out = lb_check(&broken);
    assert!(!out.status.success() && text(&out).contains("magleb"), "a broken config passed: {}", text(&out));

    let out = lb_check(&docker_dir().join("lb.toml"));
    assert!(out.status.success() && text(&out).trim() == "ok", "testenv/docker/lb.toml: {}", text(&out));
    std::fs::remove_dir_all(&dir).unwrap();
}

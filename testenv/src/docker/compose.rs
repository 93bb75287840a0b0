//! The compose project: up (after clearing our own leftovers), the host-side set-up, waiting
//! until the lb container serves, and down with a check that nothing of ours is left.

use super::engine::{base_image_present, docker};
use super::host_side::{bridge_of_network, prepare, remove_pass_program, tx_checksum_off};
use super::{
    compose_dir, server_container, BASE_IMAGE, CLIENT_CONTAINER, LABEL_KEY, LABEL_VALUE, LB_CONTAINER, LB_PIN_PATH,
    NETWORK, PROJECT,
};
use crate::topology::{server_v4, BACKEND_PORT, SERVERS};
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

const SERVING_WITHIN: Duration = Duration::from_secs(30);
const HEALTHY_WITHIN: Duration = Duration::from_secs(20);

/// The environment while it is up; `down` (or drop) removes it.
#[derive(Debug)]
pub struct DockerEnv {
    up: bool,
}

impl DockerEnv {
    /// Builds the backend image from the local base image, starts the project with the `lb`
    /// binary `lb_bin` mounted into the lb container, does the host-side set-up, and waits
    /// until the lb container's XDP program serves and every backend is healthy.
    pub fn up(lb_bin: &Path) -> Result<DockerEnv> {
        if !base_image_present(BASE_IMAGE) {
            bail!("no local image {BASE_IMAGE}: run `cargo xtask deps --docker` (or `docker pull {BASE_IMAGE}`)");
        }
        let lb_bin = lb_bin.canonicalize().with_context(|| format!("the lb binary {}", lb_bin.display()))?;
        refuse_foreign_objects()?;
        down()?;
        let env = DockerEnv { up: true };
        compose(&lb_bin, &["build"])?;
        compose(&lb_bin, &["up", "-d", "--no-build"])?;
        prepare()?;
        wait_serving()?;
        for n in 1..=SERVERS {
            wait_backend_health(n, "up", HEALTHY_WITHIN)?;
        }
        Ok(env)
    }

    /// The host bridge of the network (`br-` and 12 digits of its id), e.g. to check that it
    /// is gone after `down`.
    pub fn bridge(&self) -> Result<String> {
        bridge_of_network()
    }

    pub fn down(mut self) -> Result<()> {
        self.up = false;
        down()
    }
}

impl Drop for DockerEnv {
    fn drop(&mut self) {
        if self.up {
            if let Err(e) = down() {
                eprintln!("testenv: docker down: {e:#}");
            }
        }
    }
}

/// Removes the project's containers and network and the host-side program, then checks that
/// no container or network of ours is left. Idempotent; never touches anything unlabelled.
pub fn down() -> Result<()> {
    remove_pass_program()?;
    // The binary's path only matters for `up`; any existing file satisfies the file's syntax.
    compose(Path::new("/dev/null"), &["down", "--remove-orphans", "--timeout", "5"])?;
    let left =
        docker(&["ps", "-a", "--filter", &format!("label={LABEL_KEY}={LABEL_VALUE}"), "--format", "{{.Names}}"])?;
    if !left.trim().is_empty() {
        bail!("containers of ours left after down: {}", left.trim());
    }
    if docker(&["network", "inspect", NETWORK]).is_ok() && network_is_ours()? {
        bail!("network {NETWORK} left after down");
    }
    Ok(())
}

/// `docker stop backend_serverN`.
pub fn stop_server(n: u8) -> Result<()> {
    docker(&["stop", "--time", "5", &server_container(n)]).map(drop)
}

/// `docker start backend_serverN`, and its eth0's tx checksum offload off again (a new
/// start is a new network namespace).
pub fn start_server(n: u8) -> Result<()> {
    docker(&["start", &server_container(n)])?;
    tx_checksum_off(&server_container(n))
}

/// `lb args... --pin-path /sys/fs/bpf/lb` inside the lb container.
pub fn lb_list(args: &[&str]) -> Result<String> {
    let mut full = vec!["exec", LB_CONTAINER, "/usr/local/bin/lb"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["--pin-path", LB_PIN_PATH]);
    docker(&full)
}

/// The lb container's log (its daemon logs to stderr).
pub fn lb_log() -> String {
    Command::new("docker")
        .args(["logs", LB_CONTAINER])
        .output()
        .map(|o| format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
        .unwrap_or_default()
}

/// Waits until `lb list backends` shows server n with health `want` (`up`, `down`);
/// returns when it did.
pub fn wait_backend_health(n: u8, want: &str, limit: Duration) -> Result<Instant> {
    let address = format!("{}:{BACKEND_PORT}", server_v4(n));
    let deadline = Instant::now() + limit;
    loop {
        let listed = lb_list(&["list", "backends", "--json"])?;
        if health_of(&listed, &address).as_deref() == Some(want) {
            return Ok(Instant::now());
        }
        if Instant::now() >= deadline {
            bail!("{address} not {want} within {limit:?}: {listed}");
        }
        sleep(Duration::from_millis(100));
    }
}

/// The `health` field of the row for `address` in `lb list backends --json` (fields as
/// docs/cli.md lists them).
fn health_of(listed: &str, address: &str) -> Option<String> {
    let rows: Vec<serde_json::Value> = serde_json::from_str(listed).ok()?;
    let row = rows.iter().find(|row| row["address"] == address)?;
    Some(row["health"].as_str()?.to_string())
}

fn wait_serving() -> Result<()> {
    let deadline = Instant::now() + SERVING_WITHIN;
    while !lb_log().contains("lb is serving") {
        let running = docker(&["inspect", "--format", "{{.State.Running}}", LB_CONTAINER])?;
        if running.trim() != "true" {
            bail!("the lb container stopped; its log:\n{}", lb_log());
        }
        if Instant::now() >= deadline {
            bail!("lb in the lb container did not serve within {SERVING_WITHIN:?}; its log:\n{}", lb_log());
        }
        sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// A container or network with one of our names but not our label belongs to someone else:
/// say so instead of removing or reusing it.
fn refuse_foreign_objects() -> Result<()> {
    let mut names: Vec<String> = (1..=SERVERS).map(server_container).collect();
    names.extend([LB_CONTAINER.to_string(), CLIENT_CONTAINER.to_string()]);
    for name in names {
        let label = format!("{{{{index .Config.Labels \"{LABEL_KEY}\"}}}}");
        if let Ok(found) = docker(&["container", "inspect", "--format", &label, &name]) {
            if found.trim() != LABEL_VALUE {
                bail!("a container named {name} exists and is not ours (no label {LABEL_KEY}={LABEL_VALUE}); remove or rename it");
            }
        }
    }
    if docker(&["network", "inspect", NETWORK]).is_ok() && !network_is_ours()? {
        bail!("a network named {NETWORK} exists and is not ours (no label {LABEL_KEY}={LABEL_VALUE}); remove it or its users");
    }
    Ok(())
}

fn network_is_ours() -> Result<bool> {
    let label = format!("{{{{index .Labels \"{LABEL_KEY}\"}}}}");
    Ok(docker(&["network", "inspect", "--format", &label, NETWORK])?.trim() == LABEL_VALUE)
}

/// `docker-compose -p lb_testenv -f testenv/docker/docker-compose.yml args...` (or `docker
/// compose` where only v2 is installed), with the lb binary's path in LB_BIN.
fn compose(lb_bin: &Path, args: &[&str]) -> Result<()> {
    let file = compose_dir().join("docker-compose.yml");
    let mut command = if Command::new("docker-compose").arg("version").output().is_ok() {
        Command::new("docker-compose")
    } else {
        let mut v2 = Command::new("docker");
        v2.arg("compose");
        v2
    };
    command.arg("-p").arg(PROJECT).arg("-f").arg(&file).args(args).env("LB_BIN", lb_bin);
    let what = format!("docker-compose -p {PROJECT} -f {} {}", file.display(), args.join(" "));
    let output = command.output().with_context(|| format!("running {what}"))?;
    if !output.status.success() {
        bail!("{what} failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::health_of;

    #[test]
    fn the_health_of_one_backend_is_read_from_lb_list_json() {
        let listed = r#"[{"service":"web","address":"172.20.0.11:80","health":"up"},{"service":"web","address":"172.20.0.12:80","health":"down"}]"#;
        assert_eq!(health_of(listed, "172.20.0.11:80").as_deref(), Some("up"));
        assert_eq!(health_of(listed, "172.20.0.12:80").as_deref(), Some("down"));
        assert_eq!(health_of(listed, "172.20.0.13:80"), None);
    }
}

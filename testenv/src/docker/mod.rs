//! The seed's Docker environment (`testenv/docker/docker-compose.yml`), run for real: a
//! Docker engine (started here when none answers), the compose project brought up and down,
//! the host-side set-up XDP needs around the lb container, requests from the client
//! container, and `lb run` in proxy mode on the Docker host. Used by `cargo xtask
//! docker-demo` and `lb-user/tests/docker_network.rs`. Everything needs root.
//!
//! Only what this project creates is touched: the compose project `lb_testenv`, whose
//! containers and network carry the label `org.lb.testenv=docker`. A container or network
//! holding one of our names without that label is reported, never removed.
//!
//! ```no_run
//! let engine = testenv::docker::Engine::ensure()?;
//! let env = testenv::docker::DockerEnv::up(&testenv::lb_binary())?;
//! let outcomes = testenv::docker::requests(30, std::time::Duration::ZERO)?;
//! assert!(outcomes.iter().all(|o| o.result.is_ok()));
//! env.down()?;
//! engine.stop()?;
//! # anyhow::Ok(())
//! ```

mod client;
mod compose;
mod engine;
mod host_proxy;
mod host_side;
mod leftovers;

use std::path::{Path, PathBuf};

pub use client::{requests, ClientLoop, Outcome};
pub use compose::{down, lb_list, lb_log, start_server, stop_server, wait_backend_health, DockerEnv};
pub use engine::{base_image_present, docker, Engine};
pub use host_proxy::{curl_host, HostProxy, HOST_PROXY_VIP};
pub use leftovers::leftovers;

/// The compose project: `docker-compose -p` names it, and labels every object with it.
pub const PROJECT: &str = "lb_testenv";
/// The label (key and value) on every container and on the network of the compose file.
pub const LABEL_KEY: &str = "org.lb.testenv";
pub const LABEL_VALUE: &str = "docker";
/// The seed's network.
pub const NETWORK: &str = "lb_network";
/// The image the compose file's images start `FROM` (pulled, or built locally by `cargo
/// xtask deps --docker`).
pub const BASE_IMAGE: &str = "python:3.11-slim";
pub const LB_CONTAINER: &str = "lb_balancer";
pub const CLIENT_CONTAINER: &str = "lb_client";
/// Where `lb run` in the lb container pins its maps (`testenv/docker/lb.toml`), on the
/// container's own BPF filesystem.
pub const LB_PIN_PATH: &str = "/sys/fs/bpf/lb";
/// The VIP the lb container balances in XDP (the netns network's IPv4 VIP).
pub const VIP: &str = crate::topology::VIP_V4;

/// Run-time state on the host: the pid of a dockerd started here, the bpffs holding the
/// pass-through program for the lb container's host-side veth, the host proxy's files.
pub const RUN_DIR: &str = "/run/lb-docker";

/// The container of server n (1..=3), as the seed names it.
pub fn server_container(n: u8) -> String {
    format!("backend_server{n}")
}

/// `testenv/docker/`: the compose file, the Dockerfile, the lb container's config.
pub fn compose_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docker")
}

/// `target/docker/`: the dockerd log and the base image's cache.
pub fn target_dir() -> PathBuf {
    let testenv = Path::new(env!("CARGO_MANIFEST_DIR"));
    testenv.parent().unwrap_or(testenv).join("target").join("docker")
}

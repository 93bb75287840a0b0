//! `cargo xtask deps|build|lint|demo|docker-demo|test|fuzz|soak|bench|testenv|package|base-root`: the project's only entry points for setting a
//! machine up, building, demonstrating and testing. Everything that gets installed is
//! installed by `deps`, which the other commands call first.
mod base_image;
mod bench;
mod cmd;
mod demo;
mod demo_cluster;
mod demo_l3;
mod deps;
mod disk;
mod docker_demo;
mod fuzz;
mod lint;
mod package;
mod python_tools;
mod roots;
mod soak;
mod test;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what this machine lacks (apt packages, nightly rust-src, bpf-linker). Idempotent.
    Deps {
        /// Also the Docker environment: docker.io, docker-compose and debootstrap, and the
        /// local base image python:3.11-slim (built once, cached under target/docker/).
        #[arg(long)]
        docker: bool,
    },
    /// deps, then build the workspace (the XDP program included).
    Build,
    /// deps, then rustfmt --check and clippy -D warnings (host crates and the eBPF crate).
    Lint,
    /// deps, build, bring up the test network, balance real HTTP through XDP, show the result.
    Demo {
        /// The L3 layout instead: backends behind a router, reached by GUE encapsulation, a
        /// capture at the router printed.
        #[arg(long, conflicts_with = "cluster")]
        l3: bool,
        /// The fleet instead: three balancers behind a router's ECMP (BGP), one of them
        /// killed mid-way; which node carried each request before and after.
        #[arg(long)]
        cluster: bool,
    },
    /// deps --docker, build, then the seed's Docker environment: XDP in the lb container for
    /// the client container, the proxy on this host for `curl localhost:8080`; then down.
    DockerDemo,
    /// deps (with --docker), build, then every test layer: host, packet (BPF_PROG_TEST_RUN),
    /// network, the quick bench, docker.
    Test {
        /// Only the host unit tests (no root needed).
        #[arg(long)]
        host_only: bool,
    },
    /// deps, then the long fuzz: the packet fuzz (random and mutated frames through the XDP
    /// object) and each cargo-fuzz target (config, admin API requests, lb-common helpers).
    Fuzz {
        /// Frames for the packet fuzz.
        #[arg(long, default_value_t = 1_000_000)]
        frames: u64,
        /// Seconds for each cargo-fuzz target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// deps, build, then the soak: real clients through `lb run` on the test network while it
    /// churns (reloads, registrations, a backend and the daemon killed, a flood).
    Soak {
        /// How long the clients run.
        #[arg(long, default_value_t = 2)]
        minutes: u64,
    },
    /// deps, then benchmarks on the test network against direct and peer balancers, the data
    /// path through BPF_PROG_TEST_RUN and the control plane; writes bench/results/,
    /// BENCHMARKS.md and the chart.
    Bench {
        /// Seconds, tiny counts, one round, output under target/bench-quick: checks that every
        /// configuration produces numbers (run by `cargo xtask test`).
        #[arg(long)]
        quick: bool,
    },
    /// deps, build, then the Debian package of lb (cargo-deb): the binary, the systemd units,
    /// the default config, completions and man pages; written to target/debian/.
    Package {
        /// Package the debug build instead of building for release (the package test does,
        /// to check the packaging without a second full build).
        #[arg(long)]
        dev: bool,
    },
    /// The clean Debian bookworm root (debootstrap minbase, python3) that the Docker base
    /// image and the package test start from: built once as root, kept under
    /// target/docker/base/; prints its tarball's path.
    BaseRoot,
    /// The netns/veth test network.
    Testenv {
        #[command(subcommand)]
        action: TestenvAction,
    },
}

#[derive(Subcommand)]
enum TestenvAction {
    /// Build it (clearing leftovers first).
    Up {
        /// Also put the VIPs on the servers' loopback, for dsr.
        #[arg(long)]
        dsr: bool,
        /// Also build the L3 layout: a router, the LB's second NIC, backends in two subnets
        /// behind the router.
        #[arg(long)]
        l3: bool,
        /// The fleet network instead (needs `lb` built, for the backends' `lb decap`): a
        /// router with BGP and ECMP, three empty balancer namespaces, backends, etcd, a client.
        #[arg(long, conflicts_with_all = ["dsr", "l3"])]
        cluster: bool,
    },
    /// Remove all of it (the fleet network too).
    Down,
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("xtask: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.task {
        Task::Deps { docker: false } => deps::install(),
        Task::Deps { docker: true } => {
            deps::install()?;
            deps::docker()?.stop()
        }
        Task::Build => {
            deps::install()?;
            cmd::build()
        }
        Task::Lint => {
            deps::install()?;
            lint::run()
        }
        Task::Demo { l3, cluster } => {
            deps::install()?;
            cmd::build()?;
            if cluster {
                demo_cluster::run()
            } else if l3 {
                demo_l3::run()
            } else {
                demo::run()
            }
        }
        Task::DockerDemo => {
            deps::install()?;
            let engine = deps::docker()?;
            cmd::build()?;
            docker_demo::run(engine)
        }
        Task::Test { host_only } => {
            disk::check_room(&cmd::workspace().join("target"), disk::TEST_RUN_TARGET)?;
            deps::install()?;
            cmd::build()?;
            test::run(host_only)
        }
        Task::Fuzz { frames, seconds } => {
            deps::install()?;
            fuzz::run(&fuzz::Budget { frames, seconds })
        }
        Task::Soak { minutes } => {
            deps::install()?;
            cmd::build()?;
            soak::run(minutes)
        }
        Task::Bench { quick } => {
            deps::install()?;
            bench::run(quick)
        }
        Task::Package { dev } => {
            deps::install()?;
            package::run(if dev { package::Profile::Dev } else { package::Profile::Release }).map(|_| ())
        }
        Task::BaseRoot => {
            deps::install()?;
            println!("{}", base_image::ensure_tarball()?.display());
            Ok(())
        }
        Task::Testenv { action: TestenvAction::Up { cluster: true, .. } } => {
            testenv::cluster::up(&testenv::lb_binary())
        }
        Task::Testenv { action: TestenvAction::Up { dsr, l3, cluster: false } } => {
            testenv::up(&testenv::UpOptions { dsr, l3 })
        }
        Task::Testenv { action: TestenvAction::Down } => testenv::down(),
    }
}

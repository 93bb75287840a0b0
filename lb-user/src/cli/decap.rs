//! `lb decap --interface IF`: on a backend of an `ipip`/`gue` service, strip the tunnel
//! headers in XDP and pass the client's packet up the stack (where the VIP sits on `lo`),
//! for hosts without the kernel's ipip/fou modules. Runs in the foreground until SIGINT or
//! SIGTERM, then detaches and prints its counters; nothing is pinned, so nothing outlives it.
use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use lb_common::encap::DEFAULT_GUE_PORT;
use lb_common::tunnel::DecapOutcome;
use lb_xdp::tunnel::decap::{host_addresses, Decap, DecapCounts};
use tokio::signal::unix::{signal, SignalKind};

use super::out;

#[derive(Args, Debug)]
pub struct DecapArgs {
    /// The interface tunnelled packets arrive on
    #[arg(short, long)]
    pub interface: String,
    /// An address tunnels are sent to (repeat for several); default: every address of this
    /// host except loopback and link-local ones
    #[arg(long = "address", value_name = "ADDR")]
    pub addresses: Vec<IpAddr>,
    /// The UDP port GUE arrives on (the balancer's GUE port); 0: no GUE
    #[arg(long, default_value_t = DEFAULT_GUE_PORT)]
    pub gue_port: u16,
    /// XDP attach mode: native (driver) or skb (generic)
    #[arg(long, value_enum, default_value = "native")]
    pub xdp_attach: Attach,
    /// Also print the counters every this many seconds (0: only when stopping)
    #[arg(long, default_value_t = 0, value_name = "SECONDS")]
    pub stats_every: u64,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attach {
    Native,
    Skb,
}

pub fn decap(args: DecapArgs) -> Result<ExitCode> {
    // Said first: without the interface nothing else matters.
    lb_xdp::pinned_link::ifindex_of(&args.interface)?;
    let addresses = if args.addresses.is_empty() { host_addresses() } else { args.addresses.clone() };
    let mut d = Decap::load(&addresses, args.gue_port)?;
    d.attach(&args.interface, args.xdp_attach == Attach::Skb)?;
    let gue = match args.gue_port {
        0 => "GUE off".to_string(),
        p => format!("GUE on UDP port {p}"),
    };
    let list: Vec<String> = addresses.iter().map(IpAddr::to_string).collect();
    out::line(format!(
        "lb decap: stripping IPIP and {gue} on {} ({} XDP) for packets to {}; SIGINT or SIGTERM detaches",
        args.interface,
        if args.xdp_attach == Attach::Skb { "skb" } else { "native" },
        list.join(", ")
    ))?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(wait(&d, args.stats_every))?;
    d.detach()?;
    out::line(format!("lb decap: detached from {}; {}", args.interface, summary(&d.counts()?)))?;
    Ok(ExitCode::SUCCESS)
}

/// Until SIGINT or SIGTERM, printing the counters every `every` seconds if asked.
async fn wait(d: &Decap, every: u64) -> Result<()> {
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let period = Duration::from_secs(every.max(1));
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            _ = ticks.tick(), if every > 0 => out::line(format!("lb decap: {}", summary(&d.counts()?)))?,
        }
    }
}

/// `ipip_v4=N ipip_v6=N ...`, in `DecapOutcome::ALL` order.
fn summary(c: &DecapCounts) -> String {
    DecapOutcome::ALL.iter().map(|o| format!("{}={}", o.name(), c[*o as usize])).collect::<Vec<_>>().join(" ")
}

//! The packet fuzz: random and mutated frames (frames.rs) through the real XDP object with
//! BPF_PROG_TEST_RUN, its maps written by the daemon's own code (the packet tests'
//! harness and config: nat and dsr, IPv4 and IPv6, TCP and UDP). For every frame:
//!
//! - never `XDP_ABORTED`, and `XDP_PASS` hands the kernel the frame byte for byte;
//! - an `XDP_TX` frame whose input a receiver would accept has a correct IPv4 header
//!   checksum and L4 (TCP, UDP, ICMP, ICMPv6) checksum, computed here from scratch;
//! - flows never leak between clients: a reply or ICMP error translated to a client goes to
//!   the client (address, port and MAC) that the SNAT port was given to, as the frames the
//!   data path sent to that backend showed; an error from the client side goes to the
//!   backend that flow uses.
//!
//! `LB_PACKET_FUZZ_FRAMES` frames (default 50,000, what `cargo xtask test` runs; `cargo
//! xtask fuzz` runs 1,000,000), from seed `LB_PACKET_FUZZ_SEED` (fixed by default, so a
//! failure replays). A fresh data path every `EPOCH` frames: each frame opens at most one
//! flow, and the flow table holds more than an epoch's, so no entry is evicted under the
//! owners' table.
#[path = "packet_fuzz/checksum.rs"]
mod checksum;
#[path = "packet_fuzz/frames.rs"]
mod frames;
#[path = "packet_fuzz/owners.rs"]
mod owners;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Instant;

use lb_xdp::testkit::harness::{hex, Harness, CONFIG, XDP_DROP, XDP_PASS, XDP_TX};
use lb_xdp::testkit::packet::{server_mac, LB_MAC};

use checksum::{be16, l3_offset, verify};
use frames::{side_of, Frame, Frames, Rng};
use owners::{Owner, Owners};

const EPOCH: u64 = 200_000;
const DEFAULT_FRAMES: u64 = 50_000;
const DEFAULT_SEED: u64 = 0x6c62_2d66_757a_7a31; // "lb-fuzz1"

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => {
            let v = v.trim();
            let parsed = match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => v.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
        }
        Err(_) => default,
    }
}

/// Counts for the summary line.
#[derive(Default)]
struct Tally {
    frames: u64,
    drop: u64,
    pass: u64,
    tx: u64,
    tx_checked: u64,
    to_clients: u64,
    to_backends_checked: u64,
    /// Time inside BPF_PROG_TEST_RUN, against the whole run's.
    in_kernel: std::time::Duration,
}

#[test]
#[ignore = "needs root: cargo xtask test runs it"]
fn random_and_mutated_frames_never_abort_keep_checksums_and_never_leak_flows() {
    let frames = env_number("LB_PACKET_FUZZ_FRAMES", DEFAULT_FRAMES);
    let seed = env_number("LB_PACKET_FUZZ_SEED", DEFAULT_SEED);
    // A table larger than an epoch's flows (see the module's comment).
    let config = CONFIG.replace("flow_table_size = 4096", "flow_table_size = 262144");
    assert_ne!(config, CONFIG, "the harness config's flow_table_size line moved");
    let mut rng = Rng::new(seed);
    let mut tally = Tally::default();
    let started = Instant::now();
    let mut done = 0;
    while done < frames {
        let n = EPOCH.min(frames - done);
        let epoch_seed = rng.next();
        run_epoch(&config, epoch_seed, done, n, &mut tally);
        done += n;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "packet fuzz: seed {seed:#x}, {} frames in {secs:.1} s ({:.0} frames/s; {:.1} µs a frame in \
         BPF_PROG_TEST_RUN): {} dropped, {} passed, {} sent \
         (XDP_TX; {} with checksums judged), {} translated to clients checked against their flow's owner, {} errors \
         to backends checked; never XDP_ABORTED",
        tally.frames,
        tally.frames as f64 / secs,
        tally.in_kernel.as_secs_f64() * 1e6 / tally.frames as f64,
        tally.drop,
        tally.pass,
        tally.tx,
        tally.tx_checked,
        tally.to_clients,
        tally.to_backends_checked,
    );
    assert_eq!(tally.frames, frames);
    assert!(tally.tx > frames / 10 && tally.to_clients > frames / 50, "the fuzz reaches the forwarding paths");
}

/// `n` frames on a fresh data path; `first` numbers them within the whole run.
fn run_epoch(config: &str, seed: u64, first: u64, n: u64, tally: &mut Tally) {
    let loading = Instant::now();
    let h = Harness::new(config);
    eprintln!("epoch: data path loaded in {:.1?}", loading.elapsed());
    let g = &h.plan.global;
    let mut gen = Frames { rng: Rng::new(seed), snat_ports: (g.snat_port_min, g.snat_port_max) };
    let mut owners = Owners::default();
    for i in 0..n {
        let frame = gen.next(&owners);
        let call = Instant::now();
        let (action, out) = h.run(&frame.bytes);
        tally.in_kernel += call.elapsed();
        let fail = |why: &str| -> ! {
            panic!(
                "frame {} (epoch seed {seed:#x}): {why}\n{}\ninput:\n{}\noutput:\n{}",
                first + i,
                frame.what,
                hex(&frame.bytes),
                hex(&out)
            )
        };
        tally.frames += 1;
        match action {
            XDP_DROP => tally.drop += 1,
            XDP_PASS => {
                tally.pass += 1;
                if out != frame.bytes {
                    fail("XDP_PASS changed the frame");
                }
            }
            XDP_TX => {
                tally.tx += 1;
                if let Err(why) = check_tx(&frame, &out, &mut owners, tally) {
                    fail(&why);
                }
            }
            other => fail(&format!("action {other} (0 is XDP_ABORTED)")),
        }
    }
    assert_eq!(h.action_count(0), 0, "never XDP_ABORTED (the program's own count)");
}

/// An `XDP_TX` frame: its checksums, then where it went.
fn check_tx(frame: &Frame, out: &[u8], owners: &mut Owners, tally: &mut Tally) -> Result<(), String> {
    let (before, after) = (verify(&frame.bytes), verify(out));
    if before.ip_header == Some(true) && after.ip_header != Some(true) {
        return Err("IPv4 header checksum wrong after XDP_TX".into());
    }
    if before.l4 == Some(true) && after.l4 != Some(true) {
        return Err("L4 checksum wrong after XDP_TX".into());
    }
    if before.l4 == Some(true) {
        tally.tx_checked += 1;
    }
    if frame.bytes[..6] == LB_MAC && out[6..12] != LB_MAC {
        return Err("sent from another MAC than the LB's".into());
    }
    let Some(input) = Headers::read(&frame.bytes) else { return Err("sent a frame that is not IP".into()) };
    let output = Headers::read(out).ok_or("the sent frame is not IP")?;
    let to_backend = (1..=9).any(|n| out[..6] == server_mac(n));
    match (to_backend, output.proto) {
        (true, 6 | 17) if is_snat(output.src.ip()) => {
            // nat, client → backend: the SNAT port now belongs to this client.
            if out[..6] != frames::backend_mac(output.dst.ip()) {
                return Err(format!("sent to {} at another backend's MAC", output.dst));
            }
            let side = side_of(output.dst, output.src.port(), output.proto);
            owners.forwarded(side, Owner { client: input.src, vip: input.dst, mac: mac(&frame.bytes[6..12]) });
            Ok(())
        }
        (true, 1 | 58) if is_snat(output.src.ip()) => {
            // nat, an error from the client side: the backend of the quoted flow gets it,
            // quoting its own reply to that flow's SNAT port.
            let (quote_in, quote_out) = (input.quote.ok_or("no quote")?, output.quote.ok_or("no quote")?);
            let side = side_of(quote_out.src, quote_out.dst.port(), quote_out.proto);
            let owner = owners.owner(&side).ok_or_else(|| format!("error sent to {side:?}, which no flow holds"))?;
            if owner.client != quote_in.dst || owner.vip != quote_in.src {
                return Err(format!("an error about {} went to the backend side of {owner:?}", quote_in.dst));
            }
            tally.to_backends_checked += 1;
            Ok(())
        }
        (true, _) => Ok(()), // dsr: only the MACs change
        (false, _) => to_client(&input, &output, out, owners, tally),
    }
}

/// A frame translated back to a client: a backend's reply to a SNAT port, or an ICMP error
/// quoting what we sent a backend. Both must reach the SNAT port's owner.
fn to_client(input: &Headers, output: &Headers, out: &[u8], owners: &Owners, tally: &mut Tally) -> Result<(), String> {
    let side = match (output.proto, input.quote) {
        (6 | 17, _) => side_of(input.src, input.dst.port(), input.proto),
        (1 | 58, Some(q)) => side_of(q.dst, q.src.port(), q.proto),
        _ => return Err("sent to a client: neither a reply nor an error about a flow".into()),
    };
    let owner =
        owners.owner(&side).ok_or_else(|| format!("translated for {side:?}, which no flow of this run holds"))?;
    let reached = match output.quote {
        Some(q) if output.proto == 1 || output.proto == 58 => q.src,
        _ => output.dst,
    };
    if output.dst.ip() != owner.client.ip() || reached != owner.client || out[..6] != owner.mac {
        return Err(format!(
            "flow leak: {side:?} belongs to {} (MAC {:02x?}), but the frame went to {} (MAC {:02x?}) about {reached}",
            owner.client,
            owner.mac,
            output.dst.ip(),
            &out[..6]
        ));
    }
    if output.src.ip() != owner.vip.ip() {
        return Err(format!("translated from {} instead of the flow's VIP {}", output.src.ip(), owner.vip));
    }
    tally.to_clients += 1;
    Ok(())
}

fn is_snat(ip: IpAddr) -> bool {
    ip == IpAddr::V4(Ipv4Addr::new(172, 20, 0, 10)) || ip == "fd00:20::10".parse::<IpAddr>().unwrap()
}

fn mac(b: &[u8]) -> [u8; 6] {
    b.try_into().expect("6 bytes")
}

/// Addresses and ports of a frame (ports 0 for ICMP), and for an ICMP error the packet it
/// quotes.
#[derive(Clone, Copy, Debug)]
struct Headers {
    src: SocketAddr,
    dst: SocketAddr,
    proto: u8,
    quote: Option<Quoted>,
}

#[derive(Clone, Copy, Debug)]
struct Quoted {
    src: SocketAddr,
    dst: SocketAddr,
    proto: u8,
}

impl Headers {
    fn read(frame: &[u8]) -> Option<Headers> {
        let (l3, ethertype) = l3_offset(frame)?;
        let (src, dst, proto, l4) = ip_header(frame, l3, ethertype)?;
        let ports = |at: usize| Some((be16(frame, at)?, be16(frame, at + 2)?));
        let (sport, dport) = if proto == 6 || proto == 17 { ports(l4)? } else { (0, 0) };
        let quote = if proto == 1 || proto == 58 {
            let inner = l4 + 8;
            let (qs, qd, qp, ql4) = ip_header(frame, inner, if proto == 1 { 0x0800 } else { 0x86dd })?;
            let (qsp, qdp) = ports(ql4)?;
            Some(Quoted { src: SocketAddr::new(qs, qsp), dst: SocketAddr::new(qd, qdp), proto: qp })
        } else {
            None
        };
        Some(Headers { src: SocketAddr::new(src, sport), dst: SocketAddr::new(dst, dport), proto, quote })
    }
}

/// (source, destination, protocol, transport offset) of the IP header at `l3`.
fn ip_header(frame: &[u8], l3: usize, ethertype: u16) -> Option<(IpAddr, IpAddr, u8, usize)> {
    match ethertype {
        0x0800 => {
            let h = frame.get(l3..l3 + 20)?;
            let v4 = |at: usize| IpAddr::V4(Ipv4Addr::new(h[at], h[at + 1], h[at + 2], h[at + 3]));
            Some((v4(12), v4(16), h[9], l3 + usize::from(h[0] & 0x0f) * 4))
        }
        0x86dd => {
            let h = frame.get(l3..l3 + 40)?;
            let v6 = |at: usize| IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&h[at..at + 16]).unwrap()));
            Some((v6(8), v6(24), h[6], l3 + 40))
        }
        _ => None,
    }
}

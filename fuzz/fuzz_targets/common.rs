//! lb-common's pure packet helpers, against oracles written here: incremental checksum
//! updates equal a full recomputation, addresses survive the data path's layout, the flow
//! hash is a function of its input, Maglev tables hold only backends of positive weight,
//! token buckets never hold more than their capacity, and weighted sequences only name
//! backends of positive weight.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use lb_common::addr::{ip_words, port_be, socket, vip_key, words_ip};
use lb_common::consts::NO_BACKEND;
use lb_common::csum::{fold, replace128, replace16, replace32, sum_bytes, udp_fixup};
use lb_common::hash::{flow_hash, source_hash};
use lb_common::maglev::{build, MaglevBackend};
use lb_common::ratelimit::{Bucket, Limit};
use lb_common::sequence::smooth_weighted;
use libfuzzer_sys::fuzz_target;

/// Reads the fuzzer's bytes as numbers, zeros once they run out.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let n = N.min(self.0.len());
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        out
    }
    fn u16(&mut self) -> u16 {
        u16::from_ne_bytes(self.bytes())
    }
    fn u32(&mut self) -> u32 {
        u32::from_ne_bytes(self.bytes())
    }
    fn u64(&mut self) -> u64 {
        u64::from_ne_bytes(self.bytes())
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    checksums(&mut input);
    addresses(&mut input);
    maglev(&mut input);
    buckets(&mut input);
    sequences(&mut input);
});

/// Naive RFC 1071 over native-order words, as a receiver would check a whole packet.
fn full(data: &[u8]) -> u16 {
    let mut acc: u64 = 0;
    for pair in data.chunks(2) {
        acc += u64::from(u16::from_ne_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
    }
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

fn with_check(mut packet: Vec<u8>) -> Vec<u8> {
    packet[0..2].fill(0);
    let c = full(&packet);
    packet[0..2].copy_from_slice(&c.to_ne_bytes());
    packet
}

fn check(packet: &[u8]) -> u16 {
    u16::from_ne_bytes([packet[0], packet[1]])
}

fn checksums(input: &mut Input) {
    // A packet: checksum, a port, an address (IPv6 size), the rest of the fuzzer's bytes.
    let body: [u8; 64] = input.bytes();
    let packet = with_check(body.to_vec());
    let (port, addr) = (input.u16(), [input.u32(), input.u32(), input.u32(), input.u32()]);
    let word = |p: &[u8], at: usize| u32::from_ne_bytes([p[at], p[at + 1], p[at + 2], p[at + 3]]);
    let old_port = u16::from_ne_bytes([packet[2], packet[3]]);
    let old_addr = [word(&packet, 4), word(&packet, 8), word(&packet, 12), word(&packet, 16)];
    let mut changed = packet.clone();
    changed[2..4].copy_from_slice(&port.to_ne_bytes());
    for (i, w) in addr.iter().enumerate() {
        changed[4 + i * 4..8 + i * 4].copy_from_slice(&w.to_ne_bytes());
    }
    let incremental = replace128(replace16(check(&packet), old_port, port), &old_addr, &addr);
    // Equal as ones'-complement numbers: 0x0000 and 0xffff are both zero.
    let want = check(&with_check(changed.clone()));
    assert!(
        incremental == want || (incremental | want) == 0xffff && (incremental & want) == 0,
        "{incremental:#x} {want:#x}"
    );
    changed[0..2].copy_from_slice(&incremental.to_ne_bytes());
    assert!(full(&changed) == 0 || full(&changed) == 0xffff, "the updated packet verifies");
    // A 32-bit field alone, and the sum helpers the packet builders use.
    let new = input.u32();
    let one = replace32(check(&packet), old_addr[0], new);
    let mut v4 = packet.clone();
    v4[4..8].copy_from_slice(&new.to_ne_bytes());
    v4[0..2].copy_from_slice(&one.to_ne_bytes());
    assert!(full(&v4) == 0 || full(&v4) == 0xffff);
    assert_eq!(
        !fold(sum_bytes(&packet[2..], 0)),
        full(&{
            let mut p = packet.clone();
            p[0..2].fill(0);
            p
        })
    );
    // UDP: "no checksum" stays so, a computed zero is sent as 0xffff.
    let (old, computed) = (input.u16(), input.u16());
    let fixed = udp_fixup(old, computed);
    assert!((old == 0 && fixed == 0) || (old != 0 && fixed != 0 && (fixed == computed || computed == 0)));
}

fn addresses(input: &mut Input) {
    let v6 = input.bytes::<1>()[0] & 1 == 1;
    let ip = if v6 {
        IpAddr::V6(Ipv6Addr::from(input.bytes::<16>()))
    } else {
        IpAddr::V4(Ipv4Addr::from(input.bytes::<4>()))
    };
    let port = input.u16();
    let (words, family) = ip_words(ip);
    assert_eq!(words_ip(&words, family), ip);
    let a = SocketAddr::new(ip, port);
    assert_eq!(socket(&words, port_be(port), family), a);
    let key = vip_key(a, 6);
    assert_eq!(socket(&key.addr, key.port, key.family), a);
    // The flow hash is a function of the 5-tuple: the same input, the same slot.
    let (other, _) = ip_words(IpAddr::V4(Ipv4Addr::from(input.bytes::<4>())));
    assert_eq!(flow_hash(&words, &other, port, 80, 6), flow_hash(&words, &other, port, 80, 6));
    assert_eq!(source_hash(&words), source_hash(&words));
}

fn maglev(input: &mut Input) {
    let n = (input.bytes::<1>()[0] % 9) as usize;
    let backends: Vec<MaglevBackend> = (0..n)
        .map(|i| MaglevBackend::new(i as u32 + 1, &input.bytes::<6>(), u32::from(input.bytes::<1>()[0] % 5)))
        .collect();
    // Small primes (and a non-prime below 2) keep each run fast.
    let m = [0u32, 1, 2, 3, 13, 251][(input.bytes::<1>()[0] % 6) as usize];
    let table = build(&backends, m);
    assert_eq!(table.len(), m as usize);
    let live: Vec<u32> = backends.iter().filter(|b| b.weight > 0).map(|b| b.id).collect();
    for slot in &table {
        assert!(live.contains(slot) || (*slot == NO_BACKEND && (live.is_empty() || m < 2)), "slot {slot}");
    }
}

fn buckets(input: &mut Input) {
    let limit = Limit::new(input.u32() % 1_000_001, input.u32() % 100_001);
    let mut bucket = Bucket::full(&limit, input.u64());
    for _ in 0..8 {
        let _ = bucket.take(&limit, input.u64());
        assert!(
            bucket.credit_ns <= limit.capacity_ns,
            "credit {} over capacity {}",
            bucket.credit_ns,
            limit.capacity_ns
        );
    }
}

fn sequences(input: &mut Input) {
    let weights: Vec<u32> = (0..(input.bytes::<1>()[0] % 6)).map(|_| input.u32() % 1000).collect();
    let max = 1 + (input.u16() % 512) as usize;
    let seq = smooth_weighted(&weights, max);
    assert!(seq.len() <= max);
    assert!(seq.iter().all(|&i| weights[i] > 0), "{seq:?} for {weights:?}");
}

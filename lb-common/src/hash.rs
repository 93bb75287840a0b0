//! The flow hash. The XDP program and `lb explain` both call these functions, so the backend
//! `lb explain` names is the one real packets get.
//!
//! Words are hashed as they sit in the packet (network order, read natively): both sides
//! read them the same way, so no byte swapping is needed on the fast path.

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

/// One murmur3 block step.
#[inline(always)]
const fn mix(h: u32, k: u32) -> u32 {
    let k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    (h ^ k).rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64)
}

/// murmur3's finaliser: every input bit affects every output bit.
#[inline(always)]
const fn fmix(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

const SEED: u32 = 0x6c62_2d31; // "lb-1"

#[inline(always)]
const fn hash_addr(h: u32, a: &[u32; 4]) -> u32 {
    mix(mix(mix(mix(h, a[0]), a[1]), a[2]), a[3])
}

/// Hash of a flow's 5-tuple as the client sent it: `maglev` spreads flows with it.
#[inline(always)]
pub const fn flow_hash(src: &[u32; 4], dst: &[u32; 4], sport: u16, dport: u16, proto: u8) -> u32 {
    let h = hash_addr(SEED, src);
    let h = hash_addr(h, dst);
    let h = mix(h, ((sport as u32) << 16) | dport as u32);
    let h = mix(h, proto as u32);
    fmix(h ^ 37)
}

/// Where a new nat flow's SNAT port probes start: the 5-tuple hashed from the daemon's
/// random `snat_seed` instead of the public seed, so the ports a flow will try (and the
/// flows that would collide on one) cannot be worked out from outside. Backend selection
/// keeps `flow_hash`: every node must pick the same backend for a flow.
#[inline(always)]
pub const fn snat_probe_start(
    snat_seed: u32,
    src: &[u32; 4],
    dst: &[u32; 4],
    sport: u16,
    dport: u16,
    proto: u8,
) -> u32 {
    let h = hash_addr(fmix(snat_seed ^ SEED), src);
    let h = hash_addr(h, dst);
    let h = mix(h, ((sport as u32) << 16) | dport as u32);
    let h = mix(h, proto as u32);
    fmix(h ^ 37)
}

/// Hash of the client address alone: `source_hash` keeps a client on one backend.
#[inline(always)]
pub const fn source_hash(src: &[u32; 4]) -> u32 {
    fmix(hash_addr(SEED, src) ^ 16)
}

/// A stable 64-bit identity hash for Maglev permutations (FNV-1a, then a splitmix64 finaliser
/// so that similar names such as "172.20.0.11:80" and "172.20.0.12:80" land far apart).
pub const fn identity_hash(bytes: &[u8], seed: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    splitmix64(h)
}

pub const fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_hash_depends_on_every_field() {
        let base = flow_hash(&[1, 0, 0, 0], &[2, 0, 0, 0], 3, 4, 6);
        assert_ne!(base, flow_hash(&[9, 0, 0, 0], &[2, 0, 0, 0], 3, 4, 6));
        assert_ne!(base, flow_hash(&[1, 0, 0, 0], &[9, 0, 0, 0], 3, 4, 6));
        assert_ne!(base, flow_hash(&[1, 0, 0, 0], &[2, 0, 0, 0], 9, 4, 6));
        assert_ne!(base, flow_hash(&[1, 0, 0, 0], &[2, 0, 0, 0], 3, 9, 6));
        assert_ne!(base, flow_hash(&[1, 0, 0, 0], &[2, 0, 0, 0], 3, 4, 17));
        // Swapping the ports is a different flow.
        assert_ne!(base, flow_hash(&[1, 0, 0, 0], &[2, 0, 0, 0], 4, 3, 6));
    }

    #[test]
    fn snat_probes_depend_on_the_seed_and_not_only_on_the_flow_hash() {
        let (src, dst) = ([1, 0, 0, 0], [2, 0, 0, 0]);
        let a = snat_probe_start(1, &src, &dst, 3, 4, 6);
        assert_ne!(a, snat_probe_start(2, &src, &dst, 3, 4, 6));
        assert_ne!(a, flow_hash(&src, &dst, 3, 4, 6));
        assert_ne!(a, snat_probe_start(1, &src, &dst, 5, 4, 6));
    }

    #[test]
    fn source_hash_ignores_everything_but_the_source() {
        assert_eq!(source_hash(&[1, 2, 3, 4]), source_hash(&[1, 2, 3, 4]));
        assert_ne!(source_hash(&[1, 2, 3, 4]), source_hash(&[1, 2, 3, 5]));
    }
}

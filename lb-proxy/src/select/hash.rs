//! Maglev and source_hash: the XDP path's own Maglev table and hashes (lb-common), so a
//! flow gets the same first backend on both paths. The next choices walk the table on
//! from the flow's slot: the table is a pseudo-random permutation, so the flows a backend
//! cannot take spread over the others instead of all landing on one neighbour.
use lb_common::consts::{NO_BACKEND, RING_SIZE};
use lb_common::hash::{flow_hash, source_hash};
use lb_common::maglev::{self, MaglevBackend};

use super::candidate::{Candidate, Flow};
use super::selection::{Selection, Yielded};
use lb_common::addr::{ip_words, port_be};

/// The XDP path's flow hash of the same 5-tuple.
pub fn flow_hash_of(f: &Flow) -> u32 {
    let (src, _) = ip_words(f.client.ip());
    let (dst, _) = ip_words(f.vip.ip());
    flow_hash(&src, &dst, port_be(f.client.port()), port_be(f.vip.port()), f.proto)
}

/// The XDP path's hash of the client address alone: any port of a client, one backend.
pub fn source_hash_of(f: &Flow) -> u32 {
    source_hash(&ip_words(f.client.ip()).0)
}

/// A Maglev table over candidate indexes, looked up by a hash of the flow.
pub struct HashTable {
    candidates: Vec<Candidate>,
    table: Vec<u32>,
    hash: fn(&Flow) -> u32,
}

impl HashTable {
    /// `maglev`: by the whole 5-tuple.
    pub fn maglev(candidates: Vec<Candidate>) -> Self {
        Self::new(candidates, flow_hash_of)
    }

    /// `source_hash`: by the client address.
    pub fn source_hash(candidates: Vec<Candidate>) -> Self {
        Self::new(candidates, source_hash_of)
    }

    fn new(candidates: Vec<Candidate>, hash: fn(&Flow) -> u32) -> Self {
        let members: Vec<MaglevBackend> = candidates
            .iter()
            .enumerate()
            .map(|(i, c)| MaglevBackend::new(i as u32, c.address.to_string().as_bytes(), c.weight))
            .collect();
        let table = maglev::build(&members, RING_SIZE);
        HashTable { candidates, table, hash }
    }
}

impl Selection for HashTable {
    type Iter<'a> = TableWalk<'a>;

    fn candidates(&self) -> &[Candidate] {
        &self.candidates
    }

    fn iter(&self, flow: &Flow) -> TableWalk<'_> {
        let start = ((self.hash)(flow) % RING_SIZE) as usize;
        TableWalk { selection: self, start, walked: 0, yielded: Yielded::new(self.candidates.len()) }
    }
}

/// The backends in slot order from the flow's slot, each where it first appears.
pub struct TableWalk<'a> {
    selection: &'a HashTable,
    start: usize,
    /// Slots looked at so far.
    walked: usize,
    yielded: Yielded,
}

impl<'a> Iterator for TableWalk<'a> {
    type Item = &'a Candidate;

    fn next(&mut self) -> Option<&'a Candidate> {
        let table = &self.selection.table;
        // Stops as soon as every candidate came: no walk over the rest of a 65537-slot table.
        while self.walked < table.len() && !self.yielded.all() {
            let id = table[(self.start + self.walked) % table.len()];
            self.walked += 1;
            if id != NO_BACKEND && self.yielded.insert(id as usize) {
                return Some(&self.selection.candidates[id as usize]);
            }
        }
        None
    }
}

//! Stable small integer ids for services and backends, the indexes of the data path's
//! arrays. The same key keeps its id across reconciles; a freed id is not handed out again
//! until the allocator has gone round every other one, so a flow pinned to a removed
//! backend's id is re-steered instead of silently following a newcomer.
//!
//! Ids freed by the latest `retain` are still named by the live data path until the writer
//! has made the new tables live and retired the old ones. They are handed out only when no
//! other id is free (the old and the new state together exceed the capacity), and then in
//! the order the caller ranks their previous holders (`id_ranked`). The writer retires or
//! flips the previous holder before the new one moves in (see `writer`).
use std::collections::HashMap;
use std::hash::Hash;

use anyhow::{bail, Result};

#[derive(Clone, Debug)]
pub struct IdAllocator<K> {
    by_key: HashMap<K, u32>,
    /// `used[id]`: some key holds `id`.
    used: Vec<bool>,
    /// `held_by[id]`: the key that held `id` before the latest `retain` freed it; the live
    /// data path still names it.
    held_by: Vec<Option<K>>,
    capacity: u32,
    next: u32,
    what: &'static str,
}

impl<K: Eq + Hash + Clone> IdAllocator<K> {
    pub fn new(capacity: u32, what: &'static str) -> Self {
        Self {
            by_key: HashMap::new(),
            used: vec![false; capacity as usize],
            held_by: vec![None; capacity as usize],
            capacity,
            next: 0,
            what,
        }
    }

    pub fn id(&mut self, key: &K) -> Result<u32> {
        self.id_ranked(key, |_| 0)
    }

    /// The id `key` holds, or a new one: one the data path no longer names if any is left,
    /// else the held one whose previous holder `rank` puts first (lowest), going round
    /// from the cursor among equals.
    pub fn id_ranked(&mut self, key: &K, rank: impl Fn(&K) -> u32) -> Result<u32> {
        if let Some(id) = self.by_key.get(key) {
            return Ok(*id);
        }
        if self.by_key.len() as u32 >= self.capacity {
            bail!("too many {}: the data path holds at most {}", self.what, self.capacity);
        }
        let mut best: Option<(u32, u32)> = None;
        for id in (0..self.capacity).map(|i| (self.next + i) % self.capacity) {
            if self.used[id as usize] {
                continue;
            }
            let r = self.held_by[id as usize].as_ref().map_or(0, |previous| 1 + rank(previous));
            if best.is_none_or(|(b, _)| r < b) {
                best = Some((r, id));
            }
            if r == 0 {
                break;
            }
        }
        // Not full, so some id is unused.
        let Some((_, id)) = best else { bail!("no free id among {} {}", self.capacity, self.what) };
        self.next = (id + 1) % self.capacity;
        self.used[id as usize] = true;
        self.held_by[id as usize] = None;
        self.by_key.insert(key.clone(), id);
        Ok(id)
    }

    /// Take over an id given by a previous daemon (adoption); the next new key gets an id
    /// after it.
    pub fn seed(&mut self, key: K, id: u32) {
        if id < self.capacity && !self.used[id as usize] && !self.by_key.contains_key(&key) {
            self.by_key.insert(key, id);
            self.used[id as usize] = true;
            self.next = self.next.max((id + 1) % self.capacity);
        }
    }

    /// Forget every key `keep` says no to. Its id is free, but held until the next
    /// `retain`: the data path names it until the coming write retires it.
    pub fn retain(&mut self, mut keep: impl FnMut(&K) -> bool) {
        self.held_by.iter_mut().for_each(|h| *h = None);
        let gone: Vec<(K, u32)> =
            self.by_key.iter().filter(|(k, _)| !keep(k)).map(|(k, id)| (k.clone(), *id)).collect();
        for (k, id) in gone {
            self.by_key.remove(&k);
            self.used[id as usize] = false;
            self.held_by[id as usize] = Some(k);
        }
    }

    /// The id `key` holds, if any.
    pub fn get(&self, key: &K) -> Option<u32> {
        self.by_key.get(key).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_same_id_and_freed_ids_are_not_reused_at_once() {
        let mut ids = IdAllocator::new(4, "backends");
        assert_eq!(ids.id(&"a").unwrap(), 0);
        assert_eq!(ids.id(&"b").unwrap(), 1);
        assert_eq!(ids.id(&"a").unwrap(), 0);
        ids.retain(|k| *k != "a");
        assert_eq!(ids.id(&"c").unwrap(), 2);
        assert_eq!(ids.id(&"d").unwrap(), 3);
        assert_eq!(ids.id(&"e").unwrap(), 0, "wraps round to the freed id last");
        assert!(ids.id(&"f").is_err(), "full");
    }

    #[test]
    fn ids_the_live_data_path_still_names_are_taken_only_when_no_other_is_free() {
        let mut ids = IdAllocator::new(4, "services");
        for k in ["a", "b", "c", "d"] {
            ids.id(&k).unwrap();
        }
        ids.retain(|k| *k != "a");
        // The next round: "b" (id 1) leaves; "a"'s id 0 is free for good now.
        ids.retain(|k| *k != "b");
        assert_eq!(ids.id(&"e").unwrap(), 0, "freed a round ago: free");
        assert_eq!(ids.id(&"f").unwrap(), 1, "still named by the data path, but nothing else is free");
        let mut ids = IdAllocator::new(4, "services");
        for k in ["a", "b"] {
            ids.id(&k).unwrap();
        }
        ids.retain(|k| *k != "a");
        ids.next = 0;
        assert_eq!(ids.id(&"c").unwrap(), 2, "passes over the held id 0 although it comes first");
        assert_eq!(ids.id(&"d").unwrap(), 3);
        assert_eq!(ids.id(&"e").unwrap(), 0);
    }

    #[test]
    fn held_ids_go_in_the_order_the_caller_ranks_their_previous_holders() {
        let mut ids = IdAllocator::new(4, "backends");
        for k in ["a1", "a2", "b1", "b2"] {
            ids.id(&k).unwrap();
        }
        ids.retain(|_| false);
        // Previous holders starting with 'b' first, then round from the cursor (at 0).
        let b_first = |k: &&str| if k.starts_with('b') { 0 } else { 1 };
        assert_eq!(ids.id_ranked(&"c", b_first).unwrap(), 2);
        assert_eq!(ids.id_ranked(&"d", b_first).unwrap(), 3);
        assert_eq!(ids.id_ranked(&"e", b_first).unwrap(), 0);
    }

    #[test]
    fn seeding_an_id_twice_keeps_the_first_holder() {
        let mut ids = IdAllocator::new(4, "services");
        ids.seed("a", 2);
        ids.seed("b", 2);
        ids.seed("c", 9);
        assert_eq!(ids.get(&"a"), Some(2));
        assert_eq!(ids.get(&"b"), None);
        assert_eq!(ids.get(&"c"), None, "out of range");
        assert_eq!(ids.id(&"b").unwrap(), 3);
    }
}

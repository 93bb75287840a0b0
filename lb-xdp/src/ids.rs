//! Stable small integer ids for services and backends, the indexes of the data path's
//! arrays. The same key keeps its id across reconciles; a freed id is not handed out again
//! until the allocator has gone round every other one, so a flow pinned to a removed
//! backend's id is re-steered instead of silently following a newcomer.
//!
//! Ids freed by the latest `retain` are still named by the live data path until the writer
//! has made the new tables live and retired the old ones. They are handed out only when no
//! other id is free (the old and the new state together exceed the capacity); the writer
//! then retires the old holder before the new one moves in (see `writer`).
use std::collections::HashMap;
use std::hash::Hash;

use anyhow::{bail, Result};

#[derive(Clone, Debug)]
pub struct IdAllocator<K> {
    by_key: HashMap<K, u32>,
    /// `used[id]`: some key holds `id`.
    used: Vec<bool>,
    /// `held[id]`: the latest `retain` freed `id`; the live data path still names it.
    held: Vec<bool>,
    capacity: u32,
    next: u32,
    what: &'static str,
}

impl<K: Eq + Hash + Clone> IdAllocator<K> {
    pub fn new(capacity: u32, what: &'static str) -> Self {
        Self {
            by_key: HashMap::new(),
            used: vec![false; capacity as usize],
            held: vec![false; capacity as usize],
            capacity,
            next: 0,
            what,
        }
    }

    pub fn id(&mut self, key: &K) -> Result<u32> {
        if let Some(id) = self.by_key.get(key) {
            return Ok(*id);
        }
        if self.by_key.len() as u32 >= self.capacity {
            bail!("too many {}: the data path holds at most {}", self.what, self.capacity);
        }
        // Not full, so some id is unused: first one the data path no longer names either,
        // else one it still does (the writer retires its old holder first).
        let id = self
            .first_from_next(|id| !self.used[id as usize] && !self.held[id as usize])
            .or_else(|| self.first_from_next(|id| !self.used[id as usize]))
            .expect("an allocator below capacity has an unused id");
        self.next = (id + 1) % self.capacity;
        self.used[id as usize] = true;
        self.held[id as usize] = false;
        self.by_key.insert(key.clone(), id);
        Ok(id)
    }

    /// The first id from `next` on, going round, that `free` accepts.
    fn first_from_next(&self, free: impl Fn(u32) -> bool) -> Option<u32> {
        (0..self.capacity).map(|i| (self.next + i) % self.capacity).find(|&id| free(id))
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
        self.held.iter_mut().for_each(|h| *h = false);
        let (used, held) = (&mut self.used, &mut self.held);
        self.by_key.retain(|k, id| {
            let kept = keep(k);
            if !kept {
                used[*id as usize] = false;
                held[*id as usize] = true;
            }
            kept
        });
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

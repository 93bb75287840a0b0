//! Stable small integer ids for services and backends, the indexes of the data path's
//! arrays. The same key keeps its id across reconciles; a freed id is not handed out again
//! until the allocator has gone round every other one, so a flow pinned to a removed
//! backend's id is re-steered instead of silently following a newcomer.
use std::collections::HashMap;
use std::hash::Hash;

use anyhow::{bail, Result};

pub struct IdAllocator<K> {
    by_key: HashMap<K, u32>,
    capacity: u32,
    next: u32,
    what: &'static str,
}

impl<K: Eq + Hash + Clone> IdAllocator<K> {
    pub fn new(capacity: u32, what: &'static str) -> Self {
        Self { by_key: HashMap::new(), capacity, next: 0, what }
    }

    pub fn id(&mut self, key: &K) -> Result<u32> {
        if let Some(id) = self.by_key.get(key) {
            return Ok(*id);
        }
        if self.by_key.len() as u32 >= self.capacity {
            bail!("too many {}: the data path holds at most {}", self.what, self.capacity);
        }
        let used: std::collections::HashSet<u32> = self.by_key.values().copied().collect();
        let mut id = self.next;
        while used.contains(&id) {
            id = (id + 1) % self.capacity;
        }
        self.next = (id + 1) % self.capacity;
        self.by_key.insert(key.clone(), id);
        Ok(id)
    }

    /// Take over an id given by a previous daemon (adoption); the next new key gets an id
    /// after it.
    pub fn seed(&mut self, key: K, id: u32) {
        if id < self.capacity {
            self.by_key.insert(key, id);
            self.next = self.next.max((id + 1) % self.capacity);
        }
    }

    /// Forget every key `keep` says no to, freeing its id.
    pub fn retain(&mut self, mut keep: impl FnMut(&K) -> bool) {
        self.by_key.retain(|k, _| keep(k));
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
}

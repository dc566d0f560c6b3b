//! A map from SSRC to a small value whose entry for a key can be asked
//! into the cache before it is looked up.
//!
//! A shared socket finds each datagram's channel by the SSRC it carries.
//! Between two reads the kernel's own work on the datagrams evicts the
//! routes from the cache, so each look-up waited for memory in turn
//! (profiled: the one instruction after the key's load took a sixth of
//! the worker's own time at 1,000 channels). Here an entry is one cache
//! line at a place the key alone gives ([`SsrcTable::prefetch`]), so a read
//! can start loading every datagram's entry before it routes the first.
//!
//! Open addressing with linear probing at most half full, removal by
//! shifting back (no tombstones). The keys are chosen by the application
//! (`remote-ssrc`), never by the network: a datagram only looks up, and a
//! look-up of any key costs at most the longest run of filled entries.

use crate::mux::prefetch;

/// Multiplier of Fibonacci hashing: the top bits of the product mix all of
/// the key, so neighbouring SSRCs spread over the table.
const FIBONACCI: u64 = 0x9e37_79b9_7f4a_7c15;

/// Entries a table starts with at its first insert.
const MIN_CAPACITY: usize = 16;

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Entry<V> {
    key: u32,
    /// None: the entry is free.
    value: Option<V>,
}

pub struct SsrcTable<V> {
    entries: Vec<Entry<V>>,
    len: usize,
    /// 64 minus the bits of the capacity: a key's home is its hash's top
    /// bits.
    shift: u32,
}

impl<V: Copy> Default for SsrcTable<V> {
    fn default() -> Self {
        SsrcTable {
            entries: Vec::new(),
            len: 0,
            shift: 64,
        }
    }
}

impl<V: Copy> SsrcTable<V> {
    fn mask(&self) -> usize {
        self.entries.len() - 1
    }

    fn home(&self, key: u32) -> usize {
        (u64::from(key).wrapping_mul(FIBONACCI) >> self.shift) as usize
    }

    /// Starts loading the entry `key` hashes to: where [`SsrcTable::get`]
    /// looks first, and nearly always last.
    #[inline]
    pub fn prefetch(&self, key: u32) {
        if !self.entries.is_empty() {
            prefetch(&self.entries[self.home(key)]);
        }
    }

    /// Where `key` is, or the free entry that ends its run.
    fn find(&self, key: u32) -> (usize, bool) {
        let mask = self.mask();
        let mut i = self.home(key);
        loop {
            let e = &self.entries[i];
            match e.value {
                None => return (i, false),
                Some(_) if e.key == key => return (i, true),
                Some(_) => i = (i + 1) & mask,
            }
        }
    }

    #[inline]
    pub fn get(&self, key: u32) -> Option<&V> {
        if self.entries.is_empty() {
            return None;
        }
        match self.find(key) {
            (i, true) => self.entries[i].value.as_ref(),
            _ => None,
        }
    }

    /// Files `value` under `key` unless the key has one already (which it
    /// keeps).
    pub fn insert_if_absent(&mut self, key: u32, value: V) {
        if (self.len + 1) * 2 > self.entries.len() {
            self.grow();
        }
        if let (i, false) = self.find(key) {
            self.entries[i] = Entry {
                key,
                value: Some(value),
            };
            self.len += 1;
        }
    }

    /// Takes `key` out, with its value.
    pub fn remove(&mut self, key: u32) -> Option<V> {
        if self.entries.is_empty() {
            return None;
        }
        let (mut hole, true) = self.find(key) else {
            return None;
        };
        let value = self.entries[hole].value.take();
        self.len -= 1;
        // The entries after the hole, up to the next free one, move back
        // into it when their home is not between the hole and them: a
        // look-up must still meet them before a free entry.
        let mask = self.mask();
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let Some(moved) = self.entries[j].value else {
                break;
            };
            let home = self.home(self.entries[j].key);
            let reaches_hole = if hole <= j {
                home <= hole || home > j
            } else {
                home <= hole && home > j
            };
            if reaches_hole {
                self.entries[hole] = Entry {
                    key: self.entries[j].key,
                    value: Some(moved),
                };
                self.entries[j].value = None;
                hole = j;
            }
        }
        value
    }

    fn grow(&mut self) {
        let capacity = (self.entries.len() * 2).max(MIN_CAPACITY);
        let old = std::mem::replace(
            &mut self.entries,
            vec![
                Entry {
                    key: 0,
                    value: None,
                };
                capacity
            ],
        );
        self.shift = 64 - capacity.trailing_zeros();
        self.len = 0;
        for e in old {
            if let Some(value) = e.value {
                self.insert_if_absent(e.key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u32, u16),
        Remove(u32),
        Get(u32),
    }

    /// Keys from a small set, so that runs of filled entries form, wrap
    /// around the end and are cut by removals.
    fn op(keys: u32) -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..keys, any::<u16>()).prop_map(|(k, v)| Op::Insert(k, v)),
            (0..keys).prop_map(Op::Remove),
            (0..keys).prop_map(Op::Get),
        ]
    }

    proptest! {
        /// Every sequence of inserts, removals and look-ups answers as a
        /// HashMap with `entry().or_insert` does.
        #[test]
        fn behaves_as_a_map(ops in proptest::collection::vec(op(48), 0..400)) {
            let mut table = SsrcTable::default();
            let mut model = HashMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => {
                        table.insert_if_absent(k, v);
                        model.entry(k).or_insert(v);
                    }
                    Op::Remove(k) => prop_assert_eq!(table.remove(k), model.remove(&k)),
                    Op::Get(k) => prop_assert_eq!(table.get(k), model.get(&k)),
                }
                prop_assert_eq!(table.len, model.len());
                prop_assert!(table.entries.is_empty() || table.len * 2 <= table.entries.len());
            }
            for k in 0..48 {
                prop_assert_eq!(table.get(k), model.get(&k));
            }
        }
    }

    #[test]
    fn keys_that_share_a_home_are_all_found_after_removals() {
        let mut table = SsrcTable::default();
        table.insert_if_absent(1, 0u32);
        // Keys hashing to the same entry as 1 in a table of 16.
        let same: Vec<u32> = (2..)
            .filter(|&k| table.home(k) == table.home(1))
            .take(5)
            .collect();
        for (v, &k) in same.iter().enumerate() {
            table.insert_if_absent(k, v as u32 + 1);
        }
        assert_eq!(table.entries.len(), 16, "still the first capacity");
        assert_eq!(table.remove(1), Some(0));
        assert_eq!(table.remove(same[2]), Some(3));
        for (v, &k) in same.iter().enumerate().filter(|&(v, _)| v != 2) {
            assert_eq!(table.get(k), Some(&(v as u32 + 1)), "key {k}");
        }
        assert_eq!(
            (table.get(1), table.get(same[2]), table.len),
            (None, None, 4)
        );
        // The first value stays: inserting again keeps it.
        table.insert_if_absent(same[0], 99);
        assert_eq!(table.get(same[0]), Some(&1));
    }
}

//! A sharded hash table of per-key states, bounded in size, that expires and
//! evicts keys itself on the calling thread.
//!
//! Written by hand because no cache crate offers all of: in-place mutation of
//! a small state under one lock, locking several keys' shards at once (for
//! all-or-nothing batches), expiry computed from the state itself, and under
//! 32 bytes of overhead per key (moka and quick_cache keep several words of
//! bookkeeping per entry; `governor`'s DashMap neither expires nor bounds).
//!
//! Keys are 64-bit hashes (see `MemoryStorage`); the table stores them with
//! one bit, [`REF_BIT`], borrowed as the CLOCK "recently used" flag.

use hashbrown::HashTable;
use parking_lot::{Mutex, MutexGuard};

/// The CLOCK reference bit, kept inside the stored hash. Bit 32 is used by
/// neither hashbrown's bucket index (low bits) nor its control byte (top 7
/// bits), nor the shard index (bits 40 and up), so clearing it costs nothing.
pub(crate) const REF_BIT: u64 = 1 << 32;

use crate::strategy::Expiring;

struct Slot<V> {
    tag: u64,
    value: V,
}

impl<V> Slot<V> {
    fn id(&self) -> u64 {
        self.tag & !REF_BIT
    }
}

/// Keeps each shard's lock on its own cache line, so threads working on
/// different shards do not slow each other down. (One attribute: not worth a
/// dependency.)
#[repr(align(128))]
struct Padded<T>(T);

pub(crate) struct Table<V> {
    shards: Box<[Padded<Mutex<Shard<V>>>]>,
    shard_mask: u64,
}

pub(crate) struct Shard<V> {
    map: HashTable<Slot<V>>,
    cap: usize,
    hand: usize,
    inserts_since_sweep: usize,
    /// Keys left by the last sweep.
    swept_len: usize,
}

impl<V: Expiring> Table<V> {
    /// A table holding at most `max_keys` keys in about `shards` shards: a
    /// power of two, no more than `max_keys`, whose caps add up to `max_keys`.
    pub(crate) fn new(max_keys: usize, shards: usize) -> Self {
        let max_keys = max_keys.max(1);
        let most_shards = 1 << max_keys.ilog2();
        let shards = shards.max(1).next_power_of_two().min(most_shards);
        let (base, extra) = (max_keys / shards, max_keys % shards);
        Table {
            shards: (0..shards)
                .map(|i| {
                    let cap = base + usize::from(i < extra);
                    Padded(Mutex::new(Shard {
                        map: HashTable::new(),
                        cap,
                        hand: 0,
                        inserts_since_sweep: 0,
                        swept_len: 0,
                    }))
                })
                .collect(),
            shard_mask: shards as u64 - 1,
        }
    }

    pub(crate) fn shard_index(&self, id: u64) -> usize {
        // Bits 40+ are independent of those hashbrown uses inside a shard.
        ((id >> 40) & self.shard_mask) as usize
    }

    pub(crate) fn lock(&self, index: usize) -> Option<MutexGuard<'_, Shard<V>>> {
        self.shards.get(index).map(|s| s.0.lock())
    }

    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.0.lock().map.len()).sum()
    }

    pub(crate) fn clear(&self) {
        for shard in self.shards.iter() {
            let mut shard = shard.0.lock();
            shard.map = HashTable::new();
            shard.inserts_since_sweep = 0;
            shard.swept_len = 0;
        }
    }

    pub(crate) fn remove(&self, id: u64) {
        if let Some(mut shard) = self.lock(self.shard_index(id)) {
            shard.remove(id);
        }
    }

    /// Drops every expired key now; returns how many were dropped.
    pub(crate) fn sweep(&self, now: u64) -> usize {
        self.shards.iter().map(|s| s.0.lock().sweep(now)).sum()
    }
}

fn hash_of<V>(slot: &Slot<V>) -> u64 {
    slot.id()
}

impl<V: Expiring> Shard<V> {
    /// The live state of `id`, marked as recently used.
    pub(crate) fn get(&mut self, id: u64, now: u64) -> Option<&V> {
        let slot = self.map.find_mut(id, |s| s.id() == id)?;
        if slot.value.expires_at() <= now {
            return None;
        }
        slot.tag |= REF_BIT;
        Some(&slot.value)
    }

    /// The state of `id`, created empty (or emptied, if expired), marked as
    /// recently used. Makes room first if the shard is full.
    pub(crate) fn get_or_insert(&mut self, id: u64, now: u64) -> &mut V {
        if self.room_needed() && self.map.find(id, |s| s.id() == id).is_none() {
            self.make_room(now);
        }
        let mut inserted = false;
        let slot = self
            .map
            .entry(id, |s| s.id() == id, hash_of)
            .or_insert_with(|| {
                inserted = true;
                Slot { tag: id, value: V::default() }
            })
            .into_mut();
        if !inserted && slot.value.expires_at() <= now {
            slot.value = V::default();
        }
        slot.tag |= REF_BIT;
        if inserted {
            self.inserts_since_sweep += 1;
        }
        &mut slot.value
    }

    /// Puts back a state saved with [`get`](Self::get) (`None`: no state).
    /// Puts back a state saved with [`get`](Self::get) (`None`: no state),
    /// re-inserting it if the batch's own inserts evicted it. Run in reverse
    /// order, a rollback first removes the keys the batch added, so the
    /// shard ends no fuller than it began.
    pub(crate) fn restore(&mut self, id: u64, saved: Option<V>) {
        match saved {
            Some(value) => match self.map.find_mut(id, |s| s.id() == id) {
                Some(slot) => slot.value = value,
                None => {
                    self.map.insert_unique(id, Slot { tag: id | REF_BIT, value }, hash_of);
                }
            },
            None => self.remove(id),
        }
    }

    pub(crate) fn remove(&mut self, id: u64) {
        if let Ok(entry) = self.map.find_entry(id, |s| s.id() == id) {
            entry.remove();
        }
    }

    fn at_cap(&self) -> bool {
        self.map.len() >= self.cap
    }

    /// A full sweep is due after as many inserts as the shard held at the
    /// last sweep (amortised O(1) per insert), or after an eighth of the cap
    /// once the shard is full, so that eviction finds expired keys first.
    fn sweep_due(&self) -> bool {
        let period = if self.at_cap() { (self.cap / 8).max(1) } else { self.swept_len.max(64) };
        self.inserts_since_sweep >= period
    }

    fn room_needed(&self) -> bool {
        self.at_cap() || self.sweep_due()
    }

    fn make_room(&mut self, now: u64) {
        if self.sweep_due() {
            self.sweep(now);
        }
        if self.at_cap() {
            self.evict_one(now);
        }
    }

    fn sweep(&mut self, now: u64) -> usize {
        let before = self.map.len();
        self.map.retain(|s| s.value.expires_at() > now);
        self.inserts_since_sweep = 0;
        self.swept_len = self.map.len();
        before - self.map.len()
    }

    /// CLOCK: from the hand, drop the first key that is expired or was not
    /// used since the hand last passed it, clearing "used" marks on the way.
    fn evict_one(&mut self, now: u64) {
        let buckets = self.map.num_buckets();
        if buckets == 0 {
            return;
        }
        // Two turns always find a victim: the first clears every mark.
        for _ in 0..2 * buckets {
            let index = self.hand % buckets;
            self.hand = index + 1;
            let Some(slot) = self.map.get_bucket_mut(index) else {
                continue;
            };
            if slot.value.expires_at() <= now || slot.tag & REF_BIT == 0 {
                if let Ok(entry) = self.map.get_bucket_entry(index) {
                    entry.remove();
                }
                return;
            }
            slot.tag &= !REF_BIT;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default, Debug, PartialEq)]
    struct Until(u64);

    impl Expiring for Until {
        fn expires_at(&self) -> u64 {
            self.0
        }
    }

    fn id(n: u64) -> u64 {
        // Spread like a real hash, keep clear of the reference bit.
        n.wrapping_mul(0x9E37_79B9_7F4A_7C15) & !REF_BIT
    }

    #[test]
    fn expired_states_read_as_absent_and_restart_empty() {
        let table: Table<Until> = Table::new(100, 1);
        let mut shard = table.lock(0).unwrap();
        shard.get_or_insert(id(1), 0).0 = 10;
        assert_eq!(shard.get(id(1), 9), Some(&Until(10)));
        assert_eq!(shard.get(id(1), 10), None);
        assert_eq!(shard.get_or_insert(id(1), 10), &Until(0));
    }

    #[test]
    fn never_holds_more_than_the_cap() {
        let table: Table<Until> = Table::new(64, 4);
        for n in 0..10_000 {
            let idx = table.shard_index(id(n));
            table.lock(idx).unwrap().get_or_insert(id(n), 0).0 = u64::MAX;
        }
        assert!(table.len() <= 64, "{}", table.len());
        assert!(table.len() >= 48, "{}", table.len());
    }

    #[test]
    fn eviction_prefers_expired_then_unused_keys() {
        let table: Table<Until> = Table::new(4, 1);
        let mut shard = table.lock(0).unwrap();
        for n in 0..4 {
            shard.get_or_insert(id(n), 0).0 = if n == 2 { 5 } else { 1_000 };
        }
        // At time 6 key 2 has expired: it goes first, whatever the marks.
        shard.get_or_insert(id(10), 6).0 = 1_000;
        assert!(shard.map.find(id(2), |s| s.id() == id(2)).is_none());
        assert_eq!(shard.map.len(), 4);
        // Every key is marked used: the hand clears all marks, then evicts one.
        shard.get_or_insert(id(11), 6).0 = 1_000;
        let present = |shard: &Shard<Until>, n: u64| shard.map.find(id(n), |s| s.id() == id(n)).is_some();
        let old: Vec<u64> = [0, 1, 3, 10].into_iter().filter(|&n| present(&shard, n)).collect();
        assert_eq!(old.len(), 3);
        // Use one old key again: the next eviction must take another old,
        // unused key, never it nor the newly inserted 11.
        let used = old[0];
        let _ = shard.get(id(used), 6);
        shard.get_or_insert(id(12), 6).0 = 1_000;
        assert!(present(&shard, used));
        assert!(present(&shard, 11));
        assert!(present(&shard, 12));
        assert_eq!(shard.map.len(), 4);
    }

    #[test]
    fn sweeps_expired_keys_without_being_asked() {
        let table: Table<Until> = Table::new(1_000_000, 1);
        let mut shard = table.lock(0).unwrap();
        for n in 0..1_000 {
            shard.get_or_insert(id(n), 0).0 = 10;
        }
        for n in 1_000..3_000 {
            shard.get_or_insert(id(n), 20).0 = 30;
        }
        // The first thousand expired at 10; periodic sweeps dropped them.
        assert!(shard.map.len() < 2_500, "{}", shard.map.len());
    }

    #[test]
    fn restore_puts_back_or_removes() {
        let table: Table<Until> = Table::new(10, 1);
        let mut shard = table.lock(0).unwrap();
        shard.get_or_insert(id(1), 0).0 = 7;
        shard.restore(id(1), Some(Until(9)));
        assert_eq!(shard.get(id(1), 0), Some(&Until(9)));
        shard.restore(id(1), None);
        assert_eq!(shard.get(id(1), 0), None);
    }
}

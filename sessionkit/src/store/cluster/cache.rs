//! The node-local cache of decoded records, and the rules that keep it from
//! serving what another node changed.
//!
//! Three guards, each for one race:
//! - **Versions.** A `Saved` message drops an entry only if it is older
//!   than the version the message announces (a late message never evicts a
//!   fresher entry); removals drop it whatever its version.
//! - **Tickets.** A load reads Redis *then* fills the cache. If an
//!   invalidation for that key lands in between, the value read may already
//!   be stale. So every invalidation bumps a counter (one of 256 buckets,
//!   chosen by the key hash), the load takes a [`Ticket`] before reading, and
//!   the fill is skipped if the counter moved. Fills and invalidations of
//!   one key run under moka's per-key lock (`and_compute_with`), so the
//!   check and the write cannot interleave.
//! - **Subscription.** While the node is not subscribed it receives no
//!   invalidations: the cache is emptied when the subscription is lost,
//!   bypassed until it is back, and every fill taken under an older
//!   subscription (generation) is refused.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use moka::ops::compute::Op;
use moka::sync::Cache;

use crate::record::{Record, SessionData};

/// The cache key: SHA-256 of the session id (the bytes behind
/// [`SessionId::storage_key`](crate::SessionId::storage_key)).
pub(crate) type KeyHash = [u8; 32];

const BUCKETS: usize = 256;

/// The cache's hasher: eight bytes of the key as they are. Keys are
/// SHA-256 outputs, uniform whatever id a client sends, and entries are only
/// made for sessions the store holds (ids the server drew), so SipHash (the
/// default, about 200 instructions over 32 bytes) buys nothing here.
#[derive(Clone, Copy, Default)]
pub(crate) struct KeyHashState;

impl std::hash::BuildHasher for KeyHashState {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(0)
    }
}

/// See [`KeyHashState`].
pub(crate) struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    /// A `[u8; 32]` key arrives as its length, then its bytes: the length is
    /// the same for every key and is ignored; bytes 8..16 are the hash
    /// (byte 0 picks the invalidation bucket, so it is left out). Any other
    /// input is mixed in, so a change of key type costs speed, not spread.
    fn write(&mut self, bytes: &[u8]) {
        match bytes.get(8..16) {
            Some(word) if bytes.len() == 32 => {
                self.0 ^= u64::from_le_bytes(word.try_into().expect("8 bytes"));
            }
            _ => {
                for &b in bytes {
                    self.0 =
                        (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                }
            }
        }
    }
    fn write_usize(&mut self, _len: usize) {}
    fn finish(&self) -> u64 {
        self.0
    }
}

/// What a lookup found.
pub(crate) enum Lookup<T> {
    /// A cached record.
    Hit(Record<T>),
    /// Not cached: read Redis, then [`LocalCache::fill`].
    Miss,
    /// Not subscribed: read Redis and cache nothing.
    Bypass,
}

/// Taken before reading Redis; a fill with a stale ticket is refused.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    generation: u64,
    bucket: u64,
}

/// Counters, also exported as metrics.
#[derive(Default)]
pub(crate) struct Counters {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub bypassed: AtomicU64,
    pub invalidations: AtomicU64,
    pub rejected: AtomicU64,
    pub own_ignored: AtomicU64,
    pub subscription_losses: AtomicU64,
}

/// The local cache shared by a store and its subscriber task.
pub(crate) struct LocalCache<T> {
    entries: Cache<KeyHash, Arc<Record<T>>, KeyHashState>,
    subscribed: AtomicBool,
    generation: AtomicU64,
    buckets: Box<[AtomicU64]>,
    pub(crate) counters: Counters,
}

impl<T: SessionData> LocalCache<T> {
    pub(crate) fn new(ttl: Duration, capacity: u64) -> Self {
        LocalCache {
            entries: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build_with_hasher(KeyHashState),
            subscribed: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            counters: Counters::default(),
        }
    }

    fn bucket(&self, key: &KeyHash) -> &AtomicU64 {
        &self.buckets[usize::from(key[0])]
    }

    pub(crate) fn is_subscribed(&self) -> bool {
        self.subscribed.load(Ordering::Acquire)
    }

    pub(crate) fn lookup(&self, key: &KeyHash) -> Lookup<T> {
        if !self.is_subscribed() {
            self.counters.bypassed.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("sessionkit_cache_bypassed_total").increment(1);
            return Lookup::Bypass;
        }
        match self.entries.get(key) {
            Some(record) => {
                self.counters.hits.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("sessionkit_cache_hits_total").increment(1);
                Lookup::Hit((*record).clone())
            }
            None => {
                self.counters.misses.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("sessionkit_cache_misses_total").increment(1);
                Lookup::Miss
            }
        }
    }

    /// The cached record if there is one (counted as a hit). A miss or a
    /// bypass is not counted here: the [`LocalCache::lookup`] that follows
    /// on the slow path counts it, once.
    pub(crate) fn hit(&self, key: &KeyHash) -> Option<Record<T>> {
        if !self.is_subscribed() {
            return None;
        }
        let record = self.entries.get(key)?;
        self.counters.hits.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("sessionkit_cache_hits_total").increment(1);
        Some((*record).clone())
    }

    pub(crate) fn ticket(&self, key: &KeyHash) -> Ticket {
        Ticket {
            generation: self.generation.load(Ordering::Acquire),
            bucket: self.bucket(key).load(Ordering::Acquire),
        }
    }

    /// Caches `record` (read or written under `ticket`) unless an
    /// invalidation or a subscription change came since, or a newer version
    /// is already cached.
    pub(crate) fn fill(&self, key: KeyHash, record: &Record<T>, ticket: Ticket) {
        self.entries.entry(key).and_compute_with(|held| {
            let current = self.is_subscribed()
                && self.generation.load(Ordering::Acquire) == ticket.generation
                && self.bucket(&key).load(Ordering::Acquire) == ticket.bucket;
            match held {
                _ if !current => Op::Nop,
                Some(held) if held.value().version >= record.version => Op::Nop,
                _ => Op::Put(Arc::new(record.clone())),
            }
        });
    }

    /// Drops the entry if it is older than `version` (a `Saved` message).
    pub(crate) fn drop_older(&self, key: KeyHash, version: u64) {
        self.invalidate(key, Some(version));
    }

    /// Drops the entry whatever its version (the session is gone).
    pub(crate) fn forget(&self, key: KeyHash) {
        self.invalidate(key, None);
    }

    fn invalidate(&self, key: KeyHash, newer: Option<u64>) {
        self.entries.entry(key).and_compute_with(|held| {
            // Under the key's lock: a fill of this key either ran before
            // (and is removed here) or runs after and sees the new count.
            self.bucket(&key).fetch_add(1, Ordering::AcqRel);
            match (held, newer) {
                (None, _) => Op::Nop,
                (Some(held), Some(v)) if held.value().version >= v => Op::Nop,
                _ => Op::Remove,
            }
        });
    }

    /// The subscription is lost: stop serving and filling, empty the cache.
    pub(crate) fn go_dark(&self) {
        self.subscribed.store(false, Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.entries.invalidate_all();
    }

    /// Subscribed (again): start from an empty cache.
    pub(crate) fn go_live(&self) {
        self.entries.invalidate_all();
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.subscribed.store(true, Ordering::Release);
    }

    /// Whether a record is cached under `key` (for tests and diagnostics).
    pub(crate) fn contains(&self, key: &KeyHash) -> bool {
        self.entries.contains_key(key)
    }

    /// Entries currently cached (approximate: moka counts lazily).
    pub(crate) fn len(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expiry::ExpiryPolicy;
    use crate::id::SessionId;
    use std::time::SystemTime;

    #[test]
    fn the_hasher_takes_eight_key_bytes_that_the_bucket_does_not_use() {
        use std::hash::BuildHasher;
        let mut key = [0u8; 32];
        key[0] = 9;
        key[8..16].copy_from_slice(&0x0102_0304_0506_0708u64.to_le_bytes());
        assert_eq!(KeyHashState.hash_one(key), 0x0102_0304_0506_0708);
        // Keys of one bucket still spread.
        let hashes: std::collections::HashSet<u64> = (0..64)
            .map(|_| {
                let mut k = *SessionId::generate().as_bytes();
                k[0] = 9;
                KeyHashState.hash_one(k)
            })
            .collect();
        assert_eq!(hashes.len(), 64);
    }

    fn record(version: u64) -> Record<u32> {
        let mut r = Record::new(
            SessionId::generate(),
            1,
            SystemTime::now(),
            &ExpiryPolicy::default(),
        );
        r.version = version;
        r
    }

    fn live() -> LocalCache<u32> {
        let c = LocalCache::new(Duration::from_secs(30), 100);
        c.go_live();
        c
    }

    #[test]
    fn a_fill_after_an_invalidation_of_its_key_is_refused() {
        let c = live();
        let key = [1; 32];
        let ticket = c.ticket(&key);
        c.forget(key);
        c.fill(key, &record(1), ticket);
        assert!(!c.contains(&key));
        c.fill(key, &record(1), c.ticket(&key));
        assert!(c.contains(&key));
    }

    #[test]
    fn a_late_saved_message_does_not_evict_a_fresher_entry() {
        let c = live();
        let key = [2; 32];
        c.fill(key, &record(5), c.ticket(&key));
        c.drop_older(key, 4);
        assert!(c.contains(&key));
        c.drop_older(key, 5);
        assert!(c.contains(&key));
        c.drop_older(key, 6);
        assert!(!c.contains(&key));
    }

    #[test]
    fn an_older_version_never_replaces_a_newer_one() {
        let c = live();
        let key = [3; 32];
        c.fill(key, &record(5), c.ticket(&key));
        c.fill(key, &record(3), c.ticket(&key));
        let Lookup::Hit(r) = c.lookup(&key) else {
            panic!("expected a hit")
        };
        assert_eq!(r.version, 5);
    }

    #[test]
    fn losing_the_subscription_empties_and_bypasses_the_cache() {
        let c = live();
        let key = [4; 32];
        let ticket = c.ticket(&key);
        c.fill(key, &record(1), c.ticket(&key));
        c.go_dark();
        assert!(matches!(c.lookup(&key), Lookup::Bypass));
        c.go_live();
        assert!(matches!(c.lookup(&key), Lookup::Miss));
        // A read that began before the loss may not fill after it.
        c.fill(key, &record(1), ticket);
        assert!(matches!(c.lookup(&key), Lookup::Miss));
    }
}

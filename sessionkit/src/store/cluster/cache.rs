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
//!   one key run under the lock of the key's set (below), so the check and
//!   the write cannot interleave.
//! - **Subscription.** While the node is not subscribed it receives no
//!   invalidations: the cache is emptied when the subscription is lost,
//!   bypassed until it is back, and every fill taken under an older
//!   subscription (generation) is refused.
//!
//! The table is set-associative and written by hand: each key maps to one
//! set of [`WAYS`] slots (by eight bytes of its SHA-256, which no client
//! chooses), each set behind its own lock; a set that is full drops an
//! expired entry, else its least recently used one. A general cache (moka,
//! used here before) cost a warm read about twice the memory store's whole
//! lookup, and its per-key `and_compute_with` about 10k instructions per
//! fill or invalidation, which every clustered write and `/new` paid; the
//! check-then-write this cache needs is a few compares under a lock that is
//! held anyway. The slots are reserved up front (see
//! [`ClusterOptions::cache_capacity`](super::ClusterOptions::cache_capacity)).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::record::{Record, SessionData};

/// The cache key: SHA-256 of the session id (the bytes behind
/// [`SessionId::storage_key`](crate::SessionId::storage_key)).
pub(crate) type KeyHash = [u8; 32];

const BUCKETS: usize = 256;

/// Slots per set. Four keep a set's tags in one cache line's reach and make
/// a key that loses its slot to a neighbour rare while the cache is under
/// about half full.
pub(crate) const WAYS: usize = 4;

/// The largest capacity the options accept: the slots are reserved up
/// front, about 28 bytes each (some 470 MB at this bound, before any record).
pub(crate) const MAX_CAPACITY: u64 = 1 << 24;

/// The key's set: bytes 8..16 scaled to the number of sets (byte 0 picks the
/// invalidation bucket, so it is left out). Keys are SHA-256 outputs, uniform
/// whatever id a client sends.
fn set_word(key: &KeyHash) -> u64 {
    u64::from_le_bytes(key[8..16].try_into().expect("8 bytes"))
}

/// A short tag compared before the whole key (bytes 16..24).
fn tag(key: &KeyHash) -> u64 {
    u64::from_le_bytes(key[16..24].try_into().expect("8 bytes"))
}

/// What a lookup found.
// `Hit` is the common variant (a warm read): boxing it would allocate on
// every hit to shrink a miss.
#[allow(clippy::large_enum_variant)]
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

/// One cached record. Shared, so that a hit copies the record after the
/// set's lock is released.
struct Entry<T> {
    key: KeyHash,
    /// `None`: the TTL reaches past what `Instant` can hold.
    expires: Option<Instant>,
    record: Record<T>,
}

impl<T> Entry<T> {
    fn expired(&self, now: Instant) -> bool {
        self.expires.is_some_and(|at| at <= now)
    }
}

struct Slot<T> {
    tag: u64,
    /// The set's clock when the entry was last filled or hit.
    used: u32,
    entry: Option<Arc<Entry<T>>>,
}

struct Set<T> {
    slots: [Slot<T>; WAYS],
    clock: u32,
}

impl<T> Set<T> {
    fn empty() -> Self {
        Set {
            slots: std::array::from_fn(|_| Slot {
                tag: 0,
                used: 0,
                entry: None,
            }),
            clock: 0,
        }
    }

    fn find(&self, key: &KeyHash) -> Option<usize> {
        let tag = tag(key);
        self.slots
            .iter()
            .position(|s| s.tag == tag && s.entry.as_ref().is_some_and(|e| e.key == *key))
    }

    fn touch(&mut self, i: usize) {
        self.clock = self.clock.wrapping_add(1);
        self.slots[i].used = self.clock;
    }

    /// Where a new key goes: an empty slot, else an expired entry's, else
    /// the least recently used one's.
    fn victim(&self, now: Instant) -> usize {
        let mut oldest = (0, 0u32);
        for (i, s) in self.slots.iter().enumerate() {
            match &s.entry {
                None => return i,
                Some(e) if e.expired(now) => return i,
                Some(_) => {
                    let age = self.clock.wrapping_sub(s.used);
                    if age > oldest.1 {
                        oldest = (i, age);
                    }
                }
            }
        }
        oldest.0
    }
}

/// `sessionkit_cluster_subscribed`: how many clustered stores of this
/// process have a live subscription (one per actix-web worker when each
/// builds its own, so the gauge says how many are serving from cache, not
/// whichever changed last). Kept by increments and decrements: install the
/// metrics recorder before building stores (as for every metric, what comes
/// before is lost), or the gauge is off by the stores that went live first.
fn subscribed_gauge() -> metrics::Gauge {
    metrics::gauge!("sessionkit_cluster_subscribed")
}

/// The local cache shared by a store and its subscriber task.
pub(crate) struct LocalCache<T> {
    sets: Box<[Mutex<Set<T>>]>,
    ttl: Duration,
    subscribed: AtomicBool,
    generation: AtomicU64,
    buckets: Box<[AtomicU64]>,
    pub(crate) counters: Counters,
}

impl<T> Drop for LocalCache<T> {
    fn drop(&mut self) {
        // A store dropped while subscribed no longer counts.
        if *self.subscribed.get_mut() {
            subscribed_gauge().decrement(1.0);
        }
    }
}

impl<T: SessionData> LocalCache<T> {
    /// A cache of at most `capacity` entries (rounded down to a multiple of
    /// [`WAYS`], at least one set; the options bound it by
    /// [`MAX_CAPACITY`]), each kept at most `ttl`.
    pub(crate) fn new(ttl: Duration, capacity: u64) -> Self {
        let sets = usize::try_from((capacity.min(MAX_CAPACITY) / WAYS as u64).max(1))
            .expect("MAX_CAPACITY fits a usize");
        LocalCache {
            sets: (0..sets).map(|_| Mutex::new(Set::empty())).collect(),
            ttl,
            subscribed: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            counters: Counters::default(),
        }
    }

    fn bucket(&self, key: &KeyHash) -> &AtomicU64 {
        &self.buckets[usize::from(key[0])]
    }

    fn set(&self, key: &KeyHash) -> &Mutex<Set<T>> {
        // Multiply-shift maps the word onto 0..sets without a division and
        // without rounding the number of sets to a power of two.
        let i = (u128::from(set_word(key)) * self.sets.len() as u128) >> 64;
        &self.sets[i as usize]
    }

    pub(crate) fn is_subscribed(&self) -> bool {
        self.subscribed.load(Ordering::Acquire)
    }

    /// The live entry under `key`, marked as used; an expired one is dropped.
    fn get(&self, key: &KeyHash) -> Option<Arc<Entry<T>>> {
        let now = Instant::now();
        let mut set = self.set(key).lock();
        let i = set.find(key)?;
        if set.slots[i].entry.as_ref().is_some_and(|e| e.expired(now)) {
            let gone = set.slots[i].entry.take();
            drop(set);
            drop(gone);
            return None;
        }
        set.touch(i);
        set.slots[i].entry.clone()
    }

    pub(crate) fn lookup(&self, key: &KeyHash) -> Lookup<T> {
        if !self.is_subscribed() {
            self.counters.bypassed.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("sessionkit_cache_bypassed_total").increment(1);
            return Lookup::Bypass;
        }
        match self.get(key) {
            Some(entry) => {
                self.counters.hits.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("sessionkit_cache_hits_total").increment(1);
                Lookup::Hit(entry.record.clone())
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
        let entry = self.get(key)?;
        self.counters.hits.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("sessionkit_cache_hits_total").increment(1);
        Some(entry.record.clone())
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
        self.fill_as(key, record, ticket, false);
    }

    /// What this node just wrote: `record` as stored (its version the
    /// store's). Cached like [`LocalCache::fill`] when `ticket` (taken
    /// before the write) is still current; in any case, every read of this
    /// key that began before the write can no longer fill (the bucket's
    /// count moves), and an older cached version is dropped. Without that, a
    /// write whose own fill was refused (an invalidation of another key of
    /// the bucket came during its round trip, and this node ignores its own
    /// message) left the way open to a read of the old value that began
    /// during the write: the writing node served the old version until the
    /// entry's TTL.
    pub(crate) fn fill_written(&self, key: KeyHash, record: &Record<T>, ticket: Ticket) {
        self.fill_as(key, record, ticket, true);
    }

    fn fill_as(&self, key: KeyHash, record: &Record<T>, ticket: Ticket, written: bool) {
        // Built before the lock; dropped after it if the fill is refused.
        let now = Instant::now();
        let fresh = Arc::new(Entry {
            key,
            expires: now.checked_add(self.ttl),
            record: record.clone(),
        });
        let mut set = self.set(&key).lock();
        let current = self.is_subscribed()
            && self.generation.load(Ordering::Acquire) == ticket.generation
            && self.bucket(&key).load(Ordering::Acquire) == ticket.bucket;
        if written {
            // Under the set's lock, as in `invalidate`.
            self.bucket(&key).fetch_add(1, Ordering::AcqRel);
        }
        if !current {
            if written {
                if let Some(i) = set.find(&key) {
                    let held = set.slots[i].entry.as_ref().expect("found");
                    if held.record.version < record.version {
                        let gone = set.slots[i].entry.take();
                        drop(set);
                        drop(gone);
                    }
                }
            }
            return;
        }
        let i = match set.find(&key) {
            Some(i) => {
                let held = set.slots[i].entry.as_ref().expect("found");
                if !held.expired(now) && held.record.version >= record.version {
                    return;
                }
                i
            }
            None => set.victim(now),
        };
        let old = set.slots[i].entry.replace(fresh);
        set.slots[i].tag = tag(&key);
        set.touch(i);
        drop(set);
        drop(old);
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
        let mut set = self.set(&key).lock();
        // Under the set's lock: a fill of this key either ran before (and is
        // removed here) or runs after and sees the new count.
        self.bucket(&key).fetch_add(1, Ordering::AcqRel);
        let Some(i) = set.find(&key) else { return };
        let held = set.slots[i].entry.as_ref().expect("found");
        if newer.is_some_and(|v| held.record.version >= v) {
            return;
        }
        let gone = set.slots[i].entry.take();
        drop(set);
        drop(gone);
    }

    fn clear(&self) {
        for set in self.sets.iter() {
            let gone: Vec<_> = set
                .lock()
                .slots
                .iter_mut()
                .filter_map(|s| s.entry.take())
                .collect();
            drop(gone);
        }
    }

    /// The subscription is lost: stop serving and filling, empty the cache.
    pub(crate) fn go_dark(&self) {
        if self.subscribed.swap(false, Ordering::AcqRel) {
            subscribed_gauge().decrement(1.0);
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.clear();
    }

    /// Subscribed (again): start from an empty cache.
    pub(crate) fn go_live(&self) {
        self.clear();
        self.generation.fetch_add(1, Ordering::AcqRel);
        if !self.subscribed.swap(true, Ordering::AcqRel) {
            subscribed_gauge().increment(1.0);
        }
    }

    /// Whether a live record is cached under `key` (for tests and
    /// diagnostics; not counted, and not marked as used).
    pub(crate) fn contains(&self, key: &KeyHash) -> bool {
        let now = Instant::now();
        let set = self.set(key).lock();
        set.find(key)
            .is_some_and(|i| set.slots[i].entry.as_ref().is_some_and(|e| !e.expired(now)))
    }

    /// Live entries, counted set by set (each set locked in turn, so the
    /// count is exact only while nothing else touches the cache).
    pub(crate) fn len(&self) -> u64 {
        let now = Instant::now();
        self.sets
            .iter()
            .map(|set| {
                set.lock()
                    .slots
                    .iter()
                    .filter(|s| s.entry.as_ref().is_some_and(|e| !e.expired(now)))
                    .count() as u64
            })
            .sum()
    }

    /// How many entries the cache can hold.
    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.sets.len() * WAYS
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expiry::ExpiryPolicy;
    use crate::id::SessionId;
    use std::time::SystemTime;

    /// A key in set `word`'s set (bytes 8..16) with tag `tag` (16..24).
    fn key(word: u64, tag: u64) -> KeyHash {
        let mut k = [7u8; 32];
        k[8..16].copy_from_slice(&word.to_le_bytes());
        k[16..24].copy_from_slice(&tag.to_le_bytes());
        k
    }

    #[test]
    fn capacity_is_rounded_down_to_whole_sets_of_at_least_one() {
        let c = |n| LocalCache::<u32>::new(Duration::from_secs(1), n).capacity();
        assert_eq!(c(1), WAYS);
        assert_eq!(c(10), 8);
        assert_eq!(c(10_000), 10_000);
    }

    #[test]
    fn keys_spread_over_the_sets_and_every_word_has_one() {
        let c = LocalCache::<u32>::new(Duration::from_secs(1), 4 * 64);
        let index = |k: &KeyHash| {
            let set = c.set(k);
            c.sets
                .iter()
                .position(|s| std::ptr::eq(s, set))
                .expect("one of them")
        };
        assert_eq!(index(&key(0, 0)), 0);
        assert_eq!(index(&key(u64::MAX, 0)), 63);
        let used: std::collections::HashSet<usize> = (0..1000)
            .map(|_| index(SessionId::generate().as_bytes()))
            .collect();
        assert!(used.len() > 56, "{} of 64 sets used", used.len());
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

    /// Two keys of one bucket (byte 0) in different sets.
    fn bucket_twins() -> (KeyHash, KeyHash) {
        let mut a = key(1, 1);
        let mut b = key(u64::MAX, 2);
        a[0] = 9;
        b[0] = 9;
        (a, b)
    }

    #[test]
    fn a_read_that_began_during_a_write_cannot_cache_the_old_version() {
        let c = live();
        let (k, other) = bucket_twins();
        // The write takes its ticket, then another key of the bucket is
        // invalidated during its round trip.
        let write_ticket = c.ticket(&k);
        c.forget(other);
        // A read of the same session misses and reads the old version.
        let read_ticket = c.ticket(&k);
        // The write lands: its own fill is refused (stale ticket)...
        c.fill_written(k, &record(2), write_ticket);
        assert!(!c.contains(&k));
        // ...and the read's fill of version 1 must be refused too.
        c.fill(k, &record(1), read_ticket);
        assert!(
            !c.contains(&k),
            "the old version was cached after the write"
        );
    }

    #[test]
    fn a_refused_write_drops_an_older_cached_version() {
        let c = live();
        let (k, other) = bucket_twins();
        let read_ticket = c.ticket(&k);
        let write_ticket = c.ticket(&k);
        c.forget(other);
        // Cannot happen with `read_ticket` now stale, so cache version 1
        // through a fresh ticket: the read finished before the write.
        c.fill(k, &record(1), c.ticket(&k));
        assert!(c.contains(&k));
        c.fill_written(k, &record(2), write_ticket);
        assert!(!c.contains(&k), "version 1 outlived the write of version 2");
        c.fill(k, &record(1), read_ticket);
        assert!(!c.contains(&k));
        // A current write is cached, and a newer cached version survives an
        // older write's refused fill.
        c.fill_written(k, &record(3), c.ticket(&k));
        let Lookup::Hit(r) = c.lookup(&k) else {
            panic!("expected a hit")
        };
        assert_eq!(r.version, 3);
        let stale = c.ticket(&k);
        c.forget(other);
        c.fill_written(k, &record(2), stale);
        assert!(c.contains(&k));
    }

    /// The gauge counts the subscribed stores of the process: two stores
    /// (two actix-web workers) both count, a lost subscription and a store
    /// dropped while subscribed stop counting, going live or dark twice
    /// counts once. Each step runs under a recorder of its own, so each
    /// reads as the step's change.
    #[test]
    fn the_subscribed_gauge_counts_live_stores() {
        use metrics_util::debugging::{DebugValue, DebuggingRecorder};
        fn change(step: impl FnOnce()) -> f64 {
            let recorder = DebuggingRecorder::new();
            let snapshot = recorder.snapshotter();
            metrics::with_local_recorder(&recorder, step);
            snapshot
                .snapshot()
                .into_vec()
                .into_iter()
                .find(|(k, ..)| k.key().name() == "sessionkit_cluster_subscribed")
                .map(|(.., v)| match v {
                    DebugValue::Gauge(g) => g.into_inner(),
                    other => panic!("{other:?}"),
                })
                .unwrap_or(0.0)
        }
        let mut stores = None;
        assert_eq!(
            change(|| {
                let (a, b) = (live(), live());
                b.go_live();
                stores = Some((a, b));
            }),
            2.0
        );
        let (a, b) = stores.unwrap();
        assert_eq!(
            change(|| {
                a.go_dark();
                a.go_dark();
            }),
            -1.0
        );
        assert_eq!(change(|| drop(b)), -1.0, "dropped while subscribed");
        assert_eq!(change(|| drop(a)), 0.0, "dropped while dark");
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

    fn one_set() -> LocalCache<u32> {
        let c = LocalCache::new(Duration::from_secs(30), WAYS as u64);
        c.go_live();
        c
    }

    /// WAYS + 1 keys of one set, the first WAYS of them cached (the set is
    /// full); the last is left for the test to add.
    fn fill_one_set(c: &LocalCache<u32>) -> Vec<KeyHash> {
        let keys: Vec<KeyHash> = (0..=WAYS as u64).map(|t| key(5, t)).collect();
        for k in &keys[..WAYS] {
            c.fill(*k, &record(1), c.ticket(k));
        }
        keys
    }

    #[test]
    fn a_full_set_drops_its_least_recently_used_entry() {
        let c = one_set();
        let keys = fill_one_set(&c);
        // Use the first entry, so the second is now the least recent.
        assert!(c.hit(&keys[0]).is_some());
        c.fill(keys[WAYS], &record(1), c.ticket(&keys[WAYS]));
        assert!(c.contains(&keys[0]));
        assert!(!c.contains(&keys[1]));
        assert!(keys[2..].iter().all(|k| c.contains(k)));
        assert_eq!(c.len(), WAYS as u64);
    }

    #[test]
    fn a_full_set_drops_an_expired_entry_before_the_least_recently_used() {
        let c = one_set();
        let keys = fill_one_set(&c);
        // The third entry reaches its TTL now; the second is the least
        // recently used.
        {
            let mut set = c.sets[0].lock();
            let i = set.find(&keys[2]).expect("cached");
            set.slots[i].entry = Some(Arc::new(Entry {
                key: keys[2],
                expires: Some(Instant::now()),
                record: record(1),
            }));
        }
        assert!(c.hit(&keys[0]).is_some());
        c.fill(keys[WAYS], &record(1), c.ticket(&keys[WAYS]));
        assert!(c.contains(&keys[1]));
        assert!(!c.contains(&keys[2]));
        assert_eq!(c.len(), WAYS as u64);
    }

    #[test]
    fn entries_expire_after_the_ttl_and_never_block_a_fill() {
        let c = LocalCache::new(Duration::from_millis(1), WAYS as u64);
        c.go_live();
        let old = key(1, 1);
        c.fill(old, &record(1), c.ticket(&old));
        std::thread::sleep(Duration::from_millis(5));
        assert!(!c.contains(&old));
        assert_eq!(c.len(), 0);
        assert!(matches!(c.lookup(&old), Lookup::Miss));
        // An expired entry, whatever its version, gives way to a fill.
        c.fill(old, &record(2), c.ticket(&old));
        std::thread::sleep(Duration::from_millis(5));
        c.fill(old, &record(0), c.ticket(&old));
        assert!(c.contains(&old));
    }

    #[test]
    fn a_key_is_held_once_and_a_newer_version_replaces_it() {
        let c = one_set();
        let k = key(3, 3);
        c.fill(k, &record(1), c.ticket(&k));
        c.fill(k, &record(2), c.ticket(&k));
        assert_eq!(c.len(), 1);
        assert_eq!(c.hit(&k).map(|r| r.version), Some(2));
        // Same tag, other key: both held.
        let mut twin = k;
        twin[31] ^= 1;
        c.fill(twin, &record(1), c.ticket(&twin));
        assert_eq!(c.len(), 2);
        assert_eq!(c.hit(&k).map(|r| r.version), Some(2));
    }

    #[test]
    fn a_ttl_past_what_instant_holds_means_never_expiring() {
        let c = LocalCache::new(Duration::MAX, 8);
        c.go_live();
        let k = key(1, 2);
        c.fill(k, &record(1), c.ticket(&k));
        assert!(c.contains(&k));
    }

    #[test]
    fn fills_invalidations_and_reads_from_many_threads_keep_one_entry_per_key() {
        let c = one_set();
        let keys: Vec<KeyHash> = (0..8).map(|t| key(9, t)).collect();
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let (c, keys) = (&c, &keys);
                s.spawn(move || {
                    for n in 0..2000u64 {
                        let k = keys[((n * 7 + t) % 8) as usize];
                        match n % 4 {
                            0 => c.forget(k),
                            1 => c.drop_older(k, n),
                            _ => c.fill(k, &record(n), c.ticket(&k)),
                        }
                        let _ = c.lookup(&k);
                    }
                });
            }
        });
        let set = c.sets[0].lock();
        let held: Vec<KeyHash> = set
            .slots
            .iter()
            .filter_map(|s| s.entry.as_ref().map(|e| e.key))
            .collect();
        let distinct: std::collections::HashSet<_> = held.iter().collect();
        assert_eq!(distinct.len(), held.len());
    }
}

//! [`MemoryStore`]: sessions in this process's memory, typed, sharded and bounded.
//!
//! - **Typed**: sessions are kept as your struct, never serialized; a load is
//!   a clone of it. Each entry is compact (the record's fields without its
//!   id, times as nanoseconds, flash messages, owner and binding behind one
//!   pointer that most sessions leave empty): an entry takes 88 bytes
//!   beside your struct, the map's hash and key included (the hash index,
//!   the eviction deadline and the tables' spare capacity add to that; with
//!   100 000 sessions of an integer and a short `String`, 211 bytes of
//!   resident memory per session).
//! - **Sharded**: 64 shards, each behind its own lock, chosen by the id's last
//!   byte (ids are uniformly random, so shards fill evenly).
//! - **Bounded**: at most `max_entries` sessions (default 100 000; rounded
//!   up to a multiple of the 64 shards, so 100 032). When a
//!   shard is full, a new session looks at 5 of the shard's sessions (next
//!   to each other in the shard, from a random start) and drops the expired
//!   ones among them, or else the one closest to its deadline (the least life
//!   left to lose) — the sampling approach of Redis's `volatile-ttl`, O(1)
//!   per insert. Evictions fire `on_deleted`. The bound is kept per shard
//!   (`max_entries / 64` each), so the first evictions come before the
//!   total reaches `max_entries`: the shard that fills first evicts while
//!   others still have room. With random ids, at the default the first
//!   eviction comes at about 95 000 sessions (92 500 to 96 000 over twenty
//!   simulated fills); at `max_entries(10_000)` at about 8 300; at
//!   `max_entries(1_000)` at about 560 (390 to 660). Size the bound with
//!   that margin.
//! - **Expiry**: every load is checked against the record's deadlines by
//!   [`crate::Sessions`]; a background task sweeps expired sessions every
//!   `sweep_interval`, spawned when the store is built inside a Tokio
//!   runtime, else by its first save inside one (and again by the next save
//!   should that runtime shut down while the store lives on).
//! - **Owner index**: owner → ids, so listing or revoking one user's sessions
//!   costs O(that user's sessions).
//!
//! Everything is lost on restart and not shared between processes: use it for
//! one-box deployments, development and tests.
//!
//! ```
//! use std::time::Duration;
//! use sessionkit::store::memory::MemoryStore;
//!
//! let store = MemoryStore::<String>::builder()
//!     .max_entries(10_000)
//!     .sweep_interval(Duration::from_secs(30))
//!     .build();
//! # let _ = store;
//! ```

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures_util::stream::{self, BoxStream, StreamExt};
use indexmap::IndexMap;
use parking_lot::Mutex;
use smallvec::SmallVec;

use crate::error::StoreError;
use crate::expiry::{Clock, SystemClock};
use crate::flash::FlashMessage;
use crate::id::{SessionHandle, SessionId};
use crate::record::{Record, SessionData};
use crate::store::background::spawn_flagged;
use crate::store::{
    in_passes, Followed, Pass, Predicate, QueryStore, RemovalListener, Removed, Save, SaveKind,
    SaveOutcome, Store, MOVE_FORWARD_HOPS, MOVE_FORWARD_TTL,
};

const SHARDS: usize = 64;
/// What [`Inner::make_room`] dropped: one session, nearly always (the
/// sampled entry nearest its deadline), so it is kept inline.
type Evicted<T> = SmallVec<[(SessionId, Stored<T>); 1]>;
/// One shard: the sessions in an `IndexMap` (O(1) access by position, for
/// sampling in `make_room`) and, at the same positions, each session's
/// deadline in whole seconds, so that choosing what to evict reads 8-byte
/// deadlines, eight to a cache line, instead of whole entries (a cache miss
/// each in a full store).
struct Shard<T> {
    map: IndexMap<SessionId, Stored<T>, IdHash>,
    deadlines: Vec<Secs>,
    /// Where regenerates moved this shard's sessions lately.
    moves: Moves,
}

/// Where regenerates moved sessions (old id → new id) for the last
/// [`MOVE_FORWARD_TTL`], for [`Store::delete_following`]: a logout that
/// loaded the old id before a parallel login moved it still ends the
/// session. At most one entry per session the shard can hold (oldest
/// dropped first), pruned whenever one is added.
struct Moves {
    to: HashMap<SessionId, (SessionId, Secs), IdHash>,
    /// Old ids in the order they moved, with their entry's deadline.
    order: VecDeque<(Secs, SessionId)>,
}

impl Moves {
    fn new() -> Self {
        Moves {
            to: HashMap::with_hasher(IdHash),
            order: VecDeque::new(),
        }
    }

    /// Drops the entry `order`'s front names, unless that id moved again
    /// later (its entry then has another deadline).
    fn pop_front(&mut self) {
        if let Some((until, old)) = self.order.pop_front() {
            if self.to.get(&old).is_some_and(|&(_, u)| u == until) {
                self.to.remove(&old);
            }
        }
    }

    fn add(&mut self, old: SessionId, new: SessionId, now: Secs, cap: usize) {
        while self.order.front().is_some_and(|&(until, _)| until <= now) {
            self.pop_front();
        }
        while self.order.len() >= cap.max(1) {
            self.pop_front();
        }
        let until = Secs(now.0.saturating_add(MOVE_FORWARD_TTL.as_secs()));
        self.to.insert(old, (new, until));
        self.order.push_back((until, old));
    }

    /// Where `old` moved, if it did within the last [`MOVE_FORWARD_TTL`];
    /// forgets it (a session is deleted once).
    fn take(&mut self, old: &SessionId, now: Secs) -> Option<SessionId> {
        let (new, until) = self.to.remove(old)?;
        (until > now).then_some(new)
    }
}

/// A session as the shard keeps it: the fields of a [`Record`] without its
/// id (the map's key), times as nanoseconds, and what most sessions lack
/// (flash messages, an owner, a binding) behind one pointer. With the
/// map's key and hash, an entry takes 88 bytes beside the session type's
/// own: 120 for a two-field type (an integer and a `String`), where the
/// `Record` alone took 208 and the entry 248: half the cache lines a load,
/// an eviction or a swap-remove touches (in a full store these are mostly
/// cache misses), and about 40 % less resident memory per session
/// (measured with the bench's data: 340 → 211 bytes). Loads rebuild the
/// exact `Record`.
struct Stored<T> {
    data: T,
    version: u64,
    /// `created_at`, `last_access`, `idle_deadline`, `absolute_deadline` as
    /// nanoseconds since the Unix epoch (exact until the year 2554); all
    /// zero when one of them is outside that range, which `Rare::times` then
    /// holds as it was.
    times: [u64; 4],
    rare: Option<Box<Rare>>,
}

/// The parts of a record most sessions do not have.
struct Rare {
    flash: Vec<FlashMessage>,
    owner: Option<String>,
    binding: Option<String>,
    /// The four times, when one cannot be kept as nanoseconds.
    times: Option<[SystemTime; 4]>,
}

/// `t` as nanoseconds since the Unix epoch, if it fits a `u64`.
fn epoch_nanos(t: SystemTime) -> Option<u64> {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).ok()?;
    u64::try_from(d.as_nanos()).ok()
}

impl<T> Stored<T> {
    /// A stored copy of `record`'s fields (its id is the map's key),
    /// carrying `data` and `version`.
    fn new(record: &Record<T>, data: T, version: u64) -> Self {
        let all = [
            record.created_at,
            record.last_access,
            record.idle_deadline,
            record.absolute_deadline,
        ];
        let (times, exact) = match all.map(epoch_nanos) {
            [Some(a), Some(b), Some(c), Some(d)] => ([a, b, c, d], None),
            _ => ([0; 4], Some(all)),
        };
        let rare = (exact.is_some()
            || !record.flash.is_empty()
            || record.owner.is_some()
            || record.binding.is_some())
        .then(|| {
            Box::new(Rare {
                flash: record.flash.clone(),
                owner: record.owner.clone(),
                binding: record.binding.clone(),
                times: exact,
            })
        });
        Stored {
            data,
            version,
            times,
            rare,
        }
    }

    /// The four times, exactly as they were saved.
    fn times(&self) -> [SystemTime; 4] {
        match self.rare.as_ref().and_then(|r| r.times) {
            Some(exact) => exact,
            None => self
                .times
                .map(|n| SystemTime::UNIX_EPOCH + Duration::from_nanos(n)),
        }
    }

    #[cfg(test)]
    fn expires_at(&self) -> SystemTime {
        let [_, _, idle, absolute] = self.times();
        idle.min(absolute)
    }

    /// When the session expires, in nanoseconds since the Unix epoch; `Err`
    /// with the exact time when the times are not kept as nanoseconds.
    fn expiry(&self) -> Result<u64, SystemTime> {
        match self.rare.as_ref().and_then(|r| r.times) {
            Some([_, _, idle, absolute]) => Err(idle.min(absolute)),
            None => Ok(self.times[2].min(self.times[3])),
        }
    }

    /// [`Secs::deadline`] of the expiry, from the nanoseconds when it can.
    fn deadline(&self) -> Secs {
        match self.expiry() {
            Ok(nanos) => Secs(nanos.div_ceil(1_000_000_000)),
            Err(exact) => Secs::deadline(exact),
        }
    }

    fn expired(&self, now: SystemTime) -> bool {
        match self.expiry() {
            // Before the epoch `now` is before every time kept in nanoseconds;
            // past the year 2554, after them all.
            Ok(nanos) => match now.duration_since(SystemTime::UNIX_EPOCH) {
                Ok(d) => d.as_nanos() >= u128::from(nanos),
                Err(_) => false,
            },
            Err(exact) => now >= exact,
        }
    }

    fn owner(&self) -> Option<&str> {
        self.rare.as_ref()?.owner.as_deref()
    }

    fn take_owner(&mut self) -> Option<String> {
        self.rare.as_mut()?.owner.take()
    }
}

impl<T: Clone> Stored<T> {
    /// The record, cloned.
    fn to_record(&self, id: SessionId) -> Record<T> {
        let [created_at, last_access, idle_deadline, absolute_deadline] = self.times();
        let (flash, owner, binding) = match &self.rare {
            Some(rare) => (rare.flash.clone(), rare.owner.clone(), rare.binding.clone()),
            None => (Vec::new(), None, None),
        };
        Record {
            id,
            data: self.data.clone(),
            flash,
            created_at,
            last_access,
            idle_deadline,
            absolute_deadline,
            owner,
            binding,
            version: self.version,
            // No reply of this store is ever lost: no write ids to keep.
            writes: Default::default(),
        }
    }
}

/// A deadline or an instant in whole seconds since the Unix epoch, for
/// eviction only (expiry itself is checked on the exact times, on load).
/// Deadlines round up and `now` rounds down, so `now >= deadline` in seconds
/// implies it in exact time: a live session is never taken for an expired one.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
struct Secs(u64);

impl Secs {
    fn deadline(expires_at: SystemTime) -> Secs {
        let d = since_epoch(expires_at);
        Secs(d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0)))
    }

    fn now(now: SystemTime) -> Secs {
        Secs(since_epoch(now).as_secs())
    }
}

/// Time since the Unix epoch; zero before it (only a test clock goes there).
fn since_epoch(t: SystemTime) -> Duration {
    t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default()
}

impl<T: Clone> Shard<T> {
    /// A clone of the record stored under `id`.
    fn get(&self, id: &SessionId) -> Option<Record<T>> {
        self.map.get(id).map(|s| s.to_record(*id))
    }
}

impl<T> Shard<T> {
    fn new() -> Self {
        Shard {
            map: IndexMap::with_hasher(IdHash),
            deadlines: Vec::new(),
            moves: Moves::new(),
        }
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn stored(&self, id: &SessionId) -> Option<&Stored<T>> {
        self.map.get(id)
    }

    fn contains_key(&self, id: &SessionId) -> bool {
        self.map.contains_key(id)
    }

    fn iter(&self) -> impl Iterator<Item = (&SessionId, &Stored<T>)> {
        self.map.iter()
    }

    /// Inserts or replaces a session.
    fn insert(&mut self, id: SessionId, stored: Stored<T>) {
        let deadline = stored.deadline();
        let (i, old) = self.map.insert_full(id, stored);
        match old {
            Some(_) => self.deadlines[i] = deadline,
            None => self.deadlines.push(deadline),
        }
    }

    /// Changes a session in place; its deadline follows.
    fn update<R>(&mut self, id: &SessionId, f: impl FnOnce(&mut Stored<T>) -> R) -> Option<R> {
        let (i, _, stored) = self.map.get_full_mut(id)?;
        let out = f(stored);
        self.deadlines[i] = stored.deadline();
        Some(out)
    }

    fn swap_remove(&mut self, id: &SessionId) -> Option<Stored<T>> {
        let (i, _, stored) = self.map.swap_remove_full(id)?;
        self.deadlines.swap_remove(i);
        Some(stored)
    }

    fn swap_remove_index(&mut self, i: usize) -> Option<(SessionId, Stored<T>)> {
        let removed = self.map.swap_remove_index(i)?;
        self.deadlines.swap_remove(i);
        Some(removed)
    }

    fn retain(&mut self, mut keep: impl FnMut(&SessionId, &Stored<T>) -> bool) {
        self.map.retain(|id, s| keep(id, s));
        self.deadlines = self.map.values().map(Stored::deadline).collect();
    }
}

/// The hasher of the shards' maps: the id's first 64 bits as they are.
///
/// The keys are ids the engine drew from a CSPRNG (it never stores an id a
/// client sent: an unknown id starts a fresh session under a new one), so
/// their bits are already uniform and unpredictable; SipHash over
/// them cost about 150 instructions per lookup for nothing. A client can
/// choose the ids it *looks up*, but a lookup only probes: it cannot build
/// the long collision chains flooding needs. The shard is picked from the
/// last byte ([`Inner::shard`]), so the bits hashbrown uses for the bucket
/// (low) and tag (high) do not repeat within a shard.
#[derive(Clone, Copy, Default)]
struct IdHash;

impl BuildHasher for IdHash {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher(0)
    }
}

/// See [`IdHash`]. `SessionId`'s `Hash` writes one `u64`.
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
    /// Not reached by `SessionId` (it writes one `u64`); mixes anyway, so a
    /// change there degrades speed, not correctness.
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

const OWNER_SHARDS: usize = 16;
/// One shard of the owner index: owner → the ids of their sessions.
type OwnerSets = HashMap<String, HashSet<SessionId>>;

/// How many entries a full shard looks at to pick what to evict.
///
/// Five, as Redis's `maxmemory-samples` default: each pick is a cache miss
/// in a full store (16 picks were 9 % of a `/new` request under a flood).
const EVICTION_SAMPLE: usize = 5;

/// An in-process session store. Cheap to clone; clones share the sessions.
pub struct MemoryStore<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for MemoryStore<T> {
    fn clone(&self) -> Self {
        MemoryStore {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<T> {
    shards: Vec<Mutex<Shard<T>>>,
    owners: Vec<Mutex<OwnerSets>>,
    owner_hasher: RandomState,
    per_shard: usize,
    /// Entries looked at per eviction ([`EVICTION_SAMPLE`]; tests raise it).
    sample: usize,
    clock: Arc<dyn Clock>,
    listener: OnceLock<RemovalListener>,
    /// How often the background task sweeps.
    sweep_every: Duration,
    /// Whether a sweeper task runs (see [`MemoryStore::keep_sweeping`]);
    /// cleared when the task is dropped, with its runtime or the store.
    sweeping: Arc<AtomicBool>,
}

/// Builder for [`MemoryStore`], from [`MemoryStore::builder`].
#[must_use = "call .build() to get a MemoryStore"]
pub struct MemoryStoreBuilder<T> {
    max_entries: usize,
    sweep_interval: Duration,
    clock: Arc<dyn Clock>,
    sample: usize,
    _data: std::marker::PhantomData<fn() -> T>,
}

impl<T: SessionData> MemoryStoreBuilder<T> {
    /// The most sessions kept (default 100 000). Values below 64 are raised to 64.
    ///
    /// The bound is per shard (`n / 64`, rounded up, each): evictions start a
    /// little before `n` sessions in total, see the [module docs](crate::store::memory).
    pub fn max_entries(mut self, n: usize) -> Self {
        self.max_entries = n;
        self
    }
    /// How often expired sessions are swept (default 60 s).
    pub fn sweep_interval(mut self, d: Duration) -> Self {
        self.sweep_interval = d;
        self
    }
    /// The clock used to decide what is expired; use the one given to [`crate::Config`].
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }
    /// Builds the store; inside a Tokio runtime this also starts the sweeper,
    /// which stops when the last clone of the store is dropped. Built
    /// outside one, or outliving the runtime its sweeper ran on, the store
    /// starts a sweeper on the runtime of its next save.
    pub fn build(self) -> MemoryStore<T> {
        let per_shard = self.max_entries.max(SHARDS).div_ceil(SHARDS);
        let inner = Arc::new(Inner {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::new())).collect(),
            owners: (0..OWNER_SHARDS)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            owner_hasher: RandomState::new(),
            per_shard,
            sample: self.sample,
            clock: self.clock,
            listener: OnceLock::new(),
            // A century stands for "never": tokio's interval adds the
            // period to the clock unchecked (`Duration::MAX` panicked in the
            // sweeper task on its first tick).
            sweep_every: self.sweep_interval.clamp(
                Duration::from_millis(10),
                Duration::from_secs(100 * 365 * 86_400),
            ),
            sweeping: Arc::new(AtomicBool::new(false)),
        });
        let store = MemoryStore { inner };
        store.keep_sweeping();
        store
    }
}

async fn sweeper<T: SessionData>(weak: Weak<Inner<T>>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(inner) = weak.upgrade() else { return };
        let swept = inner.sweep();
        if swept > 0 {
            tracing::debug!(swept, "swept expired sessions");
        }
    }
}

impl<T: SessionData> Default for MemoryStore<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: SessionData> MemoryStore<T> {
    /// A store with the defaults (100 000 sessions, sweep every 60 s, system clock).
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder to set the bound, the sweep interval and the clock.
    pub fn builder() -> MemoryStoreBuilder<T> {
        MemoryStoreBuilder {
            max_entries: 100_000,
            sweep_interval: Duration::from_secs(60),
            clock: Arc::new(SystemClock),
            sample: EVICTION_SAMPLE,
            _data: std::marker::PhantomData,
        }
    }

    /// Starts the sweeper on the current runtime unless one runs: when the
    /// store is built, and on every save (one atomic load when it runs), so
    /// a store built outside a runtime, or that outlived the runtime of its
    /// sweeper (a set-up runtime, `#[tokio::test]`s sharing a store), sweeps
    /// again once it is used inside one. Outside a runtime, nothing.
    fn keep_sweeping(&self) {
        if !self.inner.sweeping.load(Ordering::Acquire) {
            self.start_sweeper();
        }
    }

    #[cold]
    fn start_sweeper(&self) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.inner.sweeping.swap(true, Ordering::AcqRel) {
            return; // another caller just did
        }
        let weak = Arc::downgrade(&self.inner);
        let every = self.inner.sweep_every;
        spawn_flagged(&rt, &self.inner.sweeping, sweeper(weak, every));
    }

    /// Removes every expired session now; returns how many.
    pub fn sweep(&self) -> usize {
        self.inner.sweep()
    }

    /// The number of sessions held, expired or not (no lock held across shards).
    pub fn len(&self) -> usize {
        self.inner.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// Whether the store holds no session.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T: SessionData> Inner<T> {
    /// From the last byte: the map's hash ([`IdHash`]) uses the first eight.
    fn shard(&self, id: &SessionId) -> usize {
        id.as_bytes()[31] as usize % SHARDS
    }

    fn owner_shard(&self, owner: &str) -> &Mutex<OwnerSets> {
        &self.owners[self.owner_hasher.hash_one(owner) as usize % OWNER_SHARDS]
    }

    fn index_add(&self, owner: &str, id: SessionId) {
        self.owner_shard(owner)
            .lock()
            .entry(owner.to_owned())
            .or_default()
            .insert(id);
    }

    fn index_remove(&self, owner: &str, id: &SessionId) {
        let mut map = self.owner_shard(owner).lock();
        if let Some(set) = map.get_mut(owner) {
            set.remove(id);
            if set.is_empty() {
                map.remove(owner);
            }
        }
    }

    fn reindex(&self, id: SessionId, old: Option<&str>, new: Option<&str>) {
        if old == new {
            return;
        }
        if let Some(o) = old {
            self.index_remove(o, &id);
        }
        if let Some(n) = new {
            self.index_add(n, id);
        }
    }

    fn removed(&self, id: &SessionId, stored: &Stored<T>) {
        if let Some(o) = stored.owner() {
            self.index_remove(o, id);
        }
        if let Some(listener) = self.listener.get() {
            listener(&Removed::of_id(*id, stored.owner().map(str::to_owned)));
        }
    }

    fn sweep(&self) -> usize {
        let now = self.clock.now();
        let mut gone = Vec::new();
        for shard in &self.shards {
            shard.lock().retain(|id, s| {
                let keep = !s.expired(now);
                if !keep {
                    gone.push((*id, s.owner().map(str::to_owned)));
                }
                keep
            });
        }
        for (id, owner) in &gone {
            if let Some(o) = owner {
                self.index_remove(o, id);
            }
            if let Some(listener) = self.listener.get() {
                listener(&Removed::of_id(*id, owner.clone()));
            }
        }
        gone.len()
    }

    /// Makes room in a full shard; returns the sessions dropped.
    ///
    /// Sampling, as Redis does for `volatile-ttl`: look at
    /// [`EVICTION_SAMPLE`] entries (a shard is an `IndexMap`: O(1) access by
    /// position), drop the expired ones among them, or else the one closest
    /// to its deadline. O(1) per insert however full the store is, so a
    /// flood of new sessions costs the same as one.
    ///
    /// Consecutive positions from a random start (as Redis's
    /// `dictGetSomeKeys` walks consecutive buckets): their deadlines share a
    /// cache line or two, where five random positions cost five cache misses
    /// in a full store. Positions say little about age once the store has
    /// turned over (every eviction moves the newest entry into the hole);
    /// until then, in a store filled in order, neighbours were created at
    /// about the same time, so among sessions that were never touched the
    /// pick is closer to a random one than the nearest of five random picks
    /// would be (it is still the least recently active of its sample). Not
    /// the first entries in iteration order: evicting from the front of a
    /// hash table empties it, and every later sample would scan further over
    /// the holes (measured: 5 % of a `/new` request under a flood, growing).
    ///
    /// Inline buffers, no heap: a full store makes room on every insert, and
    /// the two `Vec`s this used to allocate cost two malloc/free pairs per new
    /// session (~700 instructions under callgrind, about half of eviction).
    fn make_room(&self, map: &mut Shard<T>) -> Evicted<T> {
        let len = map.len();
        if len < self.per_shard || len == 0 {
            return Evicted::new();
        }
        let now = Secs::now(self.clock.now());
        let start = fastrand::usize(..len);
        // Positions, not ids: removal by position needs no hash lookup.
        // Distinct, since at most `len` of them are looked at.
        let mut victims: SmallVec<[usize; EVICTION_SAMPLE]> = SmallVec::new();
        let mut nearest: Option<(Secs, usize)> = None;
        for k in 0..self.sample.min(len) {
            let i = (start + k) % len;
            let Some(&deadline) = map.deadlines.get(i) else {
                continue;
            };
            if now >= deadline {
                victims.push(i);
            } else if nearest.is_none_or(|(at, _)| deadline < at) {
                nearest = Some((deadline, i));
            }
        }
        if victims.is_empty() {
            victims.extend(nearest.map(|(_, i)| i));
        }
        // Highest position first: a swap-remove moves the last entry into
        // the hole, which is then above every position still to remove.
        victims.sort_unstable_by(|a, b| b.cmp(a));
        victims
            .into_iter()
            .filter_map(|i| map.swap_remove_index(i))
            .collect()
    }
}

impl<T: SessionData> MemoryStore<T> {
    fn load_sync(&self, cookie_value: &str) -> Option<Record<T>> {
        let id = SessionId::parse(cookie_value).ok()?;
        let inner = &self.inner;
        inner.shards[inner.shard(&id)].lock().get(&id)
    }

    /// Deletes `id`'s session; when it is gone, follows up to `hops` moves
    /// of recent regenerates to where it went.
    fn delete_sync(&self, id: &SessionId, hops: usize) -> Followed {
        let inner = &self.inner;
        let mut id = *id;
        for hop in 0..=hops {
            let mut map = inner.shards[inner.shard(&id)].lock();
            let removed = map.swap_remove(&id);
            let next = match &removed {
                Some(stored) => {
                    if let Some(o) = stored.owner() {
                        // Under the record's lock (see the update in `save_sync`).
                        inner.index_remove(o, &id);
                    }
                    None
                }
                None if hop < hops => map.moves.take(&id, Secs::now(inner.clock.now())),
                None => None,
            };
            drop(map);
            match (removed, next) {
                (Some(_), _) if hop == 0 => return Followed::Deleted,
                (Some(mut stored), _) => {
                    return Followed::Moved {
                        owner: stored.take_owner(),
                    }
                }
                (None, Some(moved_to)) => id = moved_to,
                (None, None) => return Followed::Nothing,
            }
        }
        Followed::Nothing
    }

    fn save_sync(&self, save: Save<'_, T>) -> Result<SaveOutcome, StoreError> {
        self.keep_sweeping();
        let inner = &self.inner;
        let rec = save.record;
        match save.kind {
            SaveKind::Create => {
                let dropped = {
                    let mut map = inner.shards[inner.shard(&rec.id)].lock();
                    if map.contains_key(&rec.id) {
                        return Err(StoreError::Conflict(
                            "session id collision on create".into(),
                        ));
                    }
                    // Built first: a panicking `Clone` of the session type
                    // then leaves the shard as it was (no eviction unreported).
                    let stored = Stored::new(rec, rec.data.clone(), 1);
                    let dropped = inner.make_room(&mut map);
                    map.insert(rec.id, stored);
                    // Under the lock (see the update).
                    inner.reindex(rec.id, None, rec.owner.as_deref());
                    dropped
                };
                for (id, s) in &dropped {
                    inner.removed(id, s);
                }
                Ok(SaveOutcome::Saved(rec.id.encode()))
            }
            SaveKind::Update => {
                let mut map = inner.shards[inner.shard(&rec.id)].lock();
                // Read under the lock: a revoke that ran while this save
                // waited for it judged expiry at its own, later, time.
                let now = inner.clock.now();
                let updated = map.update(&rec.id, |current| {
                    // Past its deadline, not yet swept: as gone as in Redis,
                    // whose key expired. Writing it would bring back a session
                    // a revoke skipped as dead (and its owner index with it).
                    if current.expired(now) {
                        return None;
                    }
                    let version = current.version.wrapping_add(1);
                    if current.version == rec.version {
                        // Built before the owner is taken out: a panicking
                        // `Clone` leaves the record and its index in step.
                        let stored = Stored::new(rec, rec.data.clone(), version);
                        let old_owner = current.take_owner();
                        *current = stored;
                        return Some((old_owner, None));
                    }
                    // Someone saved since we loaded: keep what they wrote
                    // and reapply only what this request changed.
                    let merged = save.merged_onto(current.to_record(rec.id));
                    let stored = Stored::new(&merged, merged.data.clone(), version);
                    let old_owner = current.take_owner();
                    *current = stored;
                    // Boxed: the common path moves one word, not a record.
                    Some((old_owner, Some(Box::new(merged))))
                });
                let Some((old_owner, merged)) = updated.flatten() else {
                    return Ok(SaveOutcome::Gone);
                };
                let written = merged.as_deref().unwrap_or(rec);
                // Under the record's lock, like every index change that
                // follows a write: two saves that change the owner cannot
                // apply their index changes in the other order, and a delete
                // cannot slip between a write and its index entry.
                inner.reindex(rec.id, old_owner.as_deref(), written.owner.as_deref());
                drop(map);
                Ok(SaveOutcome::Kept)
            }
            SaveKind::Regenerate { old } => {
                // The old record, unless gone or past its deadline (as for
                // an update), taken out together with the lock of its owner's
                // index set, which is held until the set names the new id:
                // a revoke takes the whole set under that lock, so it either
                // comes first (and the set no longer names `old`: the session
                // is being revoked, moving it would let it escape, so it is
                // as good as gone) or after (and finds the new id). Index
                // changes happen under record locks, so an owned record
                // missing from its owner's set can only mean a revoke.
                let take_live = |map: &mut Shard<T>| {
                    let stored = map.stored(&old)?;
                    // Read under the lock, as for an update.
                    if stored.expired(inner.clock.now()) {
                        return None;
                    }
                    let owners = match stored.owner() {
                        Some(o) => {
                            let set = inner.owner_shard(o).lock();
                            if !set.get(o).is_some_and(|ids| ids.contains(&old)) {
                                return None;
                            }
                            Some(set)
                        }
                        None => None,
                    };
                    Some((map.swap_remove(&old)?, owners))
                };
                let (a, b) = (inner.shard(&old), inner.shard(&rec.id));
                // The record to write under the new id: this request's, or,
                // when someone saved since we loaded, theirs with this
                // request's changes reapplied (as for an update).
                // Built before anything is taken out (as for an update): a
                // panicking `Clone` of the session type leaves the old
                // session, its index entry and the shard as they were.
                type Prepared<T> = (Stored<T>, Option<Box<Record<T>>>);
                let prepare = |map: &Shard<T>| -> Option<Prepared<T>> {
                    let old_rec = map.stored(&old)?;
                    let version = old_rec.version.wrapping_add(1);
                    if old_rec.version == rec.version {
                        return Some((Stored::new(rec, rec.data.clone(), version), None));
                    }
                    let merged = save.merged_onto(old_rec.to_record(old));
                    let stored = Stored::new(&merged, merged.data.clone(), version);
                    Some((stored, Some(Box::new(merged))))
                };
                // The index follows, still under the record locks (see the
                // update) and, for the old owner's set, under the lock taken
                // with the record.
                let move_index = |old_rec: &Stored<T>, merged: Option<Box<Record<T>>>, owners| {
                    let new_owner = merged.as_deref().unwrap_or(rec).owner.as_deref();
                    let owners: Option<parking_lot::MutexGuard<'_, OwnerSets>> = owners;
                    if let (Some(mut sets), Some(o)) = (owners, old_rec.owner()) {
                        if let Some(ids) = sets.get_mut(o) {
                            ids.remove(&old);
                            if new_owner == Some(o) {
                                ids.insert(rec.id);
                                return;
                            }
                            if ids.is_empty() {
                                sets.remove(o);
                            }
                        }
                    }
                    // Another owner (its set may share the lock just released).
                    if let Some(n) = new_owner {
                        inner.index_add(n, rec.id);
                    }
                };
                // Remembered in the old id's shard, under its lock: a logout
                // that loaded the old id finds the session or where it went.
                let now = || Secs::now(inner.clock.now());
                // Lock both shards (in index order) so no reader sees neither
                // or both records.
                let dropped = if a == b {
                    let mut map = inner.shards[a].lock();
                    let Some((stored, merged)) = prepare(&map) else {
                        return Ok(SaveOutcome::Gone);
                    };
                    let Some((old_rec, owners)) = take_live(&mut map) else {
                        return Ok(SaveOutcome::Gone);
                    };
                    let dropped = inner.make_room(&mut map);
                    map.insert(rec.id, stored);
                    move_index(&old_rec, merged, owners);
                    map.moves.add(old, rec.id, now(), inner.per_shard);
                    dropped
                } else {
                    let (first, second) = (a.min(b), a.max(b));
                    let mut g1 = inner.shards[first].lock();
                    let mut g2 = inner.shards[second].lock();
                    let (old_map, new_map) = if a < b {
                        (&mut *g1, &mut *g2)
                    } else {
                        (&mut *g2, &mut *g1)
                    };
                    let Some((stored, merged)) = prepare(old_map) else {
                        return Ok(SaveOutcome::Gone);
                    };
                    let Some((old_rec, owners)) = take_live(old_map) else {
                        return Ok(SaveOutcome::Gone);
                    };
                    let dropped = inner.make_room(new_map);
                    new_map.insert(rec.id, stored);
                    move_index(&old_rec, merged, owners);
                    old_map.moves.add(old, rec.id, now(), inner.per_shard);
                    dropped
                };
                for (id, s) in &dropped {
                    inner.removed(id, s);
                }
                Ok(SaveOutcome::Saved(rec.id.encode()))
            }
        }
    }
}

// Everything is in memory: the `*_now` methods always answer, and the async
// ones are the same code.
#[async_trait]
impl<T: SessionData> Store<T> for MemoryStore<T> {
    async fn load(&self, cookie_value: &str) -> Result<Option<Record<T>>, StoreError> {
        Ok(self.load_sync(cookie_value))
    }

    async fn save(&self, save: Save<'_, T>) -> Result<SaveOutcome, StoreError> {
        self.save_sync(save)
    }

    fn load_now(&self, cookie_value: &str) -> Option<Result<Option<Record<T>>, StoreError>> {
        Some(Ok(self.load_sync(cookie_value)))
    }

    fn save_now(&self, save: Save<'_, T>) -> Option<Result<SaveOutcome, StoreError>> {
        Some(self.save_sync(save))
    }

    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        Ok(self.delete_sync(id, 0).deleted())
    }

    /// Follows the moves the old id's shard remembers for [`MOVE_FORWARD_TTL`].
    async fn delete_following(&self, id: &SessionId) -> Result<Followed, StoreError> {
        Ok(self.delete_sync(id, MOVE_FORWARD_HOPS))
    }

    /// The sessions live here: a delete says whether it removed one.
    fn holds_sessions(&self) -> bool {
        true
    }

    fn on_removed(&self, listener: RemovalListener) {
        let _ = self.inner.listener.set(listener);
    }
}

#[async_trait]
impl<T: SessionData> QueryStore<T> for MemoryStore<T> {
    fn iter(&self) -> BoxStream<'_, Result<Record<T, SessionHandle>, StoreError>> {
        // One shard at a time: never more than one lock held, and a shard's
        // records are cloned out before the next is visited (their handles
        // hashed after the lock is released).
        let now = self.inner.clock.now();
        stream::iter(0..SHARDS)
            .flat_map(move |i| {
                let live: Vec<_> = self.inner.shards[i]
                    .lock()
                    .iter()
                    .filter(|(_, s)| !s.expired(now))
                    .map(|(id, s)| s.to_record(*id))
                    .collect();
                stream::iter(live.into_iter().map(|r| Ok(r.into_listed())))
            })
            .boxed()
    }

    async fn count(&self) -> Result<usize, StoreError> {
        let now = self.inner.clock.now();
        Ok(self
            .inner
            .shards
            .iter()
            .map(|s| s.lock().iter().filter(|(_, s)| !s.expired(now)).count())
            .sum())
    }

    /// As the default, but a listed session is deleted only if it still
    /// matches when its shard is locked for the delete (a session changed
    /// since the listing, say an owner given another role, is left), and
    /// reported under the owner it had then.
    async fn bulk_delete(&self, predicate: Predicate<'_, T>) -> Result<Vec<Removed>, StoreError> {
        let inner = &self.inner;
        in_passes(|| async move {
            let mut pass = Pass::default();
            for (id, handle) in self.matching_ids(predicate) {
                let mut map = inner.shards[inner.shard(&id)].lock();
                let Some(current) = map.get(&id) else {
                    // Gone since the listing: perhaps regenerated under a
                    // new id, which the next pass lists.
                    pass.missed = true;
                    continue;
                };
                let current = current.with_id(handle);
                if current.expired(inner.clock.now()).is_some() || !predicate(&current) {
                    continue;
                }
                map.swap_remove(&id);
                if let Some(o) = current.owner.as_deref() {
                    inner.index_remove(o, &id);
                }
                drop(map);
                pass.removed.push(Removed::of_id(id, current.owner));
            }
            Ok(pass)
        })
        .await
    }

    async fn by_owner(&self, owner: &str) -> Result<Vec<Record<T, SessionHandle>>, StoreError> {
        let ids: Vec<SessionId> = self
            .inner
            .owner_shard(owner)
            .lock()
            .get(owner)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        let now = self.inner.clock.now();
        Ok(ids
            .iter()
            .filter_map(|id| self.inner.shards[self.inner.shard(id)].lock().get(id))
            .filter(|r| r.expired(now).is_none() && r.owner.as_deref() == Some(owner))
            .map(Record::into_listed)
            .collect())
    }

    /// O(sessions): the store keeps ids, not handles, so each shard's live
    /// ids are hashed until one matches (about 0.3 µs each; 100 000
    /// sessions take some 30 ms, one shard's lock at a time, yielding to
    /// other tasks between shards). A session past its deadline is not
    /// found (`false`, as a Redis store answers).
    async fn delete_handle(&self, handle: &SessionHandle) -> Result<bool, StoreError> {
        for shard in &self.inner.shards {
            let now = self.inner.clock.now();
            let ids: Vec<SessionId> = shard
                .lock()
                .iter()
                .filter(|(_, s)| !s.expired(now))
                .map(|(id, _)| *id)
                .collect();
            if let Some(id) = ids.into_iter().find(|id| id.handle() == *handle) {
                return self.delete(&id).await;
            }
            tokio::task::yield_now().await;
        }
        Ok(false)
    }

    /// O(that owner's sessions): only the ids in the owner's index are
    /// hashed; the record is checked (still this owner's, live) and removed
    /// under one lock.
    async fn delete_handle_of(
        &self,
        owner: &str,
        handle: &SessionHandle,
    ) -> Result<bool, StoreError> {
        let inner = &self.inner;
        let ids: Vec<SessionId> = match inner.owner_shard(owner).lock().get(owner) {
            Some(set) => set.iter().copied().collect(),
            None => return Ok(false),
        };
        let Some(id) = ids.into_iter().find(|id| id.handle() == *handle) else {
            return Ok(false);
        };
        let mut map = inner.shards[inner.shard(&id)].lock();
        match map.stored(&id) {
            Some(s) if s.owner() == Some(owner) && !s.expired(inner.clock.now()) => {}
            _ => return Ok(false),
        }
        map.swap_remove(&id);
        // Under the record's lock, as every index change.
        inner.index_remove(owner, &id);
        Ok(true)
    }

    async fn delete_owner(&self, owner: &str) -> Result<Vec<Removed>, StoreError> {
        let mut removed = Vec::new();
        // Until the owner's set stays empty: a session given this owner
        // while the revoke ran (a login finishing) is taken by the next
        // pass. (A regenerate cannot move a session out of the set taken:
        // it checks the set under the set's lock and finds its id gone.)
        // Bounded, in case the owner keeps logging in.
        for _ in 0..REVOKE_PASSES {
            let Some(ids) = self.inner.owner_shard(owner).lock().remove(owner) else {
                break;
            };
            for id in ids {
                let mut map = self.inner.shards[self.inner.shard(&id)].lock();
                // The index can briefly hold an id whose owner changed; only
                // delete records that still belong to this owner.
                let expired = match map.stored(&id) {
                    Some(s) if s.owner() == Some(owner) => s.expired(self.inner.clock.now()),
                    _ => continue,
                };
                map.swap_remove(&id);
                drop(map);
                let gone = Removed::of_id(id, Some(owner.to_owned()));
                if expired {
                    // Dead already, so not revoked (`by_owner` does not list
                    // it either), but removed all the same: left in place
                    // without its index entry, a save by a request that
                    // loaded it just before its deadline would bring it back
                    // beyond the reach of any revoke. Reported as a sweep
                    // would have reported it.
                    if let Some(listener) = self.inner.listener.get() {
                        listener(&gone);
                    }
                } else {
                    removed.push(gone);
                }
            }
        }
        Ok(removed)
    }
}

impl<T: SessionData> MemoryStore<T> {
    /// The ids and handles of the live sessions `predicate` matches.
    fn matching_ids(&self, predicate: Predicate<'_, T>) -> Vec<(SessionId, SessionHandle)> {
        let now = self.inner.clock.now();
        let mut out = Vec::new();
        for shard in &self.inner.shards {
            let live: Vec<Record<T>> = shard
                .lock()
                .iter()
                .filter(|(_, s)| !s.expired(now))
                .map(|(id, s)| s.to_record(*id))
                .collect();
            for record in live {
                let id = record.id;
                let listed = record.into_listed();
                if predicate(&listed) {
                    out.push((id, listed.id));
                }
            }
        }
        out
    }
}

/// Passes [`MemoryStore`]'s `delete_owner` makes over an owner's index set.
const REVOKE_PASSES: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expiry::{ExpiryPolicy, ManualClock};

    /// An id in shard 0, distinct per `n`.
    fn id_in_shard_zero(n: u8) -> SessionId {
        let mut bytes = [n; 32];
        bytes[31] = 0;
        SessionId::from_bytes(bytes)
    }

    fn create(store: &MemoryStore<u32>, id: SessionId, clock: &ManualClock, idle_secs: u64) {
        let policy = ExpiryPolicy {
            idle_timeout: Duration::from_secs(idle_secs),
            ..ExpiryPolicy::default()
        };
        let record = Record::new(id, 0, clock.now(), &policy);
        let saved = store.save_sync(Save::create(&record));
        assert!(matches!(saved, Ok(SaveOutcome::Saved(_))), "{saved:?}");
    }

    fn holds(store: &MemoryStore<u32>, id: SessionId) -> bool {
        store.load_sync(&id.encode()).is_some()
    }

    /// A store of `per_shard` sessions per shard that looks at `sample`
    /// entries per eviction (at most the shard's size).
    fn small_store(per_shard: usize, sample: usize, clock: &ManualClock) -> MemoryStore<u32> {
        let mut builder = MemoryStore::<u32>::builder()
            .max_entries(per_shard * SHARDS)
            .clock(clock.clone());
        builder.sample = sample;
        builder.build()
    }

    /// Which owners' index sets hold `id`.
    fn indexed_under(store: &MemoryStore<u32>, id: SessionId, owners: &[&str]) -> Vec<String> {
        owners
            .iter()
            .filter(|o| {
                store
                    .inner
                    .owner_shard(o)
                    .lock()
                    .get(**o)
                    .is_some_and(|set| set.contains(&id))
            })
            .map(|o| o.to_string())
            .collect()
    }

    #[test]
    fn a_revoke_racing_a_regenerate_leaves_the_owner_no_session() {
        // One thread keeps moving a session of "ann" to a new id (as logins
        // do); another revokes "ann". Once the revoke has returned, the next
        // move finds the session gone, so "ann" must have no session left.
        let clock = ManualClock::new();
        for _ in 0..2000 {
            let store = MemoryStore::<u32>::builder().clock(clock.clone()).build();
            let mut rec = Record::new(
                SessionId::generate(),
                0,
                clock.now(),
                &ExpiryPolicy::default(),
            );
            rec.owner = Some("ann".into());
            let saved = store.save_sync(Save::create(&rec));
            assert!(matches!(saved, Ok(SaveOutcome::Saved(_))), "{saved:?}");
            let start = std::sync::Barrier::new(2);
            std::thread::scope(|scope| {
                let (store, start) = (&store, &start);
                scope.spawn(move || {
                    let mut current = rec.clone();
                    start.wait();
                    for _ in 0..50 {
                        let mut moved = current.clone();
                        moved.id = SessionId::generate();
                        let out = store.save_sync(Save::regenerate(&moved, current.id, None));
                        match out {
                            Ok(SaveOutcome::Saved(_)) => {
                                moved.version = current.version + 1;
                                current = moved;
                            }
                            Ok(SaveOutcome::Gone) => break,
                            other => panic!("{other:?}"),
                        }
                    }
                });
                scope.spawn(move || {
                    start.wait();
                    futures_util::FutureExt::now_or_never(store.delete_owner("ann"))
                        .expect("the memory store answers at once")
                        .unwrap();
                });
            });
            let left: usize = store.inner.shards.iter().map(|s| s.lock().len()).sum();
            assert_eq!(
                left, 0,
                "a session of the revoked owner survived under a new id"
            );
        }
    }

    #[test]
    fn the_index_follows_concurrent_owner_changes_in_the_order_they_were_written() {
        // Two threads hand one session to "ann" and to "bob" at once; the
        // index must then name the owner the record holds, and only it. Index changes made after the record's lock was released
        // could land in the other order and leave it under neither.
        let clock = ManualClock::new();
        let store = MemoryStore::<u32>::builder().clock(clock.clone()).build();
        let id = SessionId::generate();
        create(&store, id, &clock, 600);
        // An inconsistency heals with the next owner change, so each round
        // is one change per thread, started together, then checked.
        let start = std::sync::Barrier::new(2);
        for _ in 0..2000 {
            std::thread::scope(|scope| {
                for owner in ["ann", "bob"] {
                    let (store, start) = (&store, &start);
                    scope.spawn(move || {
                        let mut rec = store.load_sync(&id.encode()).unwrap();
                        rec.owner = Some(owner.into());
                        start.wait();
                        let saved = store.save_sync(Save::update(&rec, None).with_changes(
                            crate::store::MetaChanges {
                                owner: true,
                                ..crate::store::MetaChanges::NONE
                            },
                        ));
                        assert!(matches!(saved, Ok(SaveOutcome::Kept)), "{saved:?}");
                    });
                }
            });
            let owner = store.load_sync(&id.encode()).unwrap().owner.unwrap();
            assert_eq!(indexed_under(&store, id, &["ann", "bob"]), [owner]);
        }
    }

    /// Session data whose `Clone` panics while `PANIC_ON_CLONE` is set.
    #[derive(Default, serde::Serialize, serde::Deserialize)]
    struct Brittle(u32);
    static PANIC_ON_CLONE: std::sync::atomic::AtomicBool =
        std::sync::atomic::AtomicBool::new(false);
    impl Clone for Brittle {
        fn clone(&self) -> Self {
            assert!(
                !PANIC_ON_CLONE.load(std::sync::atomic::Ordering::SeqCst),
                "clone"
            );
            Brittle(self.0)
        }
    }

    /// A save whose copy of the session's data panics leaves the store as
    /// it was: the session where it was, under its owner's index (a revoke
    /// still finds it).
    #[tokio::test]
    async fn a_save_whose_data_clone_panics_changes_nothing() {
        use std::sync::atomic::Ordering::SeqCst;
        let store = MemoryStore::<Brittle>::new();
        let mut r = Record::new(
            SessionId::generate(),
            Brittle(1),
            SystemTime::now(),
            &ExpiryPolicy::default(),
        );
        r.owner = Some("ann".into());
        assert!(store.save_sync(Save::create(&r)).is_ok());
        // As loaded: the version the store holds (no merge, whose copy of
        // the stored record would panic first).
        r.version = 1;
        let mut renamed = r.clone();
        renamed.owner = Some("bob".into());
        let mut moved = r.clone();
        moved.id = SessionId::generate();
        let id = r.id;
        for save in [
            Save::update(&renamed, None),
            Save::regenerate(&moved, id, None),
        ] {
            PANIC_ON_CLONE.store(true, SeqCst);
            let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let _ = store.save_sync(save);
            }));
            PANIC_ON_CLONE.store(false, SeqCst);
            assert!(panicked.is_err(), "the clone was meant to panic");
            let kept = store
                .load_sync(&id.encode())
                .expect("the session is still there");
            assert_eq!(kept.owner.as_deref(), Some("ann"));
        }
        assert_eq!(store.len(), 1);
        let revoked = store.delete_owner("ann").await.unwrap();
        let revoked: Vec<SessionHandle> = revoked.iter().map(Removed::handle).collect();
        assert_eq!(revoked, [id.handle()], "the revoke found it");
    }

    #[test]
    fn a_full_shard_evicts_the_session_nearest_its_deadline() {
        let clock = ManualClock::new();
        let store = small_store(2, 16, &clock);
        let (soon, later, new) = (
            id_in_shard_zero(1),
            id_in_shard_zero(2),
            id_in_shard_zero(3),
        );
        create(&store, soon, &clock, 60);
        create(&store, later, &clock, 3600);
        create(&store, new, &clock, 3600);
        // The sample covers the whole shard.
        assert!(!holds(&store, soon) && holds(&store, later) && holds(&store, new));
    }

    /// A revoke finds one of the owner's sessions just past its deadline.
    /// It is not revoked (dead already) but removed, and reported as a sweep
    /// would report it: left in place without its index entry, a save that
    /// judged it alive (its `now` read a moment earlier, or a clock stepped
    /// back) brought it back, unindexed, beyond every later revoke.
    #[test]
    fn a_revoke_removes_the_owners_expired_sessions_too() {
        let clock = ManualClock::new();
        let store = MemoryStore::<u32>::builder().clock(clock.clone()).build();
        let removed = Arc::new(Mutex::new(Vec::new()));
        let seen = removed.clone();
        store.on_removed(Arc::new(move |r: &Removed| seen.lock().push(r.handle())));
        let policy = ExpiryPolicy {
            idle_timeout: Duration::from_secs(10),
            ..ExpiryPolicy::default()
        };
        let mut rec = Record::new(SessionId::generate(), 0, clock.now(), &policy);
        rec.owner = Some("ann".into());
        let saved = store.save_sync(Save::create(&rec));
        assert!(matches!(saved, Ok(SaveOutcome::Saved(_))), "{saved:?}");
        let loaded_at = clock.now();
        clock.advance(Duration::from_secs(11));
        let revoked = futures_util::FutureExt::now_or_never(store.delete_owner("ann"))
            .expect("the memory store answers at once")
            .unwrap();
        assert!(revoked.is_empty(), "not revoked: it had expired");
        assert_eq!(*removed.lock(), [rec.id.handle()], "reported as swept");
        clock.set(loaded_at + Duration::from_secs(5));
        let mut touched = rec.clone();
        touched.touch(clock.now(), &policy);
        let out = store.save_sync(Save::update(&touched, None));
        assert!(matches!(out, Ok(SaveOutcome::Gone)), "revived: {out:?}");
    }

    /// A purge lists two sessions; one of them is changed before its delete
    /// (here by the predicate itself, while the second is being listed) and
    /// no longer matches: it is left, the other removed.
    #[test]
    fn a_bulk_delete_leaves_a_session_changed_since_it_was_listed() {
        use std::sync::atomic::AtomicUsize;
        let clock = ManualClock::new();
        let store = MemoryStore::<u32>::builder().clock(clock.clone()).build();
        let policy = ExpiryPolicy::default();
        let mut ids = Vec::new();
        for _ in 0..2 {
            let r = Record::new(SessionId::generate(), 1, clock.now(), &policy);
            let saved = store.save_sync(Save::create(&r));
            assert!(matches!(saved, Ok(SaveOutcome::Saved(_))), "{saved:?}");
            ids.push(r.id);
        }
        let calls = AtomicUsize::new(0);
        let first = Mutex::new(None::<Record<u32, SessionHandle>>);
        let writer = store.clone();
        let predicate = move |r: &Record<u32, SessionHandle>| {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 => *first.lock() = Some(r.clone()),
                // Listing the second: the first changes (no lock is held
                // while a listed record is tested).
                1 => {
                    let listed = first.lock().clone().expect("listed first");
                    let id = *ids
                        .iter()
                        .find(|id| id.handle() == listed.id)
                        .expect("one of the two");
                    let mut changed = listed.with_id(id);
                    changed.data = 2;
                    let out = writer.save_sync(Save::update(&changed, None));
                    assert!(matches!(out, Ok(SaveOutcome::Kept)), "{out:?}");
                }
                _ => {}
            }
            r.data == 1
        };
        let removed = futures_util::FutureExt::now_or_never(store.bulk_delete(&predicate))
            .expect("the memory store answers at once")
            .unwrap();
        assert_eq!(removed.len(), 1, "{removed:?}");
        let left: Vec<u32> = futures_util::FutureExt::now_or_never(store.find_by(&|_| true))
            .unwrap()
            .unwrap()
            .into_iter()
            .map(|r| r.data)
            .collect();
        assert_eq!(left, [2], "the changed session was left");
    }

    #[test]
    fn a_full_shard_drops_every_expired_session_its_sample_finds() {
        let clock = ManualClock::new();
        let store = small_store(3, 64, &clock);
        let removed = Arc::new(Mutex::new(Vec::new()));
        let seen = removed.clone();
        store.on_removed(Arc::new(move |r: &Removed| seen.lock().push(r.handle())));
        let (a, b, live, new) = (
            id_in_shard_zero(1),
            id_in_shard_zero(2),
            id_in_shard_zero(3),
            id_in_shard_zero(4),
        );
        create(&store, a, &clock, 60);
        create(&store, b, &clock, 60);
        create(&store, live, &clock, 3600);
        clock.advance(Duration::from_secs(120));
        create(&store, new, &clock, 3600);
        // The sample (64, capped at the shard's three entries) sees them all.
        assert!(!holds(&store, a) && !holds(&store, b));
        assert!(holds(&store, live) && holds(&store, new));
        let mut removed = removed.lock().clone();
        removed.sort_by_key(|h| h.to_string());
        let mut expected = vec![a.handle(), b.handle()];
        expected.sort_by_key(|h| h.to_string());
        assert_eq!(removed, expected);
    }

    proptest::proptest! {
        #[test]
        fn whole_second_deadlines_never_take_a_live_session_for_an_expired_one(
            deadline_ns in 0u64..4_000_000_000,
            now_ns in 0u64..4_000_000_000,
        ) {
            let epoch = SystemTime::UNIX_EPOCH;
            let (at, now) = (epoch + Duration::from_nanos(deadline_ns), epoch + Duration::from_nanos(now_ns));
            let mut record = Record::new(id_in_shard_zero(1), 0u32, epoch, &ExpiryPolicy::default());
            record.idle_deadline = at;
            if Secs::now(now) >= Secs::deadline(record.expires_at()) {
                proptest::prop_assert!(record.expired(now).is_some());
            }
        }
    }

    /// Every field of a record comes back exactly as it was saved, the
    /// rare parts and times a nanosecond count cannot hold included.
    #[test]
    fn stored_entries_give_back_the_exact_record() {
        let epoch = SystemTime::UNIX_EPOCH;
        let policy = ExpiryPolicy::default();
        let plain = Record::new(
            SessionId::generate(),
            7u32,
            epoch + Duration::new(1_700_000_000, 123_456_789),
            &policy,
        );
        let mut rich = plain.clone();
        rich.id = SessionId::generate();
        rich.flash.push(FlashMessage {
            key: "notice".into(),
            value: "saved".into(),
        });
        rich.owner = Some("user-1".into());
        rich.binding = Some("print".into());
        let mut before_epoch = plain.clone();
        before_epoch.created_at = epoch - Duration::from_secs(5);
        let mut far_future = plain.clone();
        far_future.absolute_deadline = epoch + Duration::from_secs(1 << 40);
        for record in [plain, rich, before_epoch, far_future] {
            let stored = Stored::new(&record, record.data, record.version);
            let back = stored.to_record(record.id);
            assert_eq!(stored.expires_at(), record.expires_at());
            assert_eq!(stored.deadline(), Secs::deadline(record.expires_at()));
            let at = record.expires_at();
            let ns = Duration::from_nanos(1);
            for now in [
                at - ns,
                at,
                at + ns,
                epoch - ns,
                epoch,
                epoch + Duration::from_secs(1 << 41),
            ] {
                assert_eq!(
                    stored.expired(now),
                    record.expired(now).is_some(),
                    "{now:?}"
                );
            }
            assert_eq!(format!("{back:?}"), format!("{record:?}"));
            assert_eq!(
                (back.data, back.flash, back.created_at, back.last_access),
                (
                    record.data,
                    record.flash,
                    record.created_at,
                    record.last_access
                )
            );
            assert_eq!((back.owner, back.binding), (record.owner, record.binding));
        }
    }

    /// What the module docs say an entry costs, for a two-field session
    /// type: the map's hash and key, then the stored fields.
    #[cfg(target_pointer_width = "64")]
    #[test]
    fn an_entry_takes_88_bytes_beside_the_session_type() {
        type Data = (u64, String);
        let entry = 8 + std::mem::size_of::<SessionId>() + std::mem::size_of::<Stored<Data>>();
        assert_eq!(entry - std::mem::size_of::<Data>(), 88);
        assert_eq!(entry, 120);
    }

    #[test]
    fn a_clock_before_the_epoch_counts_as_zero_seconds() {
        let before = SystemTime::UNIX_EPOCH - Duration::from_secs(5);
        assert_eq!(Secs::now(before), Secs(0));
    }

    #[test]
    fn ids_of_one_shard_hash_apart() {
        // The shard comes from the last byte and the map's hash from the
        // first eight: ids sharing a shard still get distinct hashes.
        let ids: Vec<SessionId> = (0..64).map(|_| SessionId::generate()).collect();
        let hashes: HashSet<u64> = ids
            .iter()
            .map(|id| {
                let mut bytes = *id.as_bytes();
                bytes[31] = 0;
                IdHash.hash_one(SessionId::from_bytes(bytes))
            })
            .collect();
        assert_eq!(hashes.len(), ids.len());
    }

    #[test]
    fn shard_deadlines_follow_every_change() {
        let clock = ManualClock::new();
        let policy = ExpiryPolicy::default();
        let mut shard = Shard::<u32>::new();
        let ids: Vec<SessionId> = (0..40).map(|n| id_in_shard_zero(n as u8)).collect();
        for step in 0..2000u32 {
            let id = ids[fastrand::usize(..ids.len())];
            clock.advance(Duration::from_secs(1));
            match step % 4 {
                0 => {
                    let record = Record::new(id, step, clock.now(), &policy);
                    shard.insert(id, Stored::new(&record, step, 0));
                }
                1 => {
                    let now = clock.now();
                    shard.update(&id, |s| {
                        let mut record = s.to_record(id);
                        record.touch(now, &policy);
                        *s = Stored::new(&record, record.data, record.version);
                    });
                }
                2 => {
                    shard.swap_remove(&id);
                }
                _ if step % 100 == 3 => shard.retain(|_, s| s.data % 3 != 0),
                _ if step % 8 == 7 && shard.len() > 0 => {
                    shard.swap_remove_index(fastrand::usize(..shard.len()));
                }
                _ => {}
            }
            let expected: Vec<Secs> = shard
                .map
                .values()
                .map(|s| Secs::deadline(s.expires_at()))
                .collect();
            assert_eq!(shard.deadlines, expected, "step {step}");
        }
    }

    #[test]
    fn expired_sessions_go_before_live_ones() {
        let clock = ManualClock::new();
        let store = small_store(4, 16, &clock);
        let live = id_in_shard_zero(9);
        create(&store, live, &clock, 3600);
        for n in 1..=3 {
            create(&store, id_in_shard_zero(n), &clock, 1);
        }
        clock.advance(Duration::from_secs(2));
        for n in 10..40 {
            create(&store, id_in_shard_zero(n), &clock, 1);
            clock.advance(Duration::from_secs(2));
        }
        assert!(
            holds(&store, live),
            "a live session was evicted before expired ones"
        );
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime")
    }

    /// Creates a session on `rt` that expires in a minute, moves the clock
    /// past that, and waits (on `rt`, so its tasks run) for a background
    /// sweep to remove it.
    fn swept_in_the_background(
        rt: &tokio::runtime::Runtime,
        store: &MemoryStore<u32>,
        clock: &ManualClock,
    ) -> bool {
        rt.block_on(async {
            create(store, SessionId::generate(), clock, 60);
            clock.advance(Duration::from_secs(120));
            for _ in 0..200 {
                if store.is_empty() {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            false
        })
    }

    fn sweeping_store(clock: &ManualClock) -> MemoryStore<u32> {
        MemoryStore::builder()
            .clock(clock.clone())
            .sweep_interval(Duration::from_millis(10))
            .build()
    }

    #[test]
    fn a_store_built_outside_a_runtime_sweeps_once_saved_to_inside_one() {
        let clock = ManualClock::new();
        let store = sweeping_store(&clock);
        assert!(!store.inner.sweeping.load(Ordering::Acquire));
        assert!(swept_in_the_background(&runtime(), &store, &clock));
    }

    #[test]
    fn a_store_that_outlives_its_sweepers_runtime_sweeps_on_the_next() {
        let clock = ManualClock::new();
        let first = runtime();
        let store = first.block_on(async { sweeping_store(&clock) });
        assert!(store.inner.sweeping.load(Ordering::Acquire));
        drop(first);
        assert!(
            !store.inner.sweeping.load(Ordering::Acquire),
            "the sweeper went with its runtime"
        );
        assert!(swept_in_the_background(&runtime(), &store, &clock));
    }

    #[test]
    fn one_sweeper_per_store_however_many_saves() {
        let clock = ManualClock::new();
        let rt = runtime();
        let store = rt.block_on(async { sweeping_store(&clock) });
        rt.block_on(async {
            for _ in 0..10 {
                create(&store, SessionId::generate(), &clock, 60);
            }
        });
        assert_eq!(rt.metrics().num_alive_tasks(), 1);
        drop(store);
        rt.block_on(async { tokio::time::sleep(Duration::from_millis(50)).await });
        assert_eq!(rt.metrics().num_alive_tasks(), 0, "it ends with the store");
    }
}

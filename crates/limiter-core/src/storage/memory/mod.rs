//! The in-process storage: every strategy, bounded memory, no background
//! thread, never blocks an async runtime.

use std::fmt;
use std::future::{Future, ready};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use foldhash::quality::FoldHasher;
use parking_lot::MutexGuard;
use smallvec::SmallVec;

use self::table::{REF_BIT, Shard, Table};
use crate::error::StorageError;
use crate::limit::RateLimit;
use crate::storage::{Action, Batch, Item, Key, LimitState, Mode, Outcome, Storage, Supports};
use crate::strategy::fixed_window::FixedWindowState;
use crate::strategy::gcra::GcraState;
use crate::strategy::moving_window::MovingWindowState;
use crate::strategy::sliding_window::SlidingWindowState;
use crate::strategy::{Counter, Expiring, FixedWindow, Gcra, MovingWindow, SlidingWindowCounter, Strategy};

mod table;

/// How many keys a [`MemoryStorage`] holds per strategy unless told otherwise.
pub const DEFAULT_MAX_KEYS: usize = 1 << 20;

/// Counters kept in this process, for every strategy.
///
/// - **Safe under threads and async tasks.** State lives in sharded
///   `parking_lot` mutexes held only for the few arithmetic steps of a
///   decision, never across an `.await`; every operation completes
///   synchronously, so the futures it returns are ready at once.
/// - **Bounded.** At most [`max_keys`](MemoryStorageBuilder::max_keys) keys
///   per strategy (each shard holds its share of `max_keys`). A full shard
///   first drops expired keys, then the least recently used ones by the CLOCK
///   approximation (a "used" bit per key; the first key the clock hand finds
///   unused since its last pass goes). A flood of unique client keys
///   therefore evicts idle clients instead of exhausting memory; it does
///   evict, so size `max_keys` above the number of clients active within
///   your longest window.
/// - **Expiring by itself.** An expired state reads as absent and is
///   replaced when touched; each shard also sweeps out expired keys after as
///   many inserts as it held at its last sweep (amortised O(1) per insert),
///   on the calling thread. No timer, no background thread.
/// - **No key strings.** A key (namespace, identifiers and limit) is reduced
///   to a 64-bit hash, keyed with a random seed per storage, so a check
///   formats and allocates nothing. Two distinct live keys share a counter
///   with probability about n²/2⁶⁴ for n live keys (≈ 3·10⁻⁸ for a million),
///   and the random seed keeps clients from choosing colliding keys.
///
/// Memory per key (measured numbers are in `BENCHMARKS.md`): each key takes
/// one slot in a hashbrown table plus one control byte; tables stay between
/// 7/16 and 7/8 full. A slot is 24 bytes for the fixed window (25–55 bytes
/// per key with the table's slack), 16 for GCRA, 40 for the sliding window
/// counter and 48 for the moving window, whose log of up to `amount` hits
/// also takes 16 bytes per distinct hit time on the heap.
///
/// Clones share the same counters.
///
/// # Examples
///
/// ```
/// use limiter_core::{FixedWindow, MemoryStorage, RateLimit, RateLimiter};
///
/// # futures_lite_block_on(async {
/// let limiter = RateLimiter::new(FixedWindow, MemoryStorage::builder().max_keys(100_000).build());
/// let limit: RateLimit = "2/minute".parse()?;
/// assert!(limiter.hit(&limit, &["alice"], 1).await?);
/// assert!(limiter.hit(&limit, &["alice"], 1).await?);
/// assert!(!limiter.hit(&limit, &["alice"], 1).await?);
/// assert!(limiter.hit(&limit, &["bob"], 1).await?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// # fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     let mut f = std::pin::pin!(f);
/// #     match f.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
/// #         std::task::Poll::Ready(v) => v,
/// #         std::task::Poll::Pending => unreachable!("the memory storage never waits"),
/// #     }
/// # }
/// ```
#[derive(Clone)]
pub struct MemoryStorage {
    inner: Arc<Inner>,
}

struct Inner {
    seed: foldhash::quality::RandomState,
    max_keys: usize,
    fixed: Table<FixedWindowState>,
    moving: Table<MovingWindowState>,
    sliding: Table<SlidingWindowState>,
    gcra: Table<GcraState>,
}

/// Builds a [`MemoryStorage`].
#[derive(Clone, Debug)]
pub struct MemoryStorageBuilder {
    max_keys: usize,
    shards: Option<usize>,
}

impl MemoryStorageBuilder {
    /// The most keys to hold per strategy (default [`DEFAULT_MAX_KEYS`]).
    #[must_use]
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys.max(1);
        self
    }

    /// How many independently locked shards to use, rounded up to a power of
    /// two and at most `max_keys` (default: four per CPU).
    #[must_use]
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards.clamp(1, 1 << 16));
        self
    }

    /// Builds the storage.
    pub fn build(self) -> MemoryStorage {
        let shards = self.shards.unwrap_or_else(|| {
            let cpus = std::thread::available_parallelism().map_or(4, usize::from);
            (cpus * 4).next_power_of_two()
        });
        MemoryStorage {
            inner: Arc::new(Inner {
                seed: foldhash::quality::RandomState::default(),
                max_keys: self.max_keys,
                fixed: Table::new(self.max_keys, shards),
                moving: Table::new(self.max_keys, shards),
                sliding: Table::new(self.max_keys, shards),
                gcra: Table::new(self.max_keys, shards),
            }),
        }
    }
}

impl Default for MemoryStorage {
    fn default() -> Self {
        MemoryStorage::new()
    }
}

impl fmt::Debug for MemoryStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStorage").field("max_keys", &self.inner.max_keys).finish_non_exhaustive()
    }
}

impl MemoryStorage {
    /// A storage holding up to [`DEFAULT_MAX_KEYS`] keys per strategy.
    pub fn new() -> Self {
        MemoryStorage::builder().build()
    }

    /// A builder, to set the bound or the sharding.
    pub fn builder() -> MemoryStorageBuilder {
        MemoryStorageBuilder { max_keys: DEFAULT_MAX_KEYS, shards: None }
    }

    /// The most keys held per strategy.
    pub fn max_keys(&self) -> usize {
        self.inner.max_keys
    }

    /// How many keys are held now, all strategies together (expired keys
    /// not yet swept included).
    pub fn len(&self) -> usize {
        let i = &self.inner;
        i.fixed.len() + i.moving.len() + i.sliding.len() + i.gcra.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every key expired at `now` (nanoseconds since the epoch) at
    /// once, instead of waiting for the periodic sweeps; returns how many.
    pub fn sweep(&self, now: crate::Timestamp) -> usize {
        let (i, now) = (&self.inner, now.as_nanos());
        i.fixed.sweep(now) + i.moving.sweep(now) + i.sliding.sweep(now) + i.gcra.sweep(now)
    }

    /// Decides `batch` synchronously: what [`Supports::decide`] does, for
    /// callers outside an async context.
    pub fn decide_blocking<S: MemoryStrategy>(&self, strategy: S, batch: &Batch<'_>) -> Outcome {
        let _ = strategy;
        S::decide_in(self, batch)
    }

    /// Hits (or, with `peek`, tests) one item at `now`, synchronously, with
    /// nothing allocated or copied beyond the item's state.
    pub fn decide_one<S: MemoryStrategy>(
        &self,
        strategy: S,
        item: &Item<'_>,
        now: crate::Timestamp,
        peek: bool,
    ) -> LimitState {
        let _ = strategy;
        S::decide_one_in(self, item, now.as_nanos(), peek)
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for crate::FixedWindow {}
    impl Sealed for crate::MovingWindow {}
    impl Sealed for crate::SlidingWindowCounter {}
    impl Sealed for crate::Gcra {}
}

/// A strategy the memory storage runs: all four.
pub trait MemoryStrategy: Strategy + sealed::Sealed {
    #[doc(hidden)]
    fn decide_in(storage: &MemoryStorage, batch: &Batch<'_>) -> Outcome;
    #[doc(hidden)]
    fn clear_in(storage: &MemoryStorage, limit: &RateLimit, key: &Key<'_>);
    #[doc(hidden)]
    fn decide_one_in(storage: &MemoryStorage, item: &Item<'_>, now: u64, peek: bool) -> LimitState;
}

macro_rules! memory_strategy {
    ($($strategy:ty),+) => {$(
        impl MemoryStrategy for $strategy {
            fn decide_in(storage: &MemoryStorage, batch: &Batch<'_>) -> Outcome {
                decide::<$strategy>(&storage.inner, batch)
            }
            fn decide_one_in(storage: &MemoryStorage, item: &Item<'_>, now: u64, peek: bool) -> LimitState {
                // Every shard index is in range, so a state always comes back.
                decide_one::<$strategy>(&storage.inner, item, now, peek)
                    .unwrap_or_else(|| LimitState::allowed(item.limit.amount(), crate::Timestamp::from_nanos(now)))
            }
            fn clear_in(storage: &MemoryStorage, limit: &RateLimit, key: &Key<'_>) {
                <$strategy as Algorithm>::table(&storage.inner).remove(key_id_of(&storage.inner, limit, key));
            }
        }
    )+};
}

memory_strategy!(FixedWindow, MovingWindow, SlidingWindowCounter, Gcra);

/// Which table holds a strategy's states.
trait Algorithm {
    type Slot: Counter;
    fn table(inner: &Inner) -> &Table<Self::Slot>;
}

macro_rules! algorithm {
    ($($strategy:ty => $state:ty, $field:ident;)+) => {$(
        impl Algorithm for $strategy {
            type Slot = $state;
            fn table(inner: &Inner) -> &Table<$state> {
                &inner.$field
            }
        }
    )+};
}

algorithm! {
    FixedWindow => FixedWindowState, fixed;
    MovingWindow => MovingWindowState, moving;
    SlidingWindowCounter => SlidingWindowState, sliding;
    Gcra => GcraState, gcra;
}

/// The shards a batch touches, locked in ascending order so that two batches
/// can never wait on each other.
struct Locked<'t, V> {
    guards: SmallVec<[(usize, MutexGuard<'t, Shard<V>>); 4]>,
}

impl<'t, V: Expiring> Locked<'t, V> {
    fn new(table: &'t Table<V>, shards: &[usize]) -> Self {
        let mut indexes: SmallVec<[usize; 4]> = SmallVec::from_slice(shards);
        if !indexes.is_sorted() {
            indexes.sort_unstable();
        }
        indexes.dedup();
        let guards = indexes.into_iter().filter_map(|i| table.lock(i).map(|g| (i, g))).collect();
        Locked { guards }
    }

    fn shard(&mut self, index: usize) -> Option<&mut Shard<V>> {
        self.guards.iter_mut().find(|(i, _)| *i == index).map(|(_, g)| &mut **g)
    }
}

/// One item, tested or hit: one hash, one lock. Written out rather than
/// through [`decide_hashed`]: that way a single async `hit` took about
/// 12 ns more (criterion, however its inlining was hinted).
fn decide_one<S: Algorithm>(inner: &Inner, item: &Item<'_>, now: u64, peek: bool) -> Option<LimitState> {
    let table = S::table(inner);
    let id = key_id_of(inner, &item.limit, &item.key);
    table.lock(table.shard_index(id)).map(|mut shard| apply::<S>(&mut shard, id, item, now, peek))
}

/// One item whose table key is known, tested or hit under its shard's lock.
fn decide_hashed<S: Algorithm>(inner: &Inner, id: u64, item: &Item<'_>, now: u64, peek: bool) -> Option<LimitState> {
    let table = S::table(inner);
    table.lock(table.shard_index(id)).map(|mut shard| apply::<S>(&mut shard, id, item, now, peek))
}

fn decide<S: Algorithm>(inner: &Inner, batch: &Batch<'_>) -> Outcome {
    let now = batch.now.as_nanos();
    let (peek_all, stop) = match batch.mode {
        Mode::AllOrNothing => return decide_all_or_nothing::<S>(inner, batch),
        Mode::Sequential { stop_at_first_breach } => (false, stop_at_first_breach),
        Mode::Peek => (true, false),
    };
    // The common case of `limits`' own calls (`hit`, `test`): one item, one
    // hash. The other paths stay out of line: inlined here, they cost a
    // single async `hit` about 6 ns (criterion).
    if let [item] = batch.items {
        let mut outcome = Outcome::with_capacity(1);
        outcome.push(decide_one::<S>(inner, item, now, peek_all || item.action == Action::Peek));
        return outcome;
    }
    decide_in_turn::<S>(inner, batch, peek_all, stop)
}

/// A sequential or peeking batch (`peek_all`), stopping at its first
/// refusal if told: Flask-Limiter's item-by-item evaluation, each item
/// atomic on its own, so one lock at a time is enough (and cheaper than
/// locking every shard of the batch at once).
#[inline(never)]
fn decide_in_turn<S: Algorithm>(inner: &Inner, batch: &Batch<'_>, peek_all: bool, stop: bool) -> Outcome {
    let now = batch.now.as_nanos();
    let mut outcome = Outcome::with_capacity(batch.items.len());
    let mut hashed = KeyHasher::new(inner);
    let mut stopped = false;
    for item in batch.items {
        if stopped {
            outcome.push(None);
            continue;
        }
        let peek = peek_all || item.action == Action::Peek;
        let state = decide_hashed::<S>(inner, hashed.id_of(&item.limit, &item.key), item, now, peek);
        stopped = stop && state.is_some_and(|s| !s.allowed);
        outcome.push(state);
    }
    outcome
}

/// An all-or-nothing batch, decided with every shard it touches locked.
#[inline(never)]
fn decide_all_or_nothing<S: Algorithm>(inner: &Inner, batch: &Batch<'_>) -> Outcome {
    let table = S::table(inner);
    let mut hashed = KeyHasher::new(inner);
    let ids: SmallVec<[u64; 4]> = batch.items.iter().map(|item| hashed.id_of(&item.limit, &item.key)).collect();
    let shards: SmallVec<[usize; 4]> = ids.iter().map(|&id| table.shard_index(id)).collect();
    let mut locked = Locked::new(table, &shards);
    let mut outcome = Outcome::with_capacity(batch.items.len());
    all_or_nothing::<S>(&mut locked, batch, &ids, &shards, &mut outcome);
    outcome
}

/// Tests (`peek`) or hits one item on its locked shard.
fn apply<S: Algorithm>(shard: &mut Shard<S::Slot>, id: u64, item: &Item<'_>, now: u64, peek: bool) -> LimitState {
    if peek {
        let empty = S::Slot::default();
        shard.get(id, now).unwrap_or(&empty).test(&item.limit, item.cost, now)
    } else {
        shard.get_or_insert(id, now).hit(&item.limit, item.cost, now)
    }
}

/// The table key for `limit` and `key`: what `limits` would format into a
/// string, hashed without formatting it.
fn key_id_of(inner: &Inner, limit: &RateLimit, key: &Key<'_>) -> u64 {
    limit_id(key_hasher(inner, key), limit)
}

/// A hasher that has taken in `key`'s namespace and identifiers. Always
/// inlined, as is [`limit_id`]: returned by value out of line, the hasher
/// cost a single `hit` about 12 ns (criterion).
#[inline(always)]
fn key_hasher(inner: &Inner, key: &Key<'_>) -> FoldHasher<'static> {
    let mut hasher = inner.seed.build_hasher();
    key.namespace().hash(&mut hasher);
    key.identifiers().hash(&mut hasher);
    hasher
}

/// The table key of `limit`, from a [`key_hasher`].
#[inline(always)]
fn limit_id(mut hasher: FoldHasher<'static>, limit: &RateLimit) -> u64 {
    limit.hash(&mut hasher);
    hasher.finish() & !REF_BIT
}

/// Computes [`key_id_of`] for a batch's items, hashing a key's namespace
/// and identifiers once for consecutive items of the same key (a request's
/// limits usually share them), and continuing from that state for each limit.
struct KeyHasher<'a> {
    inner: &'a Inner,
    last: Option<(Key<'a>, FoldHasher<'static>)>,
}

impl<'a> KeyHasher<'a> {
    fn new(inner: &'a Inner) -> Self {
        KeyHasher { inner, last: None }
    }

    fn id_of(&mut self, limit: &RateLimit, key: &Key<'a>) -> u64 {
        let hasher = match &self.last {
            Some((last, hasher)) if same_strings(last, key) => hasher.clone(),
            _ => {
                let hasher = key_hasher(self.inner, key);
                self.last = Some((*key, hasher.clone()));
                hasher
            }
        };
        limit_id(hasher, limit)
    }
}

/// Whether two keys are made of the very same strings (same addresses and
/// lengths), which implies equal keys; a cheap test, so equal keys built from
/// different strings are merely hashed again.
fn same_strings(a: &Key<'_>, b: &Key<'_>) -> bool {
    let same = |x: &str, y: &str| std::ptr::eq(x, y);
    let (a_ids, b_ids) = (a.identifiers(), b.identifiers());
    same(a.namespace(), b.namespace()) && a_ids.len() == b_ids.len() && a_ids.iter().zip(b_ids).all(|(x, y)| same(x, y))
}

/// Applies every item in order; if any refuses, puts every state it changed
/// back as it was and reports each item as it stands, the refused ones as
/// refused.
fn all_or_nothing<S: Algorithm>(
    locked: &mut Locked<'_, S::Slot>,
    batch: &Batch<'_>,
    ids: &[u64],
    shards: &[usize],
    outcome: &mut Outcome,
) {
    let now = batch.now.as_nanos();
    // Every item's state before the batch touches anything (`None`: there
    // was none): one item's insert may evict another's key, peeked ones too.
    let saved: SmallVec<[Option<S::Slot>; 4]> = ids
        .iter()
        .zip(shards)
        .map(|(&id, &shard)| locked.shard(shard).and_then(|shard| shard.get(id, now).cloned()))
        .collect();
    let mut tried: SmallVec<[Option<LimitState>; 4]> = SmallVec::with_capacity(ids.len());
    for (item, (&id, &shard)) in batch.items.iter().zip(ids.iter().zip(shards)) {
        let peek = item.action == Action::Peek;
        tried.push(locked.shard(shard).map(|shard| apply::<S>(shard, id, item, now, peek)));
    }
    if tried.iter().flatten().all(|s| s.allowed) {
        for state in tried {
            outcome.push(state);
        }
        return;
    }
    // Undo in reverse: the keys the batch added go first, so re-inserting
    // evicted states never overflows the shard.
    for ((&id, &shard), before) in ids.iter().zip(shards).zip(saved).rev() {
        if let Some(shard) = locked.shard(shard) {
            shard.restore(id, before);
        }
    }
    for ((item, (&id, &shard)), attempt) in batch.items.iter().zip(ids.iter().zip(shards)).zip(tried) {
        let state = locked.shard(shard).map(|shard| {
            let current = apply::<S>(shard, id, item, now, true);
            match attempt {
                Some(refused) if !refused.allowed => {
                    LimitState { allowed: false, retry_at: refused.retry_at, ..current }
                }
                _ => current,
            }
        });
        outcome.push(state);
    }
}

impl Storage for MemoryStorage {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn check(&self) -> impl Future<Output = Result<(), StorageError>> + Send {
        ready(Ok(()))
    }

    fn reset(&self) -> impl Future<Output = Result<(), StorageError>> + Send {
        let i = &self.inner;
        i.fixed.clear();
        i.moving.clear();
        i.sliding.clear();
        i.gcra.clear();
        ready(Ok(()))
    }
}

impl<S: MemoryStrategy> Supports<S> for MemoryStorage {
    fn decide<'a>(
        &'a self,
        _: S,
        batch: &'a Batch<'a>,
    ) -> impl Future<Output = Result<Outcome, StorageError>> + Send + 'a {
        ready(Ok(S::decide_in(self, batch)))
    }

    fn clear<'a>(
        &'a self,
        _: S,
        limit: &'a RateLimit,
        key: Key<'a>,
    ) -> impl Future<Output = Result<(), StorageError>> + Send + 'a {
        S::clear_in(self, limit, &key);
        ready(Ok(()))
    }
}

crate::dyn_storage!(MemoryStorage: FixedWindow, MovingWindow, SlidingWindowCounter, Gcra; immediate);

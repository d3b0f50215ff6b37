//! Redis (and Valkey) storage for limiter.
//!
//! Every limit of a request is decided by one server-side script call (one
//! round trip), atomically, on the keys, value types and TTLs of Python's
//! `limits` 5.8 (`LIMITS:LIMITER/<identifiers…>/<amount>/<multiples>/<granularity>`),
//! so a Flask-Limiter service and a Rust service on the same Redis enforce
//! one limit together.
//!
//! All four strategies: the fixed window, the moving window and the sliding
//! window counter on the `limits` layout (a STRING counter; a LIST of hit
//! times; `{key}` and `{key}/-1` counters shifted by RENAME, windows starting
//! at the first hit), and GCRA on a `gcra:` key of its own holding the
//! theoretical arrival time in microseconds on the server's clock.
//!
//! ```no_run
//! use limiter_core::{FixedWindow, RateLimiter};
//! use limiter_redis::RedisStorage;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let storage = RedisStorage::connect("redis://127.0.0.1:6379").await?;
//! let limiter = RateLimiter::new(FixedWindow, storage);
//! let limit = "10/minute".parse()?;
//! assert!(limiter.hit(&limit, &["127.0.0.1", "login"], 1).await?);
//! # Ok(())
//! # }
//! ```
//!
//! # Deployments
//!
//! [`RedisStorage::connect`] reads `limits`' URIs (each also spelled with
//! `valkey`): one server over TCP (`redis://`), TLS (`rediss://`) or a unix
//! socket (`redis+unix://`, `unix://`); a cluster (`redis+cluster://`); or
//! the master of a sentinel service (`redis+sentinel://`).
//!
//! * **Cluster.** A script may only touch keys of one slot, and `limits`'
//!   keys carry no hash tag (the sliding window's `{key}` and `{key}/-1`
//!   share the tag `{key}`, so one item never spans two slots). A request's
//!   items are grouped by slot; one slot is one atomic call as on a single
//!   server. Across slots, peeks and sequential batches without stop send
//!   one call per slot, all at once, and put the answers back in batch
//!   order (one parallel round trip). Sequential batches that stop at the
//!   first refusal (the default) and all-or-nothing batches take two
//!   parallel round trips: a trial that consumes nothing, then the real
//!   decision of the items the trial let through. **Atomicity holds per
//!   slot only**: a request racing between the two phases can make one
//!   slot refuse after another consumed; the request is then refused and
//!   the consumed hits stay counted (over-counting, never over-admitting).
//!   When the call of one slot group fails (a node down, a timeout), the
//!   request fails with that error, for the failure policy to answer, but
//!   the hits the other groups' calls counted stay counted.
//!   A `NOSCRIPT` from any node loads the script on every node (redis-rs
//!   sends `SCRIPT LOAD` to all of them, replicas included) and sends the
//!   call again. Cluster topology changes (`MOVED`, `ASK`, `TRYAGAIN`,
//!   `CLUSTERDOWN`) are followed by this crate, which sends a call again
//!   only after such an answer: the node did not run it.
//!   A key prefix with a hash tag (`key_prefix = "{LIMITS}"`, which
//!   `limits` also accepts) puts every key in one slot: one atomic call per
//!   request whatever the mode, at the price of all limiting load on one
//!   master.
//! * **Sentinel.** The sentinels are asked for the master
//!   (`SENTINEL get-master-addr-by-name`) at startup (an unknown service
//!   fails there) and whenever the connection fails as a lost or demoted
//!   master fails (I/O errors, timeouts, `READONLY`, `MASTERDOWN`); they
//!   are also asked every [`RedisOptions::sentinel_check_interval`], because
//!   after `SENTINEL FAILOVER` the old master keeps accepting writes for
//!   seconds. Calls during a failover fail fast with an `Unavailable` or
//!   `Timeout` error, for the failure policy to answer. Every call goes to
//!   the master: reads from replicas (`use_replicas`) would only serve
//!   peeks, with stale counts.
//! * **TLS.** rustls with the ring provider; the system's trusted roots, or
//!   [`RedisOptions::tls_ca_certs`]; a client certificate for mutual TLS.
//!   TLS to cluster nodes and sentinels is not offered (`limits` has no
//!   URI for it).
//!
//! Connect and call timeouts are always set ([`RedisOptions`]); the names
//! of Flask-Limiter's `RATELIMIT_STORAGE_OPTIONS` are read by
//! [`RedisOptions::from_pairs`].
//!
//! # A failed call is never sent again
//!
//! A call that fails once sent (no answer within the timeout, the
//! connection lost) may have run on the server; sending it again could
//! count its hits twice. So it is never sent again, on any topology (on a
//! cluster, redis-rs' own retries are turned off): the request fails with a
//! `Timeout` or `Unavailable` [`StorageError`], and the failure policy
//! answers it. Only an answer saying the server did not run the call (a
//! cluster redirection, a missing script) leads to sending it again.
//!
//! # GCRA in whole microseconds
//!
//! The GCRA script keeps the theoretical arrival time (TAT) in whole
//! microseconds (Lua numbers are doubles: nanoseconds since the epoch would
//! not be exact). A hit of cost `c` on `amount` per `window` moves the TAT
//! by `s = c × window / amount`; Redis moves it by `⌈s⌉` µs, at least 1, so
//! it never admits more than the limit, and exactly as the memory storage
//! (which counts nanoseconds) whenever `s` is a whole number of
//! microseconds, as in every usual limit (`10/second`: 100 000 µs). When it
//! is not, Redis admits fewer, never more: at most one hit per `⌈s⌉` µs in
//! the long run, `amount × s / ⌈s⌉` per window, which is more than
//! `amount × s / (s + 1)` (`300000/second`: `s` = 3.33 µs taken as 4,
//! 250 000 a second; a burst at one instant likewise takes `⌈s⌉` per hit).
//! A limit of more than one hit per microsecond of its window (`s` < 1)
//! admits at most one hit per microsecond: `2000000/second` admits at most
//! 1 000 000 a second.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use limiter_core::storage::{Action, Batch, Item, Key, LimitState, Mode, Outcome, Storage, Supports};
use limiter_core::strategy::{gcra_state, sliding_window_state};
use limiter_core::{
    FixedWindow, Gcra, MovingWindow, RateLimit, SlidingWindowCounter, StorageError, StorageErrorKind, Timestamp,
};
use redis::Value;

mod cluster;
mod connection;
mod options;
mod script_call;
mod sentinel;
mod slot;
mod uri;

use connection::Link;
pub use options::{DEFAULT_KEY_PREFIX, OPTION_NAMES, RedisOptions};
use script_call::ScriptCall;

const NAME: &str = "redis";

/// A Redis or Valkey deployment: one server (TCP, TLS or unix socket), a
/// cluster, or a sentinel-watched master; connect and response timeouts
/// always set, reconnecting by itself.
#[derive(Clone)]
pub struct RedisStorage {
    link: Link,
    prefix: String,
    fixed_window: redis::Script,
    gcra: redis::Script,
    moving_window: redis::Script,
    sliding_window: redis::Script,
    clear_keys: redis::Script,
    address: String,
}

impl fmt::Debug for RedisStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStorage").field("address", &self.address).field("prefix", &self.prefix).finish()
    }
}

pub(crate) fn error(e: &redis::RedisError) -> StorageError {
    let kind = if e.is_timeout() {
        StorageErrorKind::Timeout
    } else if e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped() {
        StorageErrorKind::Unavailable
    } else if matches!(e.code(), Some("READONLY" | "MASTERDOWN" | "LOADING" | "CLUSTERDOWN" | "TRYAGAIN")) {
        // A failover in progress: the next calls go to the new master.
        StorageErrorKind::Unavailable
    } else {
        StorageErrorKind::Rejected
    };
    StorageError::new(kind, NAME, e.to_string())
}

impl RedisStorage {
    /// Connects to `url` with the default options. The schemes are those
    /// of `limits`, each also spelled with `valkey`:
    ///
    /// | URI | deployment |
    /// | --- | --- |
    /// | `redis://[[user]:password@]host:port[/db]` | one server |
    /// | `rediss://…` (same form) | one server over TLS |
    /// | `redis+unix:///path/to/redis.sock[?db=N&password=…]`, `unix://…` | one server on a unix socket |
    /// | `redis+cluster://[[user]:password@]host:port,host:port,…` | a cluster, from any of its nodes |
    /// | `redis+sentinel://[[user]:password@]host:port,host:port/service[/db]` | the master of a sentinel service |
    ///
    /// The query string of a one-server URI is read as redis-py reads it:
    /// `protocol`, `db` (which wins over the path's), on a unix socket
    /// `username` and `password`, and the options `ssl_ca_certs`,
    /// `ssl_certfile`, `ssl_keyfile` (`rediss://` only), `socket_timeout`,
    /// `socket_connect_timeout`, which override those of
    /// [`connect_with`](Self::connect_with) (in redis-py the query string
    /// wins over keyword arguments). `ssl_cert_reqs=required` is accepted;
    /// any other parameter is an error naming it, never silently ignored.
    /// Cluster and sentinel URIs take no query string.
    ///
    /// # Errors
    ///
    /// [`StorageError`] if the URL is malformed or the server cannot be
    /// reached in time; the message never contains the password.
    pub async fn connect(url: &str) -> Result<Self, StorageError> {
        RedisStorage::connect_with(url, RedisOptions::default()).await
    }

    /// Connects to `url` with `options`.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect); also a TLS file of `options` that
    /// cannot be read.
    pub async fn connect_with(url: &str, mut options: RedisOptions) -> Result<Self, StorageError> {
        let address = limiter_core::engine::redact_uri(url);
        let target = uri::parse(url, &mut options, &address)?;
        let link = Link::connect(target, &options, &address).await?;
        Ok(RedisStorage {
            link,
            prefix: options.key_prefix,
            fixed_window: redis::Script::new(concat!(
                include_str!("lua/fixed_window.lua"),
                include_str!("lua/driver.lua")
            )),
            gcra: redis::Script::new(concat!(include_str!("lua/gcra.lua"), include_str!("lua/driver.lua"))),
            moving_window: redis::Script::new(concat!(
                include_str!("lua/moving_window.lua"),
                include_str!("lua/driver.lua")
            )),
            sliding_window: redis::Script::new(concat!(
                include_str!("lua/sliding_window.lua"),
                include_str!("lua/driver.lua")
            )),
            clear_keys: redis::Script::new(include_str!("lua/clear_keys.lua")),
            address,
        })
    }

    fn key(&self, limit: &RateLimit, key: &Key<'_>) -> String {
        self.key_in("", limit, key)
    }

    /// `<prefix>:<part><key_for>`.
    fn key_in(&self, part: &str, limit: &RateLimit, key: &Key<'_>) -> String {
        let mut out = String::with_capacity(self.prefix.len() + part.len() + 48);
        out.push_str(&self.prefix);
        out.push(':');
        out.push_str(part);
        limit.write_key(key.namespace(), key.identifiers(), &mut out);
        out
    }

    /// Deletes `keys` (which may lie in different cluster slots).
    async fn delete(&self, keys: Vec<String>) -> Result<(), StorageError> {
        if self.link.is_cluster() {
            let calls =
                keys.into_iter().map(|key| async move { self.link.query::<i64>(redis::cmd("DEL").arg(key)).await });
            futures_util::future::try_join_all(calls).await.map(drop).map_err(|e| error(&e))
        } else {
            self.link.query::<i64>(redis::cmd("DEL").arg(keys)).await.map(drop).map_err(|e| error(&e))
        }
    }

    /// Decides `batch` with strategy `S`: one script call, or on a cluster
    /// one per slot group (see [`cluster`]).
    async fn decide_batch<S: ScriptStrategy>(&self, batch: &Batch<'_>) -> Result<Outcome, StorageError> {
        let items: Vec<&Item<'_>> = batch.items.iter().collect();
        let states = if self.link.is_cluster() {
            cluster::decide::<S>(self, batch.mode, &items, batch.now).await?
        } else {
            self.call::<S>(Run::from(batch.mode), &items, batch.now).await?
        };
        let mut outcome = Outcome::with_capacity(states.len());
        for state in states {
            outcome.push(state);
        }
        Ok(outcome)
    }

    /// One script call deciding `items` (all in one slot on a cluster).
    async fn call<S: ScriptStrategy>(
        &self,
        run: Run,
        items: &[&Item<'_>],
        now: Timestamp,
    ) -> Result<Vec<Option<LimitState>>, StorageError> {
        let mut call = ScriptCall::new(S::script(self));
        call.arg(run as u8).arg(S::clock(now));
        for item in items {
            S::push(self, &mut call, item);
        }
        let reply: Vec<Value> = self.link.invoke(&call).await.map_err(|e| error(&e))?;
        let states = S::read(self, &reply, items, now)?;
        if states.len() != items.len() {
            return Err(short(S::NAME));
        }
        Ok(states)
    }
}

/// How the scripts' driver decides a batch (its ARGV[1]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Run {
    /// Sequential, stopping at the first refusal.
    Stop = 0,
    /// Sequential, every item.
    NoStop = 1,
    /// Every item consumes only if all fit.
    AllOrNothing = 2,
    /// Every item tested alone, nothing consumed.
    Peek = 3,
    /// All or nothing decided but never consumed: the trial phase of a
    /// batch spanning cluster slots.
    Trial = 4,
}

impl From<Mode> for Run {
    fn from(mode: Mode) -> Self {
        match mode {
            Mode::Sequential { stop_at_first_breach: true } => Run::Stop,
            Mode::Sequential { stop_at_first_breach: false } => Run::NoStop,
            Mode::AllOrNothing => Run::AllOrNothing,
            _ => Run::Peek,
        }
    }
}

fn short(script: &str) -> StorageError {
    StorageError::new(StorageErrorKind::Protocol, NAME, format!("short reply from the {script} script"))
}

/// What a strategy's script needs and answers.
trait ScriptStrategy {
    /// Its name in errors.
    const NAME: &'static str;
    /// Its script.
    fn script(storage: &RedisStorage) -> &redis::Script;
    /// ARGV[2]: the time, for the strategies that take the limiter's.
    fn clock(_now: Timestamp) -> String {
        String::from("0")
    }
    /// The first key of `item` (every key of an item lies in its slot):
    /// by default its one window key, as `limits` names it.
    fn first_key(storage: &RedisStorage, item: &Item<'_>) -> String {
        storage.key(&item.limit, &item.key)
    }
    /// The keys and arguments of `item`: by default its one window key and
    /// the window in seconds.
    fn push(storage: &RedisStorage, call: &mut ScriptCall<'_>, item: &Item<'_>) {
        call.key(storage.key(&item.limit, &item.key));
        item_args(call, item, item.limit.window_secs());
    }
    /// The states of `items` from the script's reply.
    fn read(
        storage: &RedisStorage,
        reply: &[Value],
        items: &[&Item<'_>],
        now: Timestamp,
    ) -> Result<Vec<Option<LimitState>>, StorageError>;
}

/// A script's reply cut into each item's `fields` values, or an error if it
/// does not hold exactly that many per item.
fn per_item<'r>(
    reply: &'r [Value],
    items: &[&Item<'_>],
    fields: usize,
    strategy: &'static str,
) -> Result<std::slice::Chunks<'r, Value>, StorageError> {
    if reply.len() == items.len() * fields { Ok(reply.chunks(fields)) } else { Err(short(strategy)) }
}

/// A reply field as a signed number (TTLs are negative for missing keys).
fn int(value: &Value) -> Result<i64, StorageError> {
    redis::from_redis_value::<i64>(value.clone())
        .map_err(|e| StorageError::new(StorageErrorKind::Protocol, NAME, e.to_string()))
}

impl Storage for RedisStorage {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn check(&self) -> Result<(), StorageError> {
        self.link.query::<String>(&redis::cmd("PING")).await.map(drop).map_err(|e| error(&e))
    }

    fn reset(&self) -> impl Future<Output = Result<(), StorageError>> + Send {
        let pattern = format!("{}:*", self.prefix);
        async move {
            if self.link.is_cluster() {
                // KEYS goes to every primary; each key is deleted in its slot.
                let keys: Vec<String> =
                    self.link.query(redis::cmd("KEYS").arg(&pattern)).await.map_err(|e| error(&e))?;
                return self.delete(keys).await;
            }
            let mut call = ScriptCall::new(&self.clear_keys);
            call.key(pattern);
            self.link.invoke::<i64>(&call).await.map(drop).map_err(|e| error(&e))
        }
    }
}

impl ScriptStrategy for FixedWindow {
    const NAME: &'static str = "fixed-window";

    fn script(storage: &RedisStorage) -> &redis::Script {
        &storage.fixed_window
    }

    fn read(
        _: &RedisStorage,
        reply: &[Value],
        items: &[&Item<'_>],
        now: Timestamp,
    ) -> Result<Vec<Option<LimitState>>, StorageError> {
        let mut states = Vec::with_capacity(items.len());
        for (item, fields) in items.iter().zip(per_item(reply, items, 4, Self::NAME)?) {
            let [evaluated, allowed, count, pttl] = fields else { return Err(short(Self::NAME)) };
            if int(evaluated)? == 0 {
                states.push(None);
                continue;
            }
            let amount = item.limit.amount();
            let count = u64::try_from(int(count)?).unwrap_or(0);
            let reset_at = match u64::try_from(int(pttl)?) {
                Ok(ms) if ms > 0 => now.saturating_add(Duration::from_millis(ms)),
                _ => now,
            };
            let remaining = amount.saturating_sub(count);
            states.push(Some(if int(allowed)? == 1 {
                LimitState::allowed(remaining, reset_at)
            } else {
                LimitState::limited(remaining, reset_at, (item.cost <= amount).then_some(reset_at))
            }));
        }
        Ok(states)
    }
}

impl Supports<FixedWindow> for RedisStorage {
    fn decide<'a>(
        &'a self,
        _: FixedWindow,
        batch: &'a Batch<'a>,
    ) -> impl Future<Output = Result<Outcome, StorageError>> + Send + 'a {
        self.decide_batch::<FixedWindow>(batch)
    }

    fn clear<'a>(
        &'a self,
        _: FixedWindow,
        limit: &'a RateLimit,
        key: Key<'a>,
    ) -> impl Future<Output = Result<(), StorageError>> + Send + 'a {
        let key = self.key(limit, &key);
        self.delete(vec![key])
    }
}

/// Every item's arguments, after its keys: amount, window (in the unit the
/// script wants), cost, and whether it is only tested.
fn item_args(call: &mut ScriptCall<'_>, item: &Item<'_>, window: u64) {
    call.arg(item.limit.amount()).arg(window).arg(item.cost).arg(u8::from(item.action == Action::Peek));
}

const GCRA_KEY: &str = "gcra:";

impl ScriptStrategy for Gcra {
    const NAME: &'static str = "GCRA";

    fn script(storage: &RedisStorage) -> &redis::Script {
        &storage.gcra
    }

    fn first_key(storage: &RedisStorage, item: &Item<'_>) -> String {
        storage.key_in(GCRA_KEY, &item.limit, &item.key)
    }

    fn push(storage: &RedisStorage, call: &mut ScriptCall<'_>, item: &Item<'_>) {
        call.key(storage.key_in(GCRA_KEY, &item.limit, &item.key));
        item_args(call, item, item.limit.window_nanos() / 1_000);
    }

    fn read(
        _: &RedisStorage,
        reply: &[Value],
        items: &[&Item<'_>],
        now: Timestamp,
    ) -> Result<Vec<Option<LimitState>>, StorageError> {
        let Some((server_now, fields)) = reply.split_first() else { return Err(short(Self::NAME)) };
        // The script decides on the server's clock; times are reported on
        // the limiter's, shifted by the difference.
        let server_now = Timestamp::from_nanos(number(server_now)?.saturating_mul(1_000));
        let mut states = Vec::with_capacity(items.len());
        for (item, fields) in items.iter().zip(per_item(fields, items, 3, Self::NAME)?) {
            let [evaluated, allowed, tat] = fields else { return Err(short(Self::NAME)) };
            if number(evaluated)? == 0 {
                states.push(None);
                continue;
            }
            let tat = Timestamp::from_nanos(number(tat)?.saturating_mul(1_000));
            let state = gcra_state(&item.limit, tat, server_now, number(allowed)? == 1, item.cost);
            states.push(Some(shift_state(state, server_now, now)));
        }
        Ok(states)
    }
}

impl Supports<Gcra> for RedisStorage {
    fn decide<'a>(
        &'a self,
        _: Gcra,
        batch: &'a Batch<'a>,
    ) -> impl Future<Output = Result<Outcome, StorageError>> + Send + 'a {
        self.decide_batch::<Gcra>(batch)
    }

    fn clear<'a>(
        &'a self,
        _: Gcra,
        limit: &'a RateLimit,
        key: Key<'a>,
    ) -> impl Future<Output = Result<(), StorageError>> + Send + 'a {
        let key = self.key_in(GCRA_KEY, limit, &key);
        self.delete(vec![key])
    }
}

/// A state computed on the server's clock, moved onto the limiter's.
fn shift_state(mut state: LimitState, server_now: Timestamp, now: Timestamp) -> LimitState {
    fn shift(t: Timestamp, server_now: Timestamp, now: Timestamp) -> Timestamp {
        now.saturating_add(t.saturating_duration_since(server_now))
    }
    state.reset_at = shift(state.reset_at, server_now, now);
    state.retry_at = state.retry_at.map(|t| shift(t, server_now, now));
    state
}

/// A reply field as a number.
fn number(value: &Value) -> Result<u64, StorageError> {
    redis::from_redis_value::<u64>(value.clone())
        .map_err(|e| StorageError::new(StorageErrorKind::Protocol, NAME, e.to_string()))
}

/// A reply field holding float seconds (`''`: none), an entry of the
/// moving-window log `key`, as a timestamp. Another writer (a Python peer,
/// a person) may have put anything there: a value that is no time this side
/// can hold (`inf`, `nan`, `1e300`, negative, not a number) is a `Protocol`
/// error naming the key.
fn seconds(value: &Value, key: impl FnOnce() -> String) -> Result<Option<Timestamp>, StorageError> {
    let text = redis::from_redis_value::<String>(value.clone())
        .map_err(|e| StorageError::new(StorageErrorKind::Protocol, NAME, e.to_string()))?;
    if text.is_empty() {
        return Ok(None);
    }
    text.trim()
        .parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .and_then(|since_epoch| u64::try_from(since_epoch.as_nanos()).ok())
        .map(|nanos| Some(Timestamp::from_nanos(nanos)))
        .ok_or_else(|| {
            StorageError::new(
                StorageErrorKind::Protocol,
                NAME,
                format!(
                    "the moving-window log {} holds {text:?}, not a time in seconds since the Unix epoch; \
                     delete the key (it expires after the window by itself)",
                    key()
                ),
            )
        })
}

/// `now` as `limits` writes hit times: seconds with a fraction.
fn float_seconds(now: Timestamp) -> String {
    let nanos = now.as_nanos();
    format!("{}.{:06}", nanos / 1_000_000_000, (nanos % 1_000_000_000) / 1_000)
}

impl ScriptStrategy for MovingWindow {
    const NAME: &'static str = "moving-window";

    fn script(storage: &RedisStorage) -> &redis::Script {
        &storage.moving_window
    }

    fn clock(now: Timestamp) -> String {
        float_seconds(now)
    }

    fn read(
        storage: &RedisStorage,
        reply: &[Value],
        items: &[&Item<'_>],
        now: Timestamp,
    ) -> Result<Vec<Option<LimitState>>, StorageError> {
        let mut states = Vec::with_capacity(items.len());
        for (item, fields) in items.iter().zip(per_item(reply, items, 5, Self::NAME)?) {
            let [evaluated, allowed, count, oldest, blocking] = fields else { return Err(short(Self::NAME)) };
            if number(evaluated)? == 0 {
                states.push(None);
                continue;
            }
            let window = item.limit.window();
            let amount = item.limit.amount();
            let remaining = amount.saturating_sub(number(count)?);
            let key = || storage.key(&item.limit, &item.key);
            // `limits`: the oldest hit in the window plus the window; now plus the window if none.
            let reset_at = seconds(oldest, key)?.unwrap_or(now).saturating_add(window);
            states.push(Some(if number(allowed)? == 1 {
                LimitState::allowed(remaining, reset_at)
            } else {
                // The blocking hit leaves the window just after `hit + window`.
                let blocking = seconds(blocking, key)?;
                let retry = (item.cost <= amount).then(|| {
                    blocking
                        .map_or(now, |hit| hit.saturating_add(window).saturating_add(Duration::from_micros(1)).max(now))
                });
                LimitState::limited(remaining, reset_at, retry)
            }));
        }
        Ok(states)
    }
}

impl Supports<MovingWindow> for RedisStorage {
    fn decide<'a>(
        &'a self,
        _: MovingWindow,
        batch: &'a Batch<'a>,
    ) -> impl Future<Output = Result<Outcome, StorageError>> + Send + 'a {
        self.decide_batch::<MovingWindow>(batch)
    }

    fn clear<'a>(
        &'a self,
        _: MovingWindow,
        limit: &'a RateLimit,
        key: Key<'a>,
    ) -> impl Future<Output = Result<(), StorageError>> + Send + 'a {
        Supports::<FixedWindow>::clear(self, FixedWindow, limit, key)
    }
}

impl RedisStorage {
    /// `limits`' two sliding-window keys: `<prefix>:{<key>}/-1` and
    /// `<prefix>:{<key>}` (the braces keep both in one cluster slot).
    fn sliding_keys(&self, limit: &RateLimit, key: &Key<'_>) -> (String, String) {
        let mut current = String::with_capacity(self.prefix.len() + 52);
        current.push_str(&self.prefix);
        current.push_str(":{");
        limit.write_key(key.namespace(), key.identifiers(), &mut current);
        current.push('}');
        (format!("{current}/-1"), current)
    }
}

impl ScriptStrategy for SlidingWindowCounter {
    const NAME: &'static str = "sliding-window";

    fn script(storage: &RedisStorage) -> &redis::Script {
        &storage.sliding_window
    }

    fn first_key(storage: &RedisStorage, item: &Item<'_>) -> String {
        storage.sliding_keys(&item.limit, &item.key).0
    }

    fn push(storage: &RedisStorage, call: &mut ScriptCall<'_>, item: &Item<'_>) {
        let (previous, current) = storage.sliding_keys(&item.limit, &item.key);
        call.key(previous).key(current);
        item_args(call, item, item.limit.window_secs());
    }

    fn read(
        _: &RedisStorage,
        reply: &[Value],
        items: &[&Item<'_>],
        now: Timestamp,
    ) -> Result<Vec<Option<LimitState>>, StorageError> {
        let mut states = Vec::with_capacity(items.len());
        for (item, fields) in items.iter().zip(per_item(reply, items, 6, Self::NAME)?) {
            let [evaluated, allowed, prev, prev_ttl, cur, cur_ttl] = fields else { return Err(short(Self::NAME)) };
            let (prev, prev_ttl, cur, cur_ttl) = (int(prev)?, int(prev_ttl)?, int(cur)?, int(cur_ttl)?);
            if int(evaluated)? == 0 {
                states.push(None);
                continue;
            }
            let window_ms = i64::try_from(item.limit.window_secs().saturating_mul(1_000)).unwrap_or(i64::MAX);
            // What is left of the current window: the previous count's
            // TTL, or, before any shift, the current one's beyond a window.
            let left_ms = if prev_ttl > 0 { prev_ttl } else { (cur_ttl - window_ms).max(0) };
            let left = Duration::from_millis(u64::try_from(left_ms).unwrap_or(0));
            let (prev, cur) = (u64::try_from(prev).unwrap_or(0), u64::try_from(cur).unwrap_or(0));
            let prev = if prev_ttl > 0 { prev } else { 0 };
            states.push(Some(sliding_window_state(&item.limit, prev, cur, left, now, int(allowed)? == 1, item.cost)));
        }
        Ok(states)
    }
}

impl Supports<SlidingWindowCounter> for RedisStorage {
    fn decide<'a>(
        &'a self,
        _: SlidingWindowCounter,
        batch: &'a Batch<'a>,
    ) -> impl Future<Output = Result<Outcome, StorageError>> + Send + 'a {
        self.decide_batch::<SlidingWindowCounter>(batch)
    }

    fn clear<'a>(
        &'a self,
        _: SlidingWindowCounter,
        limit: &'a RateLimit,
        key: Key<'a>,
    ) -> impl Future<Output = Result<(), StorageError>> + Send + 'a {
        let (previous, current) = self.sliding_keys(limit, &key);
        self.delete(vec![previous, current])
    }
}

limiter_core::dyn_storage!(RedisStorage: FixedWindow, MovingWindow, SlidingWindowCounter, Gcra);

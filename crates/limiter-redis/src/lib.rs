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

use std::fmt;
use std::future::Future;
use std::time::Duration;

use limiter_core::storage::{Action, Batch, Item, Key, LimitState, Mode, Outcome, Storage, Supports};
use limiter_core::strategy::{gcra_state, sliding_window_state};
use limiter_core::{
    FixedWindow, Gcra, MovingWindow, RateLimit, SlidingWindowCounter, StorageError, StorageErrorKind, Timestamp,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

const NAME: &str = "redis";

/// The key prefix `limits` puts in front of every Redis key.
pub const DEFAULT_KEY_PREFIX: &str = "LIMITS";

/// A Redis or Valkey server, through one multiplexed connection that
/// reconnects by itself, with connect and response timeouts always set.
#[derive(Clone)]
pub struct RedisStorage {
    connection: ConnectionManager,
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

/// Connection settings.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RedisOptions {
    /// The prefix of every key (`limits`' `key_prefix`, default `LIMITS`).
    pub key_prefix: String,
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// How long one call may take.
    pub response_timeout: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_millis(500),
        }
    }
}

fn error(e: &redis::RedisError) -> StorageError {
    let kind = if e.is_timeout() {
        StorageErrorKind::Timeout
    } else if e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped() {
        StorageErrorKind::Unavailable
    } else {
        StorageErrorKind::Rejected
    };
    StorageError::new(kind, NAME, e.to_string())
}

impl RedisStorage {
    /// Connects to `url` (`redis://[user:password@]host:port[/db]`) with the
    /// default options.
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
    /// As [`connect`](Self::connect).
    pub async fn connect_with(url: &str, options: RedisOptions) -> Result<Self, StorageError> {
        let address = limiter_core::engine::redact_uri(url);
        let client = redis::Client::open(url).map_err(|e| {
            StorageError::new(
                StorageErrorKind::Rejected,
                NAME,
                format!("invalid Redis URL {address}: {}", e.kind_name()),
            )
        })?;
        // Reconnect quickly and give up fast: while the server is away the
        // failure policy answers, and a call must not wait on a long backoff.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(Some(options.response_timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(100));
        let connection = ConnectionManager::new_with_config(client, config).await.map_err(|e| error(&e))?;
        Ok(RedisStorage {
            connection,
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
}

trait RedisErrorName {
    fn kind_name(&self) -> String;
}

impl RedisErrorName for redis::RedisError {
    /// The error's category without its details, which may echo the URL.
    fn kind_name(&self) -> String {
        format!("{:?}", self.kind())
    }
}

impl Storage for RedisStorage {
    fn name(&self) -> &'static str {
        NAME
    }

    fn check(&self) -> impl Future<Output = Result<(), StorageError>> + Send {
        let mut connection = self.connection.clone();
        async move { redis::cmd("PING").query_async::<String>(&mut connection).await.map(drop).map_err(|e| error(&e)) }
    }

    fn reset(&self) -> impl Future<Output = Result<(), StorageError>> + Send {
        let mut connection = self.connection.clone();
        let pattern = format!("{}:*", self.prefix);
        let script = self.clear_keys.clone();
        async move { script.key(pattern).invoke_async::<i64>(&mut connection).await.map(drop).map_err(|e| error(&e)) }
    }
}

impl Supports<FixedWindow> for RedisStorage {
    fn decide<'a>(
        &'a self,
        _: FixedWindow,
        batch: &'a Batch<'a>,
    ) -> impl Future<Output = Result<Outcome, StorageError>> + Send + 'a {
        let mut connection = self.connection.clone();
        let mut invocation = self.fixed_window.prepare_invoke();
        invocation.arg(mode_code(batch.mode)).arg(0);
        for item in batch.items {
            invocation.key(self.key(&item.limit, &item.key));
            item_args(&mut invocation, item, item.limit.window_secs());
        }
        async move {
            let reply: Vec<i64> = invocation.invoke_async(&mut connection).await.map_err(|e| error(&e))?;
            let now = batch.now;
            let mut outcome = Outcome::with_capacity(batch.items.len());
            for (item, fields) in batch.items.iter().zip(reply.chunks(4)) {
                let [evaluated, allowed, count, pttl] = fields else {
                    return Err(StorageError::new(StorageErrorKind::Protocol, NAME, "short reply from the script"));
                };
                if *evaluated == 0 {
                    outcome.push(None);
                    continue;
                }
                let amount = item.limit.amount();
                let count = u64::try_from(*count).unwrap_or(0);
                let reset_at = match u64::try_from(*pttl) {
                    Ok(ms) if ms > 0 => now.saturating_add(Duration::from_millis(ms)),
                    _ => now,
                };
                let remaining = amount.saturating_sub(count);
                outcome.push(Some(if *allowed == 1 {
                    LimitState::allowed(remaining, reset_at)
                } else {
                    LimitState::limited(remaining, reset_at, (item.cost <= amount).then_some(reset_at))
                }));
            }
            if outcome.states().len() != batch.items.len() {
                return Err(StorageError::new(StorageErrorKind::Protocol, NAME, "short reply from the script"));
            }
            Ok(outcome)
        }
    }

    fn clear<'a>(
        &'a self,
        _: FixedWindow,
        limit: &'a RateLimit,
        key: Key<'a>,
    ) -> impl Future<Output = Result<(), StorageError>> + Send + 'a {
        let mut connection = self.connection.clone();
        let key = self.key(limit, &key);
        async move { redis::cmd("DEL").arg(key).query_async::<i64>(&mut connection).await.map(drop).map_err(|e| error(&e)) }
    }
}

/// Every item's arguments, after its keys: amount, window (in the unit the
/// script wants), cost, and whether it is only tested.
fn item_args(invocation: &mut redis::ScriptInvocation<'_>, item: &Item<'_>, window: u64) {
    invocation.arg(item.limit.amount()).arg(window).arg(item.cost).arg(u8::from(item.action == Action::Peek));
}

/// The scripts' code for a batch mode.
fn mode_code(mode: Mode) -> u8 {
    match mode {
        Mode::Sequential { stop_at_first_breach: true } => 0,
        Mode::Sequential { stop_at_first_breach: false } => 1,
        Mode::AllOrNothing => 2,
        _ => 3,
    }
}

const GCRA_KEY: &str = "gcra:";

impl Supports<Gcra> for RedisStorage {
    fn decide<'a>(
        &'a self,
        _: Gcra,
        batch: &'a Batch<'a>,
    ) -> impl Future<Output = Result<Outcome, StorageError>> + Send + 'a {
        let mut connection = self.connection.clone();
        let mut invocation = self.gcra.prepare_invoke();
        let now = batch.now;
        invocation.arg(mode_code(batch.mode)).arg(0);
        for item in batch.items {
            invocation.key(self.key_in(GCRA_KEY, &item.limit, &item.key));
            item_args(&mut invocation, item, item.limit.window_nanos() / 1_000);
        }
        async move {
            let reply: Vec<redis::Value> = invocation.invoke_async(&mut connection).await.map_err(|e| error(&e))?;
            let short = || StorageError::new(StorageErrorKind::Protocol, NAME, "short reply from the GCRA script");
            let Some((server_now, items)) = reply.split_first() else { return Err(short()) };
            if items.len() != batch.items.len() * 3 {
                return Err(short());
            }
            // The script decides on the server's clock; times are reported on
            // the limiter's, shifted by the difference.
            let server_now = Timestamp::from_nanos(number(server_now)?.saturating_mul(1_000));
            let mut outcome = Outcome::with_capacity(batch.items.len());
            for (item, fields) in batch.items.iter().zip(items.chunks(3)) {
                let [evaluated, allowed, tat] = fields else { return Err(short()) };
                if number(evaluated)? == 0 {
                    outcome.push(None);
                    continue;
                }
                let tat = Timestamp::from_nanos(number(tat)?.saturating_mul(1_000));
                let state = gcra_state(&item.limit, tat, server_now, number(allowed)? == 1, item.cost);
                outcome.push(Some(shift_state(state, server_now, now)));
            }
            Ok(outcome)
        }
    }

    fn clear<'a>(
        &'a self,
        _: Gcra,
        limit: &'a RateLimit,
        key: Key<'a>,
    ) -> impl Future<Output = Result<(), StorageError>> + Send + 'a {
        let mut connection = self.connection.clone();
        let key = self.key_in(GCRA_KEY, limit, &key);
        async move { redis::cmd("DEL").arg(key).query_async::<i64>(&mut connection).await.map(drop).map_err(|e| error(&e)) }
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
fn number(value: &redis::Value) -> Result<u64, StorageError> {
    redis::from_redis_value::<u64>(value.clone())
        .map_err(|e| StorageError::new(StorageErrorKind::Protocol, NAME, e.to_string()))
}

/// A reply field holding float seconds (`''`: none), as a timestamp.
fn seconds(value: &redis::Value) -> Result<Option<Timestamp>, StorageError> {
    let text = redis::from_redis_value::<String>(value.clone())
        .map_err(|e| StorageError::new(StorageErrorKind::Protocol, NAME, e.to_string()))?;
    if text.is_empty() {
        return Ok(None);
    }
    let secs: f64 = text
        .parse()
        .map_err(|_| StorageError::new(StorageErrorKind::Protocol, NAME, format!("not a time: {text:?}")))?;
    Ok(Some(Timestamp::from_system_time(std::time::UNIX_EPOCH + Duration::from_secs_f64(secs.max(0.0)))))
}

/// `now` as `limits` writes hit times: seconds with a fraction.
fn float_seconds(now: Timestamp) -> String {
    let nanos = now.as_nanos();
    format!("{}.{:06}", nanos / 1_000_000_000, (nanos % 1_000_000_000) / 1_000)
}

impl Supports<MovingWindow> for RedisStorage {
    fn decide<'a>(
        &'a self,
        _: MovingWindow,
        batch: &'a Batch<'a>,
    ) -> impl Future<Output = Result<Outcome, StorageError>> + Send + 'a {
        let mut connection = self.connection.clone();
        let mut invocation = self.moving_window.prepare_invoke();
        let now = batch.now;
        invocation.arg(mode_code(batch.mode)).arg(float_seconds(now));
        for item in batch.items {
            invocation.key(self.key(&item.limit, &item.key));
            item_args(&mut invocation, item, item.limit.window_secs());
        }
        async move {
            let reply: Vec<redis::Value> = invocation.invoke_async(&mut connection).await.map_err(|e| error(&e))?;
            let short =
                || StorageError::new(StorageErrorKind::Protocol, NAME, "short reply from the moving-window script");
            if reply.len() != batch.items.len() * 5 {
                return Err(short());
            }
            let mut outcome = Outcome::with_capacity(batch.items.len());
            for (item, fields) in batch.items.iter().zip(reply.chunks(5)) {
                let [evaluated, allowed, count, oldest, blocking] = fields else { return Err(short()) };
                if number(evaluated)? == 0 {
                    outcome.push(None);
                    continue;
                }
                let window = item.limit.window();
                let amount = item.limit.amount();
                let remaining = amount.saturating_sub(number(count)?);
                // `limits`: the oldest hit in the window plus the window; now plus the window if none.
                let reset_at = seconds(oldest)?.unwrap_or(now).saturating_add(window);
                outcome.push(Some(if number(allowed)? == 1 {
                    LimitState::allowed(remaining, reset_at)
                } else {
                    // The blocking hit leaves the window just after `hit + window`.
                    let retry = (item.cost <= amount).then(|| {
                        seconds(blocking).ok().flatten().map_or(now, |hit| {
                            hit.saturating_add(window).saturating_add(Duration::from_micros(1)).max(now)
                        })
                    });
                    LimitState::limited(remaining, reset_at, retry)
                }));
            }
            Ok(outcome)
        }
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

impl Supports<SlidingWindowCounter> for RedisStorage {
    fn decide<'a>(
        &'a self,
        _: SlidingWindowCounter,
        batch: &'a Batch<'a>,
    ) -> impl Future<Output = Result<Outcome, StorageError>> + Send + 'a {
        let mut connection = self.connection.clone();
        let mut invocation = self.sliding_window.prepare_invoke();
        let now = batch.now;
        invocation.arg(mode_code(batch.mode)).arg(0);
        for item in batch.items {
            let (previous, current) = self.sliding_keys(&item.limit, &item.key);
            invocation.key(previous).key(current);
            item_args(&mut invocation, item, item.limit.window_secs());
        }
        async move {
            let reply: Vec<i64> = invocation.invoke_async(&mut connection).await.map_err(|e| error(&e))?;
            if reply.len() != batch.items.len() * 6 {
                return Err(StorageError::new(
                    StorageErrorKind::Protocol,
                    NAME,
                    "short reply from the sliding-window script",
                ));
            }
            let mut outcome = Outcome::with_capacity(batch.items.len());
            for (item, fields) in batch.items.iter().zip(reply.chunks(6)) {
                let &[evaluated, allowed, prev, prev_ttl, cur, cur_ttl] = fields else {
                    return Err(StorageError::new(StorageErrorKind::Protocol, NAME, "short reply"));
                };
                if evaluated == 0 {
                    outcome.push(None);
                    continue;
                }
                let window_ms = i64::try_from(item.limit.window_secs().saturating_mul(1_000)).unwrap_or(i64::MAX);
                // What is left of the current window: the previous count's
                // TTL, or, before any shift, the current one's beyond a window.
                let left_ms = if prev_ttl > 0 { prev_ttl } else { (cur_ttl - window_ms).max(0) };
                let left = Duration::from_millis(u64::try_from(left_ms).unwrap_or(0));
                let (prev, cur) = (u64::try_from(prev).unwrap_or(0), u64::try_from(cur).unwrap_or(0));
                let prev = if prev_ttl > 0 { prev } else { 0 };
                outcome.push(Some(sliding_window_state(&item.limit, prev, cur, left, now, allowed == 1, item.cost)));
            }
            Ok(outcome)
        }
    }

    fn clear<'a>(
        &'a self,
        _: SlidingWindowCounter,
        limit: &'a RateLimit,
        key: Key<'a>,
    ) -> impl Future<Output = Result<(), StorageError>> + Send + 'a {
        let mut connection = self.connection.clone();
        let (previous, current) = self.sliding_keys(limit, &key);
        async move {
            redis::cmd("DEL")
                .arg(previous)
                .arg(current)
                .query_async::<i64>(&mut connection)
                .await
                .map(drop)
                .map_err(|e| error(&e))
        }
    }
}

limiter_core::dyn_storage!(RedisStorage: FixedWindow, MovingWindow, SlidingWindowCounter, Gcra);

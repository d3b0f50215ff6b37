//! Memcached storage for limiter.
//!
//! Counters live where Python's `limits` 5.8 keeps them on Memcached, as the
//! same decimal values with the same TTLs, so a Flask-Limiter service and a
//! Rust service on one Memcached enforce one limit together.
//!
//! # Capabilities
//!
//! | Strategy | Memcached | How |
//! |---|---|---|
//! | [`FixedWindow`] | yes | one `ma` (increment, creating the counter with the window as TTL) per limit |
//! | [`SlidingWindowCounter`] | yes | `mg` of the previous window's count and `ma` of the current one's, windows aligned to the epoch |
//! | [`MovingWindow`](limiter_core::MovingWindow) | no | `limits` has no Memcached layout for it, and a log of hit times rewritten with `gets`/`cas` takes two round trips and retries under contention |
//! | [`Gcra`](limiter_core::Gcra) | no | the same: a theoretical arrival time needs `gets`/`cas`, and memcached cannot update several keys of a batch atomically |
//!
//! The strategies it cannot run are refused by the type system, or, chosen
//! by name, when the limiter is built:
//!
//! ```compile_fail,E0277
//! # fn f(storage: limiter_memcached::MemcachedStorage) {
//! let limiter = limiter_core::RateLimiter::new(limiter_core::MovingWindow, storage);
//! # }
//! ```
//!
//! # Keys (those of `limits`)
//!
//! | Strategy | Key | Value | TTL |
//! |---|---|---|---|
//! | fixed window | `LIMITER/<identifiers…>/<amount>/<multiples>/<granularity>` | decimal count, flags 0 | the window, set by the hit that creates it |
//! | fixed window | `<key>/expires` | the window's end, float seconds (`1795706165.1159978`) | the window |
//! | sliding window counter | `<key>/<int(now / window)>` (and the previous window's) | decimal count | twice the window |
//!
//! Memcached reads an expiry over 30 days (2,592,000 s) as a Unix time, so
//! a TTL over 30 days is sent as one: the limiter's clock (the Unix time)
//! plus the TTL, at the latest 2038-01-19 (memcached's exptime is 32-bit;
//! longer windows end then).
//!
//! There is no `LIMITS:` prefix on Memcached. Sliding windows are those of
//! the limiter's clock (the client's, as in `limits`), so the hosts sharing
//! a Memcached should keep their clocks in sync. A key memcached cannot take
//! as it is (spaces, control characters, non-ASCII identifiers, which
//! `limits` rejects) goes base64-encoded with the meta protocol's `b` flag.
//! Memcached takes keys of up to 250 bytes as sent: at most 250 bytes for a
//! key sent as it is, at most 186 bytes for one sent base64-encoded (4 bytes
//! sent per 3). A longer key is refused with a
//! [`Rejected`](StorageErrorKind::Rejected) error before anything is sent;
//! a fixed window whose `<key>/expires` would be too long goes without it.
//! Several servers
//! (`memcached://h1:p1,h2:p2`) share the keys as pymemcache's `HashClient`
//! shares them (rendezvous hashing of `"<host>:<port>-<key>"` with
//! MurmurHash3), so Python and Rust look for each key on the same server.
//!
//! # Atomicity and round trips
//!
//! Memcached runs no scripts, so a batch is decided by atomic per-key
//! commands. Every limit of a request is read or incremented in **one round
//! trip**: one pipelined write per server, all servers asked at once. Each
//! increment's result decides its item and includes every concurrent hit,
//! so no limit ever admits more than its amount.
//!
//! What the batch's mode says must not stay consumed (the items after the
//! first breach, a refused all-or-nothing batch, a refused sliding-window
//! hit) is decremented again in a **second round trip that only refused
//! requests pay**. A sliding-window count has a key per window, so the
//! decrement cannot reach another window. A fixed-window counter is reused
//! by the next window, so it is decremented plainly only while it had two
//! seconds or more to live (memcached's clock ticks once a second, so it is
//! still the same window a round trip later; the reply's TTL confirms it),
//! and in its last seconds with a CAS, retried a few times, else left
//! counted. Memcached has no transaction across keys, so meanwhile a
//! concurrent request may see the amount being given back and be refused:
//! limits are never looser than with a script-based storage, only
//! sometimes briefly stricter.
//!
//! The hit that creates a fixed window's counter (its reply shows the count
//! equal to its cost and the full window to live) also writes
//! `<key>/expires`, in the same connection but without waiting for the
//! answer. A counter an undo brought back to 0 keeps the `/expires` it has.
//!
//! | Request | Round trips |
//! |---|---|
//! | allowed, or refused with nothing to give back | 1 |
//! | refused, with increments to give back | 2 (+2 per CAS retry, fixed window in its last seconds only) |
//! | `clear` | 1 |
//! | `check` | 1 per server, in parallel |
//! | `reset` | a `lru_crawler metadump` and deletes, per server |
//!
//! Differences from `limits` 5.8: a cost above the amount is refused without
//! being counted (as the other storages of this crate family do); a refused
//! sliding-window hit is judged on the count after its own increment,
//! previous window included (Python re-checks only the current window's
//! count, which lets concurrent hits through); and `reset` works (Python's
//! raises `NotImplementedError`): it lists the keys with `lru_crawler
//! metadump` and deletes those starting with
//! [`reset_prefix`](MemcachedOptions::reset_prefix). TTLs over 30 days
//! (fixed windows over 30 days, sliding windows over 15) are sent as Unix
//! times (see [Keys](#keys-those-of-limits)): `limits` sends them as they
//! are, which memcached reads as a time in 1970, so each of its hits
//! recreates the counter and such limits are never enforced. The keys and
//! values are the same; a Python peer's increments count on counters this
//! crate created, but a counter Python creates expires at once.
//!
//! # URIs
//!
//! - `memcached://host:port`
//! - `memcached://host1:port1,host2:port2` (IPv6 as `[::1]:11211`)
//! - `memcached:///path/to/memcached.sock`
//! - query options `connect_timeout` and `timeout`, in seconds
//!   (`memcached://cache:11211?timeout=0.25`), as pymemcache names them
//!
//! Every location needs its port, as in `limits`. Memcached 1.6 or later is
//! needed (the meta protocol).
//!
//! # Example
//!
//! ```no_run
//! use limiter_core::{FixedWindow, RateLimiter};
//! use limiter_memcached::MemcachedStorage;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let storage = MemcachedStorage::connect("memcached://127.0.0.1:11211").await?;
//! let limiter = RateLimiter::new(FixedWindow, storage);
//! let limit = "10/minute".parse()?;
//! assert!(limiter.hit(&limit, &["127.0.0.1", "login"], 1).await?);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use limiter_core::storage::{Batch, Key, Outcome, Storage, Supports};
use limiter_core::{Clock, FixedWindow, RateLimit, SlidingWindowCounter, StorageError, StorageErrorKind, SystemClock};

mod connection;
mod fixed_window;
mod modes;
mod protocol;
mod ring;
mod servers;
mod sliding_window;
mod uri;

use connection::Timeouts;
use servers::Servers;

const NAME: &str = "memcached";

/// What [`reset`](Storage::reset) deletes by default: every key of the
/// default `LIMITER` namespace.
pub const DEFAULT_RESET_PREFIX: &str = "LIMITER/";

/// Connection settings.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct MemcachedOptions {
    /// How long connecting to a server may take (pymemcache's
    /// `connect_timeout`; the URI's `connect_timeout` overrides it).
    pub connect_timeout: Duration,
    /// How long a server may take to answer a call (pymemcache's `timeout`;
    /// the URI's `timeout` overrides it).
    pub timeout: Duration,
    /// The keys [`reset`](Storage::reset) deletes: those starting with this.
    pub reset_prefix: String,
}

impl Default for MemcachedOptions {
    fn default() -> Self {
        MemcachedOptions {
            connect_timeout: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            reset_prefix: DEFAULT_RESET_PREFIX.to_owned(),
        }
    }
}

impl MemcachedOptions {
    /// The defaults changed by `pairs`, named as pymemcache and `limits`
    /// name them (Flask-Limiter's `RATELIMIT_STORAGE_OPTIONS`):
    /// `connect_timeout` and `timeout` (float seconds), and `reset_prefix`.
    ///
    /// ```
    /// let options = limiter_memcached::MemcachedOptions::from_pairs([("timeout", "0.25")])?;
    /// assert_eq!(options.timeout, std::time::Duration::from_millis(250));
    /// assert!(limiter_memcached::MemcachedOptions::from_pairs([("timeout", "soon")]).is_err());
    /// # Ok::<(), limiter_core::StorageError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`StorageError`] of kind [`Rejected`](StorageErrorKind::Rejected)
    /// naming the unknown option or the bad value, and what is accepted.
    pub fn from_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Result<Self, StorageError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let rejected = |why: String| StorageError::new(StorageErrorKind::Rejected, NAME, why);
        let mut options = MemcachedOptions::default();
        for (name, value) in pairs {
            let (name, value) = (name.as_ref(), value.as_ref());
            match name {
                "connect_timeout" => options.connect_timeout = uri::seconds(name, value).map_err(rejected)?,
                "timeout" => options.timeout = uri::seconds(name, value).map_err(rejected)?,
                "reset_prefix" => value.clone_into(&mut options.reset_prefix),
                _ => {
                    return Err(rejected(format!(
                        "unknown Memcached option {name:?}: expected connect_timeout, timeout or reset_prefix"
                    )));
                }
            }
        }
        Ok(options)
    }
}

/// One or several Memcached servers, each through one multiplexed
/// connection that reconnects by itself, with connect and call timeouts
/// always set. Cloning shares the connections.
#[derive(Clone)]
pub struct MemcachedStorage {
    servers: Arc<Servers>,
    options: Arc<MemcachedOptions>,
    uri: Arc<str>,
}

impl fmt::Debug for MemcachedStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemcachedStorage").field("uri", &self.uri).field("options", &self.options).finish()
    }
}

impl MemcachedStorage {
    /// Connects to `uri` (see the [crate docs](crate#uris)) with the default
    /// options, and checks that every server answers.
    ///
    /// # Errors
    ///
    /// [`StorageError`] of kind [`Rejected`](StorageErrorKind::Rejected) if
    /// the URI is malformed (the message says how to write it), or
    /// [`Unavailable`](StorageErrorKind::Unavailable) /
    /// [`Timeout`](StorageErrorKind::Timeout) if a server cannot be reached
    /// in time.
    pub async fn connect(uri: &str) -> Result<Self, StorageError> {
        MemcachedStorage::connect_with(uri, MemcachedOptions::default()).await
    }

    /// Connects to `uri` with `options`, and checks that every server
    /// answers.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub async fn connect_with(uri: &str, options: MemcachedOptions) -> Result<Self, StorageError> {
        let storage = MemcachedStorage::lazy(uri, options)?;
        storage.check().await?;
        Ok(storage)
    }

    /// The storage for `uri`, connecting on first use: for services that
    /// must start while Memcached is away. Call it within a Tokio runtime
    /// (each server's connection is a task of it).
    ///
    /// # Errors
    ///
    /// [`StorageError`] of kind [`Rejected`](StorageErrorKind::Rejected) if
    /// the URI is malformed, of kind [`Other`](StorageErrorKind::Other)
    /// outside a Tokio runtime.
    pub fn lazy(uri: &str, mut options: MemcachedOptions) -> Result<Self, StorageError> {
        let shown = limiter_core::engine::redact_uri(uri);
        let target = uri::parse(uri).map_err(|why| {
            StorageError::new(StorageErrorKind::Rejected, NAME, format!("invalid Memcached URI {shown}: {why}"))
        })?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(StorageError::new(
                StorageErrorKind::Other,
                NAME,
                format!("{shown}: the storage must be created within a Tokio runtime (its connections are tasks)"),
            ));
        }
        options.connect_timeout = target.connect_timeout.unwrap_or(options.connect_timeout);
        options.timeout = target.timeout.unwrap_or(options.timeout);
        let timeouts = Timeouts { connect: options.connect_timeout, call: options.timeout };
        Ok(MemcachedStorage {
            servers: Arc::new(Servers::spawn(target.addresses, timeouts)),
            options: Arc::new(options),
            uri: shown.into(),
        })
    }

    fn timeouts(&self) -> Timeouts {
        Timeouts { connect: self.options.connect_timeout, call: self.options.timeout }
    }
}

impl Storage for MemcachedStorage {
    fn name(&self) -> &'static str {
        NAME
    }

    /// Sends `mn` (a no-op) to every server.
    fn check(&self) -> impl Future<Output = Result<(), StorageError>> + Send {
        let servers = Arc::clone(&self.servers);
        async move {
            let pending: Vec<_> = servers
                .connections()
                .iter()
                .map(|connection| {
                    let mut commands = protocol::Commands::default();
                    commands.noop();
                    connection.submit(commands.bytes, commands.count)
                })
                .collect();
            for pending in pending {
                let replies = pending.wait().await?;
                if replies.first() != Some(&protocol::Reply::Noop) {
                    return Err(StorageError::new(StorageErrorKind::Protocol, NAME, "no answer to mn"));
                }
            }
            Ok(())
        }
    }

    /// Deletes every key starting with
    /// [`reset_prefix`](MemcachedOptions::reset_prefix) on every server,
    /// found with `lru_crawler metadump all`.
    fn reset(&self) -> impl Future<Output = Result<(), StorageError>> + Send {
        let servers = Arc::clone(&self.servers);
        let options = Arc::clone(&self.options);
        let timeouts = self.timeouts();
        async move {
            for connection in servers.connections() {
                let keys = connection::metadump(connection.address(), timeouts, &options.reset_prefix).await?;
                for chunk in keys.chunks(500) {
                    let mut commands = protocol::Commands::default();
                    for key in chunk {
                        // Keys found on the server fit there.
                        let _ = commands.delete(key);
                    }
                    connection.submit(commands.bytes, commands.count).wait().await?;
                }
            }
            Ok(())
        }
    }
}

impl Supports<FixedWindow> for MemcachedStorage {
    fn decide<'a>(
        &'a self,
        _: FixedWindow,
        batch: &'a Batch<'a>,
    ) -> impl Future<Output = Result<Outcome, StorageError>> + Send + 'a {
        fixed_window::decide(&self.servers, batch)
    }

    /// Deletes the counter and its `/expires` key.
    fn clear<'a>(
        &'a self,
        _: FixedWindow,
        limit: &'a RateLimit,
        key: Key<'a>,
    ) -> impl Future<Output = Result<(), StorageError>> + Send + 'a {
        let key = key.storage_key(limit);
        async move { fixed_window::clear(&self.servers, &key).await }
    }
}

impl Supports<SlidingWindowCounter> for MemcachedStorage {
    fn decide<'a>(
        &'a self,
        _: SlidingWindowCounter,
        batch: &'a Batch<'a>,
    ) -> impl Future<Output = Result<Outcome, StorageError>> + Send + 'a {
        sliding_window::decide(&self.servers, batch)
    }

    /// Deletes the current and the previous window's counts, the windows
    /// being those of the system clock (as `limits` takes them).
    fn clear<'a>(
        &'a self,
        _: SlidingWindowCounter,
        limit: &'a RateLimit,
        key: Key<'a>,
    ) -> impl Future<Output = Result<(), StorageError>> + Send + 'a {
        let (key, now) = (key.storage_key(limit), SystemClock.now());
        async move { sliding_window::clear(&self.servers, &key, limit, now).await }
    }
}

limiter_core::dyn_storage!(MemcachedStorage: FixedWindow, SlidingWindowCounter);

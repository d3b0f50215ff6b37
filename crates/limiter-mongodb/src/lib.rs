//! MongoDB storage for limiter, on the documents of Python's `limits` 5.8,
//! so a Flask-Limiter service and a Rust service on one MongoDB enforce one
//! limit together.
//!
//! # Capabilities
//!
//! | Strategy | Supported | Collection | Document |
//! |---|---|---|---|
//! | Fixed window | yes | `counters` | `{_id: key, count: int, expireAt: date}` |
//! | Moving window | yes | `windows` | `{_id: key, entries: [double, ...], expireAt: date}` (hit times in seconds, newest first, at most `amount`) |
//! | Sliding window counter | yes | `windows` | `{_id: key, previousCount: int, currentCount: int, expireAt: date, _acquired: bool}` |
//! | GCRA | yes | `windows` | `{_id: "gcra:" + key, tat: long, at: long, expireAt: date, _acquired: bool}` (`limits` has no GCRA: this layout is this crate's; `tat`, the theoretical arrival time, and `at`, the latest decision time, in nanoseconds since the epoch) |
//!
//! The database is `limits` and the collections `counters` and `windows`
//! unless [`MongoOptions`] says otherwise (`limits`' `database_name`,
//! `counter_collection_name`, `window_collection_name`). Both collections
//! get `limits`' TTL index (`expireAt_1`, `expireAfterSeconds: 0`) when the
//! storage connects. Keys are `limits`' (`LIMITER/<identifiers…>/<amount>/<multiples>/<granularity>`),
//! with no prefix.
//!
//! # Atomicity and round trips
//!
//! Every hit is one `findAndModify` that decides on the server, on one
//! document under its lock, whether the cost fits and consumes it, and
//! answers with the document after the update: no check-then-act across
//! round trips. The fixed window and the sliding window counter use
//! `limits`' aggregation-pipeline updates (a refused fixed-window hit is
//! counted, as in `limits`), the moving window `limits`' filter on
//! `entries.<amount - cost>` with a `$push`, GCRA a pipeline comparing the
//! backlog with an integer computed exactly in Rust (128-bit), so it admits
//! exactly what the memory storage admits. Date arithmetic goes through
//! `$toLong` (milliseconds), never date minus date. Decisions use
//! the limiter's clock (the time is sent with each update, as `limits` does
//! for the moving window; `limits` uses the server's `$$NOW` for the other
//! two), so app hosts sharing a MongoDB need synchronised clocks.
//!
//! MongoDB has no server-side scripts, and `limits` keeps one document per
//! key, so the limits of one request cannot be decided in one command. What
//! a request with N limits costs (counted by the server in the
//! `round_trips` test):
//!
//! | Batch | Round trips |
//! |---|---|
//! | Sequential (Flask-Limiter's order, the default) | N `findAndModify`, one after the other; with `stop_at_first_breach` none after a refusal |
//! | Peek (`test`, window statistics) | 1 `find` |
//! | All or nothing | a transaction: 1 `find`, then an abort (refused: 2 in all) or one write per key and the commit (N + 2) |
//!
//! Add two round trips for the first hit on a key (the update matches
//! nothing; a `find`, then an `insert`, so that two first hits cannot both
//! create the document) and one for a refused moving-window hit (as in
//! `limits`, the update's filter refuses it; a `find` then reads the window's
//! statistics). Transactions need a replica set or a sharded cluster: on a
//! standalone `mongod` an all-or-nothing batch fails with a
//! [`StorageErrorKind::Rejected`] error that says so; on a write conflict
//! the transaction starts over within the call timeout.
//!
//! When the server comes back after an outage, the first decision creates
//! the TTL indexes again (a server restarted empty lacks them): one more
//! round trip, once.
//!
//! # Differences from `limits`
//!
//! None that a Python peer can see in the documents; in behaviour:
//!
//! - decisions use the limiter's clock, not the server's `$$NOW` (above);
//! - a sliding-window document whose `expireAt` is already past (the TTL
//!   monitor removes documents up to a minute late) starts a new window;
//!   `limits` shifts it once per call, which resets `currentCount` at every
//!   hit until the monitor runs, so its limit does not hold meanwhile;
//! - a fixed-window cost above the amount is refused without being counted
//!   (it can never pass; `limits` counts it);
//! - [`reset`](Storage::reset) deletes the documents and keeps the TTL
//!   indexes (`limits` drops both collections, and their indexes with them).
//!
//! # URIs
//!
//! `mongodb://[user:password@]host[:port][,host[:port]...][/[database]][?options]`
//! and `mongodb+srv://[user:password@]host[/[database]][?options]` (a DNS
//! SRV lookup), passed to the official driver as `limits` passes them to
//! `pymongo`. The URI's path names the authentication database only; the
//! counters live in [`MongoOptions::database_name`]. `connectTimeoutMS` and
//! `serverSelectionTimeoutMS` in the URI win over
//! [`MongoOptions::connect_timeout`]; both are always set, and so is the
//! call timeout. Passwords
//! never appear in `Debug`, `Display` or errors.
//!
//! # Example
//!
//! ```no_run
//! use limiter_core::{FixedWindow, RateLimiter};
//! use limiter_mongodb::MongoStorage;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let storage = MongoStorage::connect("mongodb://127.0.0.1:27017/").await?;
//! let limiter = RateLimiter::new(FixedWindow, storage);
//! let limit = "10/minute".parse()?;
//! assert!(limiter.hit(&limit, &["127.0.0.1", "login"], 1).await?);
//! # Ok(())
//! # }
//! ```
//!
//! Chosen at runtime, it runs the strategies it supports by name:
//!
//! ```no_run
//! use limiter_core::{AnyStorage, RateLimiter, StrategyKind};
//! use limiter_mongodb::{MongoOptions, MongoStorage};
//! use std::time::Duration;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let mut options = MongoOptions::default();
//! options.call_timeout = Duration::from_millis(300);
//! let storage = MongoStorage::connect_with("mongodb+srv://app:secret@cluster0.example.net/", options).await?;
//! let limiter = RateLimiter::dynamic(StrategyKind::SlidingWindowCounter, AnyStorage::new(storage))?;
//! # let _ = limiter;
//! # Ok(())
//! # }
//! ```
//!
//! # Testing
//!
//! The tests run against SecantusDB, a MongoDB-compatible server written in
//! Python (`pip install SecantusDB==0.7.0b3`), not `mongod`, which no package
//! source of the test machines provides: the whole conformance suite for
//! each strategy, the documents and indexes, outages (the server killed and
//! restarted), all-or-nothing batches under contention, the round trips
//! above, and Python `limits` 5.8 sharing the documents (fixed and moving
//! window; its sliding window counter computes a date minus a date, which
//! SecantusDB cannot evaluate, so that case needs a real `mongod`). They
//! read `LIMITER_TEST_SECANTUSD` (the `secantusd-py` binary, else found on
//! `PATH`), `LIMITER_TEST_PYTHON` (a Python with `limits[mongodb]==5.8.0`),
//! `LIMITER_TEST_MONGODB_URI` (a real `mongod`, for the ignored sliding
//! window interop test), and `CI` or `LIMITER_TEST_REQUIRE_SERVERS` (fail
//! rather than skip when something is missing).

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use limiter_core::storage::{Batch, Key, Outcome, Storage, Supports};
use limiter_core::{FixedWindow, Gcra, MovingWindow, RateLimit, SlidingWindowCounter, StorageError, StorageErrorKind};
use mongodb::bson::{Document, doc};
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Client, IndexModel};

mod batch;
mod error;
mod fixed;
mod gcra;
mod model;
mod moving;
mod sliding;

use error::{NAME, Redactor, timed_out};
use model::{Collection, Model};

/// `limits`' database.
pub const DEFAULT_DATABASE: &str = "limits";
/// `limits`' collection of fixed-window counters.
pub const DEFAULT_COUNTER_COLLECTION: &str = "counters";
/// `limits`' collection of moving and sliding windows.
pub const DEFAULT_WINDOW_COLLECTION: &str = "windows";

/// Where the documents live, and how long connecting and calls may take.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct MongoOptions {
    /// The database (`limits`' `database_name`, default `limits`).
    pub database_name: String,
    /// The fixed window's collection (`counter_collection_name`, default `counters`).
    pub counter_collection_name: String,
    /// The moving and sliding windows' collection (`window_collection_name`,
    /// default `windows`).
    pub window_collection_name: String,
    /// How long connecting, and finding a server to send a call to, may
    /// take (the driver's `connectTimeoutMS` and `serverSelectionTimeoutMS`
    /// unless the URI sets them). Default 1 s.
    pub connect_timeout: Duration,
    /// How long one decision, clear, check or reset may take, all its round
    /// trips included. Default 1 s.
    pub call_timeout: Duration,
    /// The most connections the pool opens (`maxPoolSize` unless the URI
    /// sets it); `None` keeps the driver's default (10).
    pub max_pool_size: Option<u32>,
}

impl Default for MongoOptions {
    fn default() -> Self {
        MongoOptions {
            database_name: DEFAULT_DATABASE.to_owned(),
            counter_collection_name: DEFAULT_COUNTER_COLLECTION.to_owned(),
            window_collection_name: DEFAULT_WINDOW_COLLECTION.to_owned(),
            connect_timeout: Duration::from_secs(1),
            call_timeout: Duration::from_secs(1),
            max_pool_size: None,
        }
    }
}

/// A MongoDB deployment, through the driver's connection pool (created
/// once, reconnecting by itself), with connect and call timeouts always set.
#[derive(Clone)]
pub struct MongoStorage {
    client: Client,
    counters: mongodb::Collection<Document>,
    windows: mongodb::Collection<Document>,
    call_timeout: Duration,
    address: String,
    database: String,
    redactor: Redactor,
    /// Whether the TTL indexes are known to exist: false after an outage,
    /// since a server restarted empty (or a new primary) may lack them.
    indexes_ready: Arc<AtomicBool>,
}

impl fmt::Debug for MongoStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongoStorage")
            .field("address", &self.address)
            .field("database", &self.database)
            .field("counters", &self.counters.name())
            .field("windows", &self.windows.name())
            .field("call_timeout", &self.call_timeout)
            .finish_non_exhaustive()
    }
}

impl MongoStorage {
    /// Connects to `uri` (`mongodb://` or `mongodb+srv://`) with the default
    /// options, and makes sure of the TTL indexes.
    ///
    /// # Errors
    ///
    /// [`StorageError`] if the URI is malformed or names another scheme
    /// ([`StorageErrorKind::Rejected`]), or if no server answers in time
    /// ([`StorageErrorKind::Unavailable`], [`StorageErrorKind::Timeout`]);
    /// the message never contains the password.
    pub async fn connect(uri: &str) -> Result<Self, StorageError> {
        MongoStorage::connect_with(uri, MongoOptions::default()).await
    }

    /// Connects to `uri` with `options`.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub async fn connect_with(uri: &str, options: MongoOptions) -> Result<Self, StorageError> {
        let storage = MongoStorage::new(uri, &options).await?;
        storage.within_timeout(storage.create_indexes()).await?;
        Ok(storage)
    }

    /// The client and collections, without contacting the server (beyond
    /// the DNS lookup of a `mongodb+srv://` URI).
    async fn new(uri: &str, options: &MongoOptions) -> Result<Self, StorageError> {
        let address = limiter_core::engine::redact_uri(uri);
        let redactor = Redactor::for_uri(uri);
        if !(uri.starts_with("mongodb://") || uri.starts_with("mongodb+srv://")) {
            return Err(StorageError::new(
                StorageErrorKind::Rejected,
                NAME,
                format!("{address} is not a MongoDB URI: it must start with mongodb:// or mongodb+srv://"),
            ));
        }
        let invalid = |e: &mongodb::error::Error| redactor.error_in(&format!("invalid MongoDB URI {address}"), e);
        let parse = ClientOptions::parse(uri);
        let mut client_options = match tokio::time::timeout(options.connect_timeout, parse).await {
            Ok(parsed) => parsed.map_err(|e| invalid(&e))?,
            Err(_) => return Err(timed_out(options.connect_timeout)),
        };
        client_options.connect_timeout.get_or_insert(options.connect_timeout);
        client_options.server_selection_timeout.get_or_insert(options.connect_timeout);
        if client_options.max_pool_size.is_none() {
            client_options.max_pool_size = options.max_pool_size;
        }
        client_options.app_name.get_or_insert_with(|| "limiter".to_owned());
        let client = Client::with_options(client_options).map_err(|e| invalid(&e))?;
        let database = client.database(&options.database_name);
        Ok(MongoStorage {
            counters: database.collection(&options.counter_collection_name),
            windows: database.collection(&options.window_collection_name),
            client,
            call_timeout: options.call_timeout,
            address,
            database: options.database_name.clone(),
            redactor,
            indexes_ready: Arc::new(AtomicBool::new(false)),
        })
    }

    /// `limits`' TTL index on both collections: documents leave once their
    /// `expireAt` is past (the server's monitor runs about once a minute).
    async fn create_indexes(&self) -> Result<(), StorageError> {
        for collection in [&self.counters, &self.windows] {
            let index = IndexModel::builder()
                .keys(doc! { "expireAt": 1 })
                .options(IndexOptions::builder().expire_after(Duration::ZERO).build())
                .build();
            collection
                .create_index(index)
                .await
                .map_err(|e| self.redactor.error_in(&format!("creating the TTL index of {}", collection.name()), &e))?;
        }
        self.indexes_ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Runs `work` within the call timeout, first creating the TTL indexes
    /// again if an outage may have lost them (one more round trip, once per
    /// outage); an outage or a timeout marks them for checking again.
    async fn with_indexes<T>(&self, work: impl Future<Output = Result<T, StorageError>>) -> Result<T, StorageError> {
        let result = self
            .within_timeout(async {
                if !self.indexes_ready.load(Ordering::Acquire) {
                    self.create_indexes().await?;
                }
                work.await
            })
            .await;
        if let Err(e) = &result
            && e.is_transient()
        {
            self.indexes_ready.store(false, Ordering::Release);
        }
        result
    }

    fn collection(&self, which: Collection) -> mongodb::Collection<Document> {
        match which {
            Collection::Counters => self.counters.clone(),
            Collection::Windows => self.windows.clone(),
        }
    }

    /// `work`, or a timeout error once the call timeout has passed.
    async fn within_timeout<T>(&self, work: impl Future<Output = Result<T, StorageError>>) -> Result<T, StorageError> {
        tokio::time::timeout(self.call_timeout, work).await.unwrap_or_else(|_| Err(timed_out(self.call_timeout)))
    }

    async fn delete<M: Model>(&self, limit: &RateLimit, key: Key<'_>) -> Result<(), StorageError> {
        let id = M::id(limit, &key);
        let collection = self.collection(M::COLLECTION);
        self.within_timeout(async {
            collection.delete_one(doc! { "_id": id }).await.map(drop).map_err(|e| self.redactor.error_in("clear", &e))
        })
        .await
    }
}

impl Storage for MongoStorage {
    fn name(&self) -> &'static str {
        NAME
    }

    /// Runs `ping` on the database.
    async fn check(&self) -> Result<(), StorageError> {
        let database = self.client.database(&self.database);
        self.within_timeout(async {
            database.run_command(doc! { "ping": 1 }).await.map(drop).map_err(|e| self.redactor.error_in("ping", &e))
        })
        .await
    }

    /// Deletes every document of both collections. `limits` drops them,
    /// which also drops their TTL indexes until the next start; deleting
    /// keeps the indexes.
    async fn reset(&self) -> Result<(), StorageError> {
        self.within_timeout(async {
            for collection in [&self.counters, &self.windows] {
                collection.delete_many(doc! {}).await.map_err(|e| self.redactor.error_in("reset", &e))?;
            }
            Ok(())
        })
        .await
    }
}

macro_rules! supports {
    ($strategy:ident, $model:ty) => {
        impl Supports<$strategy> for MongoStorage {
            fn decide<'a>(
                &'a self,
                _: $strategy,
                batch: &'a Batch<'a>,
            ) -> impl Future<Output = Result<Outcome, StorageError>> + Send + 'a {
                self.decide_batch::<$model>(batch)
            }

            fn clear<'a>(
                &'a self,
                _: $strategy,
                limit: &'a RateLimit,
                key: Key<'a>,
            ) -> impl Future<Output = Result<(), StorageError>> + Send + 'a {
                self.delete::<$model>(limit, key)
            }
        }
    };
}

supports!(FixedWindow, fixed::Counter);
supports!(MovingWindow, moving::Log);
supports!(SlidingWindowCounter, sliding::Counts);
supports!(Gcra, gcra::Tat);

limiter_core::dyn_storage!(MongoStorage: FixedWindow, MovingWindow, SlidingWindowCounter, Gcra);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn other_schemes_are_refused_with_the_fix() {
        let err = MongoStorage::connect("redis://user:hunter2@127.0.0.1:6379").await.unwrap_err();
        assert_eq!(err.kind(), StorageErrorKind::Rejected);
        let message = err.to_string();
        assert!(message.contains("mongodb:// or mongodb+srv://"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[tokio::test]
    async fn malformed_uris_are_refused_without_the_password() {
        // An SRV URI cannot name a port.
        let err = MongoStorage::connect("mongodb+srv://user:hunter2@cluster.example.net:27017/").await.unwrap_err();
        let message = err.to_string();
        assert_eq!(err.kind(), StorageErrorKind::Rejected, "{message}");
        assert!(message.contains("invalid MongoDB URI mongodb+srv://user:***@cluster.example.net:27017/"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[tokio::test]
    async fn debug_shows_no_password() {
        let storage =
            MongoStorage::new("mongodb://user:hunter2@127.0.0.1:9/?authSource=admin", &MongoOptions::default())
                .await
                .unwrap();
        let debug = format!("{storage:?}");
        assert!(debug.contains("user:***@127.0.0.1:9"), "{debug}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[tokio::test]
    async fn debug_shows_no_session_token() {
        let uri = "mongodb://127.0.0.1:9/?authSource=admin\
                   &authMechanismProperties=SERVICE_NAME:mongodb,AWS_SESSION_TOKEN:FwoGZXIvYXdz";
        let storage = MongoStorage::new(uri, &MongoOptions::default()).await.unwrap();
        let debug = format!("{storage:?}");
        assert!(debug.contains("SERVICE_NAME:mongodb,AWS_SESSION_TOKEN:***"), "{debug}");
        assert!(!debug.contains("FwoG"), "{debug}");
    }

    #[tokio::test]
    async fn uri_errors_show_no_session_token() {
        // Refused by the driver (no `aws-auth` feature): the URI is quoted.
        let aws = "mongodb://127.0.0.1:9/?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:FwoGZXIv";
        // Refused for its shape: the driver quotes the entry.
        let typo = "mongodb://127.0.0.1:9/?authMechanismProperties=AWS_SESSION_TOKEN=FwoGZXIv";
        for (uri, quoted) in [(aws, "AWS_SESSION_TOKEN:***: "), (typo, "key-value pair, got ***")] {
            let err = MongoStorage::connect(uri).await.unwrap_err();
            let message = err.to_string();
            assert_eq!(err.kind(), StorageErrorKind::Rejected, "{message}");
            assert!(message.contains("invalid MongoDB URI mongodb://127.0.0.1:9/"), "{message}");
            assert!(message.contains(quoted), "{message}");
            assert!(!message.contains("FwoG"), "{message}");
            assert!(!format!("{err:?}").contains("FwoG"), "{err:?}");
        }
    }

    #[tokio::test]
    async fn an_unreachable_server_is_unavailable_within_the_timeout() {
        let options = MongoOptions {
            connect_timeout: Duration::from_millis(200),
            call_timeout: Duration::from_millis(400),
            ..MongoOptions::default()
        };
        // Port 9 (discard) on loopback: nothing listens there.
        let started = std::time::Instant::now();
        let err = MongoStorage::connect_with("mongodb://127.0.0.1:9/", options).await.unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    }
}

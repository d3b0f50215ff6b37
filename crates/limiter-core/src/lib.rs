//! The core of **limiter**: rate limiting with everything Python's `limits`
//! (the engine of Flask-Limiter) offers, and no web framework or network
//! dependency.
//!
//! It holds the rate limit [notation](#rate-limit-notation), the
//! [`RateLimit`] value, four [strategies](#strategies), the
//! [storage contract](storage) that lets a backend decide all the limits of a
//! request in one round trip, a bounded [`MemoryStorage`], and an injected
//! [`Clock`]. Web adapters and remote backends build on it.
//!
//! # Quick start
//!
//! ```
//! use limiter_core::{FixedWindow, ManualClock, MemoryStorage, RateLimiter, Timestamp};
//! use std::time::Duration;
//!
//! # fn block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     let mut f = std::pin::pin!(f);
//! #     match f.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
//! #         std::task::Poll::Ready(v) => v,
//! #         std::task::Poll::Pending => unreachable!("the memory storage never waits"),
//! #     }
//! # }
//! # block_on(async {
//! let clock = ManualClock::new(Timestamp::from_secs(1_700_000_000));
//! let limiter = RateLimiter::new(FixedWindow, MemoryStorage::new()).with_clock(clock.clone());
//!
//! for limit in limiter_core::parse_many("2 per minute; 100/day")? {
//!     assert!(limiter.hit(&limit, &["127.0.0.1", "login"], 1).await?);
//! }
//! let per_minute = limiter_core::parse("2 per minute")?;
//! assert!(limiter.hit(&per_minute, &["127.0.0.1", "login"], 1).await?);
//! assert!(!limiter.hit(&per_minute, &["127.0.0.1", "login"], 1).await?);
//!
//! let stats = limiter.window_stats(&per_minute, &["127.0.0.1", "login"]).await?;
//! assert_eq!(stats.remaining, 0);
//! assert_eq!(stats.reset_at, Timestamp::from_secs(1_700_000_060));
//!
//! clock.advance(Duration::from_secs(60));
//! assert!(limiter.hit(&per_minute, &["127.0.0.1", "login"], 1).await?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # Rate limit notation
//!
//! The strings Flask-Limiter and `limits` accept, with the same meaning:
//!
//! ```text
//! limits      = limit *( [ws] separator [ws] limit )
//! limit       = [ws] amount [ws] ( "/" | "per" ) [ws] [multiples] [ws] granularity [ws]
//! separator   = ";" | "," | "|"
//! amount      = ASCII digits                 (0 is allowed: every hit is refused)
//! multiples   = ASCII digits, at least 1     (the window is multiples × granularity)
//! granularity = second | minute | hour | day | month | year, singular or plural
//! ```
//!
//! - Case does not matter (`10 PER HOUR`), white space is optional
//!   (`10perminute`, `1/2seconds`) and may surround everything.
//! - A `month` is 30 days and a `year` 360 days, as in `limits`.
//! - Accepted: `10/minute`, `10 per minute`, `1/2 seconds`,
//!   `5/2 seconds;10/hour;100/day;2000 per year`, `100/day, 500/7 days`,
//!   `1/second|2/minute`.
//! - Rejected, with an error pointing at the token: `10/secs` and `2/sec`
//!   (no abbreviations), `10/second;` (nothing after the separator),
//!   `10/second 20/minute` (no separator), `-1/second`, `1.5/second`, `10`,
//!   `10 per` and `10 per fortnight`.
//!
//! Where `limits` accepts a string only by accident of its regular
//! expression, this crate decides otherwise, on purpose:
//!
//! - a stray `:` before a separator (`1/second:;2/minute`) is refused;
//! - zero multiples (`10/0 seconds`, which `limits` silently reads as 1) are
//!   refused: an empty window is a mistake;
//! - trailing white space, newlines included, is accepted, as in `limits`;
//! - amounts above 2⁵³ − 1 and windows above 100 years are refused (Redis
//!   counts in Lua doubles; `limits` would miscount them);
//! - custom granularities (subclasses of `RateLimitItem` in Python) do not exist.
//!
//! [`RateLimit`]'s [`Display`](std::fmt::Display) is `"{amount} per {multiples} {granularity}"`
//! (`"1 per 1 day"`), which parses back to the same limit, and
//! [`RateLimit::key_for`] builds the exact storage keys of `limits`.
//!
//! # Strategies
//!
//! | strategy | accuracy | memory per key | storage work per hit |
//! |---|---|---|---|
//! | [`FixedWindow`] | exact within a window; up to 2× the amount across a boundary | one counter + expiry (24 B in memory) | one increment |
//! | [`MovingWindow`] | exact at every instant | a log of up to `amount` hit times (16 B per distinct time in memory) | O(log size) to find the `amount − cost`-th newest hit |
//! | [`SlidingWindowCounter`] | approximate: assumes the previous window's hits were spread evenly; never more than the fixed window allows | two counters (40 B in memory) | two counters read, one incremented |
//! | [`Gcra`] | exact token bucket of `amount` tokens refilled over the window; no boundary bursts | one timestamp (16 B in memory) | one compare-and-set |
//!
//! Every strategy supports a cost per hit (a cost above the amount is always
//! refused), peeking without consuming ([`Mode::Peek`], `test`), window
//! statistics (remaining and reset time) and clearing. Exact rules,
//! including where they follow `limits`' quirks (a refused fixed-window hit
//! still counts, as in Python), are on each strategy's type.
//!
//! # Storages
//!
//! | storage | fixed window | moving window | sliding window counter | GCRA | round trips per request |
//! |---|---|---|---|---|---|
//! | [`MemoryStorage`] | yes | yes | yes (windows aligned to the epoch) | yes | none |
//! | Redis, Valkey (`limiter-redis`): standalone, TLS, unix socket, sentinel | yes, `limits`' layout | yes, `limits`' layout | yes, `limits`' layout (windows from the first hit) | yes (server clock) | 1 script call |
//! | Redis cluster (`limiter-redis`) | yes | yes | yes | yes | 1 per hash slot, in parallel (2 parallel rounds when the limits span several slots in the default stop-at-first-refusal and in all-or-nothing modes); atomic per slot |
//! | Memcached (`limiter-memcached`) | yes, `limits`' layout | no: no atomic multi-key update | yes, `limits`' layout | no: the same | 1 (2 when a refusal gives increments back) |
//! | MongoDB (`limiter-mongodb`) | yes, `limits`' documents | yes, `limits`' documents | yes, `limits`' documents | yes (own document) | 1 per limit: MongoDB runs no scripts across documents |
//!
//! Every backend keeps its counters where Python's `limits` 5.8 keeps them,
//! so a Flask-Limiter service on the same server enforces the same limits
//! (GCRA has no `limits` counterpart).
//!
//! # Web services
//!
//! [`engine::Limiter`] is Flask-Limiter's extension without Flask: default,
//! application, route, group (blueprint) and meta limits, exemptions,
//! request filters, costs, `deduct_when`, dynamic limits, shared limits,
//! headers (Flask-Limiter's and the IETF draft's), 429 bodies, and what to do
//! when the storage fails. It decides every limit of a request in one storage
//! call. The web adapters (`limiter-tower` for axum, tonic and hyper;
//! `limiter-actix`) are thin layers over it. It is configured in code or from
//! Flask-Limiter's `RATELIMIT_*` settings ([`engine::Settings`], with the
//! migration table), and clients are told apart as
//! [Choosing a key](engine::client_ip) explains.
//!
//! Remote backends (Redis, Valkey, Memcached, MongoDB) implement the same
//! contract in their own crates; see [`storage`] for what a backend must do.
//! A strategy a storage cannot run does not compile with
//! [`RateLimiter::new`], and is a [`ConfigError`] with
//! [`RateLimiter::dynamic`].

pub mod clock;
pub mod engine;
mod error;
mod limit;
mod notation;
mod rate_limiter;
pub mod storage;
pub mod strategy;

pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use error::{ConfigError, StorageError, StorageErrorKind};
pub use limit::{DEFAULT_NAMESPACE, Granularity, LimitError, MAX_AMOUNT, MAX_WINDOW_SECS, RateLimit};
pub use notation::{ParseError, ParseErrorKind, parse, parse_many};
pub use rate_limiter::RateLimiter;
pub use storage::memory::MemoryStorage;
pub use storage::{Action, AnyStorage, Batch, Item, Key, LimitState, Mode, Outcome, Storage, Supports, WindowStats};
pub use strategy::{FixedWindow, Gcra, MovingWindow, SlidingWindowCounter, Strategy, StrategyKind};

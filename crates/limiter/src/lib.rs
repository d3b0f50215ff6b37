//! **limiter**: rate limiting for Rust web services, with everything
//! Flask-Limiter and Python's `limits` offer.
//!
//! This facade re-exports the crates of the project behind features that
//! mirror Flask-Limiter's extras. Today it holds the core engine
//! ([`limiter_core`]): the notation, the strategies, the storage contract and
//! the memory storage. The web adapters and the Redis, Memcached and MongoDB
//! backends come as features of this crate.
//!
//! ```
//! let limits = limiter::parse_many("200 per day; 50 per hour")?;
//! assert_eq!(limits[1].to_string(), "50 per 1 hour");
//! # Ok::<(), limiter::ParseError>(())
//! ```

#[doc(inline)]
pub use limiter_core::*;

#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

//! **limiter**: rate limiting for Rust web services, with everything
//! Flask-Limiter and Python's `limits` offer.
//!
//! This facade re-exports the crates of the project behind features that
//! mirror Flask-Limiter's extras:
//!
//! | feature | what it adds |
//! |---|---|
//! | (none) | the core: notation, strategies, storage contract, memory storage, the framework-free engine |
//! | `tower` | [`tower`]: the layer for tonic and hyper services |
//! | `axum` | the same layer reading axum's matched routes and peer addresses |
//! | `actix` | [`actix`]: the actix-web middleware |
//!
//! | `redis` | [`redis`]: the Redis and Valkey storage, and `redis://` URIs in [`storage_from_uri`] |
//!
//! The Memcached and MongoDB backends come as features too as they land.
//!
//! ```
//! let limits = limiter::parse_many("200 per day; 50 per hour")?;
//! assert_eq!(limits[1].to_string(), "50 per 1 hour");
//! # Ok::<(), limiter::ParseError>(())
//! ```

#[doc(inline)]
pub use limiter_core::*;

#[doc(inline)]
pub use limiter_core::engine::{
    Breach, Decision, Exemption, FailurePolicy, ForwardedFor, ForwardingHeader, GlobalKey, Group, HeaderKey,
    HeaderSettings, InlineLimit, KeyError, KeyExtractor, Limit, PeerIp, Rejection, RequestInfo, RequestLimit,
    ResponseInfo, RetryAfterFormat, Route, Settings, Trust, TrustedHeader, Verdict,
};

/// The actix-web middleware: [`limiter_actix`].
#[cfg(feature = "actix")]
pub mod actix {
    #[doc(inline)]
    pub use limiter_actix::*;
}

/// The Redis and Valkey storage: [`limiter_redis`].
#[cfg(feature = "redis")]
pub mod redis {
    #[doc(inline)]
    pub use limiter_redis::*;
}

/// The storage a `RATELIMIT_STORAGE_URI` names, connected: `memory://`, and
/// with the `redis` feature `redis://`, `rediss://`, `redis+unix://` and
/// their `valkey` spellings.
///
/// # Errors
///
/// [`ConfigError`] naming the URI (password hidden) if the scheme is unknown,
/// its feature is off, or the storage cannot be reached.
pub async fn storage_from_uri(uri: &str) -> Result<AnyStorage, ConfigError> {
    let redacted = engine::redact_uri(uri);
    let scheme = uri.split("://").next().unwrap_or_default().trim_start_matches("async+");
    match scheme {
        "memory" => Ok(AnyStorage::new(MemoryStorage::new())),
        #[cfg(feature = "redis")]
        "redis" | "rediss" | "redis+unix" | "valkey" | "valkeys" | "valkey+unix" => {
            let url = uri.trim_start_matches("async+").replacen("valkey", "redis", 1);
            limiter_redis::RedisStorage::connect(&url).await.map(AnyStorage::new).map_err(|e| {
                ConfigError::InvalidOption { option: "RATELIMIT_STORAGE_URI", value: redacted, fix: format!("{e}") }
            })
        }
        _ => Err(ConfigError::InvalidOption {
            option: "RATELIMIT_STORAGE_URI",
            value: redacted,
            fix: "use memory://, or redis:// with the `redis` feature of `limiter`".to_owned(),
        }),
    }
}

/// The tower layer (axum, tonic, hyper): [`limiter_tower`].
#[cfg(feature = "tower")]
pub mod tower {
    #[doc(inline)]
    pub use limiter_tower::*;
}

#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

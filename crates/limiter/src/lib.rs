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
//! | `redis` | [`redis`]: the Redis and Valkey storage (standalone, cluster, sentinel, TLS, unix socket), and their URIs in [`storage_from_uri`] |
//! | `memcached` | [`memcached`]: the Memcached storage and `memcached://` URIs |
//! | `mongodb` | [`mongodb`]: the MongoDB storage and `mongodb://`, `mongodb+srv://` URIs |
//! | `metrics` | the limiter's counters, histogram and gauge through the `metrics` facade ([`engine::metrics`]) |
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

mod storage_uri;
pub use storage_uri::{storage_from_uri, storage_from_uri_with};

/// The Memcached storage: [`limiter_memcached`].
#[cfg(feature = "memcached")]
pub mod memcached {
    #[doc(inline)]
    pub use limiter_memcached::*;
}

/// The MongoDB storage: [`limiter_mongodb`].
#[cfg(feature = "mongodb")]
pub mod mongodb {
    #[doc(inline)]
    pub use limiter_mongodb::*;
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

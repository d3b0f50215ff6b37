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
//! The Redis, Valkey, Memcached and MongoDB backends come as features too as
//! they land.
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

/// The tower layer (axum, tonic, hyper): [`limiter_tower`].
#[cfg(feature = "tower")]
pub mod tower {
    #[doc(inline)]
    pub use limiter_tower::*;
}

#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

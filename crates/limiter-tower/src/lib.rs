//! limiter for tower services: axum, tonic and hyper.
//!
//! [`LimiterLayer`] applies a [`Limiter`] (built with
//! [`Limiter::builder`](limiter_core::engine::Limiter::builder)) to a whole
//! router. It decides every limit that applies to a request in one storage
//! call, answers 429 with a body naming the limit (problem details for JSON
//! clients) and `Retry-After`, adds the rate-limit headers to the other
//! responses, and puts the evaluated limits in the request's extensions as
//! [`CurrentLimits`].
//!
//! ```
//! use axum::{Router, routing::get};
//! use limiter_core::engine::{Limit, Route};
//! use limiter_tower::{Limiter, LimiterLayer};
//!
//! let limiter = Limiter::builder()
//!     .default_limits("200 per day; 50 per hour")
//!     .headers_enabled(true)
//!     .route(Route::new("slow").path("/slow").limit("1 per day"))
//!     .route(Route::new("medium").path("/medium").limit(Limit::new("1/second").override_defaults(false)))
//!     .route(Route::new("ping").path("/ping").exempt())
//!     .build()?;
//!
//! let app: Router = Router::new()
//!     .route("/slow", get(|| async { ":(" }))
//!     .route("/medium", get(|| async { ":|" }))
//!     .route("/ping", get(|| async { "PONG" }))
//!     .layer(LimiterLayer::new(limiter));
//! // Serve with the peer address, which keys clients by default:
//! // axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
//! # Ok::<(), limiter_core::ConfigError>(())
//! ```
//!
//! Routes are found through axum's `MatchedPath` (feature `axum`) when the
//! layer is added with `Router::layer`, or a [`MatchedRoute`] extension set
//! by other routers; for tonic and plain hyper, where the URI path names the
//! route, use [`RouteSource::UriPath`]. A request that matched no route gets
//! only the meta limits, as Flask-Limiter treats 404s.

mod request;
mod service;

use std::sync::Arc;
use std::time::Duration;

pub use limiter_core::engine::ExtensionKey;
pub use request::{HttpRequest, MatchedRoute, RouteSource};
pub use service::{CurrentLimits, LimitedBody, LimiterLayer, LimiterService, ResponseFuture, rejection_response};

/// The limiter for tower services.
pub type Limiter = limiter_core::engine::Limiter<HttpRequest>;

/// The builder of [`Limiter`].
pub type LimiterBuilder = limiter_core::engine::LimiterBuilder<HttpRequest>;

/// tokio's timer, for [`LimiterBuilder::storage_timeout`].
pub fn tokio_sleeper() -> limiter_core::engine::Sleeper {
    Arc::new(|d: Duration| Box::pin(tokio::time::sleep(d)))
}

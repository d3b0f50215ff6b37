//! limiter for tower services: axum, tonic and hyper.
//!
//! [`LimiterLayer`] applies a [`Limiter`] (built with
//! [`Limiter::builder`](limiter_core::engine::Limiter::builder)) to a whole
//! router. It decides every limit that applies to a request in one storage
//! call, answers 429 with a body naming the limit (problem details for JSON
//! clients), sends the rate-limit headers (`X-RateLimit-*` and
//! `Retry-After`, when enabled with `headers_enabled`, as in Flask-Limiter)
//! on the 429 and on the other responses, and puts the evaluated limits in the request's extensions as
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
//! only the meta limits, as Flask-Limiter treats 404s. (Built without the
//! `axum` feature, the layer finds no route in an axum app's requests; it
//! then logs a warning, once, the first time a request has none.)
//!
//! # gRPC
//!
//! tonic reads a call's outcome from `grpc-status`, and maps an HTTP 429 or
//! 503 to `UNAVAILABLE`, which retry policies retry, losing the message. So a
//! request whose `content-type` starts with `application/grpc` is refused as
//! gRPC refuses calls: HTTP 200, `content-type: application/grpc`, an empty
//! body, `grpc-status: 8` (`RESOURCE_EXHAUSTED`) for a limit refusal (429)
//! and `14` (`UNAVAILABLE`) for a 503 when a failing storage fails closed,
//! and the refusal's text, percent-encoded, in `grpc-message`. The
//! rate-limit headers (`X-RateLimit-*`, `Retry-After`) are kept. A breach
//! hook's own [`Rejection`](limiter_core::engine::Rejection) with another
//! status is mapped as the gRPC project maps HTTP statuses (400 `INTERNAL`,
//! 401 `UNAUTHENTICATED`, 403 `PERMISSION_DENIED`, 404 `UNIMPLEMENTED`, 502
//! and 504 `UNAVAILABLE`, others `UNKNOWN`). `deduct_when` still sees the
//! rejection's HTTP status.

mod grpc;
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

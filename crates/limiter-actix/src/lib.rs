//! limiter for actix-web 4.
//!
//! [`LimiterMiddleware`] applies a [`Limiter`] (built with
//! [`Limiter::builder`](limiter_core::engine::Limiter::builder)) to an app,
//! a scope or a resource. It decides every limit that applies to a request
//! in one storage call, answers 429 with a body naming the limit (problem
//! details for JSON clients), sends the rate-limit headers (`X-RateLimit-*`
//! and `Retry-After`, when enabled with `headers_enabled`, as in
//! Flask-Limiter) on the 429 and on the other responses, and puts the evaluated limits in the request's
//! extensions as [`CurrentLimits`]. It behaves as `limiter-tower`'s layer
//! does.
//!
//! ```no_run
//! use actix_web::{App, HttpServer, web};
//! use limiter_actix::{Limiter, LimiterMiddleware};
//! use limiter_core::engine::{Limit, Route};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let limiter = Limiter::builder()
//!     .default_limits("200 per day; 50 per hour")
//!     .headers_enabled(true)
//!     .route(Route::new("slow").path("/slow").limit("1 per day"))
//!     .route(Route::new("medium").path("/medium").limit(Limit::new("1/second").override_defaults(false)))
//!     .route(Route::new("ping").path("/ping").exempt())
//!     .build()?;
//!
//! actix_web::rt::System::new().block_on(async move {
//!     // One limiter for every worker: clones share their counters.
//!     HttpServer::new(move || {
//!         App::new()
//!             .wrap(LimiterMiddleware::new(limiter.clone()))
//!             .route("/slow", web::get().to(|| async { ":(" }))
//!             .route("/medium", web::get().to(|| async { ":|" }))
//!             .route("/ping", web::get().to(|| async { "PONG" }))
//!     })
//!     .bind(("127.0.0.1", 8000))?
//!     .run()
//!     .await
//! })?;
//! # Ok(())
//! # }
//! ```
//!
//! Routes are the patterns of actix resources (`"/users/{id}"`), as
//! `HttpRequest::match_pattern` reports them. Clients are keyed by the peer
//! address by default, which actix's server always provides over TCP (not
//! over Unix sockets, where a request without a key is answered by the
//! failure policy: a 503, never a 500).
//!
//! Limit callbacks receive an [`ActixRequest`]: a `Send` copy of the
//! request's method, URI, headers, match pattern and peer address, since
//! actix's `HttpRequest` cannot cross threads and the limiter is shared by
//! every worker. Extensions that callbacks need are copied by type with
//! [`LimiterMiddleware::copy_extension`]:
//!
//! ```
//! use limiter_actix::{ActixRequest, Limiter, LimiterMiddleware};
//! use limiter_core::engine::Limit;
//!
//! /// Set by an authentication middleware that runs before the limiter.
//! #[derive(Clone)]
//! struct Staff;
//!
//! let limiter = Limiter::builder()
//!     .default_limits(Limit::new("10/minute").exempt_when(|r: &ActixRequest| r.extension::<Staff>().is_some()))
//!     .build()?;
//! let middleware = LimiterMiddleware::new(limiter).copy_extension::<Staff>();
//! # let _ = middleware;
//! # Ok::<(), limiter_core::ConfigError>(())
//! ```

mod middleware;
mod request;

use std::sync::Arc;
use std::time::Duration;

pub use limiter_core::engine::ExtensionKey;
pub use middleware::{CurrentLimits, LimiterFuture, LimiterMiddleware, LimiterService, rejection_response};
pub use request::ActixRequest;

/// The limiter for actix-web.
pub type Limiter = limiter_core::engine::Limiter<ActixRequest>;

/// The builder of [`Limiter`].
pub type LimiterBuilder = limiter_core::engine::LimiterBuilder<ActixRequest>;

/// actix's timer (tokio's), for [`LimiterBuilder::storage_timeout`].
pub fn actix_sleeper() -> limiter_core::engine::Sleeper {
    Arc::new(|d: Duration| Box::pin(actix_web::rt::time::sleep(d)))
}

//! The seed's Flask-Limiter quickstart app, as limits, for every adapter's
//! tests to drive the same configuration.

use limiter_core::engine::{Limit, LimiterBuilder, RequestInfo, Route};

/// The seed app's limits: defaults `200 per day` and `50 per hour`; `slow`
/// at `1 per day` instead of them; `medium` at `1/second` on top of them;
/// `fast` with them; `ping` exempt; headers on.
pub fn seed_app<R: RequestInfo + Send + Sync + 'static>(builder: LimiterBuilder<R>) -> LimiterBuilder<R> {
    builder
        .default_limits("200 per day")
        .default_limits("50 per hour")
        .headers_enabled(true)
        .route(Route::new("slow").path("/slow").limit("1 per day"))
        .route(Route::new("medium").path("/medium").limit(Limit::new("1/second").override_defaults(false)))
        .route(Route::new("fast").path("/fast"))
        .route(Route::new("ping").path("/ping").exempt())
}

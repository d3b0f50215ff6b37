//! The seed's Flask-Limiter quickstart app, served by axum with limiter.
//!
//! Run with: `cargo run -p quickstart`, then `curl -i 127.0.0.1:8000/slow`.
//!
//! The Flask app, route for route:
//!
//! ```python
//! limiter = Limiter(get_remote_address, app=app, default_limits=["200 per day", "50 per hour"],
//!                   storage_uri=storage_uri, strategy="fixed-window")
//! @app.route("/slow")   @limiter.limit("1 per day")                          -> ":("
//! @app.route("/medium") @limiter.limit("1/second", override_defaults=False)  -> ":|"
//! @app.route("/fast")                                                        -> ":)"
//! @app.route("/ping")   @limiter.exempt                                      -> "PONG"
//! @app.errorhandler(429) -> f"Rate limit exceeded: {e.description}", 429
//! ```
//!
//! Environment: `PORT` (default 8000; it listens on 127.0.0.1), and any of
//! Flask-Limiter's `RATELIMIT_*` settings, e.g. `RATELIMIT_STRATEGY`
//! (default `fixed-window`) and `RATELIMIT_STORAGE_URI` (default `memory://`,
//! or `redis://host:port`: then it shares its counters with a Flask-Limiter
//! app on the same Redis).

use std::net::SocketAddr;
use std::process::ExitCode;

use axum::Router;
use axum::routing::get;
use limiter::tower::{Limiter, LimiterLayer};
use limiter::{Limit, Route, Settings};

/// The seed's limits, then any `RATELIMIT_*` environment variable over them
/// (`RATELIMIT_STRATEGY`, `RATELIMIT_STORAGE_URI`, ...), as Flask-Limiter
/// reads its config.
async fn limiter() -> Result<Limiter, String> {
    let builder = Limiter::builder()
        .default_limits("200 per day")
        .default_limits("50 per hour")
        .headers_enabled(true)
        .route(Route::new("slow").path("/slow").limit("1 per day"))
        .route(Route::new("medium").path("/medium").limit(Limit::new("1/second").override_defaults(false)))
        .route(Route::new("fast").path("/fast"))
        .route(Route::new("ping").path("/ping").exempt());
    let mut settings = Settings::from_env().map_err(|e| e.to_string())?;
    // The storage named by RATELIMIT_STORAGE_URI (memory:// by default),
    // connected here; the other settings apply over the seed's.
    let options = settings.storage_options.take().unwrap_or_default();
    let builder = match settings.storage_uri.take() {
        Some(uri) => {
            builder.any_storage(limiter::storage_from_uri_with(&uri, &options).await.map_err(|e| e.to_string())?)
        }
        None => builder,
    };
    settings
        .apply_with_timer(builder, limiter::tower::tokio_sleeper())
        .and_then(|b| b.build())
        .map_err(|e| e.to_string())
}

fn app(limiter: Limiter) -> Router {
    Router::new()
        .route("/slow", get(|| async { ":(" }))
        .route("/medium", get(|| async { ":|" }))
        .route("/fast", get(|| async { ":)" }))
        .route("/ping", get(|| async { "PONG" }))
        .layer(LimiterLayer::new(limiter))
}

#[tokio::main]
async fn main() -> ExitCode {
    let port = match std::env::var("PORT").map(|p| p.parse::<u16>()) {
        Err(_) => 8000,
        Ok(Ok(port)) => port,
        Ok(Err(e)) => {
            eprintln!("quickstart: PORT must be a port number: {e}");
            return ExitCode::FAILURE;
        }
    };
    let limiter = match limiter().await {
        Ok(limiter) => limiter,
        Err(e) => {
            eprintln!("quickstart: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("quickstart: cannot listen on 127.0.0.1:{port}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("quickstart: serving on http://127.0.0.1:{port} ({:?} strategy)", limiter.strategy());
    let service = app(limiter).into_make_service_with_connect_info::<SocketAddr>();
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match axum::serve(listener, service).with_graceful_shutdown(shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quickstart: server failed: {e}");
            ExitCode::FAILURE
        }
    }
}

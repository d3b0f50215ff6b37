//! The seed's Flask-Limiter quickstart app, served by actix-web with limiter.
//!
//! Run with: `cargo run -p quickstart-actix`, then `curl -i 127.0.0.1:8000/slow`.
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
//! Environment: `PORT` (default 8000; it listens on 127.0.0.1),
//! `RATELIMIT_STRATEGY` (default `fixed-window`), `RATELIMIT_STORAGE_URI`
//! (default `memory://`, the only storage for now; the remote storages
//! arrive with the distributed-storage work).

use std::process::ExitCode;

use actix_web::{App, HttpServer, get};
use limiter_actix::{Limiter, LimiterMiddleware};
use limiter_core::engine::{Limit, Route};

#[get("/slow")]
async fn slow() -> &'static str {
    ":("
}

#[get("/medium")]
async fn medium() -> &'static str {
    ":|"
}

#[get("/fast")]
async fn fast() -> &'static str {
    ":)"
}

#[get("/ping")]
async fn ping() -> &'static str {
    "PONG"
}

fn limiter() -> Result<Limiter, String> {
    let strategy = std::env::var("RATELIMIT_STRATEGY").unwrap_or_else(|_| "fixed-window".to_owned());
    let storage = std::env::var("RATELIMIT_STORAGE_URI").unwrap_or_else(|_| "memory://".to_owned());
    if storage != "memory://" {
        return Err(format!(
            "RATELIMIT_STORAGE_URI={:?} is not supported yet: only memory:// is available; \
             the remote storages (Redis, Memcached, MongoDB) arrive with the distributed-storage work",
            without_credentials(&storage)
        ));
    }
    Limiter::builder()
        .strategy_name(&strategy)
        .default_limits("200 per day")
        .default_limits("50 per hour")
        .headers_enabled(true)
        .route(Route::new("slow").path("/slow").limit("1 per day"))
        .route(Route::new("medium").path("/medium").limit(Limit::new("1/second").override_defaults(false)))
        .route(Route::new("fast").path("/fast"))
        .route(Route::new("ping").path("/ping").exempt())
        .build()
        .map_err(|e| e.to_string())
}

/// The storage URI without any `user:password@`, to show in messages.
fn without_credentials(uri: &str) -> String {
    match (uri.split_once("://"), uri.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, host))) => format!("{scheme}://{host}"),
        _ => uri.to_owned(),
    }
}

#[actix_web::main]
async fn main() -> ExitCode {
    let port = match std::env::var("PORT").map(|p| p.parse::<u16>()) {
        Err(_) => 8000,
        Ok(Ok(port)) => port,
        Ok(Err(e)) => {
            eprintln!("quickstart-actix: PORT must be a port number: {e}");
            return ExitCode::FAILURE;
        }
    };
    let limiter = match limiter() {
        Ok(limiter) => limiter,
        Err(e) => {
            eprintln!("quickstart-actix: {e}");
            return ExitCode::FAILURE;
        }
    };
    let strategy = limiter.strategy();
    // Every worker gets a clone of the limiter: they share one storage.
    let server = HttpServer::new(move || {
        App::new()
            .wrap(LimiterMiddleware::new(limiter.clone()))
            .service(slow)
            .service(medium)
            .service(fast)
            .service(ping)
    })
    .bind(("127.0.0.1", port));
    let server = match server {
        Ok(server) => server,
        Err(e) => {
            eprintln!("quickstart-actix: cannot listen on 127.0.0.1:{port}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("quickstart-actix: serving on http://127.0.0.1:{port} ({strategy:?} strategy)");
    match server.run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quickstart-actix: server failed: {e}");
            ExitCode::FAILURE
        }
    }
}

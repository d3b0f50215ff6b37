//! The axum hello-world in several modes, for a wrk run side by side:
//!
//! `bench-http-server MODE PORT` with MODE one of
//! - `bare`: no rate limiting;
//! - `limiter`: limiter's layer, memory storage, two default limits
//!   (per day and per hour), clients keyed by peer address, headers on;
//! - `governor`: tower_governor's layer, peer-address key, headers on.
//!
//! and, to tell what the headers cost from what deciding costs:
//! - `limiter-noheaders`: the limiter with its headers off;
//! - `governor-noheaders`: tower_governor without its headers;
//! - `empty-layer`: a route layer that does nothing, what any layer costs;
//! - `headers-only`: no rate limiting, but the four headers Flask-Limiter
//!   sends (`X-RateLimit-Limit`, `-Remaining`, `-Reset`, `Retry-After`)
//!   added to every response by the plainest tower layer: a fixed limit,
//!   a counter, and two times from the clock.
//!
//! The limits are set high enough that every request is allowed, so the
//! allow path is what is measured (wrk's connections all come from
//! 127.0.0.1, one client). Add `deny` as a third argument to set them so low
//! that almost every request is refused instead (the limiter and governor
//! modes; the others limit nothing).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use limiter::tower::{Limiter, LimiterLayer};
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;

fn app() -> Router {
    Router::new().route("/", get(|| async { "Hello, World!" }))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(mode), Some(port)) = (args.get(1), args.get(2).and_then(|p| p.parse::<u16>().ok())) else {
        eprintln!(
            "usage: bench-http-server MODE PORT [deny]; MODE: bare, empty-layer, headers-only, limiter, limiter-noheaders, governor, governor-noheaders"
        );
        return ExitCode::FAILURE;
    };
    let deny = args.get(3).is_some_and(|a| a == "deny");
    let headers = !mode.ends_with("-noheaders");
    let app = match mode.as_str() {
        "bare" => app(),
        "limiter" | "limiter-noheaders" => {
            let (day, hour) =
                if deny { ("1 per day", "1 per hour") } else { ("1000000000 per day", "100000000 per hour") };
            let limiter = Limiter::builder().default_limits(day).default_limits(hour).headers_enabled(headers).build();
            match limiter {
                Ok(limiter) => app().layer(LimiterLayer::new(limiter)),
                Err(e) => {
                    eprintln!("bench-http-server: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        "empty-layer" => {
            app().layer(tower::util::MapResponseLayer::new(std::convert::identity::<axum::response::Response>))
        }
        "headers-only" => app().layer(tower::util::MapResponseLayer::new(four_headers)),
        "governor" | "governor-noheaders" => {
            let mut builder = GovernorConfigBuilder::default();
            if deny {
                builder.per_second(3600).burst_size(1);
            } else {
                builder.per_nanosecond(1).burst_size(u32::MAX);
            }
            // With headers the configuration is of another type.
            let layered = if headers {
                builder.use_headers().finish().map(|config| app().layer(GovernorLayer::new(Arc::new(config))))
            } else {
                builder.finish().map(|config| app().layer(GovernorLayer::new(Arc::new(config))))
            };
            let Some(app) = layered else {
                eprintln!("bench-http-server: bad governor configuration");
                return ExitCode::FAILURE;
            };
            app
        }
        other => {
            eprintln!("bench-http-server: unknown mode {other:?}");
            return ExitCode::FAILURE;
        }
    };
    let Ok(listener) = tokio::net::TcpListener::bind(("127.0.0.1", port)).await else {
        eprintln!("bench-http-server: cannot listen on 127.0.0.1:{port}");
        return ExitCode::FAILURE;
    };
    match axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-http-server: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Flask-Limiter's four headers for a limit of 100000000 per hour, as a
/// layer with no limiter would write them (names made once, the fixed
/// limit's value too): what sending them costs alone.
fn four_headers(mut response: axum::response::Response) -> axum::response::Response {
    use axum::http::header::{HeaderName, HeaderValue, RETRY_AFTER};
    use std::sync::atomic::{AtomicU64, Ordering};
    const LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
    const REMAINING_NAME: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
    const RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");
    static REMAINING: AtomicU64 = AtomicU64::new(100_000_000);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    let reset = now - now % 3600 + 3600;
    let headers = response.headers_mut();
    headers.insert(LIMIT, HeaderValue::from_static("100000000"));
    headers.insert(REMAINING_NAME, HeaderValue::from(REMAINING.fetch_sub(1, Ordering::Relaxed)));
    headers.insert(RESET, HeaderValue::from(reset + 1));
    headers.insert(RETRY_AFTER, HeaderValue::from(reset + 1 - now));
    response
}

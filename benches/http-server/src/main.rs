//! The axum hello-world three ways, for a wrk run side by side:
//!
//! `bench-http-server MODE PORT` with MODE one of
//! - `bare`: no rate limiting;
//! - `limiter`: limiter's layer, memory storage, two default limits
//!   (per day and per hour), clients keyed by peer address, headers on;
//! - `governor`: tower_governor's layer, peer-address key, headers on.
//!
//! The limits are set high enough that every request is allowed, so the
//! allow path is what is measured (wrk's connections all come from
//! 127.0.0.1, one client). Add `deny` as a third argument to set them so low
//! that almost every request is refused instead.

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
        eprintln!("usage: bench-http-server bare|limiter|governor PORT [deny]");
        return ExitCode::FAILURE;
    };
    let deny = args.get(3).is_some_and(|a| a == "deny");
    // `limiter-noheaders`: the limiter without rate-limit headers, to see
    // what sending them costs.
    let headers = mode != "limiter-noheaders";
    let app = match mode.as_str() {
        "bare" => app(),
        "limiter" | "limiter-noheaders" => {
            let (day, hour) = if deny { ("1 per day", "1 per hour") } else { ("1000000000 per day", "100000000 per hour") };
            let limiter = Limiter::builder().default_limits(day).default_limits(hour).headers_enabled(headers).build();
            match limiter {
                Ok(limiter) => app().layer(LimiterLayer::new(limiter)),
                Err(e) => {
                    eprintln!("bench-http-server: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        "governor" => {
            let mut builder = GovernorConfigBuilder::default();
            if deny {
                builder.per_second(3600).burst_size(1);
            } else {
                builder.per_nanosecond(1).burst_size(u32::MAX);
            }
            let Some(config) = builder.use_headers().finish() else {
                eprintln!("bench-http-server: bad governor configuration");
                return ExitCode::FAILURE;
            };
            app().layer(GovernorLayer::new(Arc::new(config)))
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

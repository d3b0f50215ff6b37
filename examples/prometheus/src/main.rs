//! An axum app whose rate limiter reports to Prometheus, and rolls out a new
//! limit in shadow mode.
//!
//! Run with `cargo run -p prometheus`, then:
//!
//! ```sh
//! for i in $(seq 5); do curl -s -o /dev/null -w '%{http_code}\n' 127.0.0.1:8000/search; done
//! curl -s 127.0.0.1:8000/metrics | grep limiter_
//! ```
//!
//! `/search` enforces 10 per minute and tries out 3 per minute in shadow
//! mode: from the fourth request on, the shadow limit would refuse, so the
//! app logs a warning and counts `decision="shadow_limited"`, but answers
//! 200. When the counts look right, drop `.shadow(true)` to enforce it.
//!
//! The app mounts the `limiter` command line too:
//! `cargo run -p prometheus -- limiter limits` shows its routes.
//!
//! Environment: `PORT` (default 8000; it listens on 127.0.0.1).

use std::net::SocketAddr;
use std::process::ExitCode;

use axum::Router;
use axum::routing::get;
use limiter::tower::{Limiter, LimiterLayer};
use limiter::{ConfigError, Limit, Route};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// The app's limiter: the seed's defaults, a search route with a limit on
/// trial, and `/metrics` left alone.
fn limiter() -> Result<Limiter, ConfigError> {
    Limiter::builder()
        .default_limits("200 per day; 50 per hour")
        .headers_enabled(true)
        .route(
            Route::new("search")
                .path("/search")
                .limit("10 per minute")
                // The limit being rolled out: counted and reported, not enforced.
                .limit(Limit::new("3 per minute").shadow(true)),
        )
        .route(Route::new("metrics").path("/metrics").exempt())
        .build()
}

fn app(limiter: Limiter, metrics: PrometheusHandle) -> Router {
    Router::new()
        .route("/search", get(|| async { "results" }))
        .route("/metrics", get(move || std::future::ready(metrics.render())))
        .layer(LimiterLayer::new(limiter))
}

#[tokio::main]
async fn main() -> ExitCode {
    // The recorder first: the limiter reports from the moment it is built.
    let metrics = match PrometheusBuilder::new().install_recorder() {
        Ok(handle) => handle,
        Err(e) => {
            eprintln!("prometheus: cannot install the metrics recorder: {e}");
            return ExitCode::FAILURE;
        }
    };
    limiter::engine::metrics::describe();
    let limiter = match limiter() {
        Ok(limiter) => limiter,
        Err(e) => {
            eprintln!("prometheus: {e}");
            return ExitCode::FAILURE;
        }
    };
    if std::env::args().nth(1).as_deref() == Some("limiter") {
        return limiter_cli::run(&limiter, std::env::args_os().skip(1)).await;
    }
    let port = match std::env::var("PORT").map(|p| p.parse::<u16>()) {
        Err(_) => 8000,
        Ok(Ok(port)) => port,
        Ok(Err(e)) => {
            eprintln!("prometheus: PORT must be a port number: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("prometheus: cannot listen on 127.0.0.1:{port}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("listening on http://127.0.0.1:{port} (/search, /metrics)");
    let service = app(limiter, metrics).into_make_service_with_connect_info::<SocketAddr>();
    match axum::serve(listener, service).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("prometheus: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use axum::body::Body;
    use axum::extract::ConnectInfo;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    async fn get(app: &Router, path: &str) -> (u16, String) {
        let mut request = axum::http::Request::get(path).body(Body::empty()).unwrap();
        request.extensions_mut().insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 1], 40_000))));
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[test]
    fn metrics_show_the_shadow_limit_before_it_is_enforced() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        // A recorder of the test's own, on this thread (the runtime's only one).
        let text = metrics::with_local_recorder(&recorder, || {
            runtime.block_on(async {
                let app = app(limiter().unwrap(), handle.clone());
                for _ in 0..5 {
                    assert_eq!(get(&app, "/search").await.0, 200, "the shadow limit refuses nothing");
                }
                get(&app, "/metrics").await
            })
        });
        let (status, text) = text;
        assert_eq!(status, 200);
        let line = |needle: &[&str]| {
            text.lines().find(|l| l.starts_with("limiter_") && needle.iter().all(|n| l.contains(n))).map(str::to_owned)
        };
        let shadow = line(&["limiter_decisions_total", "decision=\"shadow_limited\"", "route=\"search\""]);
        assert!(shadow.as_deref().is_some_and(|l| l.ends_with(" 2")), "{text}");
        let allowed = line(&["limiter_decisions_total", "decision=\"allowed\""]);
        assert!(allowed.as_deref().is_some_and(|l| l.ends_with(" 3")), "{text}");
        let breaches = line(&["limiter_breaches_total", "shadow=\"true\"", "limit=\"3 per 1 minute\""]);
        assert!(breaches.as_deref().is_some_and(|l| l.ends_with(" 2")), "{text}");
        assert!(line(&["limiter_storage_call_seconds", "operation=\"decide\""]).is_some(), "{text}");
    }
}

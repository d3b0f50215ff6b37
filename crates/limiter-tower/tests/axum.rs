//! The layer on an axum router, driven in-process with `oneshot` on a
//! manual clock.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Extension};
use axum::routing::get;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use limiter_core::engine::{FailurePolicy, Limit, Rejection, ResponseInfo, Route};
use limiter_core::storage::{Batch, Key, Outcome, Storage, Supports};
use limiter_core::{Clock, FixedWindow, ManualClock, MemoryStorage, RateLimit, StorageError};
use limiter_testkit::MANUAL_START;
use limiter_tower::{
    CurrentLimits, HttpRequest, LimitedBody, Limiter, LimiterBuilder, LimiterLayer, MatchedRoute, RouteSource,
};
use tower::ServiceExt;

fn quickstart(clock: &ManualClock) -> Router {
    let limiter = limiter_testkit::seed_app(Limiter::builder().clock(clock.clone())).build().unwrap();
    Router::new()
        .route("/slow", get(|| async { ":(" }))
        .route("/medium", get(|| async { ":|" }))
        .route("/fast", get(|| async { ":)" }))
        .route("/ping", get(|| async { "PONG" }))
        .route(
            "/whoami",
            get(|Extension(limits): Extension<CurrentLimits>| async move {
                let current = limits.current().unwrap();
                format!("{} left of {}", current.remaining, current.limit)
            }),
        )
        .layer(LimiterLayer::new(limiter))
}

fn get_from(path: &str, peer: [u8; 4]) -> Request<Body> {
    let mut request = Request::get(path).body(Body::empty()).unwrap();
    request.extensions_mut().insert(ConnectInfo(SocketAddr::from((peer, 40_000))));
    request
}

async fn send(app: &Router, request: Request<Body>) -> (StatusCode, http::HeaderMap, String) {
    let response: Response<Body> = app.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, String::from_utf8(body.to_vec()).unwrap())
}

fn header<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn quickstart_over_axum() {
    let clock = ManualClock::new(MANUAL_START);
    let app = quickstart(&clock);
    let me = [127, 0, 0, 1];
    let reset = (MANUAL_START.as_secs() + 86_400 + 1).to_string();

    let (status, headers, body) = send(&app, get_from("/slow", me)).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, ":("));
    assert_eq!(header(&headers, "x-ratelimit-limit"), Some("1"));
    assert_eq!(header(&headers, "x-ratelimit-remaining"), Some("0"));
    assert_eq!(header(&headers, "x-ratelimit-reset"), Some(reset.as_str()));
    assert_eq!(header(&headers, "retry-after"), Some("86400"));

    let (status, headers, body) = send(&app, get_from("/slow", me)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body, "Rate limit exceeded: 1 per 1 day");
    assert_eq!(header(&headers, "content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(header(&headers, "retry-after"), Some("86400"));

    // Another client has its own buckets.
    assert_eq!(send(&app, get_from("/slow", [10, 0, 0, 2])).await.0, StatusCode::OK);

    assert_eq!(send(&app, get_from("/medium", me)).await.0, StatusCode::OK);
    let (status, headers, body) = send(&app, get_from("/medium", me)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body, "Rate limit exceeded: 1 per 1 second");
    assert_eq!(header(&headers, "retry-after"), Some("1"));
    clock.advance(Duration::from_secs(1));
    assert_eq!(send(&app, get_from("/medium", me)).await.0, StatusCode::OK);

    for _ in 0..60 {
        let (status, headers, body) = send(&app, get_from("/ping", me)).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "PONG"));
        assert_eq!(header(&headers, "x-ratelimit-limit"), None, "exempt routes get no headers");
    }
    for _ in 0..50 {
        assert_eq!(send(&app, get_from("/fast", me)).await.0, StatusCode::OK);
    }
    let (status, _, body) = send(&app, get_from("/fast", me)).await;
    assert_eq!((status, body.as_str()), (StatusCode::TOO_MANY_REQUESTS, "Rate limit exceeded: 50 per 1 hour"));

    // Unmatched requests are not limited and reach the fallback (404).
    for _ in 0..3 {
        assert_eq!(send(&app, get_from("/nope", me)).await.0, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn handlers_see_the_current_limit() {
    let clock = ManualClock::new(MANUAL_START);
    let app = quickstart(&clock);
    let (_, _, body) = send(&app, get_from("/whoami", [127, 0, 0, 1])).await;
    assert_eq!(body, "49 left of 50 per 1 hour");
}

#[tokio::test]
async fn json_clients_get_problem_details() {
    let clock = ManualClock::new(MANUAL_START);
    let app = quickstart(&clock);
    let _ = send(&app, get_from("/slow", [127, 0, 0, 1])).await;
    let mut request = get_from("/slow", [127, 0, 0, 1]);
    request.headers_mut().insert("accept", "application/json".parse().unwrap());
    let (status, headers, body) = send(&app, request).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&headers, "content-type"), Some("application/problem+json"));
    assert!(body.contains("\"detail\":\"Rate limit exceeded: 1 per 1 day\""), "{body}");
}

#[tokio::test]
async fn a_server_without_peer_addresses_answers_503_not_500() {
    let clock = ManualClock::new(MANUAL_START);
    let app = quickstart(&clock);
    let request = Request::get("/fast").body(Body::empty()).unwrap();
    let (status, headers, body) = send(&app, request).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&headers, "retry-after"), Some("1"));
    assert!(body.contains("unavailable"), "{body}");

    let open =
        Limiter::builder().default_limits("1/minute").on_storage_failure(FailurePolicy::FailOpen).build().unwrap();
    let app = Router::new().route("/fast", get(|| async { ":)" })).layer(LimiterLayer::new(open));
    let request = Request::get("/fast").body(Body::empty()).unwrap();
    assert_eq!(send(&app, request).await.0, StatusCode::OK);
}

#[tokio::test]
async fn uri_paths_as_routes_for_tonic_and_hyper() {
    let limiter = Limiter::builder()
        .route(Route::new("say_hello").path("/greeter.Greeter/SayHello").limit("1/minute"))
        .build()
        .unwrap();
    let service =
        tower::service_fn(|_: Request<Body>| async { Ok::<_, std::convert::Infallible>(Response::new(Body::empty())) });
    let layered = tower::ServiceBuilder::new()
        .layer(LimiterLayer::new(limiter).route_source(RouteSource::UriPath))
        .service(service);
    let call = |layered: &_| {
        let mut request = Request::post("/greeter.Greeter/SayHello").body(Body::empty()).unwrap();
        request.extensions_mut().insert(SocketAddr::from(([127, 0, 0, 1], 1)));
        tower::ServiceExt::<Request<Body>>::oneshot(Clone::clone(layered), request)
    };
    assert_eq!(call(&layered).await.unwrap().status(), StatusCode::OK);
    assert_eq!(call(&layered).await.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn matched_route_extension_for_other_routers() {
    let limiter = Limiter::builder().route(Route::new("/items/{id}").limit("1/minute")).build().unwrap();
    let service =
        tower::service_fn(|_: Request<Body>| async { Ok::<_, std::convert::Infallible>(Response::new(Body::empty())) });
    let layered = tower::ServiceBuilder::new().layer(LimiterLayer::new(limiter)).service(service);
    let request = |path: &str| {
        let mut request = Request::get(path).body(Body::empty()).unwrap();
        request.extensions_mut().insert(SocketAddr::from(([127, 0, 0, 1], 1)));
        request.extensions_mut().insert(MatchedRoute("/items/{id}".into()));
        request
    };
    assert_eq!(layered.clone().oneshot(request("/items/1")).await.unwrap().status(), StatusCode::OK);
    assert_eq!(layered.clone().oneshot(request("/items/2")).await.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn callbacks_read_the_request_head() {
    let limiter = Limiter::builder()
        .default_limits(Limit::new("1/minute").exempt_when(|r: &HttpRequest| r.headers().contains_key("x-admin")))
        .build()
        .unwrap();
    let app = Router::new().route("/a", get(|| async { "a" })).layer(LimiterLayer::new(limiter));
    for _ in 0..3 {
        let mut request = get_from("/a", [127, 0, 0, 1]);
        request.headers_mut().insert("x-admin", "1".parse().unwrap());
        assert_eq!(send(&app, request).await.0, StatusCode::OK);
    }
    assert_eq!(send(&app, get_from("/a", [127, 0, 0, 1])).await.0, StatusCode::OK);
    assert_eq!(send(&app, get_from("/a", [127, 0, 0, 1])).await.0, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn keys_from_request_extensions() {
    #[derive(Clone)]
    struct Tenant(&'static str);
    impl std::fmt::Display for Tenant {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    let limiter = Limiter::builder()
        .key(limiter_tower::ExtensionKey::<Tenant>::new())
        .default_limits("1/minute")
        .build()
        .unwrap();
    let app = Router::new().route("/a", get(|| async { "a" })).layer(LimiterLayer::new(limiter));
    let as_tenant = |t: &'static str| {
        let mut request = Request::get("/a").body(Body::empty()).unwrap();
        request.extensions_mut().insert(Tenant(t));
        request
    };
    assert_eq!(send(&app, as_tenant("acme")).await.0, StatusCode::OK);
    assert_eq!(send(&app, as_tenant("acme")).await.0, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(send(&app, as_tenant("globex")).await.0, StatusCode::OK);
    let anonymous = Request::get("/a").body(Body::empty()).unwrap();
    assert_eq!(send(&app, anonymous).await.0, StatusCode::SERVICE_UNAVAILABLE, "no key: never a shared bucket");
}

#[tokio::test]
async fn a_later_retry_after_from_the_handler_is_kept() {
    let limiter = Limiter::builder().default_limits("10/minute").headers_enabled(true).build().unwrap();
    let app = Router::new()
        .route("/later", get(|| async { ([("retry-after", "3600")], "later") }))
        .route("/sooner", get(|| async { ([("retry-after", "5")], "sooner") }))
        .layer(LimiterLayer::new(limiter));
    let (_, headers, _) = send(&app, get_from("/later", [127, 0, 0, 1])).await;
    assert_eq!(header(&headers, "retry-after"), Some("3600"), "the handler's later time wins");
    let (_, headers, _) = send(&app, get_from("/sooner", [127, 0, 0, 1])).await;
    let ours: u64 = header(&headers, "retry-after").unwrap().parse().unwrap();
    assert!(ours > 5, "the limiter's later time wins: {ours}");
}

#[tokio::test]
async fn a_shadow_limit_answers_200_with_the_headers_it_would_send() {
    let limiter = Limiter::builder()
        .clock(ManualClock::new(MANUAL_START))
        .headers_enabled(true)
        .route(Route::new("search").path("/search").limit(Limit::new("1 per minute").shadow(true)))
        .build()
        .unwrap();
    let app = Router::new().route("/search", get(|| async { "results" })).layer(LimiterLayer::new(limiter));
    let me = [127, 0, 0, 1];
    assert_eq!(send(&app, get_from("/search", me)).await.0, StatusCode::OK);
    for _ in 0..3 {
        let (status, headers, body) = send(&app, get_from("/search", me)).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "results"), "shadow mode never refuses");
        assert_eq!(header(&headers, "x-ratelimit-limit"), Some("1"));
        assert_eq!(header(&headers, "x-ratelimit-remaining"), Some("0"), "the state as enforcing would show it");
    }
}

/// A [`MemoryStorage`] whose decisions wait once before answering, as a
/// remote storage's do: the layer then takes its boxed path.
#[derive(Clone, Debug, Default)]
struct Waiting(MemoryStorage);

impl Storage for Waiting {
    fn name(&self) -> &'static str {
        "waiting"
    }

    fn check(&self) -> impl Future<Output = Result<(), StorageError>> + Send {
        self.0.check()
    }

    fn reset(&self) -> impl Future<Output = Result<(), StorageError>> + Send {
        self.0.reset()
    }
}

impl Supports<FixedWindow> for Waiting {
    async fn decide<'a>(&'a self, strategy: FixedWindow, batch: &'a Batch<'a>) -> Result<Outcome, StorageError> {
        tokio::task::yield_now().await;
        self.0.decide(strategy, batch).await
    }

    fn clear<'a>(
        &'a self,
        strategy: FixedWindow,
        limit: &'a RateLimit,
        key: Key<'a>,
    ) -> impl Future<Output = Result<(), StorageError>> + Send + 'a {
        self.0.clear(strategy, limit, key)
    }
}

limiter_core::dyn_storage!(Waiting: FixedWindow);

/// A limiter on the manual clock, on the memory storage or, if `waits`, on
/// one that waits.
fn on_storage(builder: LimiterBuilder, clock: &ManualClock, waits: bool) -> Limiter {
    let builder = builder.clock(clock.clone());
    if waits { builder.storage(Waiting::default()) } else { builder }.build().unwrap()
}

fn grpc_call(peer: Option<[u8; 4]>) -> Request<Body> {
    let mut request = Request::post("/greeter.Greeter/SayHello")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Body::empty())
        .unwrap();
    if let Some(peer) = peer {
        request.extensions_mut().insert(SocketAddr::from((peer, 1)));
    }
    request
}

type Grpc = tower::util::BoxCloneService<Request<Body>, Response<Body>, std::convert::Infallible>;

fn grpc_server(limiter: Limiter) -> Grpc {
    let service =
        tower::service_fn(|_: Request<Body>| async { Ok::<_, std::convert::Infallible>(Response::new(Body::empty())) });
    let layered = tower::ServiceBuilder::new()
        .layer(LimiterLayer::new(limiter).route_source(RouteSource::UriPath))
        .service(service)
        .map_response(|response: Response<LimitedBody<Body>>| response.map(Body::new));
    tower::util::BoxCloneService::new(layered)
}

async fn call_grpc(server: &Grpc, request: Request<Body>) -> (StatusCode, http::HeaderMap, String) {
    let (parts, body) = server.clone().oneshot(request).await.unwrap().into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn grpc_calls_are_refused_with_a_grpc_status() {
    let clock = ManualClock::new(MANUAL_START);
    for waits in [false, true] {
        let builder = Limiter::builder()
            .headers_enabled(true)
            .route(Route::new("say_hello").path("/greeter.Greeter/SayHello").limit("1/minute"));
        let server = grpc_server(on_storage(builder, &clock, waits));
        let me = Some([127, 0, 0, 1]);
        let (status, headers, _) = call_grpc(&server, grpc_call(me)).await;
        assert_eq!((status, header(&headers, "grpc-status")), (StatusCode::OK, None), "the call went through");

        let (status, headers, body) = call_grpc(&server, grpc_call(me)).await;
        assert_eq!(status, StatusCode::OK, "gRPC refusals are HTTP 200 (waits: {waits})");
        assert_eq!(header(&headers, "content-type"), Some("application/grpc"));
        assert_eq!(header(&headers, "grpc-status"), Some("8"), "RESOURCE_EXHAUSTED");
        assert_eq!(header(&headers, "grpc-message"), Some("Rate limit exceeded: 1 per 1 minute"));
        assert_eq!(body, "", "a trailers-only answer");
        // The window ends a minute after the first call, rounded up.
        let reset = (clock.now().as_secs_ceil() + 60).to_string();
        assert_eq!(header(&headers, "x-ratelimit-limit"), Some("1"));
        assert_eq!(header(&headers, "x-ratelimit-remaining"), Some("0"));
        assert_eq!(header(&headers, "x-ratelimit-reset"), Some(reset.as_str()));
        assert_eq!(header(&headers, "retry-after"), Some("60"));

        // The same client over plain HTTP still gets a 429.
        let mut plain = grpc_call(me);
        plain.headers_mut().remove("content-type");
        let (status, headers, body) = call_grpc(&server, plain).await;
        assert_eq!((status, body.as_str()), (StatusCode::TOO_MANY_REQUESTS, "Rate limit exceeded: 1 per 1 minute"));
        assert_eq!(header(&headers, "grpc-status"), None);
        clock.advance(Duration::from_secs(60));
    }
}

#[tokio::test]
async fn grpc_fail_closed_is_unavailable_and_messages_are_percent_encoded() {
    let limiter = Limiter::builder()
        .route(
            Route::new("say_hello")
                .path("/greeter.Greeter/SayHello")
                .limit(Limit::new("1/minute").error_message("100% used,\nr\u{e9}essayez")),
        )
        .build()
        .unwrap();
    let server = grpc_server(limiter);
    // No peer address: no key, and the limiter fails closed with a 503.
    let (status, headers, body) = call_grpc(&server, grpc_call(None)).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, ""));
    assert_eq!(header(&headers, "grpc-status"), Some("14"), "UNAVAILABLE");
    assert_eq!(header(&headers, "retry-after"), Some("1"));
    assert!(header(&headers, "grpc-message").unwrap().contains("unavailable"), "{headers:?}");

    let me = Some([127, 0, 0, 1]);
    let _ = call_grpc(&server, grpc_call(me)).await;
    let (_, headers, _) = call_grpc(&server, grpc_call(me)).await;
    assert_eq!(header(&headers, "grpc-status"), Some("8"));
    assert_eq!(header(&headers, "grpc-message"), Some("Rate limit exceeded: 100%25 used,%0Ar%C3%A9essayez"));
}

#[tokio::test]
async fn a_breach_hooks_status_maps_to_its_grpc_code() {
    let limiter = Limiter::builder()
        .default_limits("1/minute")
        .on_breach(|_| Some(Rejection::text(403, "go away").with_header("content-type", "text/html")))
        .build()
        .unwrap();
    let server = grpc_server(limiter);
    let me = Some([127, 0, 0, 1]);
    let _ = call_grpc(&server, grpc_call(me)).await;
    let (status, headers, body) = call_grpc(&server, grpc_call(me)).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, ""));
    assert_eq!(header(&headers, "grpc-status"), Some("7"), "PERMISSION_DENIED");
    assert_eq!(header(&headers, "grpc-message"), Some("go away"));
    assert_eq!(header(&headers, "content-type"), Some("application/grpc"), "a hook's content type is not gRPC's");
}

/// `/login` answers 401 to a request with `x-wrong`, else 200; only 401s
/// count against its limit.
fn login_app(clock: &ManualClock, waits: bool) -> Router {
    let builder = Limiter::builder()
        .headers_enabled(true)
        .route(Route::new("login").path("/login").limit(Limit::new("2/minute").deduct_when(|r| r.status == 401)));
    Router::new()
        .route(
            "/login",
            get(|headers: http::HeaderMap| async move {
                if headers.contains_key("x-wrong") { StatusCode::UNAUTHORIZED } else { StatusCode::OK }
            }),
        )
        .layer(LimiterLayer::new(on_storage(builder, clock, waits)))
}

#[tokio::test]
async fn deduct_when_counts_only_the_responses_it_accepts() {
    let clock = ManualClock::new(MANUAL_START);
    let me = [127, 0, 0, 1];
    let wrong = || {
        let mut request = get_from("/login", me);
        request.headers_mut().insert("x-wrong", "1".parse().unwrap());
        request
    };
    for waits in [false, true] {
        let app = login_app(&clock, waits);
        for _ in 0..5 {
            let (status, headers, _) = send(&app, get_from("/login", me)).await;
            assert_eq!(status, StatusCode::OK, "successes are not counted (waits: {waits})");
            assert_eq!(header(&headers, "x-ratelimit-remaining"), Some("2"));
        }
        assert_eq!(send(&app, wrong()).await.0, StatusCode::UNAUTHORIZED);
        let (status, headers, _) = send(&app, get_from("/login", me)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(header(&headers, "x-ratelimit-remaining"), Some("1"), "the 401 was deducted after its response");
        assert_eq!(send(&app, wrong()).await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(send(&app, get_from("/login", me)).await.0, StatusCode::TOO_MANY_REQUESTS);
        clock.advance(Duration::from_secs(60));
    }
}

#[tokio::test]
async fn refusals_are_offered_to_pending_deduct_when_limits() {
    let clock = ManualClock::new(MANUAL_START);
    for (waits, grpc) in [(false, false), (true, false), (false, true), (true, true)] {
        // A 1/second limit refuses; a 2/minute one counts only refusals
        // (HTTP 429, whether or not the client reads it in `grpc-status`).
        // Every limit is reached only when counting every limit: as in
        // Flask-Limiter, a limit after the first breach is not deducted.
        let builder = Limiter::builder().fail_on_first_breach(false).route(
            Route::new("say_hello")
                .path("/greeter.Greeter/SayHello")
                .limit("1/second")
                .limit(Limit::new("2/minute").deduct_when(|r| r.status == 429)),
        );
        let server = grpc_server(on_storage(builder, &clock, waits));
        let call = || {
            let mut request = grpc_call(Some([127, 0, 0, 1]));
            if !grpc {
                request.headers_mut().remove("content-type");
            }
            request
        };
        let refused = |(status, headers, _): (StatusCode, http::HeaderMap, String)| {
            if grpc { header(&headers, "grpc-status") == Some("8") } else { status == StatusCode::TOO_MANY_REQUESTS }
        };
        let case = format!("waits: {waits}, grpc: {grpc}");
        assert!(!refused(call_grpc(&server, call()).await), "{case}");
        assert!(refused(call_grpc(&server, call()).await), "{case}");
        assert!(refused(call_grpc(&server, call()).await), "{case}");
        clock.advance(Duration::from_secs(1));
        assert!(refused(call_grpc(&server, call()).await), "the two refusals filled 2/minute ({case})");
        clock.advance(Duration::from_secs(60));
    }
}

#[tokio::test]
async fn a_failed_call_counts_as_a_500_for_deduct_when() {
    let clock = ManualClock::new(MANUAL_START);
    for waits in [false, true] {
        let builder =
            Limiter::builder().default_limits(Limit::new("1/minute").deduct_when(|r: &ResponseInfo| r.status >= 500));
        let service = tower::service_fn(|request: Request<Body>| async move {
            if request.headers().contains_key("x-fail") {
                Err(std::io::Error::other("the backend is down"))
            } else {
                Ok(Response::new(Body::empty()))
            }
        });
        let layered = tower::ServiceBuilder::new()
            .layer(LimiterLayer::new(on_storage(builder, &clock, waits)).route_source(RouteSource::UriPath))
            .service(service);
        let call = |fail: bool| {
            let mut request = get_from("/a", [127, 0, 0, 1]);
            if fail {
                request.headers_mut().insert("x-fail", "1".parse().unwrap());
            }
            layered.clone().oneshot(request)
        };
        for _ in 0..3 {
            assert_eq!(call(false).await.unwrap().status(), StatusCode::OK, "successes are not counted");
        }
        assert!(call(true).await.is_err(), "the service's error is passed on");
        let status = call(false).await.unwrap().status();
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "the error was deducted (waits: {waits})");
        clock.advance(Duration::from_secs(60));
    }
}

#[tokio::test]
async fn a_429_carries_the_rate_limit_headers() {
    let clock = ManualClock::new(MANUAL_START);
    let limiter =
        Limiter::builder().clock(clock.clone()).default_limits("1/minute").headers_enabled(true).build().unwrap();
    let app = Router::new().route("/a", get(|| async { "a" })).layer(LimiterLayer::new(limiter));
    let me = [127, 0, 0, 1];
    assert_eq!(send(&app, get_from("/a", me)).await.0, StatusCode::OK);
    clock.advance(Duration::from_secs(10));
    let (status, headers, _) = send(&app, get_from("/a", me)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let reset = (MANUAL_START.as_secs_ceil() + 60).to_string();
    assert_eq!(header(&headers, "x-ratelimit-limit"), Some("1"));
    assert_eq!(header(&headers, "x-ratelimit-remaining"), Some("0"));
    assert_eq!(header(&headers, "x-ratelimit-reset"), Some(reset.as_str()));
    assert_eq!(header(&headers, "retry-after"), Some("50"));
}

#[tokio::test]
async fn a_breach_hooks_later_retry_after_is_kept() {
    let limiter = Limiter::builder()
        .clock(ManualClock::new(MANUAL_START))
        .default_limits("1/minute")
        .headers_enabled(true)
        .on_breach(|_| Some(Rejection::text(429, "x").with_header("Retry-After", "3600")))
        .build()
        .unwrap();
    let app = Router::new().route("/a", get(|| async { "a" })).layer(LimiterLayer::new(limiter));
    let me = [127, 0, 0, 1];
    assert_eq!(send(&app, get_from("/a", me)).await.0, StatusCode::OK);
    let (status, headers, body) = send(&app, get_from("/a", me)).await;
    assert_eq!((status, body.as_str()), (StatusCode::TOO_MANY_REQUESTS, "x"));
    assert_eq!(header(&headers, "retry-after"), Some("3600"), "the hook's later time wins");
    assert_eq!(headers.get_all("retry-after").iter().count(), 1);
    assert_eq!(header(&headers, "x-ratelimit-limit"), Some("1"));
}

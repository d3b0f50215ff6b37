//! The middleware on an actix-web app, driven in-process with
//! `actix_web::test` on a manual clock: the same behaviour as limiter-tower's
//! layer on axum.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::HeaderMap;
use actix_web::test::{TestRequest, call_service, init_service, read_body};
use actix_web::{App, HttpMessage, HttpResponse, web};
use limiter_actix::{ActixRequest, CurrentLimits, Limiter, LimiterMiddleware};
use limiter_core::ManualClock;
use limiter_core::engine::{FailurePolicy, Limit, RequestInfo, Route};
use limiter_testkit::MANUAL_START;

const ME: [u8; 4] = [127, 0, 0, 1];

fn quickstart_limiter(clock: &ManualClock) -> Limiter {
    limiter_testkit::seed_app(Limiter::builder().clock(clock.clone())).build().unwrap()
}

async fn whoami(limits: Option<web::ReqData<CurrentLimits>>) -> String {
    match limits {
        Some(limits) => {
            let current = limits.current().unwrap();
            format!("{} left of {}", current.remaining, current.limit)
        }
        None => "no limits".to_owned(),
    }
}

/// The seed's Flask quickstart, plus a route that shows its current limit.
macro_rules! quickstart {
    ($limiter:expr) => {
        init_service(
            App::new()
                .wrap(LimiterMiddleware::new($limiter))
                .route("/slow", web::get().to(|| async { ":(" }))
                .route("/medium", web::get().to(|| async { ":|" }))
                .route("/fast", web::get().to(|| async { ":)" }))
                .route("/ping", web::get().to(|| async { "PONG" }))
                .route("/whoami", web::get().to(whoami))
                .route("/ping/whoami", web::get().to(whoami)),
        )
        .await
    };
}

fn get_from(path: &str, peer: [u8; 4]) -> TestRequest {
    TestRequest::get().uri(path).peer_addr(SocketAddr::from((peer, 40_000)))
}

/// Sends a `TestRequest` to an app: (status, headers, body).
macro_rules! send {
    ($app:expr, $request:expr) => {
        respond(call_service($app, $request.to_request()).await).await
    };
}

async fn respond<B: MessageBody>(response: ServiceResponse<B>) -> (StatusCode, HeaderMap, String) {
    let status = response.status();
    let headers = response.headers().clone();
    let body = read_body(response).await;
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[actix_web::test]
async fn quickstart_over_actix() {
    let clock = ManualClock::new(MANUAL_START);
    let app = quickstart!(quickstart_limiter(&clock));
    let reset = (MANUAL_START.as_secs() + 86_400 + 1).to_string();

    let (status, headers, body) = send!(&app, get_from("/slow", ME));
    assert_eq!((status, body.as_str()), (StatusCode::OK, ":("));
    assert_eq!(header(&headers, "x-ratelimit-limit"), Some("1"));
    assert_eq!(header(&headers, "x-ratelimit-remaining"), Some("0"));
    assert_eq!(header(&headers, "x-ratelimit-reset"), Some(reset.as_str()));
    assert_eq!(header(&headers, "retry-after"), Some("86400"));

    let (status, headers, body) = send!(&app, get_from("/slow", ME));
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body, "Rate limit exceeded: 1 per 1 day");
    assert_eq!(header(&headers, "content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(header(&headers, "x-ratelimit-limit"), Some("1"));
    assert_eq!(header(&headers, "x-ratelimit-remaining"), Some("0"));
    assert_eq!(header(&headers, "x-ratelimit-reset"), Some(reset.as_str()));
    assert_eq!(header(&headers, "retry-after"), Some("86400"));

    // Another client has its own buckets.
    assert_eq!(send!(&app, get_from("/slow", [10, 0, 0, 2])).0, StatusCode::OK);

    // /medium: 1/second on top of the defaults; the headers show the second.
    let (status, headers, body) = send!(&app, get_from("/medium", ME));
    assert_eq!((status, body.as_str()), (StatusCode::OK, ":|"));
    assert_eq!(header(&headers, "x-ratelimit-limit"), Some("1"));
    let (status, headers, body) = send!(&app, get_from("/medium", ME));
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body, "Rate limit exceeded: 1 per 1 second");
    assert_eq!(header(&headers, "retry-after"), Some("1"));
    clock.advance(Duration::from_secs(1));
    assert_eq!(send!(&app, get_from("/medium", ME)).0, StatusCode::OK);

    for _ in 0..60 {
        let (status, headers, body) = send!(&app, get_from("/ping", ME));
        assert_eq!((status, body.as_str()), (StatusCode::OK, "PONG"));
        assert_eq!(header(&headers, "x-ratelimit-limit"), None, "exempt routes get no headers");
    }
    for i in 0..50 {
        let (status, headers, body) = send!(&app, get_from("/fast", ME));
        assert_eq!((status, body.as_str()), (StatusCode::OK, ":)"));
        // The hour's limit is shown: the shorter window comes first.
        assert_eq!(header(&headers, "x-ratelimit-limit"), Some("50"));
        assert_eq!(header(&headers, "x-ratelimit-remaining"), Some((49 - i).to_string().as_str()));
    }
    let (status, headers, body) = send!(&app, get_from("/fast", ME));
    assert_eq!((status, body.as_str()), (StatusCode::TOO_MANY_REQUESTS, "Rate limit exceeded: 50 per 1 hour"));
    assert_eq!(header(&headers, "x-ratelimit-limit"), Some("50"));

    // Unmatched requests are not limited and reach the default service (404).
    for _ in 0..3 {
        let (status, headers, _) = send!(&app, get_from("/nope", ME));
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(header(&headers, "x-ratelimit-limit"), None);
    }
}

#[actix_web::test]
async fn handlers_see_the_current_limit() {
    let clock = ManualClock::new(MANUAL_START);
    let app = quickstart!(quickstart_limiter(&clock));
    let (_, _, body) = send!(&app, get_from("/whoami", ME));
    assert_eq!(body, "49 left of 50 per 1 hour");
    let (_, _, body) = send!(&app, get_from("/whoami", ME));
    assert_eq!(body, "48 left of 50 per 1 hour");
    // A route no limit applies to gets no CurrentLimits.
    let limiter = Limiter::builder().route(Route::new("/a").limit("1/minute")).build().unwrap();
    let app = init_service(App::new().wrap(LimiterMiddleware::new(limiter)).route("/b", web::get().to(whoami))).await;
    let (status, _, body) = send!(&app, get_from("/b", ME));
    assert_eq!((status, body.as_str()), (StatusCode::OK, "no limits"));
}

#[actix_web::test]
async fn json_clients_get_problem_details() {
    let clock = ManualClock::new(MANUAL_START);
    let app = quickstart!(quickstart_limiter(&clock));
    let _ = send!(&app, get_from("/slow", ME));
    let request = get_from("/slow", ME).insert_header(("accept", "application/json"));
    let (status, headers, body) = send!(&app, request);
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&headers, "content-type"), Some("application/problem+json"));
    assert_eq!(header(&headers, "retry-after"), Some("86400"));
    assert!(body.contains("\"detail\":\"Rate limit exceeded: 1 per 1 day\""), "{body}");
    assert!(body.contains("\"violated-policies\":[\"1-per-1-day\"]"), "{body}");
}

#[actix_web::test]
async fn a_request_without_peer_address_answers_503_not_500() {
    let clock = ManualClock::new(MANUAL_START);
    let app = quickstart!(quickstart_limiter(&clock));
    let (status, headers, body) = send!(&app, TestRequest::get().uri("/fast"));
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&headers, "retry-after"), Some("1"));
    assert!(body.contains("unavailable"), "{body}");
    // An exempt route needs no key.
    assert_eq!(send!(&app, TestRequest::get().uri("/ping")).0, StatusCode::OK);

    let open =
        Limiter::builder().default_limits("1/minute").on_storage_failure(FailurePolicy::FailOpen).build().unwrap();
    let app =
        init_service(App::new().wrap(LimiterMiddleware::new(open)).route("/fast", web::get().to(|| async { ":)" })))
            .await;
    let (status, _, body) = send!(&app, TestRequest::get().uri("/fast"));
    assert_eq!((status, body.as_str()), (StatusCode::OK, ":)"));
}

#[actix_web::test]
async fn callbacks_read_the_request() {
    let limiter = Limiter::builder()
        .default_limits(Limit::new("1/minute").exempt_when(|r: &ActixRequest| r.headers().contains_key("x-admin")))
        .build()
        .unwrap();
    let app =
        init_service(App::new().wrap(LimiterMiddleware::new(limiter)).route("/a", web::get().to(|| async { "a" })))
            .await;
    for _ in 0..3 {
        let request = get_from("/a", ME).insert_header(("x-admin", "1"));
        assert_eq!(send!(&app, request).0, StatusCode::OK);
    }
    assert_eq!(send!(&app, get_from("/a", ME)).0, StatusCode::OK);
    assert_eq!(send!(&app, get_from("/a", ME)).0, StatusCode::TOO_MANY_REQUESTS);
}

#[actix_web::test]
async fn callbacks_see_method_uri_pattern_and_peer() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let limiter = Limiter::builder()
        .default_limits(Limit::dynamic(move |r: &ActixRequest| {
            log.lock().unwrap().push(format!(
                "{} {} {} {:?} {:?} {:?}",
                r.method(),
                r.path(),
                r.query_string(),
                r.match_pattern(),
                r.peer_socket_addr(),
                r.header_values("x-forwarded-for"),
            ));
            Vec::new()
        }))
        .build()
        .unwrap();
    let app = init_service(
        App::new()
            .wrap(LimiterMiddleware::new(limiter))
            .service(web::scope("/users").route("/{id}", web::post().to(|| async { "ok" }))),
    )
    .await;
    let request = TestRequest::post()
        .uri("/users/7?verbose=1")
        .peer_addr("192.0.2.1:5000".parse().unwrap())
        .append_header(("x-forwarded-for", "203.0.113.1"))
        .append_header(("x-forwarded-for", "198.51.100.2"));
    assert_eq!(send!(&app, request).0, StatusCode::OK);
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        ["POST /users/7 verbose=1 Some(\"/users/{id}\") Some(192.0.2.1:5000) [\"203.0.113.1\", \"198.51.100.2\"]"]
    );
}

#[derive(Clone, Debug, PartialEq)]
struct Plan(u64);

#[actix_web::test]
async fn copied_extensions_reach_callbacks() {
    let limiter = Limiter::builder()
        .default_limits(Limit::dynamic(|r: &ActixRequest| {
            let per_minute = r.extension::<Plan>().map_or(1, |p| p.0);
            vec![limiter_core::RateLimit::new(per_minute, 1, limiter_core::Granularity::Minute).unwrap()]
        }))
        .build()
        .unwrap();
    let app = init_service(
        App::new()
            .wrap(LimiterMiddleware::new(limiter).copy_extension::<Plan>())
            // Runs before the limiter (registered last, so outermost): an
            // authentication middleware giving paying clients 3/minute.
            .wrap_fn(|request, service| {
                if request.headers().contains_key("x-paid") {
                    request.extensions_mut().insert(Plan(3));
                }
                service.call(request)
            })
            .route("/a", web::get().to(|| async { "a" })),
    )
    .await;
    for _ in 0..3 {
        assert_eq!(send!(&app, get_from("/a", ME).insert_header(("x-paid", "1"))).0, StatusCode::OK);
    }
    let (status, _, body) = send!(&app, get_from("/a", ME).insert_header(("x-paid", "1")));
    assert_eq!((status, body.as_str()), (StatusCode::TOO_MANY_REQUESTS, "Rate limit exceeded: 3 per 1 minute"));

    // Without the copy, the callback never sees the plan.
    let limiter = Limiter::builder()
        .default_limits(Limit::new("5/minute").exempt_when(|r: &ActixRequest| r.extension::<Plan>().is_some()))
        .build()
        .unwrap();
    let app = init_service(
        App::new()
            .wrap(LimiterMiddleware::new(limiter))
            .wrap_fn(|request, service| {
                request.extensions_mut().insert(Plan(3));
                service.call(request)
            })
            .route("/whoami", web::get().to(whoami)),
    )
    .await;
    assert_eq!(send!(&app, get_from("/whoami", ME)).2, "4 left of 5 per 1 minute");
}

#[actix_web::test]
async fn deduct_when_sees_the_response_status() {
    let limiter = Limiter::builder()
        .route(Route::new("login").path("/login").limit(Limit::new("2/minute").deduct_when(|r| r.status >= 400)))
        .build()
        .unwrap();
    let app = init_service(App::new().wrap(LimiterMiddleware::new(limiter)).route(
        "/login",
        web::post().to(|request: actix_web::HttpRequest| async move {
            if request.headers().contains_key("x-good") {
                HttpResponse::Ok().body("welcome")
            } else {
                HttpResponse::Unauthorized().body("no")
            }
        }),
    ))
    .await;
    let login = |good: bool| {
        let request = TestRequest::post().uri("/login").peer_addr(SocketAddr::from((ME, 1)));
        if good { request.insert_header(("x-good", "1")) } else { request }
    };
    // Successful logins are free.
    for _ in 0..5 {
        assert_eq!(send!(&app, login(true)).0, StatusCode::OK);
    }
    assert_eq!(send!(&app, login(false)).0, StatusCode::UNAUTHORIZED);
    assert_eq!(send!(&app, login(false)).0, StatusCode::UNAUTHORIZED);
    assert_eq!(send!(&app, login(true)).0, StatusCode::TOO_MANY_REQUESTS);
}

#[actix_web::test]
async fn breach_hooks_replace_the_response_and_storage_keys_use_the_route_name() {
    let hits = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&hits);
    let limiter = Limiter::builder()
        .key_prefix("moo")
        .route(Route::new("item").path("/items/{id}").limit("1/minute"))
        .on_breach(move |breach| {
            counted.fetch_add(1, Ordering::Relaxed);
            Some(
                limiter_core::engine::Rejection::json(429, format!("{{\"key\":\"{}\"}}", breach.storage_key))
                    .with_header("x-why", "busy"),
            )
        })
        .build()
        .unwrap();
    let app = init_service(
        App::new().wrap(LimiterMiddleware::new(limiter)).route("/items/{id}", web::get().to(|| async { "item" })),
    )
    .await;
    assert_eq!(send!(&app, get_from("/items/1", ME)).0, StatusCode::OK);
    let (status, headers, body) = send!(&app, get_from("/items/2", ME));
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&headers, "content-type"), Some("application/json"));
    assert_eq!(header(&headers, "x-why"), Some("busy"));
    assert_eq!(body, "{\"key\":\"LIMITER/moo/127.0.0.1/item/1/1/minute\"}");
    assert_eq!(hits.load(Ordering::Relaxed), 1);
}

#[actix_web::test]
async fn a_breach_hooks_later_retry_after_is_kept() {
    let clock = ManualClock::new(MANUAL_START);
    let hook = |retry: &'static str| {
        move |_: &limiter_core::engine::Breach| {
            Some(limiter_core::engine::Rejection::text(429, "later").with_header("Retry-After", retry))
        }
    };
    for (retry, expected) in [("3600", "3600"), ("5", "60")] {
        let limiter = Limiter::builder()
            .clock(clock.clone())
            .headers_enabled(true)
            .default_limits("1/minute")
            .on_breach(hook(retry))
            .build()
            .unwrap();
        let app =
            init_service(App::new().wrap(LimiterMiddleware::new(limiter)).route("/x", web::get().to(|| async { "x" })))
                .await;
        assert_eq!(send!(&app, get_from("/x", ME)).0, StatusCode::OK);
        let (status, headers, body) = send!(&app, get_from("/x", ME));
        assert_eq!((status, body.as_str()), (StatusCode::TOO_MANY_REQUESTS, "later"));
        assert_eq!(header(&headers, "retry-after"), Some(expected), "the hook said {retry}");
        assert_eq!(header(&headers, "x-ratelimit-remaining"), Some("0"));
    }
}

#[actix_web::test]
async fn a_scope_or_resource_can_be_wrapped_alone() {
    let limiter = Limiter::builder().default_limits("1/minute").build().unwrap();
    let app = init_service(
        App::new()
            .service(
                web::scope("/api").wrap(LimiterMiddleware::new(limiter)).route("/x", web::get().to(|| async { "x" })),
            )
            .route("/free", web::get().to(|| async { "free" })),
    )
    .await;
    assert_eq!(send!(&app, get_from("/api/x", ME)).0, StatusCode::OK);
    assert_eq!(send!(&app, get_from("/api/x", ME)).0, StatusCode::TOO_MANY_REQUESTS);
    for _ in 0..3 {
        assert_eq!(send!(&app, get_from("/free", ME)).0, StatusCode::OK);
    }
}

#[actix_web::test]
async fn the_view_reads_a_plain_http_request() {
    let request = get_from("/x?a=b", ME).insert_header(("Accept", "text/plain")).to_http_request();
    let view = ActixRequest::new(&request);
    assert_eq!(view.method(), "GET");
    assert_eq!(view.header("accept"), Some("text/plain"));
    assert_eq!(view.header("ACCEPT"), Some("text/plain"));
    assert_eq!(view.peer_addr(), Some(std::net::IpAddr::from(ME)));
    assert_eq!(view.route(), None);
    assert_eq!(view.query_string(), "a=b");
}

#[actix_web::test]
async fn keys_from_request_extensions() {
    #[derive(Clone)]
    struct Tenant(String);
    impl std::fmt::Display for Tenant {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }
    let limiter = Limiter::builder()
        .key(limiter_actix::ExtensionKey::<Tenant>::new())
        .default_limits("1/minute")
        .build()
        .unwrap();
    let app = init_service(
        App::new()
            .wrap(LimiterMiddleware::new(limiter).copy_extension::<Tenant>())
            .wrap_fn(|request, service| {
                let tenant = request.headers().get("x-tenant").map(|v| v.to_str().unwrap().to_owned());
                if let Some(tenant) = tenant {
                    request.extensions_mut().insert(Tenant(tenant));
                }
                service.call(request)
            })
            .route("/a", web::get().to(|| async { "a" })),
    )
    .await;
    let as_tenant = |t: &str| TestRequest::get().uri("/a").insert_header(("x-tenant", t));
    assert_eq!(send!(&app, as_tenant("acme")).0, StatusCode::OK);
    assert_eq!(send!(&app, as_tenant("acme")).0, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(send!(&app, as_tenant("globex")).0, StatusCode::OK);
    let (status, _, _) = send!(&app, TestRequest::get().uri("/a"));
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "no key: never a shared bucket");
}

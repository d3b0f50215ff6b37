//! The framework-free engine, driven with test requests on a manual clock:
//! Flask-Limiter's semantics, one behaviour per test.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use limiter_core::engine::{
    Exemption, FailurePolicy, Group, HeaderKey, HeaderSettings, Limit, Limiter, LimiterBuilder, Rejection, RequestInfo,
    ResponseInfo, RetryAfterFormat, Route, Verdict,
};
use limiter_core::{ManualClock, MemoryStorage, RateLimit, StrategyKind, Timestamp};
use limiter_testkit::{MANUAL_START, SwitchableStorage, TestRequest};

fn builder() -> (LimiterBuilder<TestRequest>, ManualClock) {
    let clock = ManualClock::new(MANUAL_START);
    (Limiter::builder().clock(clock.clone()), clock)
}

async fn status(limiter: &Limiter<TestRequest>, request: &TestRequest) -> u16 {
    let decision = limiter.check(request).await;
    decision.rejection().map_or(200, |r| r.status)
}

fn header<'a, V: AsRef<str>>(headers: &'a [(Arc<str>, V)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_ref())
}

/// The seed's app: defaults 200/day and 50/hour; /slow 1 per day; /medium
/// 1/second on top of the defaults; /fast the defaults; /ping exempt.
fn quickstart() -> (Limiter<TestRequest>, ManualClock) {
    let (b, clock) = builder();
    (limiter_testkit::seed_app(b).build().unwrap(), clock)
}

#[tokio::test]
async fn quickstart_answers_like_the_flask_app() {
    let (limiter, clock) = quickstart();
    let now = MANUAL_START.as_secs();

    let first = limiter.check(&TestRequest::get("/slow")).await;
    assert_eq!(first.verdict(), Verdict::Allowed);
    let h = &first.headers(limiter.header_settings());
    assert_eq!(header(h, "X-RateLimit-Limit"), Some("1"));
    assert_eq!(header(h, "X-RateLimit-Remaining"), Some("0"));
    assert_eq!(header(h, "X-RateLimit-Reset"), Some((now + 86_400 + 1).to_string().as_str()));
    assert_eq!(header(h, "Retry-After"), Some("86400"));

    let second = limiter.check(&TestRequest::get("/slow")).await;
    assert_eq!(second.verdict(), Verdict::Limited);
    let r = second.rejection().unwrap();
    assert_eq!(r.status, 429);
    assert_eq!(r.body, "Rate limit exceeded: 1 per 1 day");
    assert_eq!(r.content_type, "text/plain; charset=utf-8");
    assert_eq!(header(&r.headers, "X-RateLimit-Remaining"), Some("0"));
    assert_eq!(header(&r.headers, "Retry-After"), Some("86400"));

    assert_eq!(status(&limiter, &TestRequest::get("/medium")).await, 200);
    let limited = limiter.check(&TestRequest::get("/medium")).await;
    let r = limited.rejection().unwrap();
    assert_eq!(r.body, "Rate limit exceeded: 1 per 1 second");
    assert_eq!(header(&r.headers, "X-RateLimit-Limit"), Some("1"));
    assert_eq!(header(&r.headers, "Retry-After"), Some("1"), "rounded up, never 0");
    clock.advance(Duration::from_secs(1));
    let again = limiter.check(&TestRequest::get("/medium")).await;
    assert_eq!(again.verdict(), Verdict::Allowed);
    // The medium route also counts against its own default buckets.
    assert_eq!(again.limits().len(), 3);

    for n in 1..=50 {
        let d = limiter.check(&TestRequest::get("/fast")).await;
        assert_eq!(d.verdict(), Verdict::Allowed, "fast request {n}");
        assert_eq!(
            header(&d.headers(limiter.header_settings()), "X-RateLimit-Limit"),
            Some("50"),
            "the hourly limit is shown first"
        );
        assert_eq!(
            header(&d.headers(limiter.header_settings()), "X-RateLimit-Remaining"),
            Some((50 - n).to_string().as_str())
        );
    }
    let r = limiter.check(&TestRequest::get("/fast")).await;
    assert_eq!(r.rejection().unwrap().body, "Rate limit exceeded: 50 per 1 hour");

    for _ in 0..100 {
        let ping = limiter.check(&TestRequest::get("/ping")).await;
        assert_eq!(ping.verdict(), Verdict::Exempt);
        assert!(ping.header_state().is_none());
    }
}

#[tokio::test]
async fn storage_keys_match_flask_limiter() {
    let (limiter, _) = quickstart();
    let d = limiter.check(&TestRequest::get("/medium")).await;
    let mut keys: Vec<String> = d.limits().iter().map(|l| l.storage_key()).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "LIMITER/127.0.0.1/medium/1/1/second",
            "LIMITER/127.0.0.1/medium/200/1/day",
            "LIMITER/127.0.0.1/medium/50/1/hour",
        ]
    );
}

#[tokio::test]
async fn bad_configuration_fails_at_build_naming_the_value() {
    let err = Limiter::<TestRequest>::builder().default_limits("2/sec").build().unwrap_err();
    assert!(err.to_string().starts_with("default limits: invalid rate limit \"2/sec\""), "{err}");
    let err = Limiter::<TestRequest>::builder()
        .route(Route::new("login").path("/login").limit("5 per fortnight"))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("route \"login\""), "{err}");
    assert!(err.to_string().contains("unknown granularity 'fortnight'"), "{err}");
    let err = Limiter::<TestRequest>::builder().strategy_name("leaky-bucket").build().unwrap_err();
    assert!(err.to_string().contains("unknown strategy \"leaky-bucket\""), "{err}");
    let err = Limiter::<TestRequest>::builder()
        .storage(SwitchableStorage::new())
        .strategy(StrategyKind::MovingWindow)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("cannot run the moving-window strategy"), "{err}");
}

#[tokio::test]
async fn application_limits_share_one_bucket_across_routes() {
    let (b, _) = builder();
    let limiter = b.application_limits("3/minute").default_limits("100/minute").build().unwrap();
    for route in ["/a", "/b", "/c"] {
        assert_eq!(status(&limiter, &TestRequest::get(route)).await, 200);
    }
    assert_eq!(status(&limiter, &TestRequest::get("/d")).await, 429);
    let d = limiter.check(&TestRequest::get("/a")).await;
    assert!(d.limits().iter().any(|l| l.storage_key() == "LIMITER/127.0.0.1/global/3/1/minute"));
}

#[tokio::test]
async fn shared_limits_share_across_the_routes_using_them() {
    let (b, _) = builder();
    let shared = Limit::new("2/minute").shared("reads");
    let limiter = b
        .route(Route::new("/one").limit(shared.clone()))
        .route(Route::new("/two").limit(shared))
        .route(Route::new("/three").limit("2/minute"))
        .build()
        .unwrap();
    assert_eq!(status(&limiter, &TestRequest::get("/one")).await, 200);
    assert_eq!(status(&limiter, &TestRequest::get("/two")).await, 200);
    assert_eq!(status(&limiter, &TestRequest::get("/one")).await, 429);
    assert_eq!(status(&limiter, &TestRequest::get("/three")).await, 200);
    let d = limiter.check(&TestRequest::get("/three")).await;
    assert_eq!(d.limits()[0].storage_key(), "LIMITER/127.0.0.1//three/2/1/minute");
}

#[tokio::test]
async fn methods_and_per_method() {
    let (b, _) = builder();
    let limiter = b
        .default_limits("100/minute")
        .route(Route::new("/form").limit(Limit::new("1/minute").methods(["post"])))
        .route(Route::new("/each").limit(Limit::new("1/minute").per_method(true)))
        .build()
        .unwrap();
    assert_eq!(status(&limiter, &TestRequest::new("POST", Some("/form"))).await, 200);
    assert_eq!(status(&limiter, &TestRequest::new("POST", Some("/form"))).await, 429);
    // GET is outside the route's methods: the defaults apply instead.
    let get = limiter.check(&TestRequest::get("/form")).await;
    assert_eq!(get.verdict(), Verdict::Allowed);
    assert_eq!(get.limits()[0].limit.amount(), 100);

    assert_eq!(status(&limiter, &TestRequest::new("GET", Some("/each"))).await, 200);
    assert_eq!(status(&limiter, &TestRequest::new("POST", Some("/each"))).await, 200);
    assert_eq!(status(&limiter, &TestRequest::new("POST", Some("/each"))).await, 429);
    let d = limiter.check(&TestRequest::new("PUT", Some("/each"))).await;
    assert_eq!(d.limits()[0].storage_key(), "LIMITER/127.0.0.1//each:PUT/1/1/minute");
}

#[tokio::test]
async fn costs_fixed_and_computed() {
    let (b, _) = builder();
    let limiter = b
        .route(Route::new("/bulk").limit(Limit::new("10/minute").cost(4)))
        .route(
            Route::new("/sized").limit(
                Limit::new("10/minute")
                    .cost_with(|r: &TestRequest| r.header("x-items").and_then(|v| v.parse().ok()).unwrap_or(1)),
            ),
        )
        .build()
        .unwrap();
    assert_eq!(status(&limiter, &TestRequest::get("/bulk")).await, 200);
    assert_eq!(status(&limiter, &TestRequest::get("/bulk")).await, 200);
    assert_eq!(status(&limiter, &TestRequest::get("/bulk")).await, 429);
    assert_eq!(status(&limiter, &TestRequest::get("/sized").with_header("x-items", "9")).await, 200);
    assert_eq!(status(&limiter, &TestRequest::get("/sized").with_header("x-items", "2")).await, 429);
    // As in `limits`, the fixed window counted the refused 2: nothing fits.
    assert_eq!(status(&limiter, &TestRequest::get("/sized")).await, 429);
}

#[tokio::test]
async fn deduct_when_counts_only_matching_responses() {
    let (b, _) = builder();
    let limiter = b
        .headers_enabled(true)
        .route(Route::new("/login").limit(Limit::new("2/minute").deduct_when(|r| r.status >= 400)))
        .build()
        .unwrap();
    let login = TestRequest::new("POST", Some("/login"));
    for _ in 0..5 {
        let d = limiter.check(&login).await;
        assert!(d.is_allowed());
        limiter.after_response(&d, ResponseInfo::new(200)).await;
    }
    for _ in 0..2 {
        let d = limiter.check(&login).await;
        assert!(d.is_allowed());
        limiter.after_response(&d, ResponseInfo::new(401)).await;
    }
    let d = limiter.check(&login).await;
    assert_eq!(d.rejection().map(|r| r.status), Some(429));
    // As in Flask-Limiter, the 429 itself is offered to deduct_when.
    limiter.after_response(&d, ResponseInfo::new(429)).await;
}

#[tokio::test]
async fn exempt_when_and_request_filters() {
    let (b, _) = builder();
    let limiter = b
        .default_limits("1/minute")
        .meta_limits("1/hour")
        .route(
            Route::new("/vip").limit(Limit::new("1/minute").exempt_when(|r: &TestRequest| r.header("x-vip").is_some())),
        )
        .request_filter(|r: &TestRequest| r.header("x-internal").is_some())
        .build()
        .unwrap();
    for _ in 0..3 {
        assert_eq!(status(&limiter, &TestRequest::get("/vip").with_header("x-vip", "1")).await, 200);
        assert_eq!(status(&limiter, &TestRequest::get("/x").with_header("x-internal", "1")).await, 200);
    }
    assert_eq!(status(&limiter, &TestRequest::get("/vip")).await, 200);
    assert_eq!(status(&limiter, &TestRequest::get("/vip")).await, 429);
}

#[tokio::test]
async fn meta_limits_cap_breaches_and_reach_even_filtered_and_unmatched_requests() {
    let (b, clock) = builder();
    let limiter = b
        .default_limits("2/minute")
        .meta_limits("2/hour")
        .route(Route::new("/free").exempt())
        .request_filter(|r: &TestRequest| r.header("x-internal").is_some())
        .build()
        .unwrap();
    let a = TestRequest::get("/a");
    assert_eq!(status(&limiter, &a).await, 200);
    assert_eq!(status(&limiter, &a).await, 200);
    assert_eq!(status(&limiter, &a).await, 429, "breach 1");
    assert_eq!(status(&limiter, &a).await, 429, "breach 2");
    // Two breaches used up the meta limit: everything is refused for the hour,
    // even after the minute has passed, filtered and unmatched requests too.
    clock.advance(Duration::from_secs(61));
    assert_eq!(status(&limiter, &a).await, 429);
    assert_eq!(status(&limiter, &TestRequest::get("/b")).await, 429);
    assert_eq!(status(&limiter, &TestRequest::new("GET", None)).await, 429);
    assert_eq!(status(&limiter, &TestRequest::get("/b").with_header("x-internal", "1")).await, 429);
    assert_eq!(status(&limiter, &TestRequest::get("/free")).await, 200, "exempt from META");
    clock.advance(Duration::from_secs(3600));
    assert_eq!(status(&limiter, &a).await, 200);
}

#[tokio::test]
async fn meta_keys_skip_the_key_prefix() {
    let (b, _) = builder();
    let limiter = b.key_prefix("svc").default_limits("1/minute").meta_limits("1/hour").build().unwrap();
    let _ = limiter.check(&TestRequest::get("/a")).await;
    let limited = limiter.check(&TestRequest::get("/a")).await;
    assert_eq!(limited.limits()[0].storage_key(), "LIMITER/svc/127.0.0.1//a/1/1/minute");
    let storage = limiter.storage().clone();
    let meta = RateLimit::parse("1/hour").unwrap();
    let items = [limiter_core::Item::new(meta, limiter_core::Key::new(&["127.0.0.1", "meta"]))];
    let batch = limiter_core::Batch {
        items: &items,
        mode: limiter_core::Mode::Peek,
        now: Timestamp::from_nanos(MANUAL_START.as_nanos()),
    };
    let outcome = limiter_core::Supports::decide(&storage, StrategyKind::FixedWindow, &batch).await.unwrap();
    assert_eq!(outcome.get(0).unwrap().remaining, 0, "the breach was counted under the unprefixed meta key");
}

#[tokio::test]
async fn key_prefixes_make_independent_limiters() {
    let storage = MemoryStorage::new();
    let make = |prefix: &str| {
        Limiter::<TestRequest>::builder()
            .storage(storage.clone())
            .key_prefix(prefix)
            .default_limits("1/minute")
            .build()
            .unwrap()
    };
    let (one, two) = (make("one"), make("two"));
    assert_eq!(status(&one, &TestRequest::get("/a")).await, 200);
    assert_eq!(status(&one, &TestRequest::get("/a")).await, 429);
    assert_eq!(status(&two, &TestRequest::get("/a")).await, 200);
}

#[tokio::test]
async fn fail_on_first_breach_off_counts_every_limit() {
    for (stop, day_remaining) in [(true, 8), (false, 7)] {
        let (b, _) = builder();
        let limiter = b.fail_on_first_breach(stop).default_limits("1/second;10/day").build().unwrap();
        let req = TestRequest::get("/a");
        assert_eq!(status(&limiter, &req).await, 200);
        assert_eq!(status(&limiter, &req).await, 429);
        let d = limiter.check(&req).await;
        let counted = d.limits().iter().find(|l| l.limit.amount() == 10).map(|l| l.remaining);
        let expected = if stop { None } else { Some(day_remaining) };
        assert_eq!(counted, expected, "fail_on_first_breach({stop})");
    }
}

#[tokio::test]
async fn dynamic_limits_per_user_tier() {
    let (b, _) = builder();
    let free = RateLimit::parse("1/minute").unwrap();
    let paid = RateLimit::parse("3/minute").unwrap();
    let limiter = b
        .key(HeaderKey::new("x-user"))
        .route(Route::new("/api").limit(Limit::dynamic(move |r: &TestRequest| {
            if r.header("x-plan") == Some("paid") { vec![paid] } else { vec![free] }
        })))
        .build()
        .unwrap();
    let alice = TestRequest::get("/api").with_header("x-user", "alice").with_header("x-plan", "paid");
    let bob = TestRequest::get("/api").with_header("x-user", "bob");
    for _ in 0..3 {
        assert_eq!(status(&limiter, &alice).await, 200);
    }
    assert_eq!(status(&limiter, &alice).await, 429);
    assert_eq!(status(&limiter, &bob).await, 200);
    assert_eq!(status(&limiter, &bob).await, 429);
}

#[tokio::test]
async fn groups_apply_to_their_routes_and_nest() {
    let (b, _) = builder();
    let limiter = b
        .default_limits("100/minute")
        .group(Group::new("api", "/api").limit("2/minute"))
        .group(Group::new("public", "/api/public").exempt_from(Exemption::DEFAULT | Exemption::ANCESTORS))
        .route(Route::new("/api/special").limit("5/minute"))
        .build()
        .unwrap();
    assert_eq!(status(&limiter, &TestRequest::get("/api/users")).await, 200);
    assert_eq!(status(&limiter, &TestRequest::get("/api/users")).await, 200);
    assert_eq!(status(&limiter, &TestRequest::get("/api/users")).await, 429);
    assert_eq!(
        limiter.check(&TestRequest::get("/api/items")).await.limits()[0].limit.amount(),
        2,
        "each route of the group has its own bucket, with the group's limit instead of the defaults"
    );
    for _ in 0..5 {
        assert_eq!(status(&limiter, &TestRequest::get("/api/special")).await, 200);
    }
    assert_eq!(status(&limiter, &TestRequest::get("/api/special")).await, 429);
    let public = limiter.check(&TestRequest::get("/api/public/doc")).await;
    assert_eq!(public.verdict(), Verdict::Exempt, "no own limits, no ancestors', no defaults");
    assert_eq!(limiter.check(&TestRequest::get("/other")).await.limits()[0].limit.amount(), 100);
}

#[tokio::test]
async fn headers_can_be_renamed_dated_and_ietf() {
    let (b, _) = builder();
    let mut headers = HeaderSettings::default();
    headers.enabled = true;
    headers.ietf = true;
    headers.remaining = Arc::from("X-Left");
    headers.retry_after_format = RetryAfterFormat::HttpDate;
    let limiter = b.headers(headers).default_limits("10/minute;100/day").build().unwrap();
    let d = limiter.check(&TestRequest::get("/a")).await;
    let h = &d.headers(limiter.header_settings());
    assert_eq!(header(h, "X-Left"), Some("9"));
    assert_eq!(header(h, "X-RateLimit-Remaining"), None);
    assert!(header(h, "Retry-After").unwrap().ends_with(" GMT"));
    assert_eq!(header(h, "RateLimit-Policy"), Some("\"10-per-1-minute\";q=10;w=60, \"100-per-1-day\";q=100;w=86400"));
    assert_eq!(header(h, "RateLimit"), Some("\"10-per-1-minute\";r=9;t=60"));
}

#[tokio::test]
async fn json_clients_get_problem_details() {
    let (b, _) = builder();
    let limiter = b.default_limits("1/minute").build().unwrap();
    let req = TestRequest::get("/a").with_header("accept", "application/json");
    let _ = limiter.check(&req).await;
    let d = limiter.check(&req).await;
    let r = d.rejection().unwrap();
    assert_eq!(r.content_type, "application/problem+json");
    let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(body["detail"], "Rate limit exceeded: 1 per 1 minute");
    assert_eq!(body["status"], 429);
}

#[tokio::test]
async fn on_breach_hooks_run_and_may_replace_the_response() {
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&seen);
    let (b, _) = builder();
    let limiter = b
        .on_breach(move |breach| {
            counter.fetch_add(1, Ordering::SeqCst);
            assert_eq!(breach.storage_key, "LIMITER/127.0.0.1//a/1/1/minute");
            None
        })
        .route(
            Route::new("/a").limit(
                Limit::new("1/minute")
                    .error_message("slow down")
                    .on_breach(|b| Some(Rejection::text(429, format!("custom: {}", b.description)))),
            ),
        )
        .build()
        .unwrap();
    let _ = limiter.check(&TestRequest::get("/a")).await;
    let d = limiter.check(&TestRequest::get("/a")).await;
    assert_eq!(d.rejection().unwrap().body, "custom: slow down");
    assert_eq!(seen.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn missing_keys_never_share_a_bucket() {
    let (b, _) = builder();
    let limiter = b.default_limits("1/minute").build().unwrap();
    let anonymous = TestRequest::get("/a").from_peer(None);
    let d = limiter.check(&anonymous).await;
    assert_eq!(d.verdict(), Verdict::Unavailable, "fails closed by default");
    assert_eq!(d.rejection().unwrap().status, 503);
    let (b, _) = builder();
    let open = b.default_limits("1/minute").on_storage_failure(FailurePolicy::FailOpen).build().unwrap();
    assert_eq!(open.check(&anonymous).await.verdict(), Verdict::FailedOpen);
}

#[tokio::test]
async fn storage_failures_fail_closed_open_or_to_memory() {
    let storage = SwitchableStorage::new();
    let make = |policy| {
        Limiter::<TestRequest>::builder()
            .storage(storage.clone())
            .on_storage_failure(policy)
            .default_limits("1/minute")
            .build()
            .unwrap()
    };
    storage.set_down(true);
    let closed = make(FailurePolicy::FailClosed { retry_after: Duration::from_secs(7) });
    let d = closed.check(&TestRequest::get("/a")).await;
    let r = d.rejection().unwrap();
    assert_eq!((r.status, header(&r.headers, "Retry-After")), (503, Some("7")));
    let open = make(FailurePolicy::FailOpen);
    assert_eq!(open.check(&TestRequest::get("/a")).await.verdict(), Verdict::FailedOpen);
}

#[tokio::test]
async fn in_memory_fallback_limits_while_down_and_recovers() {
    let storage = SwitchableStorage::new();
    let (b, clock) = builder();
    let limiter = b
        .storage(storage.clone())
        .on_storage_failure(FailurePolicy::InMemoryFallback)
        .default_limits("2/minute")
        .build()
        .unwrap();
    let req = TestRequest::get("/a");
    assert_eq!(status(&limiter, &req).await, 200);
    storage.set_down(true);
    // Down: the fallback counts from zero in memory, and still limits.
    assert_eq!(status(&limiter, &req).await, 200);
    assert_eq!(status(&limiter, &req).await, 200);
    assert_eq!(status(&limiter, &req).await, 429);
    let calls = storage.calls();
    assert_eq!(status(&limiter, &req).await, 429);
    assert_eq!(storage.calls(), calls, "no storage call before the first probe is due");
    storage.set_down(false);
    clock.advance(Duration::from_secs(1));
    // The probe after 1 s finds the storage back: its counter (1 hit) is used again.
    assert_eq!(status(&limiter, &req).await, 200);
    assert_eq!(status(&limiter, &req).await, 429);
}

#[tokio::test]
async fn disabled_limiter_exempts_everything() {
    let (b, _) = builder();
    let limiter = b.enabled(false).default_limits("1/minute").build().unwrap();
    for _ in 0..3 {
        assert_eq!(limiter.check(&TestRequest::get("/a")).await.verdict(), Verdict::Exempt);
    }
}

#[tokio::test]
async fn unmatched_requests_skip_regular_limits() {
    let (b, _) = builder();
    let limiter = b.default_limits("1/minute").application_limits("1/minute").build().unwrap();
    for _ in 0..3 {
        assert_eq!(limiter.check(&TestRequest::new("GET", None)).await.verdict(), Verdict::Exempt);
    }
}

#[tokio::test]
async fn meta_limits_attached_to_one_limit() {
    let (b, clock) = builder();
    let limiter = b
        .route(Route::new("/login").limit(Limit::new("2/minute").meta_limits("1/hour")))
        .route(Route::new("/other").limit("5/minute"))
        .build()
        .unwrap();
    let login = TestRequest::get("/login");
    assert_eq!(status(&limiter, &login).await, 200);
    assert_eq!(status(&limiter, &login).await, 200);
    assert_eq!(status(&limiter, &login).await, 429, "the breach is counted against the attached meta limit");
    clock.advance(Duration::from_secs(61));
    assert_eq!(status(&limiter, &login).await, 429, "the meta limit is spent for the hour");
    assert_eq!(status(&limiter, &TestRequest::get("/other")).await, 200, "only where it is attached");
    clock.advance(Duration::from_secs(3600));
    assert_eq!(status(&limiter, &login).await, 200);
    let bad = Limiter::<TestRequest>::builder()
        .route(Route::new("/x").limit(Limit::new("1/minute").meta_limits("1 per fortnight")))
        .build()
        .unwrap_err();
    assert!(bad.to_string().contains("fortnight"), "{bad}");
}

//! Shadow mode, metrics, deciding at once for immediate storages, and
//! decisions as Flask-Limiter makes them,
//! driven with requests on a manual clock.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{
    Decision, DefaultsRule, HeaderKey, KeyedLimit, Limit, Limiter, LimiterBuilder, Origin, RequestInfo, Route,
    Settings, Verdict,
};
use crate::clock::{ManualClock, Timestamp};

const START: Timestamp = Timestamp::from_secs(1_700_000_000);

struct Request {
    route: &'static str,
    peer: [u8; 4],
    /// The route is the request's own path (tonic, plain hyper), not a template.
    raw_path: bool,
}

fn get(route: &'static str) -> Request {
    Request { route, peer: [127, 0, 0, 1], raw_path: false }
}

impl RequestInfo for Request {
    fn method(&self) -> &str {
        "GET"
    }
    fn route(&self) -> Option<&str> {
        Some(self.route)
    }
    fn route_is_template(&self) -> bool {
        !self.raw_path
    }
    fn header(&self, _: &str) -> Option<&str> {
        None
    }
    fn header_values(&self, _: &str) -> Vec<&str> {
        Vec::new()
    }
    fn peer_addr(&self) -> Option<IpAddr> {
        Some(IpAddr::from(self.peer))
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("the memory storage never waits"),
    }
}

fn builder() -> (LimiterBuilder<Request>, ManualClock) {
    let clock = ManualClock::new(START);
    (Limiter::builder().clock(clock.clone()).headers_enabled(true), clock)
}

fn check(limiter: &Limiter<Request>, request: &Request) -> Decision {
    block_on(limiter.check(request))
}

fn header(limiter: &Limiter<Request>, decision: &Decision, name: &str) -> Option<String> {
    let headers = decision.headers(limiter.header_settings());
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.to_string())
}

fn remaining(decision: &Decision, limit: &str) -> u64 {
    let limit = crate::parse(limit).unwrap();
    decision.limits().iter().find(|l| l.limit == limit).map(|l| l.remaining).unwrap()
}

// --- shadow mode -----------------------------------------------------------

#[test]
fn a_shadow_limit_records_breaches_but_never_refuses() {
    let (b, _) = builder();
    let limiter = b
        .route(
            Route::new("search").path("/search").limit("5 per minute").limit(Limit::new("2 per minute").shadow(true)),
        )
        .build()
        .unwrap();
    for n in 1..=2 {
        let d = check(&limiter, &get("/search"));
        assert_eq!(d.verdict(), Verdict::Allowed, "request {n}");
        assert!(!d.shadow_limited(), "request {n}");
    }
    for n in 3..=5 {
        let d = check(&limiter, &get("/search"));
        assert_eq!(d.verdict(), Verdict::Allowed, "request {n} passes: the 2/minute limit is a shadow");
        assert!(d.shadow_limited(), "request {n}");
        let shadow = d.limits().iter().find(|l| l.shadow).unwrap();
        assert!(shadow.breached);
        // The headers describe the shadow limit as enforcing it would.
        assert_eq!(header(&limiter, &d, "X-RateLimit-Limit").as_deref(), Some("2"));
        assert_eq!(header(&limiter, &d, "X-RateLimit-Remaining").as_deref(), Some("0"));
        assert_eq!(remaining(&d, "5 per minute"), 5 - n, "the enforced limit counts every request");
    }
    let sixth = check(&limiter, &get("/search"));
    assert_eq!(sixth.verdict(), Verdict::Limited, "the enforced limit still refuses");
    assert_eq!(sixth.rejection().unwrap().body, "Rate limit exceeded: 5 per 1 minute");
}

#[test]
fn a_shadow_limit_without_its_key_goes_uncounted_and_refuses_nothing() {
    // The test requests carry no headers, so `X-User` is always missing;
    // failing closed is the default.
    let by_user = || Limit::new("1 per minute").key(HeaderKey::new("X-User"));
    let (b, _) = builder();
    let limiter = b
        .route(Route::new("search").path("/search").limit("2 per minute").limit(by_user().shadow(true)))
        .build()
        .unwrap();
    for n in 0..2 {
        let d = check(&limiter, &get("/search"));
        assert_eq!(d.verdict(), Verdict::Allowed, "request {n}");
        assert!(!d.shadow_limited(), "request {n}");
        assert_eq!(d.limits().len(), 1, "request {n}: only the enforced limit is counted");
    }
    assert_eq!(check(&limiter, &get("/search")).verdict(), Verdict::Limited, "the enforced limit still counts");
    // Only the shadow limit applies: nothing at all is counted.
    let (b, _) = builder();
    let limiter = b.route(Route::new("search").path("/search").limit(by_user().shadow(true))).build().unwrap();
    let d = check(&limiter, &get("/search"));
    assert!(d.is_allowed() && d.limits().is_empty(), "{:?}", d.verdict());
    // An enforced limit without its key still fails closed.
    let (b, _) = builder();
    let limiter = b.route(Route::new("search").path("/search").limit(by_user())).build().unwrap();
    assert_eq!(check(&limiter, &get("/search")).verdict(), Verdict::Unavailable);
}

#[test]
fn global_shadow_mode_lets_requests_without_a_key_through() {
    let (b, _) = builder();
    let shadow = b.shadow(true).key(HeaderKey::new("X-User")).default_limits("1 per minute").build().unwrap();
    assert_eq!(check(&shadow, &get("/x")).verdict(), Verdict::FailedOpen);
    let (b, _) = builder();
    let enforced = b.key(HeaderKey::new("X-User")).default_limits("1 per minute").build().unwrap();
    assert_eq!(check(&enforced, &get("/x")).verdict(), Verdict::Unavailable);
}

#[test]
fn a_shadow_breach_never_stops_an_enforced_limit_from_counting() {
    // The shadow limit has the shorter window, so Flask-Limiter's order
    // would test it first and stop there at its breach.
    let (b, clock) = builder();
    let limiter =
        b.default_limits(Limit::new("1 per second").shadow(true)).default_limits("3 per minute").build().unwrap();
    let verdicts: Vec<(Verdict, bool)> = (0..4)
        .map(|_| {
            let d = check(&limiter, &get("/x"));
            (d.verdict(), d.shadow_limited())
        })
        .collect();
    assert_eq!(
        verdicts,
        [
            (Verdict::Allowed, false),
            (Verdict::Allowed, true),
            (Verdict::Allowed, true),
            (Verdict::Limited, false), // the enforced limit counted the shadow-breached requests
        ]
    );
    clock.advance(Duration::from_secs(60));
    assert_eq!(check(&limiter, &get("/x")).verdict(), Verdict::Allowed);
}

#[test]
fn global_shadow_mode_refuses_nothing_and_calls_no_breach_hook() {
    let hooks = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&hooks);
    let (b, _) = builder();
    let limiter = b
        .shadow(true)
        .default_limits("1 per day")
        .on_breach(move |_| {
            seen.fetch_add(1, Ordering::Relaxed);
            None
        })
        .build()
        .unwrap();
    assert!(limiter.shadow());
    assert!(!check(&limiter, &get("/x")).shadow_limited());
    for _ in 0..10 {
        let d = check(&limiter, &get("/x"));
        assert_eq!(d.verdict(), Verdict::Allowed);
        assert!(d.is_allowed() && d.rejection().is_none());
        assert!(d.shadow_limited());
        assert_eq!(header(&limiter, &d, "X-RateLimit-Remaining").as_deref(), Some("0"));
        assert_eq!(
            header(&limiter, &d, "X-RateLimit-Reset").as_deref(),
            Some((START.as_secs() + 86_400 + 1).to_string().as_str())
        );
    }
    assert_eq!(hooks.load(Ordering::Relaxed), 0, "a hook's answer would refuse the request");
    // Another client is counted on its own.
    assert!(!check(&limiter, &Request { peer: [10, 0, 0, 2], ..get("/x") }).shadow_limited());
}

#[test]
fn shadow_mode_from_the_environment() {
    let settings = Settings::from_env_iter(
        [("RATELIMIT_SHADOW", "true"), ("RATELIMIT_DEFAULT", "1/minute")].map(|(k, v)| (k.to_owned(), v.to_owned())),
    )
    .unwrap();
    assert_eq!(settings.shadow, Some(true));
    let (b, _) = builder();
    let limiter = settings.apply(b).unwrap().build().unwrap();
    assert!(limiter.shadow());
    check(&limiter, &get("/x"));
    let d = check(&limiter, &get("/x"));
    assert_eq!((d.verdict(), d.shadow_limited()), (Verdict::Allowed, true));
    let err = Settings::from_env_iter([("RATELIMIT_SHADOW".to_owned(), "sometimes".to_owned())]).unwrap_err();
    assert!(err.to_string().contains("RATELIMIT_SHADOW"), "{err}");
}

#[test]
fn shadow_breaches_count_against_shadow_meta_limits_only() {
    // Enforced meta limits: a shadow breach must not lead to real refusals.
    let (b, _) = builder();
    let limiter = b.meta_limits("1 per hour").default_limits(Limit::new("1 per minute").shadow(true)).build().unwrap();
    for _ in 0..5 {
        assert_eq!(check(&limiter, &get("/x")).verdict(), Verdict::Allowed);
    }
    // Everything in shadow mode: meta limits count breaches as enforcing
    // would, and their breaches are shadow breaches too.
    let (b, _) = builder();
    let limiter = b.shadow(true).meta_limits("1 per hour").default_limits("1 per minute").build().unwrap();
    check(&limiter, &get("/x"));
    check(&limiter, &get("/x")); // breach 1: counted against the meta limit
    let d = check(&limiter, &get("/x")); // the meta limit is used up: a shadow meta breach
    assert_eq!((d.verdict(), d.shadow_limited()), (Verdict::Allowed, true));
}

// --- configuration mistakes ------------------------------------------------

#[test]
fn a_header_name_that_is_none_is_refused_at_build() {
    use super::HeaderSettings;
    let bad = || HeaderSettings { retry_after: "Retry After".into(), ..HeaderSettings::default() };
    let (b, _) = builder();
    let err = b.headers(HeaderSettings { enabled: true, ..bad() }).build().unwrap_err();
    assert!(err.to_string().contains("\"Retry After\""), "{err}");
    assert!(err.to_string().contains("header name"), "{err}");
    // Names of headers that are not sent do not matter.
    let (b, _) = builder();
    assert!(b.headers(bad()).build().is_ok());
    let (b, _) = builder();
    let ietf = HeaderSettings { ietf: true, ietf_state: "Rate Limit".into(), ..HeaderSettings::default() };
    assert!(b.headers(ietf).build().is_err());
}

// --- the limit table -----------------------------------------------------

/// Whether the application limit is listed as shared for handlers too.
fn d_shared(limiter: &Limiter<Request>) -> bool {
    let d = check(limiter, &get("/feed"));
    let application = crate::parse("100 per day").unwrap();
    d.limits().iter().find(|l| l.limit == application).map(|l| l.shared) == Some(true)
}

#[test]
fn the_table_shows_fixed_costs_and_meta_keys_as_the_limiter_counts_them() {
    let (b, _) = builder();
    let user = |_: &Request| Ok::<_, super::KeyError>("user-1".to_owned());
    let limiter = b
        .route(Route::new("free").path("/free").limit(Limit::new("5/minute").cost(0)))
        .route(Route::new("login").path("/login").limit(Limit::new("5/minute").key(user).meta_limits("2/hour")))
        .build()
        .unwrap();
    assert_eq!(limiter.route_info("free").own[0].cost, Some(1), "Flask-Limiter's `cost or 1`");
    let login = limiter.route_info("login");
    assert!(login.own[0].meta[0].own_key, "counted by the parent's key");
}

#[test]
fn the_table_builds_the_keys_the_limiter_writes() {
    let (b, _) = builder();
    let limiter = b
        .key_prefix("svc")
        .default_limits("2 per minute")
        .application_limits("100 per day")
        .meta_limits("1 per hour")
        .route(Route::new("login").path("/login").limit(Limit::new("5/minute").per_method(true)))
        .route(Route::new("feed").path("/feed").limit(Limit::new("3/minute").shared("reads")))
        .build()
        .unwrap();
    for path in ["/login", "/feed", "/other"] {
        let d = check(&limiter, &get(path));
        let mut written: Vec<String> = d.limits().iter().map(super::RequestLimit::storage_key).collect();
        let route = limiter.route_info(path);
        let mut listed: Vec<String> = route
            .applicable("GET")
            .iter()
            .filter(|l| l.origin != Origin::Meta)
            .flat_map(|l| l.keyed(limiter.key_prefix(), "127.0.0.1", "GET"))
            .map(|k| k.storage_key())
            .collect();
        written.sort();
        listed.sort();
        assert_eq!(listed, written, "{path}");
    }
    let login = limiter.route_info("login");
    assert_eq!((login.name.as_deref(), login.path.as_str()), (Some("login"), "/login"));
    let keyed = login.own[0].keyed(limiter.key_prefix(), "127.0.0.1", "GET");
    assert_eq!(keyed[0].storage_key(), "LIMITER/svc/127.0.0.1/login:GET/5/1/minute");
    let remaining = |keyed: &[KeyedLimit]| block_on(limiter.peek(keyed)).unwrap()[0].remaining;
    assert_eq!(remaining(&keyed), 4, "peek sees what check counted, and counts nothing");
    assert_eq!(remaining(&keyed), 4);
    block_on(limiter.clear(&keyed)).unwrap();
    assert_eq!(remaining(&keyed), 5);
    let table = limiter.limit_table();
    assert_eq!(table.routes.len(), 2);
    assert_eq!(table.meta[0].keyed(Some("svc"), "k", "GET")[0].storage_key(), "LIMITER/k/meta/1/1/hour");
    assert_eq!(table.application[0].scope("GET"), "global");
    // The table says what the limiter does: application limits are shared
    // (so the headers show another limit), as in Flask-Limiter.
    assert!(table.application[0].shared);
    assert!(d_shared(&limiter));
    let other = limiter.route_info("/other");
    assert_eq!((other.name, other.defaults_rule), (None, DefaultsRule::Always));
}

// --- the tracing event -------------------------------------------------------

/// Collects events as `LEVEL message field=value ...`.
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<String>>>);

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={:?}", field.name(), value));
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.push_str(&format!(" {}={}", field.name(), value));
    }
}

impl tracing::Subscriber for Events {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields(event.metadata().level().to_string());
        event.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn a_shadow_breach_is_a_warning_naming_limit_key_and_route() {
    let attempt = || {
        let (b, _) = builder();
        let limiter = b
            .route(Route::new("search").path("/search").limit(Limit::new("1 per minute").shadow(true)))
            .build()
            .unwrap();
        let events = Events::default();
        tracing::subscriber::with_default(events.clone(), || {
            tracing::callsite::rebuild_interest_cache();
            check(&limiter, &get("/search"));
            check(&limiter, &get("/search"));
        });
        std::mem::take(&mut *events.0.lock().unwrap())
    };
    let warned = |events: &Vec<String>| events.iter().filter(|e| e.starts_with("WARN")).count();
    // A callsite another test's thread registers for the first time while
    // this subscriber is installed can switch tracing-core's global level
    // filter off for a moment (its interest rebuild races with ours), and
    // an event is lost. A missing warning is retried; one never emitted
    // fails every attempt.
    let events = (0..5).map(|_| attempt()).find(|events| warned(events) == 1).unwrap_or_else(attempt);
    let warnings: Vec<&String> = events.iter().filter(|e| e.starts_with("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{events:?}");
    let w = warnings[0];
    for part in ["shadow mode", "key=127.0.0.1", "limit=1 per 1 minute", "route=search", "scope=search"] {
        assert!(w.contains(part), "{part} missing from {w}");
    }
}

// --- metrics -----------------------------------------------------------------

#[cfg(feature = "metrics")]
mod recording {
    use std::future::{Future, ready};
    use std::sync::atomic::AtomicBool;

    use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
    use metrics_util::{CompositeKey, MetricKind};

    use super::*;
    use crate::engine::FailurePolicy;
    use crate::engine::metrics::{BREACHES, DECISIONS, FALLBACK_ACTIVE, STORAGE_CALL_SECONDS, STORAGE_ERRORS};
    use crate::storage::{Batch, Key, Outcome, Storage, Supports};
    use crate::{FixedWindow, MemoryStorage, RateLimit, StorageError, StorageErrorKind};

    type Snapshot = Vec<(CompositeKey, Option<::metrics::Unit>, Option<::metrics::SharedString>, DebugValue)>;

    /// Runs `f` with a recorder of its own and returns what it recorded.
    fn recorded(f: impl FnOnce()) -> Snapshot {
        let recorder = DebuggingRecorder::new();
        let snapshotter: Snapshotter = recorder.snapshotter();
        ::metrics::with_local_recorder(&recorder, f);
        snapshotter.snapshot().into_vec()
    }

    fn labels_match(key: &CompositeKey, labels: &[(&str, &str)]) -> bool {
        labels.iter().all(|(k, v)| key.key().labels().any(|l| l.key() == *k && l.value() == *v))
    }

    fn counter(snapshot: &Snapshot, name: &str, labels: &[(&str, &str)]) -> u64 {
        snapshot
            .iter()
            .filter(|(k, ..)| k.kind() == MetricKind::Counter && k.key().name() == name && labels_match(k, labels))
            .map(|(.., v)| match v {
                DebugValue::Counter(n) => n.to_owned(),
                other => panic!("{name} is not a counter: {other:?}"),
            })
            .sum()
    }

    fn gauge(snapshot: &Snapshot, name: &str) -> Option<f64> {
        snapshot.iter().find(|(k, ..)| k.key().name() == name).map(|(.., v)| match v {
            DebugValue::Gauge(g) => g.into_inner(),
            other => panic!("{name} is not a gauge: {other:?}"),
        })
    }

    fn histogram_samples(snapshot: &Snapshot, name: &str, labels: &[(&str, &str)]) -> usize {
        snapshot
            .iter()
            .filter(|(k, ..)| k.key().name() == name && labels_match(k, labels))
            .map(|(.., v)| match v {
                DebugValue::Histogram(samples) => samples.len(),
                other => panic!("{name} is not a histogram: {other:?}"),
            })
            .sum()
    }

    #[test]
    fn decisions_and_breaches_are_counted_by_route_limit_and_outcome() {
        let (b, _) = builder();
        let limiter = b
            .route(
                Route::new("search")
                    .path("/search")
                    .limit("2 per minute")
                    .limit(Limit::new("1 per minute").shadow(true)),
            )
            .build()
            .unwrap();
        let snapshot = recorded(|| {
            for _ in 0..3 {
                check(&limiter, &get("/search"));
            }
        });
        let search = ("route", "search");
        let decision =
            |d: &str, limit: &str| counter(&snapshot, DECISIONS, &[search, ("decision", d), ("limit", limit)]);
        assert_eq!(decision("allowed", "2 per 1 minute"), 1);
        assert_eq!(decision("shadow_limited", "1 per 1 minute"), 1);
        assert_eq!(decision("limited", "2 per 1 minute"), 1);
        assert_eq!(counter(&snapshot, DECISIONS, &[]), 3, "one decision per request");
        assert_eq!(counter(&snapshot, BREACHES, &[search, ("shadow", "true"), ("limit", "1 per 1 minute")]), 1);
        assert_eq!(counter(&snapshot, BREACHES, &[search, ("shadow", "false"), ("limit", "2 per 1 minute")]), 1);
        assert_eq!(
            histogram_samples(&snapshot, STORAGE_CALL_SECONDS, &[("storage", "memory"), ("operation", "decide")]),
            3
        );
        assert_eq!(counter(&snapshot, STORAGE_ERRORS, &[]), 0);
    }

    #[test]
    fn request_paths_the_limiter_was_not_told_about_are_one_label() {
        let (b, _) = builder();
        let limiter = b
            .route(Route::new("search").path("/search").limit("5 per minute"))
            .default_limits("5 per minute")
            .build()
            .unwrap();
        let path = |route| Request { raw_path: true, ..get(route) };
        let snapshot = recorded(|| {
            for route in ["/search", "/a1", "/a2", "/a3"] {
                check(&limiter, &path(route));
            }
            check(&limiter, &get("/users/{id}"));
        });
        let decisions = |route| counter(&snapshot, DECISIONS, &[("route", route)]);
        assert_eq!(decisions("search"), 1, "a declared route by its name");
        assert_eq!(decisions("<undeclared>"), 3, "paths the client chose share one label");
        assert_eq!(decisions("/users/{id}"), 1, "a route template is kept");
        assert_eq!(decisions("/a1"), 0);
    }

    #[test]
    fn storage_errors_and_the_fallback_gauge() {
        let storage = Failing::default();
        let (b, clock) = builder();
        let limiter = b
            .storage(storage.clone())
            .on_storage_failure(FailurePolicy::InMemoryFallback)
            .default_limits("10 per minute")
            .build()
            .unwrap();
        let before = recorded(|| {
            let (b, _) = builder();
            b.storage(storage.clone()).on_storage_failure(FailurePolicy::InMemoryFallback).build().unwrap();
        });
        assert_eq!(gauge(&before, FALLBACK_ACTIVE), Some(0.0), "set when the limiter is built");
        storage.down.store(true, Ordering::Release);
        let down = recorded(|| {
            assert_eq!(check(&limiter, &get("/x")).verdict(), Verdict::Allowed, "counted in memory");
        });
        assert_eq!(
            counter(&down, STORAGE_ERRORS, &[("storage", "failing"), ("operation", "decide"), ("kind", "unavailable")]),
            1
        );
        assert_eq!(gauge(&down, FALLBACK_ACTIVE), Some(1.0));
        storage.down.store(false, Ordering::Release);
        clock.advance(Duration::from_secs(1));
        let back = recorded(|| {
            check(&limiter, &get("/x"));
        });
        assert_eq!(histogram_samples(&back, STORAGE_CALL_SECONDS, &[("operation", "check")]), 1, "the probe");
        assert_eq!(gauge(&back, FALLBACK_ACTIVE), Some(0.0));

        // Failing closed: a 503, counted as such.
        let (b, _) = builder();
        let closed = b.storage(storage.clone()).default_limits("10 per minute").build().unwrap();
        storage.down.store(true, Ordering::Release);
        let snapshot = recorded(|| {
            assert_eq!(check(&closed, &get("/x")).verdict(), Verdict::Unavailable);
        });
        assert_eq!(counter(&snapshot, DECISIONS, &[("decision", "unavailable"), ("route", "/x")]), 1);
    }

    #[test]
    fn describe_names_every_metric() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        ::metrics::with_local_recorder(&recorder, || {
            crate::engine::metrics::describe();
            // Descriptions are reported with the metrics they describe.
            ::metrics::counter!(DECISIONS).increment(1);
            ::metrics::histogram!(STORAGE_CALL_SECONDS).record(0.001);
        });
        let snapshot = snapshotter.snapshot().into_vec();
        let described =
            |name: &str| snapshot.iter().find(|(k, ..)| k.key().name() == name).and_then(|(_, _, d, _)| d.clone());
        assert!(described(DECISIONS).is_some_and(|d| d.contains("decided")));
        let unit = snapshot.iter().find(|(k, ..)| k.key().name() == STORAGE_CALL_SECONDS).and_then(|(_, u, ..)| *u);
        assert_eq!(unit, Some(::metrics::Unit::Seconds));
    }

    /// A memory storage that fails while `down`.
    #[derive(Clone, Default)]
    struct Failing {
        memory: MemoryStorage,
        down: Arc<AtomicBool>,
    }

    impl Failing {
        fn gate(&self) -> Result<(), StorageError> {
            if self.down.load(Ordering::Acquire) {
                Err(StorageError::new(StorageErrorKind::Unavailable, "failing", "down for the test"))
            } else {
                Ok(())
            }
        }
    }

    impl Storage for Failing {
        fn name(&self) -> &'static str {
            "failing"
        }
        fn check(&self) -> impl Future<Output = Result<(), StorageError>> + Send {
            ready(self.gate())
        }
        fn reset(&self) -> impl Future<Output = Result<(), StorageError>> + Send {
            ready(self.gate())
        }
    }

    impl Supports<FixedWindow> for Failing {
        fn decide<'a>(
            &'a self,
            strategy: FixedWindow,
            batch: &'a Batch<'a>,
        ) -> impl Future<Output = Result<Outcome, StorageError>> + Send + 'a {
            let gate = self.gate();
            async move {
                gate?;
                self.memory.decide(strategy, batch).await
            }
        }
        fn clear<'a>(
            &'a self,
            strategy: FixedWindow,
            limit: &'a RateLimit,
            key: Key<'a>,
        ) -> impl Future<Output = Result<(), StorageError>> + Send + 'a {
            self.memory.clear(strategy, limit, key)
        }
    }

    crate::dyn_storage!(Failing: FixedWindow);
}

// --- deciding at once (`Limiter::check_now`) --------------------------------

mod immediate {
    use std::future::{Future, ready};
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::engine::FailurePolicy;
    use crate::error::{StorageError, StorageErrorKind};
    use crate::limit::RateLimit;
    use crate::storage::{Batch, Key, Outcome, Storage, Supports};
    use crate::{FixedWindow, MemoryStorage};

    /// A memory storage, failing while `down`; `immediate` or not by type.
    #[derive(Clone, Default)]
    struct Gated {
        memory: MemoryStorage,
        down: Arc<AtomicBool>,
    }

    #[derive(Clone, Default)]
    struct Now(Gated);

    #[derive(Clone, Default)]
    pub(super) struct Later(Gated);

    impl Gated {
        fn gate(&self) -> Result<(), StorageError> {
            if self.down.load(Ordering::Acquire) {
                Err(StorageError::new(StorageErrorKind::Unavailable, "gated", "down for the test"))
            } else {
                Ok(())
            }
        }
    }

    macro_rules! gated {
        ($ty:ident) => {
            impl Storage for $ty {
                fn name(&self) -> &'static str {
                    "gated"
                }
                fn check(&self) -> impl Future<Output = Result<(), crate::StorageError>> + Send {
                    ready(self.0.gate())
                }
                fn reset(&self) -> impl Future<Output = Result<(), crate::StorageError>> + Send {
                    ready(self.0.gate())
                }
            }

            impl Supports<FixedWindow> for $ty {
                fn decide<'a>(
                    &'a self,
                    strategy: FixedWindow,
                    batch: &'a Batch<'a>,
                ) -> impl Future<Output = Result<Outcome, crate::StorageError>> + Send + 'a {
                    let gate = self.0.gate();
                    async move {
                        gate?;
                        self.0.memory.decide(strategy, batch).await
                    }
                }
                fn clear<'a>(
                    &'a self,
                    strategy: FixedWindow,
                    limit: &'a RateLimit,
                    key: Key<'a>,
                ) -> impl Future<Output = Result<(), crate::StorageError>> + Send + 'a {
                    self.0.memory.clear(strategy, limit, key)
                }
            }
        };
    }

    gated!(Now);
    gated!(Later);
    crate::dyn_storage!(Now: FixedWindow; immediate);
    crate::dyn_storage!(Later: FixedWindow);

    #[test]
    fn a_storage_that_waits_is_left_to_check() {
        let (b, _) = builder();
        let limiter = b.storage(Later::default()).default_limits("2/minute").build().unwrap();
        assert!(limiter.check_now(&get("/a")).is_none(), "nothing decided, nothing counted");
        assert_eq!(check(&limiter, &get("/a")).verdict(), Verdict::Allowed);
        assert_eq!(check(&limiter, &get("/a")).verdict(), Verdict::Allowed);
        assert_eq!(check(&limiter, &get("/a")).verdict(), Verdict::Limited, "check_now counted nothing");
    }

    #[test]
    fn an_immediate_storage_is_decided_at_once_as_check_decides() {
        let (b, _) = builder();
        let limiter = b.storage(Now::default()).default_limits("2/minute").build().unwrap();
        let first = limiter.check_now(&get("/a")).unwrap();
        assert_eq!(first.verdict(), Verdict::Allowed);
        assert_eq!(header(&limiter, &first, "X-RateLimit-Remaining").as_deref(), Some("1"));
        assert_eq!(first.limits()[0].storage_key(), "LIMITER/127.0.0.1//a/2/1/minute");
        assert_eq!(check(&limiter, &get("/a")).verdict(), Verdict::Allowed);
        let third = limiter.check_now(&get("/a")).unwrap();
        assert_eq!(third.verdict(), Verdict::Limited);
        let retry = third.rejection().unwrap().headers.iter().find(|(n, _)| &**n == "Retry-After");
        assert_eq!(retry.map(|(_, v)| v.as_str()), Some("60"));
    }

    #[test]
    fn a_failing_storage_refuses_nothing_when_only_shadow_limits_apply() {
        let now = Now::default();
        let later = Later::default();
        now.0.down.store(true, Ordering::Release);
        later.0.down.store(true, Ordering::Release);
        // Failing closed (the default) with shadow limits only: through.
        let (b, _) = builder();
        let shadow_now = b.storage(now.clone()).default_limits(Limit::new("1/minute").shadow(true)).build().unwrap();
        assert_eq!(shadow_now.check_now(&get("/a")).unwrap().verdict(), Verdict::FailedOpen);
        let (b, _) = builder();
        let shadow_later = b.storage(later.clone()).shadow(true).default_limits("1/minute").build().unwrap();
        assert_eq!(check(&shadow_later, &get("/a")).verdict(), Verdict::FailedOpen);
        // One enforced limit among them: the policy holds.
        let (b, _) = builder();
        let mixed = b.storage(later).default_limits(Limit::new("1/minute").shadow(true)).default_limits("5/minute");
        assert_eq!(check(&mixed.build().unwrap(), &get("/a")).verdict(), Verdict::Unavailable);
    }

    #[test]
    fn an_immediate_storage_that_fails_follows_the_failure_policy_at_once() {
        let storage = Now::default();
        storage.0.down.store(true, Ordering::Release);
        let (b, _) = builder();
        let open = b.storage(storage.clone()).on_storage_failure(FailurePolicy::FailOpen).default_limits("1/minute");
        let open = open.build().unwrap();
        assert_eq!(open.check_now(&get("/a")).unwrap().verdict(), Verdict::FailedOpen);

        let (b, _) = builder();
        let fallback = b.storage(storage.clone()).on_storage_failure(FailurePolicy::InMemoryFallback);
        let fallback = fallback.default_limits("1/minute").build().unwrap();
        let first = fallback.check_now(&get("/a")).unwrap();
        assert_eq!(first.verdict(), Verdict::Allowed, "counted in memory");
        let second = fallback.check_now(&get("/a")).unwrap();
        assert_eq!(second.verdict(), Verdict::Limited, "the fallback counts the same limits");
    }

    /// A route recorded while the storage answered, then the storage fails:
    /// the recorded route is decided as any other (see `engine::resolved`).
    fn recorded_then_down(policy: FailurePolicy) -> (Limiter<Request>, Now) {
        let storage = Now::default();
        let (b, _) = builder();
        let b = b.storage(storage.clone()).on_storage_failure(policy).in_memory_fallback_limits("1/minute");
        let limiter = b.route(Route::new("r").path("/r").limit("5/minute")).build().unwrap();
        assert!(limiter.check_now(&get("/r")).unwrap().is_allowed(), "recorded");
        storage.0.down.store(true, Ordering::Release);
        (limiter, storage)
    }

    #[test]
    fn a_recorded_route_fails_closed_when_the_storage_fails() {
        let (limiter, _) = recorded_then_down(FailurePolicy::default());
        assert_eq!(limiter.check_now(&get("/r")).unwrap().verdict(), Verdict::Unavailable);
    }

    #[test]
    fn a_recorded_route_turns_to_the_fallback_limits_when_the_storage_fails() {
        let (limiter, _) = recorded_then_down(FailurePolicy::InMemoryFallback);
        // The request that finds the storage down is counted in memory by
        // its own limits; the fallback's limits apply from the next one.
        let first = limiter.check_now(&get("/r")).unwrap();
        assert_eq!(first.limits()[0].limit, crate::parse("5/minute").unwrap());
        let second = limiter.check_now(&get("/r")).unwrap();
        assert_eq!(
            second.limits()[0].limit,
            crate::parse("1/minute").unwrap(),
            "the fallback's limit, not the route's"
        );
        assert_eq!(limiter.check_now(&get("/r")).unwrap().verdict(), Verdict::Limited);
    }
}

// --- as Flask-Limiter decides ------------------------------------------------

mod flask_parity {
    use super::immediate::Later;
    use super::*;
    use crate::engine::{KeyError, ResponseInfo};

    /// The same limiter on the memory storage (decided by `check_now`) and
    /// on a storage that waits (decided by `check`'s future).
    fn on_both(
        configure: impl Fn(LimiterBuilder<Request>) -> LimiterBuilder<Request>,
    ) -> Vec<(Limiter<Request>, ManualClock, &'static str)> {
        let (now, now_clock) = builder();
        let (later, later_clock) = builder();
        vec![
            (configure(now).build().unwrap(), now_clock, "check_now"),
            (configure(later.storage(Later::default())).build().unwrap(), later_clock, "check"),
        ]
    }

    /// Hits of cost 1 left on `limit`'s counter for the test client.
    fn left(limiter: &Limiter<Request>, limit: &crate::engine::LimitInfo, key: &str) -> u64 {
        let keyed = limit.keyed(limiter.key_prefix(), key, "GET");
        block_on(limiter.peek(&keyed)).unwrap()[0].remaining
    }

    fn body(decision: &Decision) -> &str {
        &decision.rejection().unwrap().body
    }

    #[test]
    fn application_limits_are_shared_so_headers_show_another_limit() {
        let (b, _) = builder();
        let limiter = b.application_limits("10/second").default_limits("100/hour").build().unwrap();
        let d = check(&limiter, &get("/x"));
        assert_eq!(header(&limiter, &d, "X-RateLimit-Limit").as_deref(), Some("100"));
        let app = d.limits().iter().find(|l| l.limit == crate::parse("10/second").unwrap()).unwrap();
        assert!(app.shared, "ApplicationLimit is always shared");
        assert_eq!(d.current_limit().map(|l| l.limit.amount()), Some(100));
    }

    #[test]
    fn on_a_route_with_limits_of_its_own_the_headers_show_them_even_shared() {
        // The application limit is decided first (Flask-Limiter's
        // `before_request`); the headers show the route's own limit, shared
        // or not, as Flask-Limiter's last pass does.
        for (limiter, _, path) in on_both(|b| {
            b.application_limits("10/second")
                .route(Route::new("r").path("/r").limit(Limit::new("100/hour").shared("s")))
        }) {
            let d = check(&limiter, &get("/r"));
            assert_eq!(d.verdict(), Verdict::Allowed, "{path}");
            assert_eq!(header(&limiter, &d, "X-RateLimit-Limit").as_deref(), Some("100"), "{path}");
            assert_eq!(d.limits().len(), 2, "{path}");
        }
    }

    #[test]
    fn meta_limits_are_neither_listed_nor_announced_on_an_allowed_request() {
        let ietf = super::super::HeaderSettings { ietf: true, ..super::super::HeaderSettings::default() };
        for (limiter, _, path) in on_both(|b| b.headers(ietf.clone()).meta_limits("1/day").default_limits("5/minute")) {
            let d = check(&limiter, &get("/x"));
            assert_eq!(d.verdict(), Verdict::Allowed, "{path}");
            assert_eq!(d.limits().len(), 1, "{path}: only the default limit");
            assert_eq!(
                header(&limiter, &d, "RateLimit-Policy").as_deref(),
                Some("\"5-per-1-minute\";q=5;w=60"),
                "{path}"
            );
        }
    }

    #[test]
    fn a_meta_breach_counts_nothing_even_when_counting_every_limit() {
        for (limiter, clock, path) in
            on_both(|b| b.meta_limits("1/day").fail_on_first_breach(false).default_limits("5/minute"))
        {
            for n in 1..=5 {
                assert_eq!(check(&limiter, &get("/x")).verdict(), Verdict::Allowed, "{path}: request {n}");
            }
            assert_eq!(body(&check(&limiter, &get("/x"))), "Rate limit exceeded: 5 per 1 minute", "{path}");
            clock.advance(Duration::from_secs(60));
            for _ in 0..3 {
                let d = check(&limiter, &get("/x"));
                assert_eq!(body(&d), "Rate limit exceeded: 1 per 1 day", "{path}: refused by the meta limit");
                assert!(d.limits().is_empty(), "{path}");
            }
            let minute = &limiter.route_info("/x").defaults[0];
            assert_eq!(left(&limiter, minute, "127.0.0.1"), 5, "{path}: meta-refused requests count nothing");
        }
    }

    #[test]
    fn deduct_when_limits_the_request_never_reached_are_not_deducted() {
        let (b, _) = builder();
        let limiter = b
            .route(
                Route::new("r")
                    .path("/r")
                    .limit("1/second")
                    .limit(Limit::new("10/hour").deduct_when(|r| r.status >= 400)),
            )
            .build()
            .unwrap();
        let first = check(&limiter, &get("/r"));
        assert!(first.is_allowed() && first.has_deferred());
        block_on(limiter.after_response(&first, ResponseInfo::new(200)));
        // 1/second refuses first (shorter window): Flask-Limiter stops there,
        // so 10/hour is never reached, and the 429 is not deducted from it.
        let second = check(&limiter, &get("/r"));
        assert_eq!(second.verdict(), Verdict::Limited);
        assert!(!second.has_deferred());
        block_on(limiter.after_response(&second, ResponseInfo::new(429)));
        let hour = &limiter.route_info("r").own[1];
        assert_eq!(left(&limiter, hour, "127.0.0.1"), 10);
    }

    #[test]
    fn counting_every_limit_refusals_are_deducted_from_the_deduct_when_limits_reached() {
        let configure = |b: LimiterBuilder<Request>| {
            b.fail_on_first_breach(false).route(
                Route::new("r")
                    .path("/r")
                    .limit("1/second")
                    .limit(Limit::new("2/minute").deduct_when(|r| r.status == 429)),
            )
        };
        for (limiter, clock, path) in on_both(configure) {
            let statuses: Vec<u16> = (0..3)
                .map(|_| {
                    let d = check(&limiter, &get("/r"));
                    let status = if d.is_allowed() { 200 } else { 429 };
                    block_on(limiter.after_response(&d, ResponseInfo::new(status)));
                    status
                })
                .collect();
            assert_eq!(statuses, [200, 429, 429], "{path}");
            clock.advance(Duration::from_secs(1));
            let d = check(&limiter, &get("/r"));
            assert_eq!(body(&d), "Rate limit exceeded: 2 per 1 minute", "{path}: the two refusals filled 2/minute");
        }
    }

    #[test]
    fn application_limits_come_first_on_a_route_with_limits_of_its_own() {
        let (b, _) = builder();
        let limiter =
            b.application_limits("1000/day").route(Route::new("r").path("/r").limit("1/second")).build().unwrap();
        let verdicts: Vec<Verdict> = (0..3).map(|_| check(&limiter, &get("/r")).verdict()).collect();
        assert_eq!(verdicts, [Verdict::Allowed, Verdict::Limited, Verdict::Limited]);
        let app = &limiter.route_info("r").application[0];
        assert_eq!(left(&limiter, app, "127.0.0.1"), 997, "before_request counted every request");
        // Without limits of its own, one pass sorted by window: 1/second
        // refuses before the application limit is reached.
        let (b, _) = builder();
        let limiter = b.application_limits("1000/day").default_limits("1/second").build().unwrap();
        for _ in 0..3 {
            check(&limiter, &get("/x"));
        }
        assert_eq!(left(&limiter, &limiter.route_info("/x").application[0], "127.0.0.1"), 999);
    }

    #[test]
    fn the_application_breach_is_the_one_reported_on_a_route_with_limits() {
        let (b, _) = builder();
        let limiter =
            b.application_limits("1/day").route(Route::new("r").path("/r").limit("1/second")).build().unwrap();
        let first = check(&limiter, &get("/r"));
        assert_eq!(header(&limiter, &first, "X-RateLimit-Limit").as_deref(), Some("1"));
        assert_eq!(first.current_limit().map(|l| l.limit.amount()), Some(1));
        let second = check(&limiter, &get("/r"));
        assert_eq!(body(&second), "Rate limit exceeded: 1 per 1 day");
    }

    #[test]
    fn counting_every_limit_a_breached_application_limit_stops_the_route_limits() {
        let configure = |b: LimiterBuilder<Request>| {
            b.fail_on_first_breach(false)
                .application_limits("1/day")
                .route(Route::new("r").path("/r").limit("5/minute"))
        };
        for (limiter, _, path) in on_both(configure) {
            assert!(check(&limiter, &get("/r")).is_allowed(), "{path}");
            assert_eq!(body(&check(&limiter, &get("/r"))), "Rate limit exceeded: 1 per 1 day", "{path}");
            let minute = &limiter.route_info("r").own[0];
            assert_eq!(left(&limiter, minute, "127.0.0.1"), 4, "{path}: the second request never reached it");
        }
    }

    #[test]
    fn attached_meta_limits_count_by_their_parents_key() {
        let user = |_: &Request| Ok::<_, KeyError>("user-1".to_owned());
        for (limiter, _, path) in on_both(|b| {
            b.route(Route::new("r").path("/r").limit(Limit::new("5/minute").key(user).meta_limits("2/hour")))
        }) {
            for _ in 0..5 {
                assert!(check(&limiter, &get("/r")).is_allowed(), "{path}");
            }
            assert_eq!(check(&limiter, &get("/r")).verdict(), Verdict::Limited, "{path}");
            let meta = &limiter.route_info("r").own[0].meta[0];
            let keyed = meta.keyed(limiter.key_prefix(), "user-1", "GET");
            assert_eq!(keyed[0].storage_key(), "LIMITER/user-1/meta/2/1/hour");
            assert_eq!(left(&limiter, meta, "user-1"), 1, "{path}: the breach counted under the parent's key");
            assert_eq!(left(&limiter, meta, "127.0.0.1"), 2, "{path}");
        }
    }

    #[test]
    fn a_dynamic_limit_returning_none_brings_the_defaults_back() {
        let (b, _) = builder();
        let limiter = b
            .default_limits("100/hour")
            .route(Route::new("r").path("/r").limit(Limit::dynamic(|_| Vec::new())))
            .build()
            .unwrap();
        let d = check(&limiter, &get("/r"));
        assert_eq!(d.verdict(), Verdict::Allowed);
        assert_eq!(header(&limiter, &d, "X-RateLimit-Limit").as_deref(), Some("100"));
        assert_eq!(header(&limiter, &d, "X-RateLimit-Remaining").as_deref(), Some("99"));
        // exempt_when does not bring them back.
        let (b, _) = builder();
        let limiter = b
            .default_limits("100/hour")
            .route(Route::new("r").path("/r").limit(Limit::new("1/second").exempt_when(|_| true)))
            .build()
            .unwrap();
        assert_eq!(check(&limiter, &get("/r")).verdict(), Verdict::Exempt);
    }

    #[test]
    fn a_meta_limits_own_hook_replaces_on_meta_breach() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let hook = |name: &'static str| {
            let calls = Arc::clone(&calls);
            move |_: &crate::engine::Breach| {
                calls.lock().unwrap().push(name);
                None
            }
        };
        let (b, _) = builder();
        let limiter = b
            .meta_limits(Limit::new("1/day").on_breach(hook("own")))
            .default_limits("1/minute")
            .on_breach(hook("global"))
            .on_meta_breach(hook("meta"))
            .build()
            .unwrap();
        let verdicts: Vec<Verdict> = (0..4).map(|_| check(&limiter, &get("/x")).verdict()).collect();
        assert_eq!(verdicts, [Verdict::Allowed, Verdict::Limited, Verdict::Limited, Verdict::Limited]);
        assert_eq!(*calls.lock().unwrap(), ["global", "own", "own"]);
        // Without its own hook, on_meta_breach (and only it).
        calls.lock().unwrap().clear();
        let (b, _) = builder();
        let limiter = b
            .meta_limits("1/day")
            .default_limits("1/minute")
            .on_breach(hook("global"))
            .on_meta_breach(hook("meta"))
            .build()
            .unwrap();
        for _ in 0..4 {
            check(&limiter, &get("/x"));
        }
        assert_eq!(*calls.lock().unwrap(), ["global", "meta", "meta"]);
    }

    #[test]
    fn a_fixed_cost_of_zero_costs_one() {
        let (b, _) = builder();
        let limiter = b.default_limits(Limit::new("2/minute").cost(0)).build().unwrap();
        let verdicts: Vec<Verdict> = (0..3).map(|_| check(&limiter, &get("/x")).verdict()).collect();
        assert_eq!(verdicts, [Verdict::Allowed, Verdict::Allowed, Verdict::Limited]);
    }

    #[test]
    fn a_limit_with_an_empty_key_is_skipped() {
        let nobody = |_: &Request| Ok::<_, KeyError>(String::new());
        let (b, _) = builder();
        let limiter = b
            .route(Route::new("r").path("/r").limit(Limit::new("1/minute").key(nobody)).limit("2/minute"))
            .build()
            .unwrap();
        let first = check(&limiter, &get("/r"));
        assert_eq!(first.limits().len(), 1, "only 2/minute is counted");
        assert_eq!(header(&limiter, &first, "X-RateLimit-Limit").as_deref(), Some("2"));
        assert!(check(&limiter, &get("/r")).is_allowed(), "1/minute was skipped");
        assert_eq!(check(&limiter, &get("/r")).verdict(), Verdict::Limited);
        // The limiter's own key empty: no limit is counted.
        let (b, _) = builder();
        let limiter = b.key(nobody).default_limits("1/minute").build().unwrap();
        for _ in 0..3 {
            let d = check(&limiter, &get("/x"));
            assert!(d.is_allowed() && d.limits().is_empty());
        }
    }
}

// --- a route's resolution, recorded once ----------------------------------

/// Two limiters alike, on clocks of their own, but for one thing: the
/// second's default limit has an `exempt_when` that never exempts, so its
/// routes are resolved from the declarations on every request, never
/// recorded. With `meta` (meta limits on every route) no route is decided
/// directly; without, most routes are (no meta limit, and the IETF fields
/// on to compare their policy lists).
fn resolution_twins(meta: bool) -> [(Limiter<Request>, ManualClock); 2] {
    [false, true].map(|never_record| {
        let (b, clock) = builder();
        let default = Limit::new("4 per minute").error_message("slow down");
        let default = if never_record { default.exempt_when(|_| false) } else { default };
        let b = if meta {
            b.meta_limits("3 per hour")
        } else {
            b.headers(super::HeaderSettings { enabled: true, ietf: true, ..super::HeaderSettings::default() })
        };
        let limiter = b
            .key_prefix("svc")
            .application_limits("9 per minute")
            .default_limits("6 per hour")
            .default_limits(default)
            .route(
                Route::new("search")
                    .path("/search")
                    .limit("3 per minute")
                    .limit(Limit::new("5 per minute").shadow(true)),
            )
            .route(Route::new("feed").path("/feed").limit(Limit::new("3/minute").shared("reads")))
            .route(Route::new("login").path("/login").limit(Limit::new("2/minute").per_method(true)))
            .route(Route::new("free").path("/free").exempt())
            .group(super::Group::new("api", "/api").limit("5 per minute"))
            .build()
            .unwrap();
        (limiter, clock)
    })
}

#[test]
fn a_recorded_resolution_decides_as_resolving_from_the_declarations() {
    for meta in [true, false] {
        recorded_and_resolved_decide_alike(meta);
    }
}

fn recorded_and_resolved_decide_alike(meta: bool) {
    let [(recording, recording_clock), (resolving, resolving_clock)] = resolution_twins(meta);
    // Unregistered paths under the group and outside it are counted by their
    // own path: one recorded resolution serves paths with different scopes.
    // `global` and `meta` are spelled like the application and meta scopes.
    let paths = ["/search", "/feed", "/login", "/free", "/api/items", "/api/other", "/elsewhere", "global", "meta"];
    let mut refused = 0;
    for step in 0..120 {
        let route = paths[step % paths.len()];
        let peer = if step % 3 == 0 { [10, 0, 0, 2] } else { [127, 0, 0, 1] };
        let request = Request { route, peer, raw_path: false };
        let (recorded, resolved) = (check(&recording, &request), check(&resolving, &request));
        let at = format!("meta {meta}, step {step}, {route}");
        assert_eq!(recorded.verdict(), resolved.verdict(), "{at}");
        assert_eq!(recorded.limits(), resolved.limits(), "{at}");
        assert_eq!(
            recorded.headers(recording.header_settings()),
            resolved.headers(resolving.header_settings()),
            "{at}"
        );
        assert_eq!(recorded.rejection(), resolved.rejection(), "{at}");
        assert_eq!(recorded.shadow_limited(), resolved.shadow_limited(), "{at}");
        refused += usize::from(recorded.verdict() == Verdict::Limited);
        if step % 20 == 19 {
            recording_clock.advance(Duration::from_secs(25));
            resolving_clock.advance(Duration::from_secs(25));
        }
    }
    assert!(refused > 10, "breaches (with `meta`, meta breaches) were compared too: {refused}");
    let recorded = |limiter: &Limiter<Request>, path: &str| match limiter.inner.plans.for_path(path).resolved.get() {
        Some(Some(_)) => true,
        Some(None) => false,
        None => panic!("{path} was requested, so its resolution was looked at"),
    };
    for path in ["/search", "/feed", "/free", "/api/items", "/elsewhere"] {
        assert!(recorded(&recording, path), "{path} resolves the same for every request");
        assert!(!recorded(&resolving, path), "{path} has a default limit with exempt_when");
    }
    assert!(!recorded(&recording, "/login"), "counted per method: the method is read from each request");
    let direct = |path: &str| matches!(recording.inner.plans.for_path(path).direct.get(), Some(Some(_)));
    for path in ["/feed", "/api/items", "/elsewhere"] {
        assert_eq!(direct(path), !meta, "{path}: decided directly unless a meta limit applies");
    }
    assert!(!direct("/search"), "a limit in shadow mode: decided as usual");
}

/// What a route decided from its recording must still do as the general
/// path does: each route is requested once first, so that it is recorded.
mod recorded {
    use super::*;
    use crate::engine::KeyError;

    fn from(peer: [u8; 4], route: &'static str) -> Request {
        Request { route, peer, raw_path: false }
    }

    #[test]
    fn a_filtered_request_is_limited_by_nothing_but_meta_limits() {
        let (b, _) = builder();
        let b = b.request_filter(|r: &Request| r.peer == [10, 0, 0, 9]);
        let limiter = b.route(Route::new("r").path("/r").limit("1/minute")).build().unwrap();
        assert!(check(&limiter, &get("/r")).is_allowed());
        for _ in 0..3 {
            let d = check(&limiter, &from([10, 0, 0, 9], "/r"));
            assert!(d.is_allowed() && d.limits().is_empty());
        }
    }

    #[test]
    fn a_limit_with_a_key_of_its_own_counts_by_it() {
        let everyone = |_: &Request| Ok::<_, KeyError>("everyone".to_owned());
        let (b, _) = builder();
        let limiter = b.route(Route::new("r").path("/r").limit(Limit::new("1/minute").key(everyone))).build().unwrap();
        assert!(check(&limiter, &get("/r")).is_allowed());
        assert_eq!(check(&limiter, &from([10, 0, 0, 9], "/r")).verdict(), Verdict::Limited, "one bucket for all");
    }

    #[test]
    fn a_deduct_when_limit_is_only_tested_before_the_response() {
        let (b, _) = builder();
        let limit = Limit::new("1/minute").deduct_when(|_| true);
        let limiter = b.route(Route::new("r").path("/r").limit(limit)).build().unwrap();
        for n in 0..3 {
            assert!(check(&limiter, &get("/r")).is_allowed(), "request {n}: nothing deducted without a response");
        }
    }

    #[test]
    fn a_fixed_cost_is_counted() {
        let (b, _) = builder();
        let limiter = b.route(Route::new("r").path("/r").limit(Limit::new("3/minute").cost(2))).build().unwrap();
        assert!(check(&limiter, &get("/r")).is_allowed());
        assert_eq!(check(&limiter, &get("/r")).verdict(), Verdict::Limited, "2 + 2 > 3");
    }

    #[test]
    fn an_empty_path_or_fixed_scope_skips_the_limits() {
        let (b, _) = builder();
        let limiter = b.default_limits("1/minute").build().unwrap();
        assert!(check(&limiter, &get("/x")).is_allowed(), "records the default limits' plan");
        let (b, _) = builder();
        let shared = b.route(Route::new("r").path("/r").limit(Limit::new("1/minute").shared(""))).build().unwrap();
        for _ in 0..3 {
            for (limiter, request) in [(&limiter, get("")), (&shared, get("/r"))] {
                let d = check(limiter, &request);
                assert!(d.is_allowed() && d.limits().is_empty(), "{}: skipped, not counted", request.route);
            }
        }
    }

    #[test]
    fn a_missing_key_is_answered_as_before_recording() {
        let picky = |r: &Request| {
            if r.peer == [10, 0, 0, 9] { Err(KeyError::new("no key for this client")) } else { Ok("a".to_owned()) }
        };
        let limiter = |warm: bool| {
            let (b, _) = builder();
            let limiter = b.key(picky).route(Route::new("r").path("/r").limit("5/minute")).build().unwrap();
            if warm {
                assert!(check(&limiter, &get("/r")).is_allowed(), "recorded");
            }
            limiter
        };
        let (recorded, fresh) = (limiter(true), limiter(false));
        let (after, before) = (check(&recorded, &from([10, 0, 0, 9], "/r")), check(&fresh, &from([10, 0, 0, 9], "/r")));
        assert_eq!(after.verdict(), before.verdict());
        assert_eq!(after.rejection(), before.rejection());
        assert_ne!(after.verdict(), Verdict::Allowed, "a missing key fails closed by default");
    }
}

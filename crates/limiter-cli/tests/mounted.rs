//! The command line mounted in an app (`limiter_cli::Tool`): the app's own
//! routes, its memory storage shared in process.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use limiter::engine::{Exemption, Group, Limit, Limiter, Route};
use limiter_cli::{EXIT_ERROR, EXIT_NO, EXIT_OK, Tool};
use limiter_testkit::TestRequest;

/// The seed's quickstart app, plus an API group, a shared limit, a limit on
/// POST counted per method (with a meta limit of its own), a shadow limit,
/// application and meta limits.
fn app() -> Limiter<TestRequest> {
    limiter_testkit::seed_app(Limiter::builder())
        .key_prefix("svc")
        .application_limits("5000 per day")
        .meta_limits("5 per hour")
        .route(
            Route::new("login")
                .path("/login")
                .limit(Limit::new("5 per minute").methods(["POST"]).per_method(true).meta_limits("2 per hour")),
        )
        .route(Route::new("feed").path("/feed").limit(Limit::new("2 per hour").shadow(true)))
        .route(Route::new("search").path("/api/search").limit(Limit::new("10 per second").shared("reads")))
        .group(Group::new("api", "/api").limit("100 per hour"))
        .group(Group::new("health", "/health").exempt_from(Exemption::ALL))
        .build()
        .unwrap()
}

struct Run {
    code: u8,
    stdout: String,
    stderr: String,
}

async fn run(limiter: &Limiter<TestRequest>, args: &[&str], stdin: &str) -> Run {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut input = stdin.as_bytes();
    let argv = std::iter::once("limiter").chain(args.iter().copied());
    let code = Tool::new(limiter).storage_uri("memory://").run_with(argv, &mut out, &mut err, &mut input, false).await;
    Run { code, stdout: String::from_utf8(out).unwrap(), stderr: String::from_utf8(err).unwrap() }
}

#[tokio::test]
async fn limits_show_the_apps_routes_groups_and_exemptions() {
    let limiter = app();
    let r = run(&limiter, &["limits"], "").await;
    assert_eq!(r.code, EXIT_OK, "{}", r.stderr);
    let expected = "\
Meta limits
└── 5 per 1 hour
Application limits
└── 5000 per 1 day
Routes
├── slow: /slow
│   └── 1 per 1 day
├── medium: /medium
│   ├── 1 per 1 second
│   ├── 200 per 1 day (default)
│   └── 50 per 1 hour (default)
├── fast: /fast
│   ├── 200 per 1 day (default)
│   └── 50 per 1 hour (default)
├── ping: /ping
│   └── Exempt
├── login: /login
│   ├── 5 per 1 minute (POST, per method)
│   ├── meta limits on its breaches
│   │   └── 2 per 1 hour
│   ├── 200 per 1 day (default) (methods other than POST)
│   └── 50 per 1 hour (default) (methods other than POST)
└── feed: /feed
    └── 2 per 1 hour [shadow]
Group api: /api
├── search: /api/search
│   └── 10 per 1 second (shared: reads)
└── /api/* (other routes)
    └── 100 per 1 hour (group api)
Group health: /health
├── Exemption: APPLICATION | META | DEFAULT
└── /health/* (other routes)
    └── the default limits
Default limits (each route counts its own)
├── 200 per 1 day (default)
└── 50 per 1 hour (default)
";
    assert_eq!(r.stdout, expected);
}

#[tokio::test]
async fn key_states_follow_the_apps_counters() {
    let limiter = app();
    let slow = TestRequest::get("/slow");
    assert!(limiter.check(&slow).await.is_allowed());
    let r = run(&limiter, &["limits", "--key", "127.0.0.1", "--route", "slow"], "").await;
    assert_eq!(r.code, EXIT_OK);
    assert_eq!(
        r.stdout,
        "Key \"127.0.0.1\", method GET
Routes
└── slow: /slow
    ├── Meta limits
    │   └── 5 per 1 hour: Pass (5 of 5 remaining)
    ├── Application limits
    │   └── 5000 per 1 day: Pass (4999 of 5000 remaining)
    └── 1 per 1 day: Fail (0 of 1 remaining, resets in 86400 s)
"
    );

    // check names the route by name or path, prefix in every key but meta's.
    for route in ["slow", "/slow"] {
        let r = run(&limiter, &["check", "-k", "127.0.0.1", "-r", route], "").await;
        assert_eq!(r.code, EXIT_NO, "{route}: {}", r.stdout);
        assert!(r.stdout.contains("LIMITER/svc/127.0.0.1/slow/1/1/day"), "{}", r.stdout);
        assert!(r.stdout.contains("LIMITER/127.0.0.1/meta/5/1/hour"), "{}", r.stdout);
        assert!(r.stdout.contains("LIMITER/svc/127.0.0.1/global/5000/1/day"), "{}", r.stdout);
    }
    // A shadow limit that would refuse does not make check fail.
    let feed = TestRequest::get("/feed");
    for _ in 0..3 {
        assert!(limiter.check(&feed).await.is_allowed());
    }
    let r = run(&limiter, &["--json", "check", "-k", "127.0.0.1", "-r", "feed"], "").await;
    assert_eq!(r.code, EXIT_OK, "{}", r.stdout);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let shadow = doc["counters"].as_array().unwrap().iter().find(|c| c["shadow"] == true).unwrap();
    assert_eq!((shadow["allowed"].as_bool(), shadow["remaining"].as_u64()), (Some(false), Some(0)));

    // clear forgets the route's counters; the app lets the client in again.
    let r = run(&limiter, &["clear", "-k", "127.0.0.1", "-r", "slow", "-y"], "").await;
    assert_eq!(r.code, EXIT_OK, "{}", r.stderr);
    assert!(r.stdout.contains("1 per 1 day LIMITER/svc/127.0.0.1/slow/1/1/day: Cleared"), "{}", r.stdout);
    assert!(limiter.check(&slow).await.is_allowed());
}

#[tokio::test]
async fn clear_without_a_route_clears_every_route_and_each_methods_bucket() {
    let limiter = app();
    let post = TestRequest::new("POST", Some("/login"));
    for _ in 0..5 {
        assert!(limiter.check(&post).await.is_allowed());
    }
    assert!(!limiter.check(&post).await.is_allowed());
    let r = run(&limiter, &["--json", "clear", "-k", "127.0.0.1", "-y"], "").await;
    assert_eq!(r.code, EXIT_OK, "{}", r.stderr);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let cleared: Vec<&str> = doc["cleared"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(cleared.contains(&"LIMITER/svc/127.0.0.1/login:POST/5/1/minute"), "{cleared:?}");
    assert!(cleared.contains(&"LIMITER/svc/127.0.0.1/reads/10/1/second"), "{cleared:?}");
    assert_eq!(cleared.iter().filter(|k| k.ends_with("reads/10/1/second")).count(), 1, "shared once");
    // The login limit's own meta limit counted that breach; clearing
    // without a route forgets it too.
    assert!(cleared.contains(&"LIMITER/127.0.0.1/meta/2/1/hour"), "{cleared:?}");
    assert!(limiter.check(&post).await.is_allowed());
    let r = run(&limiter, &["--json", "limits", "-k", "127.0.0.1", "-r", "login", "-m", "POST"], "").await;
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let meta = &doc["routes"][0]["limits"][0]["meta"][0];
    assert_eq!(meta["limits"][0], "2 per 1 hour", "{doc}");
    assert_eq!(meta["counters"][0]["remaining"], 2, "{doc}");
}

#[tokio::test]
async fn mistakes_exit_2_with_one_line() {
    let limiter = app();
    let r = run(&limiter, &["check", "-k", "1.2.3.4", "-r", "nope"], "").await;
    assert_eq!(r.code, EXIT_ERROR);
    assert_eq!(
        r.stderr,
        "limiter: error: no route is named \"nope\": give a route name (slow, medium, fast, ping, login, feed, search) or a \
         path pattern starting with /\n"
    );
    let r = run(&limiter, &["--config", "x.toml", "limits"], "").await;
    assert_eq!(r.code, EXIT_ERROR);
    assert!(r.stderr.contains("--config is for the standalone"), "{}", r.stderr);
    let r = run(&limiter, &["check"], "").await;
    assert_eq!(r.code, EXIT_ERROR, "clap: --key is required");
    assert!(r.stderr.contains("--key"), "{}", r.stderr);
    let r = run(&limiter, &["--help"], "").await;
    assert_eq!(r.code, EXIT_OK);
    assert!(r.stdout.contains("Usage: limiter"));
}

#[tokio::test]
async fn config_shows_the_apps_limiter() {
    let limiter = app();
    let r = run(&limiter, &["config"], "").await;
    assert_eq!(r.code, EXIT_OK, "{}", r.stderr);
    let prefix = r.stdout.lines().find(|l| l.starts_with("key prefix")).unwrap();
    assert!(prefix.contains("svc") && prefix.ends_with("app"), "{prefix}");
    assert!(r.stdout.contains("memory (memory://)"), "{}", r.stdout);
    let r = run(&limiter, &["--color", "always", "config"], "").await;
    assert!(r.stdout.contains("\x1b[32mOK\x1b[0m"), "{}", r.stdout);
}

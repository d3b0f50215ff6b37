//! The seed's Flask-Limiter quickstart, decided by the limiter core.
//!
//! Run with: `cargo run -p quickstart`
//!
//! The Flask app limits every route to `200 per day` and `50 per hour` by
//! default, `/slow` to `1 per day` (instead of the defaults), `/medium` to
//! `1/second` on top of the defaults, and exempts `/ping`. Until the web layer
//! serves it over HTTP, this program replays a burst of requests from one
//! client and prints what the server would answer, with the rate-limit
//! headers Flask-Limiter sends. `RATELIMIT_STRATEGY` picks the strategy
//! (`fixed-window` by default), as in Flask-Limiter.

use std::process::ExitCode;

use limiter::{AnyStorage, Clock, Item, Key, MemoryStorage, Mode, RateLimit, RateLimiter, StrategyKind, SystemClock};

struct Route {
    name: &'static str,
    limits: Vec<RateLimit>,
}

fn routes(defaults: &[RateLimit]) -> Result<Vec<Route>, limiter::ParseError> {
    let with_defaults = |own: &str| -> Result<Vec<RateLimit>, limiter::ParseError> {
        let mut limits = limiter::parse_many(own)?;
        limits.extend_from_slice(defaults);
        Ok(limits)
    };
    Ok(vec![
        Route { name: "slow", limits: limiter::parse_many("1 per day")? },
        Route { name: "medium", limits: with_defaults("1/second")? },
        Route { name: "fast", limits: defaults.to_vec() },
        Route { name: "ping", limits: Vec::new() },
    ])
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quickstart: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let strategy: StrategyKind = std::env::var("RATELIMIT_STRATEGY").as_deref().unwrap_or("fixed-window").parse()?;
    let limiter = RateLimiter::dynamic(strategy, AnyStorage::new(MemoryStorage::new()))?;
    let defaults = limiter::parse_many("200 per day; 50 per hour")?;
    let routes = routes(&defaults)?;
    let client = "127.0.0.1";
    println!("strategy: {strategy}; client {client}; defaults: 200 per day, 50 per hour\n");

    for path in ["/slow", "/slow", "/medium", "/medium", "/fast", "/fast", "/ping"] {
        let Some(route) = routes.iter().find(|r| path.strip_prefix('/') == Some(r.name)) else {
            continue;
        };
        if route.limits.is_empty() {
            println!("GET {path:<8} -> 200 (exempt)");
            continue;
        }
        let ids = [client, route.name];
        let items: Vec<Item<'_>> = route.limits.iter().map(|l| Item::new(*l, Key::new(&ids))).collect();
        let outcome = limiter.decide(&items, Mode::Sequential { stop_at_first_breach: true }).await?;
        // Flask-Limiter reports the breached limit, else the one with the
        // shortest granularity.
        let shown = outcome
            .states()
            .iter()
            .zip(&route.limits)
            .filter_map(|(s, l)| s.map(|s| (s, l)))
            .min_by_key(|(s, l)| (s.allowed, l.granularity()));
        let Some((state, limit)) = shown else {
            continue;
        };
        let now = SystemClock.now();
        // A 429's Retry-After is when the refused hit could pass, rounded up
        // and never 0; otherwise, as Flask-Limiter does, the time to reset.
        let retry_after = match outcome.retry_at() {
            Some(at) => at.saturating_duration_since(now).as_nanos().div_ceil(1_000_000_000).max(1),
            None => u128::from(state.reset_at.saturating_duration_since(now).as_secs()),
        };
        let headers = format!(
            "X-RateLimit-Limit: {}, X-RateLimit-Remaining: {}, X-RateLimit-Reset: {}, Retry-After: {retry_after}",
            limit.amount(),
            state.remaining,
            state.reset_at.as_secs() + 1,
        );
        if outcome.allowed() {
            println!("GET {path:<8} -> 200  [{headers}]");
        } else {
            println!("GET {path:<8} -> 429 Rate limit exceeded: {limit}  [{headers}]");
        }
    }
    Ok(())
}

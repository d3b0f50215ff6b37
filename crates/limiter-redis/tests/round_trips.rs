//! One storage round trip per request, however many limits apply: counted
//! with the server's own `INFO commandstats`.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use limiter_core::engine::Limiter;
use limiter_core::{AnyStorage, StrategyKind};
use limiter_redis::RedisStorage;
use limiter_testkit::server::RedisServer;
use limiter_testkit::{TestRequest, seed_app};

/// Calls per command since the last reset, from `INFO commandstats`.
async fn command_calls(connection: &mut redis::aio::MultiplexedConnection) -> Vec<(String, u64)> {
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(connection).await.unwrap();
    info.lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats.split(',').find_map(|kv| kv.strip_prefix("calls="))?.parse().ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

async fn one_call_per_request(strategy: StrategyKind) {
    let Some(server) = RedisServer::spawn_or_skip("round trips") else { return };
    let storage = RedisStorage::connect(&server.url()).await.unwrap();
    let limiter = seed_app(Limiter::builder().strategy(strategy).any_storage(AnyStorage::new(storage)))
        .application_limits("1000/hour")
        .build()
        .unwrap();
    // /medium has four limits: application, 1/second, 200/day, 50/hour.
    let request = TestRequest::get("/medium");
    let first = limiter.check(&request).await;
    assert_eq!(first.limits().len(), 4);
    let client = redis::Client::open(server.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query_async(&mut connection).await.unwrap();
    for _ in 0..10 {
        let _ = limiter.check(&request).await;
    }
    let calls = command_calls(&mut connection).await;
    let count = |name: &str| calls.iter().find(|(n, _)| n == name).map_or(0, |(_, c)| *c);
    // commandstats also counts what a script runs inside the server (GET,
    // PTTL, INCRBY, ...); what crosses the network is the EVALSHA.
    assert_eq!(count("evalsha"), 10, "{strategy}: one script call per request for four limits: {calls:?}");
    for other in ["eval", "script|load", "multi", "exec"] {
        assert_eq!(count(other), 0, "{strategy}: no {other}: {calls:?}");
    }
}

#[tokio::test]
async fn fixed_window_one_round_trip() {
    one_call_per_request(StrategyKind::FixedWindow).await;
}

#[tokio::test]
async fn moving_window_one_round_trip() {
    one_call_per_request(StrategyKind::MovingWindow).await;
}

#[tokio::test]
async fn sliding_window_counter_one_round_trip() {
    one_call_per_request(StrategyKind::SlidingWindowCounter).await;
}

#[tokio::test]
async fn gcra_one_round_trip() {
    one_call_per_request(StrategyKind::Gcra).await;
}

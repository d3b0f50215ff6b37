//! The conformance suite on a real redis-server, one per test, on the real
//! clock (Redis keeps the TTLs); and the keys `limits` writes.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use limiter_core::FixedWindow;
use limiter_redis::RedisStorage;
use limiter_testkit::server::RedisServer;
use limiter_testkit::{Env, conformance_tests};

mod fixed_window {
    use super::*;
    conformance_tests!(
        env: {
            let Some(server) = RedisServer::spawn_or_skip("redis fixed window") else { return };
            let storage = RedisStorage::connect(&server.url()).await.unwrap();
            Env::real(storage).keep_alive(server)
        },
        strategy: FixedWindow,
    );
}

mod moving_window {
    use super::*;
    conformance_tests!(
        env: {
            let Some(server) = RedisServer::spawn_or_skip("redis moving window") else { return };
            let storage = RedisStorage::connect(&server.url()).await.unwrap();
            Env::real(storage).keep_alive(server)
        },
        strategy: limiter_core::MovingWindow,
    );
}

mod sliding_window_counter {
    use super::*;
    conformance_tests!(
        env: {
            let Some(server) = RedisServer::spawn_or_skip("redis sliding window") else { return };
            let storage = RedisStorage::connect(&server.url()).await.unwrap();
            Env::real(storage).keep_alive(server)
        },
        strategy: limiter_core::SlidingWindowCounter,
    );
}

mod gcra {
    use super::*;
    conformance_tests!(
        env: {
            let Some(server) = RedisServer::spawn_or_skip("redis gcra") else { return };
            let storage = RedisStorage::connect(&server.url()).await.unwrap();
            Env::real(storage).keep_alive(server)
        },
        strategy: limiter_core::Gcra,
    );
}

/// The counter is where `limits` 5.8 keeps it, of the same type, with the TTL
/// set by the first hit, so Python services share it.
#[tokio::test]
async fn keys_values_and_ttls_are_those_of_limits() {
    let Some(server) = RedisServer::spawn_or_skip("redis keys") else { return };
    let storage = RedisStorage::connect(&server.url()).await.unwrap();
    let limiter = limiter_core::RateLimiter::new(FixedWindow, storage);
    let limit = "3/minute".parse().unwrap();
    for _ in 0..4 {
        let _ = limiter.hit(&limit, &["127.0.0.1", "limited"], 1).await.unwrap();
    }
    let client = redis::Client::open(server.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let key = "LIMITS:LIMITER/127.0.0.1/limited/3/1/minute";
    let kind: String = redis::cmd("TYPE").arg(key).query_async(&mut connection).await.unwrap();
    let value: String = redis::cmd("GET").arg(key).query_async(&mut connection).await.unwrap();
    let ttl: i64 = redis::cmd("TTL").arg(key).query_async(&mut connection).await.unwrap();
    assert_eq!(kind, "string");
    assert_eq!(value, "4", "refused hits are counted, as in limits");
    assert!((1..=60).contains(&ttl), "ttl {ttl}");
}

/// The moving window's log is `limits`' LIST of float seconds, newest first,
/// trimmed to the amount.
#[tokio::test]
async fn moving_window_log_is_that_of_limits() {
    let Some(server) = RedisServer::spawn_or_skip("redis moving keys") else { return };
    let storage = RedisStorage::connect(&server.url()).await.unwrap();
    let limiter = limiter_core::RateLimiter::new(limiter_core::MovingWindow, storage);
    let limit = "3/minute".parse().unwrap();
    for _ in 0..5 {
        let _ = limiter.hit(&limit, &["127.0.0.1", "limited"], 1).await.unwrap();
    }
    let client = redis::Client::open(server.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let key = "LIMITS:LIMITER/127.0.0.1/limited/3/1/minute";
    let kind: String = redis::cmd("TYPE").arg(key).query_async(&mut connection).await.unwrap();
    let entries: Vec<String> = redis::cmd("LRANGE").arg(key).arg(0).arg(-1).query_async(&mut connection).await.unwrap();
    assert_eq!(kind, "list");
    assert_eq!(entries.len(), 3, "refused hits are not logged");
    let times: Vec<f64> = entries.iter().map(|e| e.parse().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first: {entries:?}");
    assert!(times[0] > 1.7e9, "seconds since the epoch: {entries:?}");
}

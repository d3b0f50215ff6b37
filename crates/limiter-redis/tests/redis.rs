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

/// The GCRA key of `limit` for `key`, as the storage names it.
fn gcra_key(limit: &limiter_core::RateLimit, key: &[&str]) -> String {
    let mut out = String::from("LIMITS:gcra:");
    limit.write_key(limiter_core::storage::Key::new(key).namespace(), key, &mut out);
    out
}

/// Decides `costs` on one key in one script call (one instant of the
/// server's clock), every item evaluated; the cost admitted in total.
async fn admitted_at_one_instant(storage: &RedisStorage, limit: &str, key: &[&str], costs: &[u64]) -> u64 {
    use limiter_core::storage::{Batch, Item, Key, Mode, Supports};
    let limit: limiter_core::RateLimit = limit.parse().unwrap();
    let items: Vec<Item<'_>> = costs.iter().map(|&cost| Item::new(limit, Key::new(key)).with_cost(cost)).collect();
    let now = limiter_core::Timestamp::from_system_time(std::time::SystemTime::now());
    let batch = Batch { items: &items, mode: Mode::Sequential { stop_at_first_breach: false }, now };
    let outcome = Supports::<limiter_core::Gcra>::decide(storage, limiter_core::Gcra, &batch).await.unwrap();
    outcome.states().iter().zip(costs).filter(|(state, _)| state.as_ref().unwrap().allowed).map(|(_, cost)| cost).sum()
}

/// `5000000/second`: a hit moves the TAT by 0.2 µs, under the script's
/// microsecond. Every hit must still count: one hit, then the whole amount
/// at the same instant, is more than the limit.
#[tokio::test]
async fn gcra_hits_closer_than_a_microsecond_still_count() {
    let Some(server) = RedisServer::spawn_or_skip("redis gcra sub-microsecond") else { return };
    let storage = RedisStorage::connect(&server.url()).await.unwrap();
    let admitted = admitted_at_one_instant(&storage, "5000000/second", &["fast"], &[1, 5_000_000]).await;
    assert_eq!(admitted, 1, "the first hit passes, the whole amount after it does not");
    let client = redis::Client::open(server.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let limit = "5000000/second".parse().unwrap();
    let exists: u64 = redis::cmd("EXISTS").arg(gcra_key(&limit, &["fast"])).query_async(&mut connection).await.unwrap();
    assert_eq!(exists, 1, "a hit of cost 1 is recorded");
}

/// `300000/second`: a hit moves the TAT by 3.33 µs. Rounded down to 3, a
/// thousand hits left room for 333 more than the limit; rounded up, never
/// more than 300000 pass at one instant.
#[tokio::test]
async fn gcra_never_admits_beyond_a_limit_whose_step_is_not_whole() {
    let Some(server) = RedisServer::spawn_or_skip("redis gcra rounding") else { return };
    let storage = RedisStorage::connect(&server.url()).await.unwrap();
    let mut costs = vec![1; 1000];
    costs.extend([299_000, 100]);
    let admitted = admitted_at_one_instant(&storage, "300000/second", &["steps"], &costs).await;
    assert!(admitted >= 1000, "the single hits pass: {admitted}");
    assert!(admitted <= 300_000, "{admitted} admitted at one instant, beyond 300000/second");
}

/// Another writer (a Python peer, a person) put a value in a moving
/// window's log that is no time this side can hold: the hit fails with a
/// `Protocol` error naming the key, and nothing panics.
#[tokio::test]
async fn moving_window_entries_that_are_no_time_are_protocol_errors() {
    let Some(server) = RedisServer::spawn_or_skip("redis moving bad entries") else { return };
    let storage = RedisStorage::connect(&server.url()).await.unwrap();
    let limiter = limiter_core::RateLimiter::new(limiter_core::MovingWindow, storage);
    let client = redis::Client::open(server.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let limit = "1/minute".parse().unwrap();
    for (push, bad) in [("RPUSH", "inf"), ("LPUSH", "1e300"), ("RPUSH", "1e19"), ("LPUSH", "Infinity")] {
        let key = format!("LIMITS:LIMITER/{bad}/1/1/minute");
        let _: u64 = redis::cmd(push).arg(&key).arg(bad).query_async(&mut connection).await.unwrap();
        let e = limiter.hit(&limit, &[bad], 1).await.unwrap_err();
        assert_eq!(e.kind(), limiter_core::StorageErrorKind::Protocol, "{bad}: {e}");
        assert!(e.to_string().contains(&key) && e.to_string().contains(bad), "{bad}: {e}");
    }
}

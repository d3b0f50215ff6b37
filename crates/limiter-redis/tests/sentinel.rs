//! A sentinel-watched master with one replica: the conformance suite, and
//! failovers under load (`SENTINEL FAILOVER`, and the master killed):
//! nothing panics, no call outlives its timeouts, and calls after the
//! failover succeed on the new master.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use limiter_core::{FixedWindow, RateLimit, RateLimiter};
use limiter_redis::{RedisOptions, RedisStorage};
use limiter_testkit::server::redis_topologies::{RedisSentinelSetup, raw_command};
use limiter_testkit::{Env, conformance_tests};

static SHARED: Mutex<Weak<RedisSentinelSetup>> = Mutex::new(Weak::new());
static NEXT_PREFIX: AtomicU32 = AtomicU32::new(0);

/// The setup of the running conformance tests, started if none runs.
fn setup(test: &str) -> Option<Arc<RedisSentinelSetup>> {
    let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(setup) = shared.upgrade() {
        return Some(setup);
    }
    let setup = Arc::new(RedisSentinelSetup::spawn_or_skip(test, 1)?);
    *shared = Arc::downgrade(&setup);
    Some(setup)
}

fn options(pairs: &[(&str, &str)]) -> RedisOptions {
    let prefix = format!("T{}-{}", std::process::id(), NEXT_PREFIX.fetch_add(1, Ordering::Relaxed));
    let mut options = RedisOptions::from_pairs(pairs.iter().copied()).unwrap();
    options.key_prefix = prefix;
    options
}

macro_rules! on_sentinel {
    ($module:ident, $strategy:expr) => {
        mod $module {
            use super::*;
            conformance_tests!(
                env: {
                    let Some(setup) = setup(stringify!($module)) else { return };
                    let storage = RedisStorage::connect_with(&setup.url(), options(&[])).await.unwrap();
                    Env::real(storage).keep_alive(setup)
                },
                strategy: $strategy,
            );
        }
    };
}

on_sentinel!(fixed_window, limiter_core::FixedWindow);
on_sentinel!(moving_window, limiter_core::MovingWindow);
on_sentinel!(sliding_window_counter, limiter_core::SlidingWindowCounter);
on_sentinel!(gcra, limiter_core::Gcra);

#[tokio::test]
async fn an_unknown_service_fails_at_connect_naming_it() {
    let Some(setup) = setup("sentinel unknown service") else { return };
    let url = setup.url().replace("/mymaster", "/nosuchservice");
    let e = RedisStorage::connect_with(&url, options(&[("socket_connect_timeout", "0.5")])).await.unwrap_err();
    assert!(e.to_string().contains("nosuchservice"), "{e}");
}

/// What the load saw.
#[derive(Debug, Default)]
struct Load {
    ok: u64,
    errors: u64,
    slowest: Duration,
}

/// Hits through `limiter` from 8 tasks until `stop`, timing every call.
fn load(limiter: Arc<RateLimiter<FixedWindow, RedisStorage>>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Load> {
    tokio::spawn(async move {
        let limit: RateLimit = "1000000/hour".parse().unwrap();
        let tasks: Vec<_> = (0..8)
            .map(|task| {
                let (limiter, stop) = (limiter.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut seen = Load::default();
                    let id = format!("load-{task}");
                    while !stop.load(Ordering::Relaxed) {
                        let started = Instant::now();
                        let result = limiter.hit(&limit, &[id.as_str()], 1).await;
                        seen.slowest = seen.slowest.max(started.elapsed());
                        match result {
                            Ok(_) => seen.ok += 1,
                            Err(_) => seen.errors += 1,
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    seen
                })
            })
            .collect();
        let mut total = Load::default();
        for task in tasks {
            let seen = task.await.unwrap();
            total.ok += seen.ok;
            total.errors += seen.errors;
            total.slowest = total.slowest.max(seen.slowest);
        }
        total
    })
}

/// Waits until a hit succeeds and lands on the server at `port`.
async fn lands_on(limiter: &RateLimiter<FixedWindow, RedisStorage>, port: u16, prefix: &str) -> bool {
    let limit: RateLimit = "1000000/hour".parse().unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let key = format!("{prefix}:LIMITER/probe/1000000/1/hour");
    for _ in 0..100 {
        if limiter.hit(&limit, &["probe"], 1).await.is_ok() {
            let value = raw_command(addr, &["GET", &key]);
            if value.starts_with('$') && !value.starts_with("$-1") {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn failover_under_load(test: &str, kill_master: bool) {
    let Some(mut setup) = RedisSentinelSetup::spawn_or_skip(test, 3) else { return };
    let options = options(&[("socket_timeout", "0.3"), ("socket_connect_timeout", "0.3")]);
    let prefix = options.key_prefix.clone();
    // The longest a call may take: finding the master (connect + answer)
    // and the call itself, each bounded; a second of scheduling slack.
    let bound = options.connect_timeout + options.response_timeout * 2 + Duration::from_secs(1);
    let storage = RedisStorage::connect_with(&setup.url(), options).await.unwrap();
    let limiter = Arc::new(RateLimiter::new(FixedWindow, storage));
    let old_port = setup.master.addr().port();
    assert!(lands_on(&limiter, old_port, &prefix).await, "writes go to the first master");

    let stop = Arc::new(AtomicBool::new(false));
    let running = load(limiter.clone(), stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let new_port = setup.replica.addr().port();
    let setup = tokio::task::spawn_blocking(move || {
        if kill_master {
            setup.master.kill();
            setup.wait_for_master(new_port);
        } else {
            setup.failover();
        }
        setup
    })
    .await
    .unwrap();
    assert_eq!(setup.master_port(), Some(new_port));
    // Calls go on while the client moves to the new master.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    stop.store(true, Ordering::Relaxed);
    let seen = running.await.unwrap();
    eprintln!("{test}: {seen:?} (bound {bound:?})");
    assert!(seen.ok > 0, "{seen:?}");
    assert!(seen.slowest <= bound, "a call waited {:?}, past {bound:?}: {seen:?}", seen.slowest);
    assert!(lands_on(&limiter, new_port, &prefix).await, "writes go to the new master; {}", setup.logs());
    // Steady again: every call succeeds.
    let limit: RateLimit = "1000000/hour".parse().unwrap();
    for _ in 0..50 {
        limiter.hit(&limit, &["after"], 1).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_under_load() {
    failover_under_load("sentinel failover", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_killed_under_load() {
    failover_under_load("sentinel master killed", true).await;
}

/// `/service/db`: the master's database `db`.
#[tokio::test]
async fn the_database_after_the_service_is_used() {
    let Some(setup) = setup("sentinel database") else { return };
    let options = options(&[]);
    let key = format!("{}:LIMITER/db/5/1/minute", options.key_prefix);
    let storage = RedisStorage::connect_with(&format!("{}/3", setup.url()), options).await.unwrap();
    let limiter = RateLimiter::new(FixedWindow, storage);
    let limit: RateLimit = "5/minute".parse().unwrap();
    assert!(limiter.hit(&limit, &["db"], 1).await.unwrap());
    let port = setup.master_port().unwrap();
    let read = |db: u8| {
        let key = key.clone();
        async move {
            let client = redis::Client::open(format!("redis://127.0.0.1:{port}/{db}")).unwrap();
            let mut connection = client.get_multiplexed_async_connection().await.unwrap();
            redis::cmd("GET").arg(key).query_async::<Option<String>>(&mut connection).await.unwrap()
        }
    };
    assert_eq!(read(3).await.as_deref(), Some("1"));
    assert_eq!(read(0).await, None);
}

//! A Rust limiter and Python's `limits` 5.8 on one Redis (standalone,
//! cluster or sentinel) enforce one limit together: hits alternate between
//! them on the same key, and exactly the limit's amount passes, whichever
//! side makes the hit (`limiter_testkit::python`).
//!
//! The Python side needs `limits[redis]==5.8.0`: `.ci/run` installs it in a
//! virtualenv and points `LIMITER_TEST_PYTHON` at its interpreter. Without
//! it the tests skip loudly, or fail where servers are required (CI).

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use limiter_core::{AnyStorage, StrategyKind};
use limiter_redis::RedisStorage;
use limiter_testkit::python::{alternate_hits, python_or_skip};
use limiter_testkit::server::RedisServer;
use limiter_testkit::server::redis_topologies::{RedisClusterServer, RedisSentinelSetup};

/// Alternates hits between the two sides on `url`, on a key of the strategy.
async fn alternate_on(python: &str, url: &str, strategy: StrategyKind) {
    let storage = AnyStorage::new(RedisStorage::connect(url).await.unwrap());
    alternate_hits(python, url, storage, strategy, "5/minute", &[strategy.name(), "shared"]).await;
}

async fn alternate(strategy: StrategyKind) {
    let Some(python) = python_or_skip("redis python_interop") else { return };
    let Some(server) = RedisServer::spawn_or_skip("python_interop") else { return };
    alternate_on(&python, &server.url(), strategy).await;
}

/// `limits`' `redis+cluster://` storage and ours share every counter.
#[tokio::test]
async fn cluster_counters_are_shared_with_python() {
    let Some(python) = python_or_skip("redis cluster python_interop") else { return };
    let Some(cluster) = RedisClusterServer::spawn_or_skip("python_interop cluster", false) else { return };
    for strategy in [StrategyKind::FixedWindow, StrategyKind::MovingWindow, StrategyKind::SlidingWindowCounter] {
        alternate_on(&python, &cluster.url(), strategy).await;
    }
}

/// `limits`' `redis+sentinel://` storage and ours reach the same master.
#[tokio::test]
async fn sentinel_counters_are_shared_with_python() {
    let Some(python) = python_or_skip("redis sentinel python_interop") else { return };
    let Some(setup) = RedisSentinelSetup::spawn_or_skip("python_interop sentinel", 1) else { return };
    alternate_on(&python, &setup.url(), StrategyKind::FixedWindow).await;
    alternate_on(&python, &setup.url(), StrategyKind::SlidingWindowCounter).await;
}

#[tokio::test]
async fn fixed_window_is_shared_with_python() {
    alternate(StrategyKind::FixedWindow).await;
}

#[tokio::test]
async fn moving_window_is_shared_with_python() {
    alternate(StrategyKind::MovingWindow).await;
}

#[tokio::test]
async fn sliding_window_counter_is_shared_with_python() {
    alternate(StrategyKind::SlidingWindowCounter).await;
}

//! A Rust limiter and Python's `limits` 5.8 on one Memcached (or three,
//! sharded as pymemcache's `HashClient` shards them) enforce one limit
//! together: hits alternate between them on the same keys, and exactly the
//! limit's amount passes, whichever side makes the hit.
//!
//! The Python side needs `limits[memcached]==5.8.0` (pymemcache): `.ci/run`
//! installs it in a virtualenv and points `LIMITER_TEST_PYTHON` at its
//! interpreter. Without it the test skips loudly, or fails where servers
//! are required (CI).

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use limiter_core::{AnyStorage, RateLimiter, StrategyKind};
use limiter_memcached::MemcachedStorage;
use limiter_testkit::python::{PythonPeer, alternate_hits, python_or_skip};
use limiter_testkit::server::MemcachedServer;

/// Alternates hits on each of `keys` between Rust and Python on the servers
/// of `url`; an hour-long window, so that no run straddles a window
/// boundary in practice.
async fn alternate(strategy: StrategyKind, url: &str, python: &str, keys: &[&str]) {
    for key in keys {
        let storage = AnyStorage::new(MemcachedStorage::connect(url).await.unwrap());
        alternate_hits(python, url, storage, strategy, "5/hour", &["127.0.0.1", key]).await;
    }
}

fn python() -> Option<String> {
    python_or_skip("memcached python_interop")
}

async fn on_one_server(strategy: StrategyKind) {
    let Some(python) = python() else { return };
    let Some(server) = MemcachedServer::spawn_or_skip("python_interop") else { return };
    alternate(strategy, &server.url(), &python, &["shared"]).await;
}

/// Three servers; ten keys, so that every server holds some.
async fn on_three_servers(strategy: StrategyKind) {
    let Some(python) = python() else { return };
    let servers: Vec<MemcachedServer> =
        (0..3).map_while(|_| MemcachedServer::spawn_or_skip("python_interop sharded")).collect();
    if servers.len() < 3 {
        return;
    }
    let hosts: Vec<String> = servers.iter().map(|s| s.0.addr().to_string()).collect();
    let url = format!("memcached://{}", hosts.join(","));
    let keys: Vec<String> = (0..10).map(|i| format!("shared-{i}")).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    alternate(strategy, &url, &python, &keys).await;
}

#[tokio::test]
async fn fixed_window_is_shared_with_python() {
    on_one_server(StrategyKind::FixedWindow).await;
}

/// The window Rust opens ends where Python reads it ends: `limits` takes the
/// reset time from the `/expires` key the Rust hit wrote.
#[tokio::test]
async fn python_reads_the_reset_time_rust_writes() {
    use limiter_core::{Clock, Storage, SystemClock};
    let Some(python) = python() else { return };
    let Some(server) = MemcachedServer::spawn_or_skip("python_interop reset") else { return };
    let storage = MemcachedStorage::connect(&server.url()).await.unwrap();
    let limiter = RateLimiter::new(limiter_core::FixedWindow, storage.clone());
    let limit = "5/hour".parse().unwrap();
    let before = SystemClock.now().as_secs_f64();
    assert!(limiter.hit(&limit, &["127.0.0.1", "reset"], 2).await.unwrap());
    // The `/expires` write is not waited for; a check answers after it.
    storage.check().await.unwrap();
    let after = SystemClock.now().as_secs_f64();
    let mut peer = PythonPeer::start(&python, &server.url(), StrategyKind::FixedWindow, "5/hour");
    let (reset, remaining) = peer.stats(&["127.0.0.1", "reset"]);
    assert_eq!(remaining, 3);
    assert!(reset >= before + 3600.0 && reset <= after + 3600.0, "reset {reset}, hit between {before} and {after}");
}

#[tokio::test]
async fn sliding_window_counter_is_shared_with_python() {
    on_one_server(StrategyKind::SlidingWindowCounter).await;
}

/// `memcached:///path/to.sock` on both sides.
#[cfg(unix)]
#[tokio::test]
async fn fixed_window_is_shared_with_python_over_a_unix_socket() {
    let Some(python) = python() else { return };
    let Some(server) = limiter_testkit::server::MemcachedUnixServer::spawn_or_skip("python_interop unix") else {
        return;
    };
    alternate(StrategyKind::FixedWindow, &server.url(), &python, &["shared"]).await;
}

#[tokio::test]
async fn fixed_window_is_shared_with_python_across_three_servers() {
    on_three_servers(StrategyKind::FixedWindow).await;
}

#[tokio::test]
async fn sliding_window_counter_is_shared_with_python_across_three_servers() {
    on_three_servers(StrategyKind::SlidingWindowCounter).await;
}

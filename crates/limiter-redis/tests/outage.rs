//! The Redis server killed under a running limiter and started again: each
//! failure policy answers as configured, never a 500, and shared limiting
//! resumes by itself once the server is back.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use limiter_core::AnyStorage;
use limiter_core::engine::{FailurePolicy, Limiter, Verdict};
use limiter_redis::{RedisOptions, RedisStorage};
use limiter_testkit::TestRequest;
use limiter_testkit::server::RedisServer;

async fn limiter(server: &RedisServer, policy: FailurePolicy) -> Limiter<TestRequest> {
    let mut options = RedisOptions::default();
    options.response_timeout = Duration::from_millis(300);
    options.connect_timeout = Duration::from_millis(300);
    let storage = RedisStorage::connect_with(&server.url(), options).await.unwrap();
    Limiter::builder()
        .any_storage(AnyStorage::new(storage))
        .on_storage_failure(policy)
        .default_limits("2/minute")
        .build()
        .unwrap()
}

/// Checks `request` until the verdict is `wanted`, for at most a few
/// seconds: the client reconnects in the background after a restart.
async fn until(limiter: &Limiter<TestRequest>, request: &TestRequest, wanted: Verdict) -> bool {
    for _ in 0..50 {
        if limiter.check(request).await.verdict() == wanted {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn fail_closed_answers_503_then_limits_again_after_a_restart() {
    let Some(mut server) = RedisServer::spawn_or_skip("outage fail closed") else { return };
    let limiter = limiter(&server, FailurePolicy::FailClosed { retry_after: Duration::from_secs(3) }).await;
    let request = TestRequest::get("/a");
    assert_eq!(limiter.check(&request).await.verdict(), Verdict::Allowed);
    server.0.kill();
    let down = limiter.check(&request).await;
    assert_eq!(down.verdict(), Verdict::Unavailable);
    assert_eq!(down.rejection().map(|r| r.status), Some(503));
    server.0.restart();
    // The restarted server lost its data (no persistence): two hits allowed again.
    assert!(until(&limiter, &request, Verdict::Allowed).await, "limiting resumes after the restart");
    assert_eq!(limiter.check(&request).await.verdict(), Verdict::Allowed);
    assert_eq!(limiter.check(&request).await.verdict(), Verdict::Limited);
}

#[tokio::test]
async fn fail_open_lets_requests_through_while_down() {
    let Some(mut server) = RedisServer::spawn_or_skip("outage fail open") else { return };
    let limiter = limiter(&server, FailurePolicy::FailOpen).await;
    let request = TestRequest::get("/a");
    assert_eq!(limiter.check(&request).await.verdict(), Verdict::Allowed);
    server.0.kill();
    for _ in 0..5 {
        assert_eq!(limiter.check(&request).await.verdict(), Verdict::FailedOpen);
    }
}

#[tokio::test]
async fn in_memory_fallback_limits_while_down_and_returns_to_redis() {
    let Some(mut server) = RedisServer::spawn_or_skip("outage fallback") else { return };
    let limiter = limiter(&server, FailurePolicy::InMemoryFallback).await;
    let request = TestRequest::get("/a");
    assert_eq!(limiter.check(&request).await.verdict(), Verdict::Allowed);
    server.0.kill();
    // In memory, counting from zero: two allowed, then limited.
    assert_eq!(limiter.check(&request).await.verdict(), Verdict::Allowed);
    assert_eq!(limiter.check(&request).await.verdict(), Verdict::Allowed);
    assert_eq!(limiter.check(&request).await.verdict(), Verdict::Limited);
    server.0.restart();
    // The first probe comes after a second; then Redis (empty again) decides.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert!(until(&limiter, &request, Verdict::Allowed).await, "back on Redis");
}

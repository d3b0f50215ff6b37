//! The Redis server killed under a running limiter and started again: each
//! failure policy answers as configured, never a 500, no call waits past
//! its timeout, and shared limiting resumes by itself once the server is
//! back (the scenarios of `limiter_testkit::faults`).

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use limiter_core::AnyStorage;
use limiter_redis::{RedisOptions, RedisStorage};
use limiter_testkit::faults;
use limiter_testkit::server::RedisServer;

const TIMEOUT: Duration = Duration::from_millis(300);
/// The connect and response timeouts, with slack for a loaded machine.
const BOUND: Duration = Duration::from_millis(2_600);

async fn storage(server: &RedisServer) -> AnyStorage {
    let mut options = RedisOptions::default();
    options.response_timeout = TIMEOUT;
    options.connect_timeout = TIMEOUT;
    AnyStorage::new(RedisStorage::connect_with(&server.url(), options).await.unwrap())
}

#[tokio::test]
async fn fail_closed_answers_503_then_limits_again_after_a_restart() {
    let Some(mut server) = RedisServer::spawn_or_skip("outage fail closed") else { return };
    let storage = storage(&server).await;
    faults::fail_closed_then_recovers(&mut server.0, storage, BOUND).await;
}

#[tokio::test]
async fn fail_open_lets_requests_through_while_down() {
    let Some(mut server) = RedisServer::spawn_or_skip("outage fail open") else { return };
    let storage = storage(&server).await;
    faults::fail_open_while_down(&mut server.0, storage).await;
}

#[tokio::test]
async fn in_memory_fallback_limits_while_down_and_returns_to_redis() {
    let Some(mut server) = RedisServer::spawn_or_skip("outage fallback") else { return };
    let storage = storage(&server).await;
    faults::fallback_then_back(&mut server.0, storage).await;
}

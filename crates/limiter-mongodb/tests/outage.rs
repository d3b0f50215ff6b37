//! The MongoDB-compatible server (SecantusDB, not mongod) killed under a
//! running limiter and started again: each failure policy answers as
//! configured, no call waits past its timeout, and shared limiting resumes
//! by itself once the server is back.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use limiter_core::{AnyStorage, StorageErrorKind};
use limiter_mongodb::{MongoOptions, MongoStorage};
use limiter_testkit::faults;
use limiter_testkit::server::MongoServer;

const TEST: &str = "outage on a MongoDB-compatible server (SecantusDB), not mongod";

fn options() -> MongoOptions {
    let mut options = MongoOptions::default();
    options.connect_timeout = Duration::from_millis(300);
    options.call_timeout = Duration::from_millis(500);
    options
}

async fn storage(server: &MongoServer) -> AnyStorage {
    AnyStorage::new(MongoStorage::connect_with(&server.url(), options()).await.unwrap())
}

/// The call timeout (500 ms), with slack for a loaded machine.
const BOUND: Duration = Duration::from_secs(2);

#[tokio::test]
async fn fail_closed_answers_503_then_limits_again_after_a_restart() {
    let Some(mut server) = MongoServer::spawn_or_skip(TEST) else { return };
    let storage = storage(&server).await;
    faults::fail_closed_then_recovers(&mut server.0, storage, BOUND).await;
}

#[tokio::test]
async fn fail_open_lets_requests_through_while_down() {
    let Some(mut server) = MongoServer::spawn_or_skip(TEST) else { return };
    let storage = storage(&server).await;
    faults::fail_open_while_down(&mut server.0, storage).await;
}

#[tokio::test]
async fn in_memory_fallback_limits_while_down_and_returns_to_mongodb() {
    let Some(mut server) = MongoServer::spawn_or_skip(TEST) else { return };
    let storage = storage(&server).await;
    faults::fallback_then_back(&mut server.0, storage).await;
}

/// The storage's own errors while the server is away: transient kinds, in
/// time; and after the restart the TTL indexes the empty server lost are
/// created again.
#[tokio::test]
async fn errors_are_transient_and_indexes_come_back() {
    let Some(mut server) = MongoServer::spawn_or_skip(TEST) else { return };
    let storage = MongoStorage::connect_with(&server.url(), options()).await.unwrap();
    let limiter = limiter_core::RateLimiter::new(limiter_core::FixedWindow, storage.clone());
    let limit = "2/minute".parse().unwrap();
    assert!(limiter.hit(&limit, &["a"], 1).await.unwrap());
    server.0.kill();
    for _ in 0..3 {
        let started = Instant::now();
        let err = limiter.hit(&limit, &["a"], 1).await.unwrap_err();
        assert!(
            matches!(err.kind(), StorageErrorKind::Unavailable | StorageErrorKind::Timeout),
            "{err} ({:?})",
            err.kind()
        );
        assert!(started.elapsed() < BOUND, "waited {:?}", started.elapsed());
        let err = limiter_core::Storage::check(&storage).await.unwrap_err();
        assert!(err.is_transient(), "{err}");
    }
    server.0.restart();
    let mut back = false;
    for _ in 0..100 {
        if limiter.hit(&limit, &["a"], 1).await.is_ok() {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back, "hits succeed again after the restart");
    let client = mongodb::Client::with_uri_str(server.url()).await.unwrap();
    let names =
        client.database("limits").collection::<mongodb::bson::Document>("counters").list_index_names().await.unwrap();
    assert!(names.iter().any(|n| n == "expireAt_1"), "the TTL index is back: {names:?}");
}

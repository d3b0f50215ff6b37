//! All-or-nothing batches are one multi-document transaction: under
//! contention, exactly the amount passes and a refused batch consumes
//! nothing on any of its documents. On a MongoDB-compatible server
//! (SecantusDB, which answers as a one-member replica set), not mongod.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use limiter_core::{Item, Key, Mode, RateLimiter, Strategy};
use limiter_mongodb::{MongoOptions, MongoStorage};
use limiter_testkit::server::MongoServer;

async fn contended<S: Strategy>(strategy: S)
where
    MongoStorage: limiter_core::Supports<S>,
{
    let Some(server) =
        MongoServer::spawn_or_skip("all-or-nothing on a MongoDB-compatible server (SecantusDB), not mongod")
    else {
        return;
    };
    let mut options = MongoOptions::default();
    // Conflicting transactions start over; SecantusDB is slow at it.
    options.call_timeout = Duration::from_secs(20);
    let storage = MongoStorage::connect_with(&server.url(), options).await.unwrap();
    let limiter = Arc::new(RateLimiter::new(strategy, storage));
    let (tight, loose) = ("5/minute".parse().unwrap(), "100/minute".parse().unwrap());
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let limiter = Arc::clone(&limiter);
            tokio::spawn(async move {
                let items = [Item::new(loose, Key::new(&["loose"])), Item::new(tight, Key::new(&["tight"]))];
                limiter.decide(&items, Mode::AllOrNothing).await.unwrap().allowed()
            })
        })
        .collect();
    let mut passed = 0;
    for task in tasks {
        passed += usize::from(task.await.unwrap());
    }
    assert_eq!(passed, 5, "{}: exactly 5 of 20 contending batches pass", strategy.kind());
    let loose_left = limiter.window_stats(&loose, &["loose"]).await.unwrap().remaining;
    assert_eq!(loose_left, 95, "{}: the refused batches consumed nothing of the loose limit", strategy.kind());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_window_batches_are_atomic_under_contention() {
    contended(limiter_core::FixedWindow).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_window_batches_are_atomic_under_contention() {
    contended(limiter_core::MovingWindow).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sliding_window_counter_batches_are_atomic_under_contention() {
    contended(limiter_core::SlidingWindowCounter).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcra_batches_are_atomic_under_contention() {
    contended(limiter_core::Gcra).await;
}

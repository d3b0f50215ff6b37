//! Many tasks deciding batches that are refused by one limit after another
//! limit was incremented: the increments given back leave every counter at
//! exactly what was admitted. (That no limit admits more than its amount,
//! under concurrency, is the conformance suite's concern.)

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::sync::Arc;

use limiter_core::{FixedWindow, Item, Key, Mode, RateLimit, RateLimiter, SlidingWindowCounter, Strategy, Supports};
use limiter_memcached::MemcachedStorage;
use limiter_testkit::server::MemcachedServer;

const TASKS: usize = 30;

/// Each task decides `[shared, own 1/hour]` twice in `mode` (with the own
/// limit first for the sequential mode): the second time its own limit
/// refuses, and what the shared limit took must be given back. The shared
/// limit holds every increment that can be in flight at once (two per
/// task), so it never refuses: memcached has no transactions, and a refusal
/// seen while another batch's increment is still being given back would
/// stay counted in a fixed window, as `limits` counts refused hits.
async fn run<S: Strategy + Copy + Send + Sync + 'static>(strategy: S, mode: Mode)
where
    MemcachedStorage: Supports<S>,
{
    let Some(server) = MemcachedServer::spawn_or_skip("memcached contention") else { return };
    let storage = MemcachedStorage::connect(&server.url()).await.unwrap();
    let limiter = Arc::new(RateLimiter::new(strategy, storage));
    let amount = 2 * TASKS as u64;
    let shared: RateLimit = format!("{amount}/hour").parse().unwrap();
    let own: RateLimit = "1/hour".parse().unwrap();
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let limiter = Arc::clone(&limiter);
            tokio::spawn(async move {
                let name = format!("own-{task}");
                let (shared_ids, own_ids) = (["shared"], [name.as_str()]);
                let items = if matches!(mode, Mode::AllOrNothing) {
                    [Item::new(shared, Key::new(&shared_ids)), Item::new(own, Key::new(&own_ids))]
                } else {
                    [Item::new(own, Key::new(&own_ids)), Item::new(shared, Key::new(&shared_ids))]
                };
                let mut admitted = 0;
                for _ in 0..2 {
                    admitted += usize::from(limiter.decide(&items, mode).await.unwrap().allowed());
                }
                admitted
            })
        })
        .collect();
    let mut admitted = 0;
    for task in tasks {
        admitted += task.await.unwrap();
    }
    assert_eq!(admitted, TASKS, "{mode:?}: one admitted per task");
    let left = limiter.window_stats(&shared, &["shared"]).await.unwrap().remaining;
    assert_eq!(left, amount - admitted as u64, "{mode:?}: the shared counter holds exactly the {admitted} admitted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_window_all_or_nothing() {
    run(FixedWindow, Mode::AllOrNothing).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_window_stop_at_first_breach() {
    run(FixedWindow, Mode::Sequential { stop_at_first_breach: true }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sliding_window_all_or_nothing() {
    run(SlidingWindowCounter, Mode::AllOrNothing).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sliding_window_stop_at_first_breach() {
    run(SlidingWindowCounter, Mode::Sequential { stop_at_first_breach: true }).await;
}

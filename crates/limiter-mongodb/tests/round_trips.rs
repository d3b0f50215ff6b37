//! What a request costs in round trips, counted by the server itself
//! (`serverStatus` opcounters) on a MongoDB-compatible server (SecantusDB),
//! not mongod: the figures the crate documentation gives.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use limiter_core::{Item, Key, Mode, RateLimit, RateLimiter, Strategy, Supports};
use limiter_mongodb::MongoStorage;
use limiter_testkit::server::MongoServer;
use mongodb::bson::{Document, doc};

/// `(insert, query, update)` operations the server has counted so far.
async fn counters(client: &mongodb::Client) -> (i64, i64, i64) {
    let status = client.database("admin").run_command(doc! { "serverStatus": 1 }).await.unwrap();
    let ops: &Document = status.get_document("opcounters").unwrap();
    let n = |name: &str| ops.get(name).and_then(|v| v.as_i64().or_else(|| v.as_i32().map(i64::from))).unwrap();
    (n("insert"), n("query"), n("update"))
}

async fn round_trips<S: Strategy>(strategy: S)
where
    MongoStorage: Supports<S>,
{
    let Some(server) =
        MongoServer::spawn_or_skip("round trips on a MongoDB-compatible server (SecantusDB), not mongod")
    else {
        return;
    };
    let storage = MongoStorage::connect(&server.url()).await.unwrap();
    let limiter = RateLimiter::new(strategy, storage);
    let limits: Vec<RateLimit> =
        ["100/second", "1000/minute", "5000/hour", "9000/day"].iter().map(|l| l.parse().unwrap()).collect();
    let ids = ["127.0.0.1", "route"];
    let items: Vec<Item<'_>> = limits.iter().map(|l| Item::new(*l, Key::new(&ids))).collect();
    let client = mongodb::Client::with_uri_str(server.url()).await.unwrap();
    let kind = strategy.kind();

    // The first request creates the four documents.
    let before = counters(&client).await;
    assert!(limiter.decide(&items, Mode::Sequential { stop_at_first_breach: true }).await.unwrap().allowed());
    let after = counters(&client).await;
    assert_eq!(
        (after.0 - before.0, after.1 - before.1, after.2 - before.2),
        (4, 4, 4),
        "{kind}: a first hit is an update matching nothing, a find and an insert"
    );

    // Then one findAndModify per limit.
    let before = counters(&client).await;
    for _ in 0..5 {
        assert!(limiter.decide(&items, Mode::Sequential { stop_at_first_breach: true }).await.unwrap().allowed());
    }
    let after = counters(&client).await;
    assert_eq!((after.0 - before.0, after.1 - before.1, after.2 - before.2), (0, 0, 20), "{kind}: 4 limits, 4 updates");

    // Peeking at all four is one find.
    let peeks: Vec<Item<'_>> = items.iter().map(|i| i.peek()).collect();
    let before = counters(&client).await;
    assert!(limiter.decide(&peeks, Mode::Peek).await.unwrap().allowed());
    let after = counters(&client).await;
    assert_eq!((after.0 - before.0, after.1 - before.1, after.2 - before.2), (0, 1, 0), "{kind}: one find");

    // All or nothing: one find and one write per document (and the commit).
    let before = counters(&client).await;
    assert!(limiter.decide(&items, Mode::AllOrNothing).await.unwrap().allowed());
    let after = counters(&client).await;
    assert_eq!(
        (after.0 - before.0, after.1 - before.1, after.2 - before.2),
        (0, 1, 4),
        "{kind}: a find and four replacements"
    );
}

#[tokio::test]
async fn fixed_window_round_trips() {
    round_trips(limiter_core::FixedWindow).await;
}

#[tokio::test]
async fn moving_window_round_trips() {
    round_trips(limiter_core::MovingWindow).await;
}

#[tokio::test]
async fn sliding_window_counter_round_trips() {
    round_trips(limiter_core::SlidingWindowCounter).await;
}

#[tokio::test]
async fn gcra_round_trips() {
    round_trips(limiter_core::Gcra).await;
}

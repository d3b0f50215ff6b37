//! The documents are `limits` 5.8's, field for field and type for type, in
//! its database and collections, with its TTL index: checked by reading them
//! back with the driver. On a MongoDB-compatible server (SecantusDB), not
//! mongod.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use limiter_core::{FixedWindow, MovingWindow, RateLimiter, SlidingWindowCounter};
use limiter_mongodb::MongoStorage;
use limiter_testkit::server::MongoServer;
use mongodb::bson::{Bson, Document, doc};

const KEY: &str = "LIMITER/127.0.0.1/limited/3/1/minute";

async fn collection(server: &MongoServer, name: &str) -> mongodb::Collection<Document> {
    let client = mongodb::Client::with_uri_str(server.url()).await.unwrap();
    client.database("limits").collection(name)
}

/// Field names in order, with their BSON types.
fn shape(doc: &Document) -> Vec<(String, &'static str)> {
    doc.iter()
        .map(|(k, v)| {
            let kind = match v {
                Bson::Int32(_) => "int",
                Bson::Int64(_) => "long",
                Bson::Double(_) => "double",
                Bson::String(_) => "string",
                Bson::DateTime(_) => "date",
                Bson::Array(_) => "array",
                Bson::Boolean(_) => "bool",
                _ => "other",
            };
            (k.clone(), kind)
        })
        .collect()
}

fn fields(expected: &[(&str, &'static str)]) -> Vec<(String, &'static str)> {
    expected.iter().map(|(k, t)| ((*k).to_owned(), *t)).collect()
}

#[tokio::test]
async fn fixed_window_counter_is_that_of_limits() {
    let Some(server) = MongoServer::spawn_or_skip("MongoDB-compatible server (SecantusDB), not mongod: layout") else {
        return;
    };
    let storage = MongoStorage::connect(&server.url()).await.unwrap();
    let limiter = RateLimiter::new(FixedWindow, storage);
    let limit = "3/minute".parse().unwrap();
    let before = mongodb::bson::DateTime::now();
    for _ in 0..4 {
        let _ = limiter.hit(&limit, &["127.0.0.1", "limited"], 1).await.unwrap();
    }
    let counters = collection(&server, "counters").await;
    let doc = counters.find_one(doc! { "_id": KEY }).await.unwrap().expect("the counter document");
    assert_eq!(shape(&doc), fields(&[("_id", "string"), ("count", "int"), ("expireAt", "date")]), "{doc}");
    assert_eq!(doc.get_i32("count").unwrap(), 4, "refused hits are counted, as in limits");
    let expire_at = doc.get_datetime("expireAt").unwrap().timestamp_millis();
    let from_first_hit = expire_at - before.timestamp_millis();
    assert!(
        (59_000..=61_000).contains(&from_first_hit),
        "expireAt is a minute after the first hit: {from_first_hit} ms"
    );
}

#[tokio::test]
async fn moving_window_log_is_that_of_limits() {
    let Some(server) = MongoServer::spawn_or_skip("MongoDB-compatible server (SecantusDB), not mongod: layout") else {
        return;
    };
    let storage = MongoStorage::connect(&server.url()).await.unwrap();
    let limiter = RateLimiter::new(MovingWindow, storage);
    let limit = "3/minute".parse().unwrap();
    let mut passed = Vec::new();
    for _ in 0..4 {
        passed.push(limiter.hit(&limit, &["127.0.0.1", "limited"], 1).await.unwrap());
    }
    assert_eq!(passed, [true, true, true, false]);
    let windows = collection(&server, "windows").await;
    let doc = windows.find_one(doc! { "_id": KEY }).await.unwrap().expect("the window document");
    assert_eq!(shape(&doc), fields(&[("_id", "string"), ("entries", "array"), ("expireAt", "date")]), "{doc}");
    let entries: Vec<f64> = doc.get_array("entries").unwrap().iter().map(|e| e.as_f64().expect("a double")).collect();
    assert_eq!(entries.len(), 3, "refused hits are not logged: {entries:?}");
    assert!(entries.windows(2).all(|w| w[0] >= w[1]), "newest first: {entries:?}");
    assert!(entries[0] > 1.7e9, "seconds since the epoch: {entries:?}");
}

#[tokio::test]
async fn sliding_window_document_is_that_of_limits() {
    let Some(server) = MongoServer::spawn_or_skip("MongoDB-compatible server (SecantusDB), not mongod: layout") else {
        return;
    };
    let storage = MongoStorage::connect(&server.url()).await.unwrap();
    let limiter = RateLimiter::new(SlidingWindowCounter, storage);
    let limit = "3/minute".parse().unwrap();
    let before = mongodb::bson::DateTime::now();
    for _ in 0..4 {
        let _ = limiter.hit(&limit, &["127.0.0.1", "limited"], 1).await.unwrap();
    }
    let windows = collection(&server, "windows").await;
    let doc = windows.find_one(doc! { "_id": KEY }).await.unwrap().expect("the window document");
    assert_eq!(
        shape(&doc),
        fields(&[
            ("_id", "string"),
            ("previousCount", "int"),
            ("currentCount", "int"),
            ("expireAt", "date"),
            ("_acquired", "bool"),
        ]),
        "{doc}"
    );
    assert_eq!(doc.get_i32("currentCount").unwrap(), 3);
    assert_eq!(doc.get_i32("previousCount").unwrap(), 0);
    assert!(!doc.get_bool("_acquired").unwrap(), "the last hit was refused");
    let expire_at = doc.get_datetime("expireAt").unwrap().timestamp_millis();
    let from_first_hit = expire_at - before.timestamp_millis();
    assert!((119_000..=121_000).contains(&from_first_hit), "two windows after the first hit: {from_first_hit} ms");
}

#[tokio::test]
async fn both_collections_have_the_ttl_index_of_limits() {
    let Some(server) = MongoServer::spawn_or_skip("MongoDB-compatible server (SecantusDB), not mongod: TTL index")
    else {
        return;
    };
    let _storage = MongoStorage::connect(&server.url()).await.unwrap();
    for name in ["counters", "windows"] {
        let mut indexes = collection(&server, name).await.list_indexes().await.unwrap();
        let mut ttl = None;
        while indexes.advance().await.unwrap() {
            let index = indexes.deserialize_current().unwrap();
            if index.keys == doc! { "expireAt": 1 } {
                ttl = index.options;
            }
        }
        let options = ttl.unwrap_or_else(|| panic!("{name} has no index on expireAt"));
        assert_eq!(options.name.as_deref(), Some("expireAt_1"), "{name}");
        assert_eq!(options.expire_after, Some(std::time::Duration::ZERO), "{name}");
    }
}

/// GCRA (which `limits` lacks) keeps its own document, apart from the
/// moving and sliding windows of the same limit.
#[tokio::test]
async fn gcra_document_is_apart_from_the_windows() {
    let Some(server) = MongoServer::spawn_or_skip("MongoDB-compatible server (SecantusDB), not mongod: layout") else {
        return;
    };
    let storage = MongoStorage::connect(&server.url()).await.unwrap();
    let limit = "3/minute".parse().unwrap();
    let before = mongodb::bson::DateTime::now().timestamp_millis();
    let gcra = RateLimiter::new(limiter_core::Gcra, storage.clone());
    let moving = RateLimiter::new(MovingWindow, storage);
    for _ in 0..3 {
        assert!(gcra.hit(&limit, &["127.0.0.1", "limited"], 1).await.unwrap());
        assert!(moving.hit(&limit, &["127.0.0.1", "limited"], 1).await.unwrap());
    }
    assert!(!gcra.hit(&limit, &["127.0.0.1", "limited"], 1).await.unwrap());
    let windows = collection(&server, "windows").await;
    let doc = windows.find_one(doc! { "_id": format!("gcra:{KEY}") }).await.unwrap().expect("the GCRA document");
    assert_eq!(
        shape(&doc),
        fields(&[("_id", "string"), ("tat", "long"), ("at", "long"), ("expireAt", "date"), ("_acquired", "bool")]),
        "{doc}"
    );
    // Three hits of a third of a minute each: the bucket is full a minute
    // after the first.
    let tat_ms = doc.get_i64("tat").unwrap() / 1_000_000;
    assert!((before + 59_000..=before + 61_000).contains(&tat_ms), "tat {tat_ms} ms, first hit at {before} ms");
    let log = windows.find_one(doc! { "_id": KEY }).await.unwrap().expect("the moving window's own document");
    assert_eq!(log.get_array("entries").unwrap().len(), 3);
}

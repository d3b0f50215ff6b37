//! A 3-master Redis cluster: the conformance suite for every strategy, and
//! batches whose keys lie in different slots (grouped by slot, decided in
//! batch order, one script call per group, scripts reloaded per node).
//!
//! The tests of this file share one cluster while any of them runs (it
//! takes seconds to form); each test writes under a key prefix of its own,
//! so `reset` in one does not touch another's keys.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::SystemTime;

use limiter_core::storage::{Batch, Item, Key, Mode, Supports};
use limiter_core::{FixedWindow, RateLimit, Timestamp};
use limiter_redis::{RedisOptions, RedisStorage};
use limiter_testkit::server::redis_topologies::{RedisClusterServer, raw_command};
use limiter_testkit::{Env, conformance_tests};

static SHARED: Mutex<Weak<RedisClusterServer>> = Mutex::new(Weak::new());
static NEXT_PREFIX: AtomicU32 = AtomicU32::new(0);

/// The cluster of the running tests, started if none runs.
fn cluster(test: &str) -> Option<Arc<RedisClusterServer>> {
    let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(cluster) = shared.upgrade() {
        return Some(cluster);
    }
    let cluster = Arc::new(RedisClusterServer::spawn_or_skip(test, false)?);
    *shared = Arc::downgrade(&cluster);
    Some(cluster)
}

/// A storage on `cluster` writing under a prefix of its own.
async fn storage(cluster: &RedisClusterServer) -> (RedisStorage, String) {
    let prefix = format!("T{}-{}", std::process::id(), NEXT_PREFIX.fetch_add(1, Ordering::Relaxed));
    let options = RedisOptions::from_pairs([("key_prefix", prefix.as_str())]).unwrap();
    (RedisStorage::connect_with(&cluster.url(), options).await.unwrap(), prefix)
}

macro_rules! on_cluster {
    ($module:ident, $strategy:expr) => {
        mod $module {
            use super::*;
            conformance_tests!(
                env: {
                    let Some(cluster) = cluster(stringify!($module)) else { return };
                    let (storage, _) = storage(&cluster).await;
                    Env::real(storage).keep_alive(cluster)
                },
                strategy: $strategy,
            );
        }
    };
}

on_cluster!(fixed_window, limiter_core::FixedWindow);
on_cluster!(moving_window, limiter_core::MovingWindow);
on_cluster!(sliding_window_counter, limiter_core::SlidingWindowCounter);
on_cluster!(gcra, limiter_core::Gcra);

const NAMES: [&str; 6] = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"];

fn now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}

/// Item `i` allows `i + 2` hits a minute, so every answer tells whose it is.
fn limits() -> Vec<RateLimit> {
    (0..NAMES.len()).map(|i| format!("{}/minute", i + 2).parse().unwrap()).collect()
}

fn batch_items<'a>(limits: &[RateLimit], keys: &'a [[&'a str; 1]]) -> Vec<Item<'a>> {
    limits.iter().zip(keys).map(|(limit, key)| Item::new(*limit, Key::new(key))).collect()
}

/// The slot the server computes for each of `keys`.
fn server_slots(cluster: &RedisClusterServer, keys: &[String]) -> Vec<u16> {
    let node = cluster.nodes[0].addr();
    keys.iter()
        .map(|key| {
            let reply = raw_command(node, &["CLUSTER", "KEYSLOT", key]);
            reply.trim().trim_start_matches(':').parse().unwrap()
        })
        .collect()
}

/// `calls=` of `cmdstat_<command>` summed over every master.
fn calls(cluster: &RedisClusterServer, command: &str) -> u64 {
    cluster
        .masters()
        .into_iter()
        .map(|addr| {
            let info = raw_command(addr, &["INFO", "commandstats"]);
            info.lines()
                .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:")))
                .and_then(|stats| stats.split(',').find_map(|kv| kv.strip_prefix("calls=")))
                .map_or(0, |n| n.parse().unwrap())
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_across_slots_are_grouped_and_answered_in_order() {
    // A cluster of its own: the call counts must not include other tests'.
    let Some(cluster) = RedisClusterServer::spawn_or_skip("cluster slot groups", false) else { return };
    let (storage, prefix) = storage(&cluster).await;
    let limits = limits();
    let keys: Vec<[&str; 1]> = NAMES.iter().map(|n| [*n]).collect();
    let items = batch_items(&limits, &keys);
    let redis_keys: Vec<String> = limits
        .iter()
        .zip(&keys)
        .map(|(limit, key)| {
            let mut out = format!("{prefix}:");
            limit.write_key(Key::new(key).namespace(), key, &mut out);
            out
        })
        .collect();
    let slots = server_slots(&cluster, &redis_keys);
    let groups: BTreeSet<u16> = slots.iter().copied().collect();
    assert!(groups.len() >= 3, "the test needs keys in several slots: {slots:?}");

    // Warm up: the scripts get loaded on every master.
    let peek = Batch { items: &items, mode: Mode::Peek, now: now() };
    Supports::<FixedWindow>::decide(&storage, FixedWindow, &peek).await.unwrap();
    for addr in cluster.masters() {
        assert!(raw_command(addr, &["CONFIG", "RESETSTAT"]).starts_with("+OK"));
    }

    // Independent hits: one call per slot group, answers in batch order.
    let batch = Batch { items: &items, mode: Mode::Sequential { stop_at_first_breach: false }, now: now() };
    let outcome = Supports::<FixedWindow>::decide(&storage, FixedWindow, &batch).await.unwrap();
    assert_eq!(calls(&cluster, "evalsha"), groups.len() as u64, "one script call per slot group");
    for (i, state) in outcome.states().iter().enumerate() {
        let state = state.as_ref().unwrap();
        assert!(state.allowed);
        assert_eq!(state.remaining, (i + 2 - 1) as u64, "item {i} answered in its place");
    }

    // Exhaust the first item (2/minute): the next hit refuses it.
    let first = [items[0]];
    let one = Batch { items: &first, mode: Mode::Sequential { stop_at_first_breach: true }, now: now() };
    assert!(Supports::<FixedWindow>::decide(&storage, FixedWindow, &one).await.unwrap().allowed());

    // All or nothing across slots: refused by item 0, nothing consumed anywhere.
    let all = Batch { items: &items, mode: Mode::AllOrNothing, now: now() };
    let outcome = Supports::<FixedWindow>::decide(&storage, FixedWindow, &all).await.unwrap();
    assert!(!outcome.allowed());
    let after = Supports::<FixedWindow>::decide(&storage, FixedWindow, &peek).await.unwrap();
    for (i, state) in after.states().iter().enumerate().skip(1) {
        assert_eq!(state.as_ref().unwrap().remaining, (i + 2 - 1) as u64, "item {i} untouched");
    }

    // Sequential, stop at the first refusal: item 0 refuses, the others
    // are neither evaluated nor consumed.
    let stop = Batch { items: &items, mode: Mode::Sequential { stop_at_first_breach: true }, now: now() };
    let outcome = Supports::<FixedWindow>::decide(&storage, FixedWindow, &stop).await.unwrap();
    assert!(!outcome.states()[0].as_ref().unwrap().allowed);
    assert!(outcome.states()[1..].iter().all(Option::is_none), "{:?}", outcome.states());
    let after = Supports::<FixedWindow>::decide(&storage, FixedWindow, &peek).await.unwrap();
    for (i, state) in after.states().iter().enumerate().skip(1) {
        assert_eq!(state.as_ref().unwrap().remaining, (i + 2 - 1) as u64, "item {i} untouched");
    }

    // Sequential with stop, every item but 0 passing: a trial and a real
    // call per slot group, both phases in parallel.
    let rest_slots: BTreeSet<u16> = slots[1..].iter().copied().collect();
    for addr in cluster.masters() {
        assert!(raw_command(addr, &["CONFIG", "RESETSTAT"]).starts_with("+OK"));
    }
    let rest = Batch { items: &items[1..], mode: Mode::Sequential { stop_at_first_breach: true }, now: now() };
    assert!(Supports::<FixedWindow>::decide(&storage, FixedWindow, &rest).await.unwrap().allowed());
    assert_eq!(calls(&cluster, "evalsha"), 2 * rest_slots.len() as u64, "two calls per slot group");
    let after = Supports::<FixedWindow>::decide(&storage, FixedWindow, &peek).await.unwrap();
    for (i, state) in after.states().iter().enumerate().skip(1) {
        assert_eq!(state.as_ref().unwrap().remaining, (i + 2 - 2) as u64, "item {i} consumed once more");
    }

    // All or nothing without item 0: every slot consumes.
    let rest = Batch { items: &items[1..], mode: Mode::AllOrNothing, now: now() };
    assert!(Supports::<FixedWindow>::decide(&storage, FixedWindow, &rest).await.unwrap().allowed());
    let after = Supports::<FixedWindow>::decide(&storage, FixedWindow, &peek).await.unwrap();
    for (i, state) in after.states().iter().enumerate().skip(1) {
        assert_eq!(state.as_ref().unwrap().remaining, (i + 2 - 3) as u64, "item {i} consumed once more");
    }

    // A hash tag in the prefix puts every key in one slot: one atomic call.
    let options = RedisOptions::from_pairs([("key_prefix", "{tagged}")]).unwrap();
    let tagged = RedisStorage::connect_with(&cluster.url(), options).await.unwrap();
    Supports::<FixedWindow>::decide(&tagged, FixedWindow, &peek).await.unwrap();
    for addr in cluster.masters() {
        assert!(raw_command(addr, &["CONFIG", "RESETSTAT"]).starts_with("+OK"));
    }
    let outcome = Supports::<FixedWindow>::decide(&tagged, FixedWindow, &stop).await.unwrap();
    assert!(outcome.allowed());
    assert_eq!(calls(&cluster, "evalsha"), 1, "one call for the whole batch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_flushed_on_every_node_are_loaded_again() {
    let Some(cluster) = cluster("cluster noscript") else { return };
    let (storage, _) = storage(&cluster).await;
    let limits = limits();
    let keys: Vec<[&str; 1]> = NAMES.iter().map(|n| [*n]).collect();
    let items = batch_items(&limits, &keys);
    let batch = Batch { items: &items, mode: Mode::Sequential { stop_at_first_breach: false }, now: now() };
    for strategy_round in 0..2 {
        for addr in cluster.masters() {
            assert!(raw_command(addr, &["SCRIPT", "FLUSH"]).starts_with("+OK"));
        }
        let outcome = Supports::<FixedWindow>::decide(&storage, FixedWindow, &batch).await.unwrap();
        assert!(outcome.allowed(), "round {strategy_round}: {:?}", outcome.states());
        let outcome = Supports::<limiter_core::Gcra>::decide(&storage, limiter_core::Gcra, &batch).await.unwrap();
        assert!(outcome.allowed(), "round {strategy_round}: {:?}", outcome.states());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sliding_window_pairs_share_a_slot() {
    let Some(cluster) = cluster("cluster sliding pairs") else { return };
    let (storage, prefix) = storage(&cluster).await;
    let limit: RateLimit = "5/minute".parse().unwrap();
    let key = ["a}b{c", "x"];
    let items = [Item::new(limit, Key::new(&key))];
    let batch = Batch { items: &items, mode: Mode::Sequential { stop_at_first_breach: true }, now: now() };
    let sliding = limiter_core::SlidingWindowCounter;
    assert!(Supports::<limiter_core::SlidingWindowCounter>::decide(&storage, sliding, &batch).await.unwrap().allowed());
    let mut inner = String::new();
    limit.write_key(Key::new(&key).namespace(), &key, &mut inner);
    let current = format!("{prefix}:{{{inner}}}");
    let slots = server_slots(&cluster, &[current.clone(), format!("{current}/-1")]);
    assert_eq!(slots[0], slots[1]);
}

/// Three masters with a replica each: batches across slots go to the
/// masters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_with_replicas_decides() {
    let Some(cluster) = RedisClusterServer::spawn_or_skip("cluster with replicas", true) else { return };
    assert_eq!(cluster.nodes.len(), 6);
    let (storage, _) = storage(&cluster).await;
    let limits = limits();
    let keys: Vec<[&str; 1]> = NAMES.iter().map(|n| [*n]).collect();
    let items = batch_items(&limits, &keys);
    let batch = Batch { items: &items, mode: Mode::AllOrNothing, now: now() };
    for round in 0..2 {
        let outcome = Supports::<FixedWindow>::decide(&storage, FixedWindow, &batch).await.unwrap();
        assert!(outcome.allowed(), "round {round}: {:?}", outcome.states());
    }
    // Item 0 allows 2 a minute: the third all-or-nothing batch is refused.
    let outcome = Supports::<FixedWindow>::decide(&storage, FixedWindow, &batch).await.unwrap();
    assert!(!outcome.allowed());
}

/// Many tasks deciding the same two-slot batch at once: exactly the first
/// item's amount of requests pass, in both modes that take two phases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_batches_across_slots_never_admit_beyond_a_limit() {
    let Some(cluster) = cluster("cluster concurrent batches") else { return };
    for mode in [Mode::Sequential { stop_at_first_breach: true }, Mode::AllOrNothing] {
        let (storage, prefix) = storage(&cluster).await;
        let limits: [RateLimit; 2] = ["10/minute".parse().unwrap(), "1000/minute".parse().unwrap()];
        let keys = [["alpha"], ["charlie"]];
        let redis_keys: Vec<String> = limits
            .iter()
            .zip(&keys)
            .map(|(limit, key)| {
                let mut out = format!("{prefix}:");
                limit.write_key(Key::new(key).namespace(), key, &mut out);
                out
            })
            .collect();
        let slots = server_slots(&cluster, &redis_keys);
        assert_ne!(slots[0], slots[1], "the test needs two slots");
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let storage = storage.clone();
                tokio::spawn(async move {
                    let keys = [["alpha"], ["charlie"]];
                    let items = [Item::new(limits[0], Key::new(&keys[0])), Item::new(limits[1], Key::new(&keys[1]))];
                    let mut admitted = 0;
                    for _ in 0..10 {
                        let batch = Batch { items: &items, mode, now: now() };
                        if Supports::<FixedWindow>::decide(&storage, FixedWindow, &batch).await.unwrap().allowed() {
                            admitted += 1;
                        }
                    }
                    admitted
                })
            })
            .collect();
        let mut admitted = 0;
        for task in tasks {
            admitted += task.await.unwrap();
        }
        assert_eq!(admitted, 10, "{mode:?}: exactly the first limit's amount passes");
        let client = redis::cluster::ClusterClient::new(vec![format!("redis://{}", cluster.nodes[0].addr())]).unwrap();
        let mut connection = client.get_async_connection().await.unwrap();
        let second: u64 = redis::cmd("GET").arg(&redis_keys[1]).query_async(&mut connection).await.unwrap();
        // Each admitted request consumed the second limit once; a request
        // racing between the phases may have consumed it without passing.
        assert!((10..=80).contains(&second), "{mode:?}: second limit counted {second} times");
    }
}

/// A master killed: calls fail fast while its replica takes over, then
/// batches across every slot succeed again without a new storage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_is_replaced_by_its_replica() {
    let Some(mut cluster) = RedisClusterServer::spawn_or_skip("cluster master killed", true) else { return };
    let (storage, _) = storage(&cluster).await;
    let options = RedisOptions::default();
    let bound = options.connect_timeout * 2 + options.response_timeout * 4 + std::time::Duration::from_secs(1);
    let limit: RateLimit = "1000000/hour".parse().unwrap();
    let keys: Vec<[&str; 1]> = NAMES.iter().map(|n| [*n]).collect();
    let items: Vec<Item<'_>> = keys.iter().map(|key| Item::new(limit, Key::new(key))).collect();
    let batch = Batch { items: &items, mode: Mode::Sequential { stop_at_first_breach: false }, now: now() };
    assert!(Supports::<FixedWindow>::decide(&storage, FixedWindow, &batch).await.unwrap().allowed());
    // The first three nodes are the masters `redis-cli --cluster create` made.
    cluster.nodes[0].kill();
    let mut recovered = 0;
    let started = std::time::Instant::now();
    while recovered < 20 {
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "no recovery; {}", cluster.logs());
        let call = std::time::Instant::now();
        let result = Supports::<FixedWindow>::decide(&storage, FixedWindow, &batch).await;
        assert!(call.elapsed() <= bound, "a call took {:?}, past {bound:?}", call.elapsed());
        match result {
            Ok(outcome) if outcome.allowed() => recovered += 1,
            _ => {
                recovered = 0;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

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
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime};

use limiter_core::storage::{Batch, Item, Key, Mode, Supports};
use limiter_core::{FixedWindow, RateLimit, StorageErrorKind, Timestamp};
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
    storage_at(&cluster.url(), &[]).await
}

/// A storage on the cluster of `url` with `options`, writing under a
/// prefix of its own.
async fn storage_at(url: &str, options: &[(&str, &str)]) -> (RedisStorage, String) {
    let prefix = format!("T{}-{}", std::process::id(), NEXT_PREFIX.fetch_add(1, Ordering::Relaxed));
    let pairs = options.iter().copied().chain([("key_prefix", prefix.as_str())]);
    let options = RedisOptions::from_pairs(pairs).unwrap();
    (RedisStorage::connect_with(url, options).await.unwrap(), prefix)
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
                concurrent_batches: may_over_count,
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

/// The fixed-window key of `limit` for `key` under `prefix`.
fn fixed_key(prefix: &str, limit: &RateLimit, key: &[&str]) -> String {
    let mut out = format!("{prefix}:");
    limit.write_key(Key::new(key).namespace(), key, &mut out);
    out
}

/// The node of `cluster` that serves `key` (the others answer MOVED).
fn owner(cluster: &RedisClusterServer, key: &str) -> SocketAddr {
    cluster.masters().into_iter().find(|addr| !raw_command(*addr, &["GET", key]).starts_with("-MOVED")).unwrap()
}

/// The counter `key` holds on `node` (0 if none).
fn count_on(node: SocketAddr, key: &str) -> u64 {
    let reply = raw_command(node, &["GET", key]);
    reply.lines().nth(1).map_or(0, |n| n.parse().unwrap())
}

fn node_id(node: SocketAddr) -> String {
    raw_command(node, &["CLUSTER", "MYID"]).lines().nth(1).unwrap().to_owned()
}

/// One hit of `limit` on `key`, sequential: whether it passed.
async fn hit(storage: &RedisStorage, limit: RateLimit, key: &[&str]) -> Result<bool, limiter_core::StorageError> {
    let items = [Item::new(limit, Key::new(key))];
    let batch = Batch { items: &items, mode: Mode::Sequential { stop_at_first_breach: true }, now: now() };
    Supports::<FixedWindow>::decide(storage, FixedWindow, &batch).await.map(|outcome| outcome.allowed())
}

/// A TCP relay to a node that, once armed, closes the client's connection
/// instead of passing on the next answer: the node ran the command, the
/// client never hears of it (a connection lost at the worst moment).
struct Relay {
    port: u16,
    armed: Arc<AtomicBool>,
    connections: Arc<AtomicUsize>,
}

impl Relay {
    async fn start(target: SocketAddr) -> Relay {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let armed = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let (armed_in, connections_in) = (Arc::clone(&armed), Arc::clone(&connections));
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                connections_in.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = tokio::net::TcpStream::connect(target).await else { continue };
                let armed = Arc::clone(&armed_in);
                tokio::spawn(async move {
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let up = tokio::io::copy(&mut client_read, &mut server_write);
                    let down = async {
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = server_read.read(&mut buf).await?;
                            if n == 0 || armed.swap(false, Ordering::SeqCst) {
                                return Ok::<(), std::io::Error>(());
                            }
                            client_write.write_all(&buf[..n]).await?;
                        }
                    };
                    tokio::select! {
                        _ = up => {}
                        _ = down => {}
                    }
                    // Both halves of both sockets dropped here: closed.
                });
            }
        });
        Relay { port, armed, connections }
    }
}

/// redis-rs sends a command again when the connection drops before its
/// answer (and, with a response timeout of its own, when the answer is
/// late); the node may have run it already, so a hit counted twice. The
/// storage never sends a call again: the hit fails, counted once, and the
/// next one is counted once more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_cut_off_after_it_ran_is_not_sent_again() {
    // A cluster of its own: the node's announced port is changed.
    let Some(cluster) = RedisClusterServer::spawn_or_skip("cluster call cut off", false) else { return };
    let limit: RateLimit = "1000/hour".parse().unwrap();
    let probe = ["cut-off"];
    let prefix = format!("T{}-cut", std::process::id());
    let key = fixed_key(&prefix, &limit, &probe);
    let node = owner(&cluster, &key);
    // The node announces the relay's port: the client reaches it through
    // the relay once it has read the slot map from that node.
    let relay = Relay::start(node).await;
    let reply = raw_command(node, &["CONFIG", "SET", "cluster-announce-port", &relay.port.to_string()]);
    assert!(reply.starts_with("+OK"), "{reply:?}");
    assert!(raw_command(node, &["CLUSTER", "SLOTS"]).contains(&format!(":{}", relay.port)));
    let url = format!("redis+cluster://{node}");
    // A long response timeout: only the cut connection may fail a call.
    let options = RedisOptions::from_pairs([("key_prefix", prefix.as_str()), ("socket_timeout", "5")]).unwrap();
    let storage = RedisStorage::connect_with(&url, options).await.unwrap();

    assert!(hit(&storage, limit, &probe).await.unwrap());
    assert!(relay.connections.load(Ordering::SeqCst) > 0, "the client does not go through the relay");
    assert_eq!(count_on(node, &key), 1);

    relay.armed.store(true, Ordering::SeqCst);
    let e = hit(&storage, limit, &probe).await.unwrap_err();
    assert_eq!(e.kind(), StorageErrorKind::Unavailable, "{e}");
    assert!(!relay.armed.load(Ordering::SeqCst), "the answer was cut off");
    assert_eq!(count_on(node, &key), 2, "the cut-off call ran once and was not sent again");

    // The connection comes back by itself; every later hit counts once.
    let started = Instant::now();
    while hit(&storage, limit, &probe).await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(20), "no recovery; {}", cluster.logs());
    }
    assert_eq!(count_on(node, &key), 3, "{}", cluster.logs());
}

/// A call held on a paused node past the storage's timeout fails with
/// `Timeout` and is not sent again: once the node resumes, it ran once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_timed_out_on_a_paused_node_runs_once() {
    let Some(cluster) = cluster("cluster paused node") else { return };
    let (storage, prefix) = storage_at(&cluster.url(), &[("socket_timeout", "0.2")]).await;
    let limit: RateLimit = "1000/hour".parse().unwrap();
    let probe = ["paused"];
    let key = fixed_key(&prefix, &limit, &probe);
    assert!(hit(&storage, limit, &probe).await.unwrap());
    let node = owner(&cluster, &key);
    assert_eq!(count_on(node, &key), 1);

    // Writes (scripts included) wait on the node; reads go on.
    assert!(raw_command(node, &["CLIENT", "PAUSE", "20000", "WRITE"]).starts_with("+OK"));
    let e = hit(&storage, limit, &probe).await.unwrap_err();
    assert_eq!(e.kind(), StorageErrorKind::Timeout, "{e}");
    assert_eq!(count_on(node, &key), 1, "the call waits on the node");
    assert!(raw_command(node, &["CLIENT", "UNPAUSE"]).starts_with("+OK"));

    // The held call runs once the node resumes (with any copy sent after
    // it, on the same connection, at the same time).
    let started = Instant::now();
    while count_on(node, &key) < 2 {
        assert!(started.elapsed() < Duration::from_secs(20), "the held call never ran; {}", cluster.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(count_on(node, &key), 2, "the timed-out call ran once");
}

/// With redis-rs' retries off, redirections are followed by the storage:
/// `ASK` while a slot moves (the key already at the target), then `MOVED`
/// once it has moved. Each hit counts once, on the node that holds the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirections_are_followed_and_count_once() {
    // A cluster of its own: a slot is moved.
    let Some(cluster) = RedisClusterServer::spawn_or_skip("cluster redirections", false) else { return };
    let (storage, prefix) = storage(&cluster).await;
    let limit: RateLimit = "1000/hour".parse().unwrap();
    let probe = ["moving"];
    let key = fixed_key(&prefix, &limit, &probe);
    assert!(hit(&storage, limit, &probe).await.unwrap());
    let source = owner(&cluster, &key);
    let target = cluster.masters().into_iter().find(|addr| *addr != source).unwrap();
    let slot = server_slots(&cluster, std::slice::from_ref(&key))[0].to_string();
    let (source_id, target_id) = (node_id(source), node_id(target));

    // The slot starts moving; the key is moved: the source answers ASK.
    assert!(raw_command(target, &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &source_id]).starts_with("+OK"));
    assert!(raw_command(source, &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &target_id]).starts_with("+OK"));
    let port = target.port().to_string();
    let reply = raw_command(source, &["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS", &key]);
    assert!(reply.starts_with("+OK"), "{reply:?}");
    assert!(hit(&storage, limit, &probe).await.unwrap());
    assert_eq!(count_on_asking(target, &key), 2, "counted once on the target");

    // The slot has moved: the source answers MOVED.
    for node in cluster.masters() {
        assert!(raw_command(node, &["CLUSTER", "SETSLOT", &slot, "NODE", &target_id]).starts_with("+OK"));
    }
    assert!(hit(&storage, limit, &probe).await.unwrap());
    assert_eq!(count_on(target, &key), 3, "counted once on the new owner");
    assert!(raw_command(source, &["GET", &key]).starts_with("-MOVED"));
}

/// The counter `key` holds on `node` while its slot is being imported
/// there (read after ASKING on the same connection).
fn count_on_asking(node: SocketAddr, key: &str) -> u64 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(node).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let request = format!("*1\r\n$6\r\nASKING\r\n*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len());
    stream.write_all(request.as_bytes()).unwrap();
    let mut got = String::new();
    let mut buf = [0u8; 512];
    while got.lines().count() < 3 {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "closed: {got:?}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(got.starts_with("+OK\r\n$"), "{got:?}");
    got.lines().nth(2).unwrap().parse().unwrap()
}

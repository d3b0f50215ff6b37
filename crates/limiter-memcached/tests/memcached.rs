//! The conformance suite on a real memcached, one per test, on the real
//! clock (memcached keeps the TTLs); and the keys, values and TTLs `limits`
//! writes, read back raw.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use limiter_core::{Clock, FixedWindow, Item, Key, Mode, RateLimiter, SlidingWindowCounter, Storage, SystemClock};
use limiter_memcached::MemcachedStorage;
use limiter_testkit::server::MemcachedServer;
use limiter_testkit::{Env, conformance_tests};

mod fixed_window {
    use super::*;
    conformance_tests!(
        env: {
            let Some(server) = MemcachedServer::spawn_or_skip("memcached fixed window") else { return };
            let storage = MemcachedStorage::connect(&server.url()).await.unwrap();
            Env::real(storage).keep_alive(server)
        },
        strategy: FixedWindow,
        concurrent_batches: may_over_count,
    );
}

mod sliding_window_counter {
    use super::*;
    conformance_tests!(
        env: {
            let Some(server) = MemcachedServer::spawn_or_skip("memcached sliding window") else { return };
            let storage = MemcachedStorage::connect(&server.url()).await.unwrap();
            Env::real(storage).keep_alive(server)
        },
        strategy: SlidingWindowCounter,
        concurrent_batches: may_over_count,
    );
}

/// Three servers, keys shared among them as pymemcache shares them: the
/// batches of the suite span servers.
mod three_servers {
    use super::*;
    conformance_tests!(
        env: {
            let servers: Vec<MemcachedServer> =
                (0..3).map_while(|_| MemcachedServer::spawn_or_skip("memcached three servers")).collect();
            if servers.len() < 3 {
                return;
            }
            let hosts: Vec<String> = servers.iter().map(|s| s.0.addr().to_string()).collect();
            let storage = MemcachedStorage::connect(&format!("memcached://{}", hosts.join(","))).await.unwrap();
            Env::real(storage).keep_alive(servers)
        },
        strategy: SlidingWindowCounter,
        concurrent_batches: may_over_count,
    );
}

/// Sends raw protocol lines and reads until `end` closes the reply.
fn raw(addr: SocketAddr, request: &str, end: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).ends_with(end) {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "memcached closed the connection; got {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(got).unwrap()
}

/// `mg <key> v t f`: the value, TTL and client flags, or `None`.
fn item(addr: SocketAddr, key: &str) -> Option<(String, i64, u32)> {
    let reply = raw(addr, &format!("mg {key} v t f\r\nmn\r\n"), "MN\r\n");
    let mut lines = reply.split("\r\n");
    let head = lines.next().unwrap();
    if head == "EN" {
        return None;
    }
    let value = lines.next().unwrap().to_owned();
    let flag = |f: char| head.split(' ').find_map(|t| t.strip_prefix(f)).unwrap().to_owned();
    Some((value, flag('t').parse().unwrap(), flag('f').parse().unwrap()))
}

/// The fixed window's counter is `limits`' raw key, a decimal count with
/// flags 0 and the window as TTL; refused hits are counted; `/expires`
/// holds the window's end as float seconds.
#[tokio::test]
async fn fixed_window_keys_values_and_ttls_are_those_of_limits() {
    let Some(server) = MemcachedServer::spawn_or_skip("memcached keys") else { return };
    let storage = MemcachedStorage::connect(&server.url()).await.unwrap();
    let limiter = RateLimiter::new(FixedWindow, storage);
    let limit = "3/minute".parse().unwrap();
    let before = SystemClock.now().as_secs_f64();
    let mut passed = Vec::new();
    for _ in 0..4 {
        passed.push(limiter.hit(&limit, &["127.0.0.1", "limited"], 1).await.unwrap());
    }
    assert_eq!(passed, [true, true, true, false]);
    let key = "LIMITER/127.0.0.1/limited/3/1/minute";
    let (value, ttl, flags) = item(server.0.addr(), key).expect("the counter");
    assert_eq!(value, "4", "refused hits are counted, as in limits");
    assert_eq!(flags, 0);
    assert!((58..=60).contains(&ttl), "ttl {ttl}");
    // The expiry is written without waiting: give it a moment to land.
    let mut expires = None;
    for _ in 0..50 {
        expires = item(server.0.addr(), &format!("{key}/expires"));
        if expires.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (end, ttl, flags) = expires.expect("the /expires key");
    let end: f64 = end.parse().unwrap();
    assert!(end >= before + 60.0 && end < before + 62.0, "window end {end}, hits from {before}");
    assert!((58..=60).contains(&ttl), "ttl {ttl}");
    assert_eq!(flags, 0);
    assert_eq!(item(server.0.addr(), "LIMITS:LIMITER/127.0.0.1/limited/3/1/minute"), None, "no prefix");
}

/// The sliding window counts at `<key>/<int(now / window)>`, with twice the
/// window as TTL and no `/expires` key; refused hits are not counted.
#[tokio::test]
async fn sliding_window_keys_values_and_ttls_are_those_of_limits() {
    let Some(server) = MemcachedServer::spawn_or_skip("memcached sliding keys") else { return };
    let storage = MemcachedStorage::connect(&server.url()).await.unwrap();
    let limiter = RateLimiter::new(SlidingWindowCounter, storage);
    let limit = "3/hour".parse().unwrap();
    let bucket = SystemClock.now().as_secs() / 3600;
    for _ in 0..5 {
        let _ = limiter.hit(&limit, &["127.0.0.1", "sliding"], 1).await.unwrap();
    }
    let key = "LIMITER/127.0.0.1/sliding/3/1/hour";
    let now_bucket = SystemClock.now().as_secs() / 3600;
    assert_eq!(bucket, now_bucket, "the test ran across an hour boundary; run it again");
    let (value, ttl, flags) = item(server.0.addr(), &format!("{key}/{bucket}")).expect("the current window's count");
    assert_eq!(value, "3", "refused hits are given back");
    assert_eq!(flags, 0);
    assert!((7198..=7200).contains(&ttl), "ttl {ttl}");
    assert_eq!(item(server.0.addr(), key), None);
    assert_eq!(item(server.0.addr(), &format!("{key}/expires")), None);
}

/// Identifiers memcached cannot take in a key (spaces) still work: their
/// keys go base64-encoded.
#[tokio::test]
async fn identifiers_with_spaces_work() {
    let Some(server) = MemcachedServer::spawn_or_skip("memcached spaces") else { return };
    let storage = MemcachedStorage::connect(&server.url()).await.unwrap();
    let limiter = RateLimiter::new(FixedWindow, storage);
    let limit = "1/minute".parse().unwrap();
    assert!(limiter.hit(&limit, &["a b\r\nmn"], 1).await.unwrap());
    assert!(!limiter.hit(&limit, &["a b\r\nmn"], 1).await.unwrap());
    assert!(limiter.hit(&limit, &["a b"], 1).await.unwrap());
    // 245 bytes: fits, its `/expires` sibling does not; the hit still works.
    let edge = "e".repeat(226);
    assert!(limiter.hit(&limit, &[&edge], 1).await.unwrap());
    assert!(!limiter.hit(&limit, &[&edge], 1).await.unwrap());
    let long = "x".repeat(300);
    let err = limiter.hit(&limit, &[&long], 1).await.unwrap_err();
    assert!(err.to_string().contains("longer than memcached's 250"), "{err}");
}

/// `reset` deletes the limiter's keys and nothing else.
#[tokio::test]
async fn reset_keeps_other_keys() {
    let Some(server) = MemcachedServer::spawn_or_skip("memcached reset") else { return };
    let storage = MemcachedStorage::connect(&server.url()).await.unwrap();
    raw(server.0.addr(), "ms app/cache 2 T0\r\nhi\r\n", "HD\r\n");
    let limiter = RateLimiter::new(FixedWindow, storage.clone());
    let limit = "1/minute".parse().unwrap();
    assert!(limiter.hit(&limit, &["r"], 1).await.unwrap());
    storage.reset().await.unwrap();
    assert!(limiter.hit(&limit, &["r"], 1).await.unwrap(), "reset");
    assert_eq!(item(server.0.addr(), "app/cache").map(|i| i.0).as_deref(), Some("hi"));
    let ids = ["r"];
    limiter_core::Supports::clear(&storage, FixedWindow, &limit, Key::new(&ids)).await.unwrap();
    assert_eq!(item(server.0.addr(), "LIMITER/r/1/1/minute"), None, "cleared");
}

/// Malformed URIs are refused when the storage is built, saying how to
/// write them; an unreachable server is reported as unavailable.
#[tokio::test]
async fn bad_uris_and_absent_servers() {
    let err = MemcachedStorage::connect("memcached://localhost").await.unwrap_err();
    assert_eq!(err.kind(), limiter_core::StorageErrorKind::Rejected);
    assert!(err.to_string().contains("missing host or port"), "{err}");
    let err = MemcachedStorage::connect("memcached://user:hunter2@localhost:11211").await.unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let err = MemcachedStorage::connect(&format!("memcached://127.0.0.1:{port}")).await.unwrap_err();
    assert_eq!(err.kind(), limiter_core::StorageErrorKind::Unavailable, "{err}");
}

/// `memcached:///path/to.sock`: the whole suite, fixed window, over a unix socket.
#[cfg(unix)]
mod unix_socket {
    use super::*;
    use limiter_testkit::server::MemcachedUnixServer;

    conformance_tests!(
        env: {
            let Some(server) = MemcachedUnixServer::spawn_or_skip("memcached unix socket") else { return };
            assert!(server.url().starts_with("memcached:///"), "{}", server.url());
            let storage = MemcachedStorage::connect(&server.url()).await.unwrap();
            Env::real(storage).keep_alive(server)
        },
        strategy: FixedWindow,
        concurrent_batches: may_over_count,
    );
}

/// Outside a Tokio runtime the storage says so instead of panicking.
#[test]
fn outside_a_runtime_is_an_error() {
    let err = MemcachedStorage::lazy("memcached://127.0.0.1:11211", limiter_memcached::MemcachedOptions::default())
        .unwrap_err();
    assert!(err.to_string().contains("within a Tokio runtime"), "{err}");
}

/// A key that fits but whose `/expires` sibling does not (245 bytes) opens
/// its window in the same batch as a normal key on the same server: the
/// normal key still gets its `/expires`, and the connection stays usable.
#[tokio::test]
async fn a_key_too_long_for_its_expiry_spoils_no_other_command() {
    let Some(server) = MemcachedServer::spawn_or_skip("memcached long expiry key") else { return };
    let storage = MemcachedStorage::connect(&server.url()).await.unwrap();
    let limiter = RateLimiter::new(FixedWindow, storage.clone());
    let limit: limiter_core::RateLimit = "1/minute".parse().unwrap();
    let edge = "e".repeat(226);
    let (edge_ids, normal) = ([edge.as_str()], ["normal"]);
    assert_eq!(Key::new(&edge_ids).storage_key(&limit).len(), 245);
    let items = [Item::new(limit, Key::new(&edge_ids)), Item::new(limit, Key::new(&normal))];
    let outcome = limiter.decide(&items, Mode::Sequential { stop_at_first_breach: false }).await.unwrap();
    assert!(outcome.allowed(), "{outcome:?}");
    // The expiries went out without waiting, ahead of this on the one
    // connection: once it is answered, they were.
    storage.check().await.unwrap();
    let (_, ttl, _) = item(server.0.addr(), "LIMITER/normal/1/1/minute/expires").expect("the normal key's /expires");
    assert!((58..=60).contains(&ttl), "ttl {ttl}");
    let outcome = limiter.decide(&items, Mode::Sequential { stop_at_first_breach: false }).await.unwrap();
    assert_eq!(outcome.states().iter().map(|s| s.unwrap().allowed).collect::<Vec<_>>(), [false, false]);
}

/// Memcached limits a key as sent: one sent base64-encoded takes 4 bytes
/// per 3, so 186 bytes fit and 187 are refused as too long, before
/// anything is sent.
#[tokio::test]
async fn keys_sent_base64_are_limited_as_sent() {
    let Some(server) = MemcachedServer::spawn_or_skip("memcached base64 key length") else { return };
    let storage = MemcachedStorage::connect(&server.url()).await.unwrap();
    let limiter = RateLimiter::new(FixedWindow, storage.clone());
    let limit = "1/minute".parse().unwrap();
    let fits = format!("a {}", "b".repeat(165));
    assert_eq!(Key::new(&[fits.as_str()]).storage_key(&limit).len(), 186);
    assert!(limiter.hit(&limit, &[&fits], 1).await.unwrap());
    assert!(!limiter.hit(&limit, &[&fits], 1).await.unwrap());
    for identifier in [format!("a {}", "b".repeat(166)), format!("a {}", "b".repeat(188))] {
        let err = limiter.hit(&limit, &[&identifier], 1).await.unwrap_err();
        assert_eq!(err.kind(), limiter_core::StorageErrorKind::Rejected, "{err}");
        assert!(err.to_string().contains("longer than memcached's 250"), "{err}");
        assert!(err.to_string().contains("186"), "{err}");
    }
    storage.check().await.unwrap();
    assert!(limiter.hit(&limit, &["after"], 1).await.unwrap());
}

/// Memcached reads an expiry over 30 days as a Unix time: a year-long
/// fixed window and a month-long sliding window (its counters live two
/// months) are sent their expiry as one, and still enforced.
#[tokio::test]
async fn windows_over_thirty_days_are_enforced() {
    const DAY: u64 = 24 * 3600;
    let Some(server) = MemcachedServer::spawn_or_skip("memcached long windows") else { return };
    let storage = MemcachedStorage::connect(&server.url()).await.unwrap();
    let fixed = RateLimiter::new(FixedWindow, storage.clone());
    let year: limiter_core::RateLimit = "1/year".parse().unwrap();
    // `limits`' year: 12 months of 30 days.
    let window = year.window_secs();
    assert_eq!(window, 360 * DAY);
    let now = SystemClock.now();
    assert!(fixed.hit(&year, &["yearly"], 1).await.unwrap());
    assert!(!fixed.hit(&year, &["yearly"], 1).await.unwrap(), "the counter outlives the hit");
    let stats = fixed.window_stats(&year, &["yearly"]).await.unwrap();
    assert_eq!(stats.remaining, 0);
    let ahead = stats.reset_at.as_secs() - now.as_secs();
    assert!((window - 5..=window + 5).contains(&ahead), "resets in {ahead} s");
    storage.check().await.unwrap();
    let (end, ttl, _) = item(server.0.addr(), "LIMITER/yearly/1/1/year/expires").expect("/expires");
    assert!((window - 5..=window + 5).contains(&ttl.unsigned_abs()), "ttl {ttl}");
    let end: f64 = end.parse().unwrap();
    assert!((end - now.as_secs_f64() - window as f64).abs() < 5.0, "window end {end}");

    let sliding = RateLimiter::new(SlidingWindowCounter, storage);
    let month = "10/month".parse().unwrap();
    let now = SystemClock.now();
    for hit in 0..10 {
        assert!(sliding.hit(&month, &["monthly"], 1).await.unwrap(), "hit {hit}");
    }
    assert!(!sliding.hit(&month, &["monthly"], 1).await.unwrap(), "the eleventh hit");
    let stats = sliding.window_stats(&month, &["monthly"]).await.unwrap();
    assert_eq!(stats.remaining, 0);
    assert!(stats.reset_at.as_secs() <= now.as_secs() + 30 * DAY + 5, "resets at {:?}", stats.reset_at);
    let bucket = now.as_secs() / (30 * DAY);
    let (count, ttl, _) = item(server.0.addr(), &format!("LIMITER/monthly/10/1/month/{bucket}")).expect("count");
    assert_eq!(count, "10");
    assert!((60 * DAY - 5..=60 * DAY + 5).contains(&ttl.unsigned_abs()), "ttl {ttl}");
}

/// A counter at the top of `u64` (another client's doing) refuses, and
/// panics nothing.
#[tokio::test]
async fn counters_near_the_top_of_u64_refuse() {
    let Some(server) = MemcachedServer::spawn_or_skip("memcached huge counters") else { return };
    let storage = MemcachedStorage::connect(&server.url()).await.unwrap();
    let addr = server.0.addr();
    let max = u64::MAX.to_string();
    let set = |key: &str, value: &str| {
        raw(addr, &format!("ms {key} {} T3600\r\n{value}\r\n", value.len()), "HD\r\n");
    };
    let fixed = RateLimiter::new(FixedWindow, storage.clone());
    let limit: limiter_core::RateLimit = "5/hour".parse().unwrap();
    set("LIMITER/huge/5/1/hour", &max);
    assert!(!fixed.test(&limit, &["huge"], 1).await.unwrap());

    let sliding = RateLimiter::new(SlidingWindowCounter, storage);
    let bucket = SystemClock.now().as_secs() / 3600;
    set(&format!("LIMITER/huge/5/1/hour/{}", bucket - 1), &max);
    set(&format!("LIMITER/huge/5/1/hour/{bucket}"), &(u64::MAX - 1).to_string());
    assert!(!sliding.test(&limit, &["huge"], 1).await.unwrap());
    assert!(!sliding.hit(&limit, &["huge"], 1).await.unwrap());
}

/// Only the hit that creates a counter writes `/expires`: a live counter
/// that an undo brought back to 0 keeps the window's end it had.
#[tokio::test]
async fn expires_is_written_only_by_the_hit_that_creates_the_counter() {
    let Some(server) = MemcachedServer::spawn_or_skip("memcached expires once") else { return };
    let storage = MemcachedStorage::connect(&server.url()).await.unwrap();
    let addr = server.0.addr();
    // A window opened a while ago, everything in it given back.
    raw(addr, "ms LIMITER/reused/5/1/hour 1 T3000\r\n0\r\n", "HD\r\n");
    raw(addr, "ms LIMITER/reused/5/1/hour/expires 12 T3000\r\n1000000000.0\r\n", "HD\r\n");
    let limiter = RateLimiter::new(FixedWindow, storage.clone());
    assert!(limiter.hit(&"5/hour".parse().unwrap(), &["reused"], 1).await.unwrap());
    storage.check().await.unwrap();
    let (end, _, _) = item(addr, "LIMITER/reused/5/1/hour/expires").unwrap();
    assert_eq!(end, "1000000000.0", "the window's end is left as it was");
    assert_eq!(item(addr, "LIMITER/reused/5/1/hour").unwrap().0, "1");
}

//! Round trips per request, counted by a proxy between the storage and
//! memcached: a new round trip starts whenever the storage sends after
//! memcached has answered.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use limiter_core::{FixedWindow, Item, Key, Mode, RateLimit, RateLimiter, SlidingWindowCounter, Storage};
use limiter_memcached::MemcachedStorage;
use limiter_testkit::server::MemcachedServer;

/// Who spoke last, and how many times the client started speaking again.
#[derive(Debug, Default)]
struct Talk {
    server_spoke_last: bool,
    round_trips: usize,
}

/// Forwards one connection to `upstream`, counting round trips.
fn proxy(upstream: SocketAddr) -> (SocketAddr, Arc<Mutex<Talk>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let talk = Arc::new(Mutex::new(Talk { server_spoke_last: true, round_trips: 0 }));
    let shared = Arc::clone(&talk);
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let client = client.unwrap();
            let server = TcpStream::connect(upstream).unwrap();
            pump(client.try_clone().unwrap(), server.try_clone().unwrap(), Arc::clone(&shared), false);
            pump(server, client, Arc::clone(&shared), true);
        }
    });
    (addr, talk)
}

fn pump(mut from: TcpStream, mut to: TcpStream, talk: Arc<Mutex<Talk>>, from_server: bool) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            {
                // Marked before forwarding: the other side can only answer after.
                let mut talk = talk.lock().unwrap();
                if !from_server && talk.server_spoke_last {
                    talk.round_trips += 1;
                }
                talk.server_spoke_last = from_server;
            }
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

fn limit(s: &str) -> RateLimit {
    s.parse().unwrap()
}

/// Round trips taken by `f`.
async fn count<F: Future<Output = ()>>(talk: &Mutex<Talk>, f: F) -> usize {
    let before = talk.lock().unwrap().round_trips;
    f.await;
    talk.lock().unwrap().round_trips - before
}

#[tokio::test]
async fn one_round_trip_per_request_two_to_give_back() {
    let Some(server) = MemcachedServer::spawn_or_skip("memcached round trips") else { return };
    let (addr, talk) = proxy(server.0.addr());
    let storage = MemcachedStorage::connect(&format!("memcached://{addr}")).await.unwrap();
    let fixed = RateLimiter::new(FixedWindow, storage.clone());
    let sliding = RateLimiter::new(SlidingWindowCounter, storage.clone());
    let (a, b, c) = (["a"], ["b"], ["c"]);
    let (tight, loose) = (limit("1/hour"), limit("100/hour"));
    let three = [
        Item::new(loose, Key::new(&a)),
        Item::new(limit("50/hour"), Key::new(&b)),
        Item::new(limit("10/minute"), Key::new(&c)),
    ];
    // The first hits open the fixed windows, which also writes their
    // `/expires` keys (without waiting): not counted here. A check comes
    // back after their answers (one connection, in order).
    fixed.decide(&three, Mode::AllOrNothing).await.unwrap();
    storage.check().await.unwrap();
    let allowed = count(&talk, async {
        assert!(fixed.decide(&three, Mode::Sequential { stop_at_first_breach: true }).await.unwrap().allowed());
    });
    assert_eq!(allowed.await, 1, "three fixed-window limits, allowed: one round trip");
    let allowed = count(&talk, async {
        assert!(sliding.decide(&three, Mode::AllOrNothing).await.unwrap().allowed());
    });
    assert_eq!(allowed.await, 1, "three sliding-window limits, allowed: one round trip");
    let peek = count(&talk, async {
        fixed.decide(&three, Mode::Peek).await.unwrap();
    });
    assert_eq!(peek.await, 1, "peeking: one round trip");

    let used = [Item::new(tight, Key::new(&c))];
    fixed.decide(&used, Mode::AllOrNothing).await.unwrap();
    sliding.decide(&used, Mode::AllOrNothing).await.unwrap();
    storage.check().await.unwrap();
    let refused = [Item::new(loose, Key::new(&a)), Item::new(tight, Key::new(&c))];
    let fixed_refused = count(&talk, async {
        assert!(!fixed.decide(&refused, Mode::AllOrNothing).await.unwrap().allowed());
    });
    assert_eq!(fixed_refused.await, 2, "refused, the loose limit given back: two round trips");
    let sliding_refused = count(&talk, async {
        assert!(!sliding.decide(&refused, Mode::AllOrNothing).await.unwrap().allowed());
    });
    assert_eq!(sliding_refused.await, 2, "refused, both increments given back: two round trips");
    let first_refused = [Item::new(tight, Key::new(&c))];
    let nothing_back = count(&talk, async {
        assert!(
            !fixed.decide(&first_refused, Mode::Sequential { stop_at_first_breach: true }).await.unwrap().allowed()
        );
    });
    assert_eq!(nothing_back.await, 1, "a refused fixed-window hit stays counted: one round trip");
}

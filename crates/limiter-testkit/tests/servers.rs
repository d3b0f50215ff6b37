//! The server spawners start real servers that answer, on ports of their
//! own, and stop them on drop.

// Integration tests: a failed expectation is a failed test.
#![allow(clippy::expect_used, clippy::indexing_slicing)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use limiter_testkit::server::{MemcachedServer, RedisServer};

fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).expect("the server accepts connections");
    stream.set_read_timeout(Some(Duration::from_secs(2))).expect("a read timeout");
    stream.write_all(request).expect("the request is sent");
    let mut buf = [0u8; 256];
    let n = stream.read(&mut buf).expect("the server answers");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn redis_servers_answer_and_are_separate() {
    let (Some(a), Some(b)) =
        (RedisServer::spawn_or_skip("redis_servers_answer"), RedisServer::spawn_or_skip("redis_servers_answer"))
    else {
        return;
    };
    assert_ne!(a.0.addr(), b.0.addr());
    assert_eq!(exchange(a.0.addr(), b"SET k 1\r\n"), "+OK\r\n");
    assert_eq!(exchange(b.0.addr(), b"GET k\r\n"), "$-1\r\n", "the second server has its own data");
    assert!(a.url().starts_with("redis://127.0.0.1:"));
    let addr = a.0.addr();
    drop(a);
    assert!(TcpStream::connect(addr).is_err(), "a dropped server is gone");
}

#[test]
fn memcached_servers_answer() {
    let Some(mut server) = MemcachedServer::spawn_or_skip("memcached_servers_answer") else { return };
    assert!(exchange(server.0.addr(), b"version\r\n").starts_with("VERSION "));
    server.0.kill();
    assert!(TcpStream::connect(server.0.addr()).is_err(), "a killed server is gone");
}

//! TLS (`rediss://`, trusting a certificate authority made for the test)
//! and unix sockets (`redis+unix://`, `unix://`): the storage connects,
//! decides and reports errors that name what is wrong.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use limiter_core::storage::Storage;
use limiter_core::{FixedWindow, RateLimit, RateLimiter, StorageErrorKind};
use limiter_redis::{RedisOptions, RedisStorage};
use limiter_testkit::server::redis_topologies::{RedisTlsServer, RedisUnixServer, raw_command};
use limiter_testkit::{Env, conformance_tests};

fn trusting(server: &RedisTlsServer) -> RedisOptions {
    RedisOptions::from_pairs([("ssl_ca_certs", server.ca_file().display().to_string())]).unwrap()
}

mod tls_fixed_window {
    use super::*;
    conformance_tests!(
        env: {
            let Some(server) = RedisTlsServer::spawn_or_skip("tls fixed window") else { return };
            let storage = RedisStorage::connect_with(&server.url(), trusting(&server)).await.unwrap();
            Env::real(storage).keep_alive(server)
        },
        strategy: limiter_core::FixedWindow,
    );
}

mod unix_sliding_window_counter {
    use super::*;
    conformance_tests!(
        env: {
            let Some(server) = RedisUnixServer::spawn_or_skip("unix sliding window") else { return };
            let storage = RedisStorage::connect(&server.url()).await.unwrap();
            Env::real(storage).keep_alive(server)
        },
        strategy: limiter_core::SlidingWindowCounter,
    );
}

/// The counter written over TLS is the one the server holds (read back
/// over plain TCP).
#[tokio::test]
async fn tls_trusting_the_test_ca_decides() {
    let Some(server) = RedisTlsServer::spawn_or_skip("tls decides") else { return };
    let storage = RedisStorage::connect_with(&server.url(), trusting(&server)).await.unwrap();
    storage.check().await.unwrap();
    let limiter = RateLimiter::new(FixedWindow, storage);
    let limit: RateLimit = "2/minute".parse().unwrap();
    assert!(limiter.hit(&limit, &["tls"], 1).await.unwrap());
    assert!(limiter.hit(&limit, &["tls"], 1).await.unwrap());
    assert!(!limiter.hit(&limit, &["tls"], 1).await.unwrap());
    let value = raw_command(server.server.addr(), &["GET", "LIMITS:LIMITER/tls/2/1/minute"]);
    assert!(value.ends_with("3\r\n"), "{value:?}");
}

/// `limits` reads TLS settings from the URI's query string (redis-py
/// does): the CA given there is trusted, with no options at all.
#[tokio::test]
async fn tls_ca_given_in_the_uri_query_is_trusted() {
    let Some(server) = RedisTlsServer::spawn_or_skip("tls ca in the query") else { return };
    let ca = server.ca_file().display().to_string();
    assert!(!ca.contains(['%', '&', '+', '#', ' ', '?']), "the test writes the path unescaped: {ca}");
    let url = format!("{}/0?ssl_ca_certs={ca}&ssl_cert_reqs=required", server.url());
    let storage = RedisStorage::connect(&url).await.unwrap();
    let limiter = RateLimiter::new(FixedWindow, storage);
    let limit: RateLimit = "2/minute".parse().unwrap();
    assert!(limiter.hit(&limit, &["tls-query"], 1).await.unwrap());
    let value = raw_command(server.server.addr(), &["GET", "LIMITS:LIMITER/tls-query/2/1/minute"]);
    assert!(value.ends_with("1\r\n"), "{value:?}");
}

/// A query parameter neither redis-rs nor the options know is an error
/// naming it (and not the password), not silently ignored.
#[tokio::test]
async fn unknown_query_parameters_are_named() {
    let Some(server) = RedisTlsServer::spawn_or_skip("tls unknown query") else { return };
    let ca = server.ca_file().display();
    let url = format!("rediss://:s3cr3t@localhost:{}?ssl_ca_certs={ca}&ssl_verify=yes", server.tls_addr().port());
    let e = RedisStorage::connect(&url).await.unwrap_err();
    assert_eq!(e.kind(), StorageErrorKind::Rejected, "{e}");
    assert!(e.to_string().contains("\"ssl_verify\""), "{e}");
    assert!(!format!("{e} {e:?}").contains("s3cr3t"), "{e}");
    let e = RedisStorage::connect(&format!("{}?ssl_cert_reqs=none", server.url())).await.unwrap_err();
    assert!(e.to_string().contains("ssl_ca_certs"), "{e}");
}

#[tokio::test]
async fn tls_without_trusting_the_ca_is_refused() {
    let Some(server) = RedisTlsServer::spawn_or_skip("tls untrusted") else { return };
    let result = RedisStorage::connect(&server.url()).await;
    let e = result.unwrap_err();
    assert!(matches!(e.kind(), StorageErrorKind::Unavailable | StorageErrorKind::Rejected), "{e}");
}

#[tokio::test]
async fn tls_files_that_cannot_be_read_are_named() {
    let Some(server) = RedisTlsServer::spawn_or_skip("tls missing ca") else { return };
    let options = RedisOptions::from_pairs([("ssl_ca_certs", "/nonexistent/ca.pem")]).unwrap();
    let e = RedisStorage::connect_with(&server.url(), options).await.unwrap_err();
    assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    let options = RedisOptions::from_pairs([("ssl_certfile", server.ca_file().display().to_string())]).unwrap();
    let e = RedisStorage::connect_with(&server.url(), options).await.unwrap_err();
    assert!(e.to_string().contains("ssl_keyfile"), "{e}");
}

#[tokio::test]
async fn unix_socket_spellings_reach_the_server() {
    let Some(server) = RedisUnixServer::spawn_or_skip("unix spellings") else { return };
    let limit: RateLimit = "5/minute".parse().unwrap();
    for url in [server.url(), format!("unix://{}", server.socket().display())] {
        let storage = RedisStorage::connect(&url).await.unwrap();
        storage.check().await.unwrap();
        let limiter = RateLimiter::new(FixedWindow, storage);
        assert!(limiter.hit(&limit, &["unix"], 1).await.unwrap(), "{url}");
    }
    // Both hits counted on the one server, which TCP also reaches.
    let value = raw_command(server.0.addr(), &["GET", "LIMITS:LIMITER/unix/5/1/minute"]);
    assert!(value.ends_with("2\r\n"), "{value:?}");
}

/// redis-py spells a unix socket's password `?password=` (redis-rs reads
/// `?pass=`): a server that requires one is reached with it.
#[tokio::test]
async fn unix_socket_password_in_the_query_as_redis_py_spells_it() {
    let Some(server) = RedisUnixServer::spawn_or_skip("unix password") else { return };
    let reply = raw_command(server.0.addr(), &["CONFIG", "SET", "requirepass", "s3cr3t"]);
    assert!(reply.starts_with("+OK"), "{reply:?}");
    let url = format!("{}?password=s3cr3t&db=1", server.url());
    let storage = RedisStorage::connect(&url).await.unwrap();
    let limiter = RateLimiter::new(FixedWindow, storage);
    let limit: RateLimit = "1/minute".parse().unwrap();
    assert!(limiter.hit(&limit, &["unix-auth"], 1).await.unwrap());
    assert!(!limiter.hit(&limit, &["unix-auth"], 1).await.unwrap(), "the first hit was counted");
}

#[tokio::test]
async fn a_missing_socket_is_unavailable() {
    let e = RedisStorage::connect("redis+unix:///nonexistent/redis.sock").await.unwrap_err();
    assert_eq!(e.kind(), StorageErrorKind::Unavailable, "{e}");
}

#[tokio::test]
async fn passwords_never_show_in_errors_or_debug() {
    // Port 1 on loopback: nothing listens, the connection is refused.
    for url in [
        "redis+cluster://:s3cr3t@127.0.0.1:1,127.0.0.1:2",
        "redis+sentinel://:s3cr3t@127.0.0.1:1/mymaster",
        "rediss://:s3cr3t@127.0.0.1:1",
        "redis+cluster://:s3cr3t@127.0.0.1:1/0",
        "redis+sentinel://:s3cr3t@127.0.0.1:1",
        "redis://:s3cr3t@127.0.0.1:1?bogus=1",
        "redis+unix:///nonexistent/redis.sock?password=s3cr3t",
        "redis+unix:///nonexistent/redis.sock?password=s3cr3t&bogus=1",
    ] {
        let e = RedisStorage::connect(url).await.unwrap_err();
        assert!(!format!("{e} {e:?}").contains("s3cr3t"), "{url}: {e}");
    }
}

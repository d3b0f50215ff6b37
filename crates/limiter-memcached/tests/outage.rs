//! The memcached server killed under a running limiter and started again:
//! each failure policy answers as configured, no call waits past its
//! timeout, and shared limiting resumes by itself once the server is back.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use limiter_core::AnyStorage;
use limiter_memcached::{MemcachedOptions, MemcachedStorage};
use limiter_testkit::faults;
use limiter_testkit::server::MemcachedServer;

const TIMEOUT: Duration = Duration::from_millis(300);
/// What a loaded machine may add to a call bounded by the connect and call
/// timeouts: the bound is checked, generously, not the speed.
const SLACK: Duration = Duration::from_secs(2);

async fn storage(server: &MemcachedServer) -> AnyStorage {
    let mut options = MemcachedOptions::default();
    options.timeout = TIMEOUT;
    options.connect_timeout = TIMEOUT;
    AnyStorage::new(MemcachedStorage::connect_with(&server.url(), options).await.unwrap())
}

#[tokio::test]
async fn fail_closed_answers_503_then_limits_again_after_a_restart() {
    let Some(mut server) = MemcachedServer::spawn_or_skip("outage fail closed") else { return };
    let storage = storage(&server).await;
    faults::fail_closed_then_recovers(&mut server.0, storage, TIMEOUT * 2 + SLACK).await;
}

#[tokio::test]
async fn fail_open_lets_requests_through_while_down() {
    let Some(mut server) = MemcachedServer::spawn_or_skip("outage fail open") else { return };
    let storage = storage(&server).await;
    faults::fail_open_while_down(&mut server.0, storage).await;
}

#[tokio::test]
async fn in_memory_fallback_limits_while_down_and_returns_to_memcached() {
    let Some(mut server) = MemcachedServer::spawn_or_skip("outage fallback") else { return };
    let storage = storage(&server).await;
    faults::fallback_then_back(&mut server.0, storage).await;
}

/// A server that stops answering (SIGSTOP) without closing the connection:
/// calls fail as timeouts within the timeout, and the connection is
/// replaced once it answers again.
#[cfg(unix)]
#[tokio::test]
async fn a_hung_server_times_out_and_recovers() {
    use limiter_core::{FixedWindow, RateLimiter, StorageErrorKind};
    let Some(server) = MemcachedServer::spawn_or_skip("outage hung") else { return };
    let mut options = MemcachedOptions::default();
    options.timeout = TIMEOUT;
    options.connect_timeout = TIMEOUT;
    let storage = MemcachedStorage::connect_with(&server.url(), options).await.unwrap();
    let limiter = RateLimiter::new(FixedWindow, storage);
    let limit = "5/minute".parse().unwrap();
    assert!(limiter.hit(&limit, &["hung"], 1).await.unwrap());
    let pid = server.0.pid().to_string();
    signal("STOP", &pid);
    // `kill` returns once the signal is sent; a server thread already
    // running may still answer until every thread has stopped.
    wait_until_stopped(&pid);
    let started = Instant::now();
    let err = limiter.hit(&limit, &["hung"], 1).await.unwrap_err();
    let waited = started.elapsed();
    signal("CONT", &pid);
    assert_eq!(err.kind(), StorageErrorKind::Timeout, "{err}");
    assert!(waited < TIMEOUT * 2 + SLACK, "waited {waited:?}");
    let mut back = false;
    for _ in 0..30 {
        if limiter.hit(&limit, &["hung"], 1).await.is_ok() {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back, "calls succeed again once the server answers");
}

/// Waits until every thread of `pid` is stopped (state `T` in
/// `/proc/<pid>/task/*/stat`), for at most five seconds; without `/proc`
/// (not Linux) it cannot tell and returns at once.
#[cfg(unix)]
fn wait_until_stopped(pid: &str) {
    let stopped = || {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return true };
        tasks.flatten().all(|task| {
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            // The state follows the command name, which is in parentheses.
            stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('T'))
        })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !stopped() {
        assert!(Instant::now() < deadline, "memcached ({pid}) did not stop on SIGSTOP");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Sends `SIGname` to `pid` with the shell's `kill`.
#[cfg(unix)]
fn signal(name: &str, pid: &str) {
    let status = std::process::Command::new("sh").args(["-c", &format!("kill -{name} {pid}")]).status().unwrap();
    assert!(status.success());
}

//! A Rust limiter and Python's `limits` 5.8 on one Redis enforce one limit
//! together: hits alternate between them on the same key, and exactly the
//! limit's amount passes, whichever side makes the hit.
//!
//! The Python side needs `limits[redis]==5.8.0`: `.ci/run` installs it in a
//! virtualenv and points `LIMITER_TEST_PYTHON` at its interpreter. Without
//! it the test skips loudly, or fails where servers are required (CI).

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use limiter_core::{AnyStorage, RateLimiter, StrategyKind};
use limiter_redis::RedisStorage;
use limiter_testkit::server::{RedisServer, servers_required};

struct Peer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Peer {
    fn start(python: &str, url: &str, strategy: &str, limit: &str) -> Peer {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/limits_peer.py");
        let mut child = Command::new(python)
            .args([script, url, strategy, limit])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the Python peer starts");
        let stdin = child.stdin.take().expect("its stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("its stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("it says it is ready");
        assert_eq!(line.trim(), "ready", "the Python peer failed to start");
        Peer { child, stdin, stdout }
    }

    fn hit(&mut self, identifiers: &[&str]) -> bool {
        writeln!(self.stdin, "{}", identifiers.join(" ")).expect("a hit is sent");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("the peer answers");
        match line.trim() {
            "True" => true,
            "False" => false,
            other => panic!("the Python peer answered {other:?}"),
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn python() -> Option<String> {
    match std::env::var("LIMITER_TEST_PYTHON") {
        Ok(python) => Some(python),
        Err(_) => {
            let why = "python_interop: LIMITER_TEST_PYTHON is not set (a Python with limits[redis]==5.8.0)";
            assert!(!servers_required(), "{why}; it is required here (CI)");
            eprintln!("skipping {why}");
            None
        }
    }
}

async fn alternate(strategy: StrategyKind) {
    let Some(python) = python() else { return };
    let Some(server) = RedisServer::spawn_or_skip("python_interop") else { return };
    let storage = RedisStorage::connect(&server.url()).await.unwrap();
    let limiter = RateLimiter::dynamic(strategy, AnyStorage::new(storage)).unwrap();
    let limit = "5/minute".parse().unwrap();
    let mut peer = Peer::start(&python, &server.url(), strategy.name(), "5/minute");
    let ids = ["127.0.0.1", "shared"];
    let mut passed = Vec::new();
    for round in 0..6 {
        passed.push(("rust", round, limiter.hit(&limit, &ids, 1).await.unwrap()));
        passed.push(("python", round, peer.hit(&ids)));
    }
    let allowed: Vec<_> = passed.iter().filter(|(_, _, ok)| *ok).collect();
    assert_eq!(allowed.len(), 5, "{strategy}: exactly 5 of 12 alternating hits pass: {passed:?}");
    assert!(
        passed.iter().take(5).all(|(_, _, ok)| *ok),
        "{strategy}: the first five pass, from both sides: {passed:?}"
    );
}

#[tokio::test]
async fn fixed_window_is_shared_with_python() {
    alternate(StrategyKind::FixedWindow).await;
}

#[tokio::test]
async fn moving_window_is_shared_with_python() {
    alternate(StrategyKind::MovingWindow).await;
}

#[tokio::test]
async fn sliding_window_counter_is_shared_with_python() {
    alternate(StrategyKind::SlidingWindowCounter).await;
}

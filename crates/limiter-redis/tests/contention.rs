//! Two processes with many tasks each hit one key limited to 1000 through one
//! Redis: exactly 1000 pass in all for the fixed window, the moving window and
//! GCRA; the sliding window counter stays within its bound (it may never
//! allow more than the amount inside one window, and here all hits fall in
//! one window).
//!
//! The test binary runs itself twice as the workers (`contention_worker`,
//! which does nothing unless `LIMITER_CONTEND_URL` is set).

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::sync::Arc;

use limiter_core::{AnyStorage, RateLimiter, StrategyKind};
use limiter_redis::RedisStorage;
use limiter_testkit::server::RedisServer;

const TASKS: usize = 40;
const HITS_PER_TASK: usize = 40;

/// One worker process: TASKS tasks hitting the shared key; prints how many passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contention_worker() {
    let (Ok(url), Ok(strategy)) = (std::env::var("LIMITER_CONTEND_URL"), std::env::var("LIMITER_CONTEND_STRATEGY"))
    else {
        return;
    };
    let storage = RedisStorage::connect(&url).await.unwrap();
    let limiter = Arc::new(RateLimiter::dynamic(strategy.parse().unwrap(), AnyStorage::new(storage)).unwrap());
    let limit = "1000/hour".parse().unwrap();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let limiter = Arc::clone(&limiter);
            tokio::spawn(async move {
                let mut passed = 0usize;
                for _ in 0..HITS_PER_TASK {
                    passed += usize::from(limiter.hit(&limit, &["contended"], 1).await.unwrap());
                }
                passed
            })
        })
        .collect();
    let mut passed = 0;
    for task in tasks {
        passed += task.await.unwrap();
    }
    println!("PASSED {passed}");
}

fn run_workers(url: &str, strategy: StrategyKind) -> usize {
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..2)
        .map(|_| {
            Command::new(&exe)
                .args(["--exact", "contention_worker", "--nocapture", "--test-threads", "1"])
                .env("LIMITER_CONTEND_URL", url)
                .env("LIMITER_CONTEND_STRATEGY", strategy.name())
                .output_async()
        })
        .collect();
    children
        .into_iter()
        .map(|child| {
            let output = child.wait_with_output().expect("the worker finishes");
            let stdout = String::from_utf8_lossy(&output.stdout);
            stdout
                .lines()
                .find_map(|l| {
                    l.split_once("PASSED ").and_then(|(_, n)| n.split_whitespace().next()?.parse::<usize>().ok())
                })
                .unwrap_or_else(|| panic!("a worker printed no count:\n{stdout}"))
        })
        .sum()
}

trait SpawnPiped {
    fn output_async(&mut self) -> std::process::Child;
}

impl SpawnPiped for Command {
    fn output_async(&mut self) -> std::process::Child {
        self.stdout(std::process::Stdio::piped()).spawn().expect("the worker starts")
    }
}

fn contend(strategy: StrategyKind, exact: bool) {
    let Some(server) = RedisServer::spawn_or_skip("contention") else { return };
    let total = 2 * TASKS * HITS_PER_TASK;
    let passed = run_workers(&server.url(), strategy);
    if exact {
        assert_eq!(passed, 1000, "{strategy}: exactly 1000 of {total} hits from two processes");
    } else {
        assert!((1..=1000).contains(&passed), "{strategy}: {passed} of {total} passed, more than the amount");
    }
}

#[test]
fn fixed_window_is_exact_across_processes() {
    contend(StrategyKind::FixedWindow, true);
}

#[test]
fn moving_window_is_exact_across_processes() {
    contend(StrategyKind::MovingWindow, true);
}

#[test]
fn gcra_is_exact_across_processes() {
    contend(StrategyKind::Gcra, true);
}

#[test]
fn sliding_window_counter_stays_within_its_bound_across_processes() {
    contend(StrategyKind::SlidingWindowCounter, false);
}

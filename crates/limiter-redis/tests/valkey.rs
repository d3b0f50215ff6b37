//! The conformance suite on a real valkey-server (8.x), every strategy.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use limiter_redis::RedisStorage;
use limiter_testkit::server::ValkeyServer;
use limiter_testkit::{Env, conformance_tests};

macro_rules! on_valkey {
    ($module:ident, $strategy:expr) => {
        mod $module {
            use super::*;
            conformance_tests!(
                env: {
                    let Some(server) = ValkeyServer::spawn_or_skip(stringify!($module)) else { return };
                    let storage = RedisStorage::connect(&server.url()).await.unwrap();
                    Env::real(storage).keep_alive(server)
                },
                strategy: $strategy,
            );
        }
    };
}

on_valkey!(fixed_window, limiter_core::FixedWindow);
on_valkey!(moving_window, limiter_core::MovingWindow);
on_valkey!(sliding_window_counter, limiter_core::SlidingWindowCounter);
on_valkey!(gcra, limiter_core::Gcra);

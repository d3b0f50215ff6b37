//! The conformance suite on a MongoDB-compatible server (SecantusDB), not
//! mongod: one server per test, on the real clock (the documents' `expireAt`
//! and the hit times are wall-clock times).

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use limiter_mongodb::{MongoOptions, MongoStorage};
use limiter_testkit::server::MongoServer;
use limiter_testkit::{Env, RealClock, conformance_tests};

/// A storage on a fresh server, or `None` if `secantusd-py` is missing.
///
/// SecantusDB is a Python server that answers a few hundred updates a
/// second, so the concurrency cases (100 hits at once) need a call timeout
/// far above the default.
async fn env(test: &str) -> Option<Env<MongoStorage, RealClock>> {
    let server = MongoServer::spawn_or_skip(test)?;
    let mut options = MongoOptions::default();
    options.call_timeout = Duration::from_secs(20);
    options.connect_timeout = Duration::from_secs(5);
    let storage = MongoStorage::connect_with(&server.url(), options).await.unwrap();
    Some(Env::real(storage).keep_alive(server))
}

mod fixed_window {
    use super::*;
    conformance_tests!(
        env: {
            let Some(env) = env("MongoDB-compatible server (SecantusDB), not mongod: fixed window").await else { return };
            env
        },
        strategy: limiter_core::FixedWindow,
    );
}

mod moving_window {
    use super::*;
    conformance_tests!(
        env: {
            let Some(env) = env("MongoDB-compatible server (SecantusDB), not mongod: moving window").await else { return };
            env
        },
        strategy: limiter_core::MovingWindow,
    );
}

mod sliding_window_counter {
    use super::*;
    conformance_tests!(
        env: {
            let Some(env) = env("MongoDB-compatible server (SecantusDB), not mongod: sliding window counter").await else { return };
            env
        },
        strategy: limiter_core::SlidingWindowCounter,
    );
}

mod gcra {
    use super::*;
    conformance_tests!(
        env: {
            let Some(env) = env("MongoDB-compatible server (SecantusDB), not mongod: GCRA").await else { return };
            env
        },
        strategy: limiter_core::Gcra,
    );
}

//! Test support for limiter: the storage conformance suite, written once and
//! run against every storage.
//!
//! A storage crate runs the whole suite for each strategy it supports with
//! [`conformance_tests!`]: one `#[tokio::test]` per case, each on a fresh
//! [`Env`] (a storage, a clock, identifiers unique to the test).
//!
//! ```ignore
//! mod fixed_window {
//!     limiter_testkit::conformance_tests!(
//!         env: limiter_testkit::Env::manual(limiter_core::MemoryStorage::new()),
//!         strategy: limiter_core::FixedWindow,
//!     );
//! }
//! ```
//!
//! The `env` expression is evaluated inside each async test, so it may
//! `.await` (connect to a server) and `return` early (skip when a server
//! binary is missing). Storages that keep time on the server use
//! [`Env::real`]; the cases then move time by sleeping, with margins.

// Test support: a failed expectation must fail the test that called it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

pub mod cases;
mod env;
pub mod faults;
mod outage;
pub mod python;
mod request;
mod seed;
pub mod server;

pub use env::{Env, MANUAL_START, RealClock, TestClock};
pub use outage::SwitchableStorage;
pub use request::TestRequest;
pub use seed::seed_app;

#[doc(hidden)]
pub use tokio;

/// Generates one `#[tokio::test]` per conformance case for one strategy on
/// one storage. See the [crate docs](crate).
///
/// A storage whose sequential batches are not decided item by item, each
/// item atomic, under concurrency (documented as possibly over-counting,
/// never over-admitting: memcached, a Redis cluster) adds
/// `concurrent_batches: may_over_count`; its concurrent two-limit batches
/// are then checked never to pass more than the tighter limit allows,
/// rather than to pass exactly that many.
#[macro_export]
macro_rules! conformance_tests {
    (env: $env:expr, strategy: $strategy:expr $(,)?) => {
        $crate::conformance_tests!(@all $env, $strategy; exact_sequential_batches_under_concurrent_threads);
    };
    (env: $env:expr, strategy: $strategy:expr, concurrent_batches: may_over_count $(,)?) => {
        $crate::conformance_tests!(@all $env, $strategy; sequential_batches_never_over_admit_under_concurrent_threads);
    };
    (@all $env:expr, $strategy:expr; $($extra:ident),+) => {
        $crate::conformance_tests!(@cases $env, $strategy;
            allows_amount_then_refuses,
            keys_and_limits_are_independent,
            test_consumes_nothing,
            costs_are_counted,
            cost_above_amount_is_refused,
            zero_amount_refuses_everything,
            window_stats,
            resets_after_the_window,
            retry_at_is_honest,
            clear_forgets_one_counter,
            reset_forgets_everything,
            sequential_batches,
            all_or_nothing_batches,
            peek_batches,
            peeked_items_decide_without_consuming,
            exact_under_concurrent_tasks,
            exact_under_concurrent_threads,
            $($extra),+
        );
    };
    (@cases $env:expr, $strategy:expr; $($case:ident),+ $(,)?) => {$(
        #[$crate::tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            let env = $env;
            $crate::cases::$case(env, $strategy).await;
        }
    )+};
}

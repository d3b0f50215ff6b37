//! Shared helpers: a proptest configuration and a `block_on` for the memory
//! storage, whose futures are always ready.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use proptest::test_runner::{Config, FileFailurePersistence};

/// A proptest configuration running `cases` cases and keeping failures in
/// `<source>.regressions`, next to the test's source file.
pub(crate) fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..Config::default()
    }
}

/// Runs a future that must complete without waiting, as every future of the
/// memory storage does.
pub(crate) fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the memory storage never waits"),
    }
}

/// Where the tests' manual clocks start, in seconds since the epoch (a
/// recent date, as real timestamps are).
pub(crate) const START_SECS: u64 = 1_700_000_000;

/// Nanoseconds per second.
pub(crate) const NS: u64 = 1_000_000_000;

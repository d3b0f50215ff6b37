//! The environment a conformance case runs in: a storage, a clock the suite
//! can move, and identifiers no other test uses.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use limiter_core::{Clock, ManualClock, RateLimiter, Storage, Strategy, Supports, SystemClock, Timestamp};

/// A clock the suite can move forward.
pub trait TestClock: Clock + Clone {
    /// Whether time moves only through [`advance`](Self::advance), exactly.
    /// Cases check instants right before a boundary only on exact clocks.
    const EXACT: bool;

    /// Moves time forward by `by` (instantly, or by waiting on a real clock).
    fn advance(&self, by: Duration) -> impl Future<Output = ()> + Send;

    /// How far past a boundary to step so a real clock is surely past it
    /// (server-side TTLs, scheduling): zero on exact clocks.
    fn margin(&self) -> Duration {
        if Self::EXACT { Duration::ZERO } else { Duration::from_millis(250) }
    }
}

impl TestClock for ManualClock {
    const EXACT: bool = true;

    fn advance(&self, by: Duration) -> impl Future<Output = ()> + Send {
        ManualClock::advance(self, by);
        std::future::ready(())
    }
}

/// The system clock, moved by sleeping: for storages that keep time on the
/// server (TTLs), where a manual clock cannot move the server's time.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealClock;

impl Clock for RealClock {
    fn now(&self) -> Timestamp {
        SystemClock.now()
    }
}

impl TestClock for RealClock {
    const EXACT: bool = false;

    fn advance(&self, by: Duration) -> impl Future<Output = ()> + Send {
        tokio::time::sleep(by)
    }
}

/// Where manual-clock cases start: an arbitrary instant not aligned to any
/// window, so that window arithmetic is not tested only at round numbers.
pub const MANUAL_START: Timestamp = Timestamp::from_nanos(1_700_000_000_250_000_000);

/// A storage, a clock, and a prefix that keeps this test's keys apart from
/// every other test's on a shared server.
pub struct Env<St, C> {
    storage: St,
    clock: C,
    prefix: String,
    guards: Vec<Box<dyn Any + Send>>,
}

impl<St: fmt::Debug, C: fmt::Debug> fmt::Debug for Env<St, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Env")
            .field("storage", &self.storage)
            .field("clock", &self.clock)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl<St: Storage> Env<St, ManualClock> {
    /// `storage` on a [`ManualClock`] starting at [`MANUAL_START`].
    pub fn manual(storage: St) -> Self {
        Env::new(storage, ManualClock::new(MANUAL_START))
    }
}

impl<St: Storage> Env<St, RealClock> {
    /// `storage` on the real clock.
    pub fn real(storage: St) -> Self {
        Env::new(storage, RealClock)
    }
}

impl<St: Storage, C: TestClock> Env<St, C> {
    /// `storage` on `clock`.
    pub fn new(storage: St, clock: C) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("t{}-{}-{n}", std::process::id(), SystemClock.now().as_nanos());
        Env { storage, clock, prefix, guards: Vec::new() }
    }

    /// Keeps `guard` (a spawned server, say) alive as long as the environment.
    #[must_use]
    pub fn keep_alive(mut self, guard: impl Any + Send) -> Self {
        self.guards.push(Box::new(guard));
        self
    }

    /// The storage.
    pub fn storage(&self) -> &St {
        &self.storage
    }

    /// The clock.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// An identifier unique to this environment.
    pub fn id(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    /// A limiter running `strategy` on this storage and clock.
    pub fn limiter<S: Strategy>(&self, strategy: S) -> RateLimiter<S, St, C>
    where
        St: Supports<S> + Clone,
    {
        RateLimiter::new(strategy, self.storage.clone()).with_clock(self.clock.clone())
    }
}

//! [`RateLimiter`]: a strategy run on a storage with a clock, with the verbs
//! of `limits`' strategies (`hit`, `test`, `window_stats`, `clear`).

use crate::MemoryStorage;
use crate::clock::{Clock, SystemClock};
use crate::error::{ConfigError, StorageError};
use crate::limit::RateLimit;
use crate::storage::memory::MemoryStrategy;
use crate::storage::{AnyStorage, Batch, Item, Key, LimitState, Mode, Outcome, Supports, WindowStats};
use crate::strategy::{Strategy, StrategyKind};

/// A counting strategy on a storage.
///
/// Typed use checks at compile time that the storage can run the strategy:
///
/// ```
/// use limiter_core::{Gcra, MemoryStorage, RateLimiter};
/// let limiter = RateLimiter::new(Gcra, MemoryStorage::new());
/// # let _ = limiter;
/// ```
///
/// Configuration by name checks it when the limiter is built, with
/// [`RateLimiter::dynamic`].
#[derive(Clone, Debug)]
pub struct RateLimiter<S, St, C = SystemClock> {
    strategy: S,
    storage: St,
    clock: C,
}

impl<S: Strategy, St: Supports<S>> RateLimiter<S, St> {
    /// Runs `strategy` on `storage`, on the system clock.
    pub fn new(strategy: S, storage: St) -> Self {
        RateLimiter { strategy, storage, clock: SystemClock }
    }
}

impl RateLimiter<StrategyKind, AnyStorage> {
    /// Runs a strategy chosen at runtime on a storage chosen at runtime.
    ///
    /// # Errors
    ///
    /// [`ConfigError::UnsupportedStrategy`] if the storage cannot run it.
    ///
    /// ```
    /// use limiter_core::{AnyStorage, MemoryStorage, RateLimiter};
    ///
    /// let strategy = "sliding-window-counter".parse()?;
    /// let limiter = RateLimiter::dynamic(strategy, AnyStorage::new(MemoryStorage::new()))?;
    /// # let _ = limiter;
    /// # Ok::<(), limiter_core::ConfigError>(())
    /// ```
    pub fn dynamic(strategy: StrategyKind, storage: AnyStorage) -> Result<Self, ConfigError> {
        storage.ensure_supports(strategy)?;
        Ok(RateLimiter { strategy, storage, clock: SystemClock })
    }
}

impl<S: Strategy, St: Supports<S>, C: Clock> RateLimiter<S, St, C> {
    /// The same limiter on another clock (a [`ManualClock`](crate::ManualClock) in tests).
    pub fn with_clock<C2: Clock>(self, clock: C2) -> RateLimiter<S, St, C2> {
        RateLimiter { strategy: self.strategy, storage: self.storage, clock }
    }

    /// The strategy.
    pub fn strategy(&self) -> S {
        self.strategy
    }

    /// The storage.
    pub fn storage(&self) -> &St {
        &self.storage
    }

    /// The clock.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// Decides several limits for one request in one storage call.
    ///
    /// # Errors
    ///
    /// [`StorageError`] if the storage fails; a refusal is an [`Outcome`].
    pub async fn decide(&self, items: &[Item<'_>], mode: Mode) -> Result<Outcome, StorageError> {
        let batch = Batch { items, mode, now: self.clock.now() };
        self.storage.decide(self.strategy, &batch).await
    }

    async fn one(
        &self,
        limit: &RateLimit,
        identifiers: &[&str],
        cost: u64,
        mode: Mode,
    ) -> Result<Outcome, StorageError> {
        let items = [Item::new(*limit, Key::new(identifiers)).with_cost(cost)];
        let batch = Batch { items: &items, mode, now: self.clock.now() };
        self.storage.decide(self.strategy, &batch).await
    }
    /// Consumes `cost` of `limit` for `identifiers` if it fits; returns
    /// whether it did (`limits`' `hit`).
    ///
    /// # Errors
    ///
    /// [`StorageError`] if the storage fails.
    pub async fn hit(&self, limit: &RateLimit, identifiers: &[&str], cost: u64) -> Result<bool, StorageError> {
        let outcome = self.one(limit, identifiers, cost, Mode::Sequential { stop_at_first_breach: true }).await?;
        Ok(outcome.allowed())
    }

    /// Whether `cost` would fit now, consuming nothing (`limits`' `test`).
    ///
    /// # Errors
    ///
    /// [`StorageError`] if the storage fails.
    pub async fn test(&self, limit: &RateLimit, identifiers: &[&str], cost: u64) -> Result<bool, StorageError> {
        Ok(self.one(limit, identifiers, cost, Mode::Peek).await?.allowed())
    }

    /// What remains of `limit` for `identifiers` and when it resets.
    ///
    /// # Errors
    ///
    /// [`StorageError`] if the storage fails.
    pub async fn window_stats(&self, limit: &RateLimit, identifiers: &[&str]) -> Result<WindowStats, StorageError> {
        let outcome = self.one(limit, identifiers, 1, Mode::Peek).await?;
        let now = self.clock.now();
        Ok(outcome.get(0).map_or(WindowStats { remaining: limit.amount(), reset_at: now }, |s| s.stats()))
    }

    /// Forgets the counter of `limit` for `identifiers`.
    ///
    /// # Errors
    ///
    /// [`StorageError`] if the storage fails.
    pub async fn clear(&self, limit: &RateLimit, identifiers: &[&str]) -> Result<(), StorageError> {
        self.storage.clear(self.strategy, limit, Key::new(identifiers)).await
    }
}

/// The memory storage decides on the spot: these skip the futures, for
/// rate limiting inside one process (what `governor` is used for).
impl<S: MemoryStrategy, C: Clock> RateLimiter<S, MemoryStorage, C> {
    fn one_sync(&self, limit: &RateLimit, identifiers: &[&str], cost: u64, peek: bool) -> LimitState {
        let item = Item::new(*limit, Key::new(identifiers)).with_cost(cost);
        self.storage.decide_one(self.strategy, &item, self.clock.now(), peek)
    }

    /// [`hit`](Self::hit), synchronously, with the limit's state after it
    /// (remaining, reset, and when to retry if refused).
    ///
    /// ```
    /// use limiter_core::{Gcra, MemoryStorage, RateLimiter};
    ///
    /// let limiter = RateLimiter::new(Gcra, MemoryStorage::new());
    /// let limit = "2/second".parse()?;
    /// assert!(limiter.hit_sync(&limit, &["10.0.0.1"], 1).allowed);
    /// assert_eq!(limiter.hit_sync(&limit, &["10.0.0.1"], 1).remaining, 0);
    /// assert!(!limiter.hit_sync(&limit, &["10.0.0.1"], 1).allowed);
    /// # Ok::<(), limiter_core::ParseError>(())
    /// ```
    pub fn hit_sync(&self, limit: &RateLimit, identifiers: &[&str], cost: u64) -> LimitState {
        self.one_sync(limit, identifiers, cost, false)
    }

    /// [`test`](Self::test), synchronously.
    pub fn test_sync(&self, limit: &RateLimit, identifiers: &[&str], cost: u64) -> LimitState {
        self.one_sync(limit, identifiers, cost, true)
    }

    /// [`decide`](Self::decide), synchronously.
    pub fn decide_sync(&self, items: &[Item<'_>], mode: Mode) -> Outcome {
        let batch = Batch { items, mode, now: self.clock.now() };
        self.storage.decide_blocking(self.strategy, &batch)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{FixedWindow, Gcra, ManualClock, MovingWindow, SlidingWindowCounter, Timestamp};

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        match f.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => unreachable!("the memory storage never waits"),
        }
    }

    /// The synchronous calls answer exactly what the async ones answer.
    fn same_answers<S: MemoryStrategy>(strategy: S) {
        let clock = ManualClock::new(Timestamp::from_secs(1_700_000_000));
        let sync = RateLimiter::new(strategy, MemoryStorage::new()).with_clock(clock.clone());
        let asynchronous = RateLimiter::new(strategy, MemoryStorage::new()).with_clock(clock.clone());
        let limit: RateLimit = "3 per 2 seconds".parse().unwrap();
        for step in 0u64..40 {
            let cost = step % 3;
            let state = sync.hit_sync(&limit, &["k"], cost);
            let items = [Item::new(limit, Key::new(&["k"])).with_cost(cost)];
            let outcome = block_on(asynchronous.decide(&items, Mode::Sequential { stop_at_first_breach: true }));
            assert_eq!(Some(&state), outcome.unwrap().get(0), "{strategy:?} step {step}");
            let peek = sync.test_sync(&limit, &["k"], 1);
            assert_eq!(peek.allowed, block_on(asynchronous.test(&limit, &["k"], 1)).unwrap());
            clock.advance(Duration::from_millis(170 * (step % 4)));
        }
    }

    #[test]
    fn sync_and_async_agree() {
        same_answers(FixedWindow);
        same_answers(MovingWindow);
        same_answers(SlidingWindowCounter);
        same_answers(Gcra);
    }
}

//! [`RateLimiter`]: a strategy run on a storage with a clock, with the verbs
//! of `limits`' strategies (`hit`, `test`, `window_stats`, `clear`).

use crate::clock::{Clock, SystemClock};
use crate::error::{ConfigError, StorageError};
use crate::limit::RateLimit;
use crate::storage::{AnyStorage, Batch, Item, Key, Mode, Outcome, Supports, WindowStats};
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
        self.decide(&items, mode).await
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

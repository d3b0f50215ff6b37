//! A real memory storage with an outage switch, to test failure policies
//! without a server. (Server-backed fault tests kill real servers.)

use std::future::{Future, ready};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use limiter_core::storage::{Batch, Key, Outcome, Storage, Supports};
use limiter_core::{FixedWindow, MemoryStorage, RateLimit, StorageError, StorageErrorKind};

/// A [`MemoryStorage`] whose calls fail as `unavailable` while it is down.
#[derive(Clone, Debug, Default)]
pub struct SwitchableStorage {
    memory: MemoryStorage,
    down: Arc<AtomicBool>,
    calls: Arc<AtomicUsize>,
}

impl SwitchableStorage {
    /// An up storage.
    pub fn new() -> Self {
        SwitchableStorage::default()
    }

    /// Takes the storage down (`true`) or brings it back.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::Release);
    }

    /// How many calls reached the storage (decisions, clears, checks).
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::Acquire)
    }

    fn gate(&self) -> Result<(), StorageError> {
        self.calls.fetch_add(1, Ordering::AcqRel);
        if self.down.load(Ordering::Acquire) {
            Err(StorageError::new(StorageErrorKind::Unavailable, "switchable", "switched off by the test"))
        } else {
            Ok(())
        }
    }
}

impl Storage for SwitchableStorage {
    fn name(&self) -> &'static str {
        "switchable"
    }

    fn check(&self) -> impl Future<Output = Result<(), StorageError>> + Send {
        ready(self.gate())
    }

    fn reset(&self) -> impl Future<Output = Result<(), StorageError>> + Send {
        let gate = self.gate();
        let memory = self.memory.clone();
        async move {
            gate?;
            memory.reset().await
        }
    }
}

impl Supports<FixedWindow> for SwitchableStorage {
    fn decide<'a>(
        &'a self,
        strategy: FixedWindow,
        batch: &'a Batch<'a>,
    ) -> impl Future<Output = Result<Outcome, StorageError>> + Send + 'a {
        let gate = self.gate();
        async move {
            gate?;
            self.memory.decide(strategy, batch).await
        }
    }

    fn clear<'a>(
        &'a self,
        strategy: FixedWindow,
        limit: &'a RateLimit,
        key: Key<'a>,
    ) -> impl Future<Output = Result<(), StorageError>> + Send + 'a {
        let gate = self.gate();
        async move {
            gate?;
            self.memory.clear(strategy, limit, key).await
        }
    }
}

limiter_core::dyn_storage!(SwitchableStorage: FixedWindow);

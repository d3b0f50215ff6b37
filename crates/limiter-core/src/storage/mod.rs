//! The storage contract, and the memory storage.
//!
//! # Implementing a storage
//!
//! A storage implements [`Storage`] (name, health check, reset) and, for each
//! strategy it can run **atomically**, [`Supports<S>`](Supports): that is the
//! capability. A storage that cannot run a strategy simply lacks the impl, so
//! `RateLimiter::new(MovingWindow, memcached)` does not compile; for strategies
//! chosen by name, [`DynStorage::strategies`] lists them and
//! [`RateLimiter::dynamic`](crate::RateLimiter::dynamic) refuses the others
//! when the limiter is built.
//!
//! A storage that runs only the fixed window, delegating to the memory
//! storage for the sake of the example:
//!
//! ```
//! use limiter_core::storage::{Batch, Key, Outcome, Storage, Supports};
//! use limiter_core::{FixedWindow, MemoryStorage, RateLimit, RateLimiter, StorageError};
//! use std::future::Future;
//!
//! struct FixedOnly(MemoryStorage);
//!
//! impl Storage for FixedOnly {
//!     fn name(&self) -> &'static str { "fixed-only" }
//!     fn check(&self) -> impl Future<Output = Result<(), StorageError>> + Send { self.0.check() }
//!     fn reset(&self) -> impl Future<Output = Result<(), StorageError>> + Send { self.0.reset() }
//! }
//!
//! impl Supports<FixedWindow> for FixedOnly {
//!     fn decide<'a>(&'a self, s: FixedWindow, batch: &'a Batch<'a>)
//!         -> impl Future<Output = Result<Outcome, StorageError>> + Send + 'a { self.0.decide(s, batch) }
//!     fn clear<'a>(&'a self, s: FixedWindow, limit: &'a RateLimit, key: Key<'a>)
//!         -> impl Future<Output = Result<(), StorageError>> + Send + 'a { self.0.clear(s, limit, key) }
//! }
//!
//! limiter_core::dyn_storage!(FixedOnly: FixedWindow);
//!
//! let limiter = RateLimiter::new(FixedWindow, FixedOnly(MemoryStorage::new()));
//! # let _ = limiter;
//! ```
//!
//! Asking it for the moving window does not compile (`the trait bound
//! FixedOnly: Supports<MovingWindow> is not satisfied`):
//!
//! ```compile_fail,E0277
//! # use limiter_core::storage::{Batch, Key, Outcome, Storage, Supports};
//! # use limiter_core::{FixedWindow, MemoryStorage, RateLimit, RateLimiter, StorageError};
//! # use std::future::Future;
//! # struct FixedOnly(MemoryStorage);
//! # impl Storage for FixedOnly {
//! #     fn name(&self) -> &'static str { "fixed-only" }
//! #     fn check(&self) -> impl Future<Output = Result<(), StorageError>> + Send { self.0.check() }
//! #     fn reset(&self) -> impl Future<Output = Result<(), StorageError>> + Send { self.0.reset() }
//! # }
//! # impl Supports<FixedWindow> for FixedOnly {
//! #     fn decide<'a>(&'a self, s: FixedWindow, batch: &'a Batch<'a>)
//! #         -> impl Future<Output = Result<Outcome, StorageError>> + Send + 'a { self.0.decide(s, batch) }
//! #     fn clear<'a>(&'a self, s: FixedWindow, limit: &'a RateLimit, key: Key<'a>)
//! #         -> impl Future<Output = Result<(), StorageError>> + Send + 'a { self.0.clear(s, limit, key) }
//! # }
//! use limiter_core::MovingWindow;
//! let limiter = RateLimiter::new(MovingWindow, FixedOnly(MemoryStorage::new()));
//! ```
//!
//! and chosen by name it is refused when the limiter is built:
//!
//! ```
//! # use limiter_core::storage::{Batch, Key, Outcome, Storage, Supports};
//! # use limiter_core::{FixedWindow, MemoryStorage, RateLimit, RateLimiter, StorageError};
//! # use std::future::Future;
//! # struct FixedOnly(MemoryStorage);
//! # impl Storage for FixedOnly {
//! #     fn name(&self) -> &'static str { "fixed-only" }
//! #     fn check(&self) -> impl Future<Output = Result<(), StorageError>> + Send { self.0.check() }
//! #     fn reset(&self) -> impl Future<Output = Result<(), StorageError>> + Send { self.0.reset() }
//! # }
//! # impl Supports<FixedWindow> for FixedOnly {
//! #     fn decide<'a>(&'a self, s: FixedWindow, batch: &'a Batch<'a>)
//! #         -> impl Future<Output = Result<Outcome, StorageError>> + Send + 'a { self.0.decide(s, batch) }
//! #     fn clear<'a>(&'a self, s: FixedWindow, limit: &'a RateLimit, key: Key<'a>)
//! #         -> impl Future<Output = Result<(), StorageError>> + Send + 'a { self.0.clear(s, limit, key) }
//! # }
//! # limiter_core::dyn_storage!(FixedOnly: FixedWindow);
//! use limiter_core::{AnyStorage, ConfigError, StrategyKind};
//!
//! let storage = AnyStorage::new(FixedOnly(MemoryStorage::new()));
//! let err = RateLimiter::dynamic("moving-window".parse()?, storage.clone()).unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "the fixed-only storage cannot run the moving-window strategy: choose one of fixed-window or another storage"
//! );
//! assert!(RateLimiter::dynamic(StrategyKind::FixedWindow, storage).is_ok());
//! # Ok::<(), ConfigError>(())
//! ```
//!
//! [`Supports::decide`] receives a whole [`Batch`]: every limit that applies to
//! one request. It must decide them **in one round trip** and answer, for each
//! item, the [`LimitState`] the response headers need (allowed, remaining,
//! reset, retry). For a server that means one script:
//!
//! - **Redis / Valkey**: one `EVALSHA` of a Lua script per strategy taking all
//!   the batch's keys in `KEYS` and `amount, window, cost` triples in `ARGV`,
//!   applying [`Mode`] on the server and returning the states as an array; a
//!   `NOSCRIPT` reply is answered by loading the script and retrying once. On a
//!   cluster, items are grouped by hash slot and the groups sent in parallel
//!   (atomicity then holds per slot).
//! - **MongoDB**: one `bulkWrite`/pipeline update per batch.
//! - **Memcached**: no scripts; `gets`/`cas` loops, with bounded retries.
//!
//! The keys, value types and TTLs must be exactly those of Python's `limits`
//! (see [`RateLimit::key_for`](crate::RateLimit::key_for)) so that both can
//! share one server. Errors are [`StorageError`]s with a
//! [`kind`](crate::StorageErrorKind) the failure policy can act on; a refused
//! request is never an error.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::error::{ConfigError, StorageError, StorageErrorKind};
use crate::limit::RateLimit;
use crate::strategy::{Strategy, StrategyKind};

mod batch;
pub mod memory;

pub use batch::{Action, Batch, Item, Key, LimitState, Mode, Outcome, WindowStats};

/// A boxed future, for the object-safe [`DynStorage`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What every storage provides, whatever the strategy.
pub trait Storage: Send + Sync + 'static {
    /// A stable name for errors, logs and metrics (`"memory"`, `"redis"`, ...).
    fn name(&self) -> &'static str;

    /// Checks that the storage is reachable (Redis `PING`).
    fn check(&self) -> impl Future<Output = Result<(), StorageError>> + Send;

    /// Removes every counter this storage holds for the limiter.
    fn reset(&self) -> impl Future<Output = Result<(), StorageError>> + Send;
}

/// The capability to run strategy `S` atomically.
///
/// There are two required methods; everything else in this crate is built on
/// them.
pub trait Supports<S: Strategy>: Storage {
    /// Decides every item of `batch` at once, in one round trip, and returns
    /// one state per item, in order.
    fn decide<'a>(
        &'a self,
        strategy: S,
        batch: &'a Batch<'a>,
    ) -> impl Future<Output = Result<Outcome, StorageError>> + Send + 'a;

    /// Forgets the counter of `limit` for `key`.
    fn clear<'a>(
        &'a self,
        strategy: S,
        limit: &'a RateLimit,
        key: Key<'a>,
    ) -> impl Future<Output = Result<(), StorageError>> + Send + 'a;
}

/// A storage behind a pointer, for configuration chosen at runtime (a storage
/// URI and a strategy name).
///
/// Implemented for every storage that implements the typed traits through
/// [`dyn_storage!`](crate::dyn_storage); wrap one in [`AnyStorage`] to use it.
pub trait DynStorage: Send + Sync + 'static {
    /// See [`Storage::name`].
    fn name(&self) -> &'static str;
    /// The strategies this storage can run.
    fn strategies(&self) -> &'static [StrategyKind];
    /// See [`Supports::decide`]; an unsupported strategy is a
    /// [`StorageErrorKind::Unsupported`] error.
    fn decide_dyn<'a>(
        &'a self,
        strategy: StrategyKind,
        batch: &'a Batch<'a>,
    ) -> BoxFuture<'a, Result<Outcome, StorageError>>;
    /// See [`Supports::clear`].
    fn clear_dyn<'a>(
        &'a self,
        strategy: StrategyKind,
        limit: &'a RateLimit,
        key: Key<'a>,
    ) -> BoxFuture<'a, Result<(), StorageError>>;
    /// See [`Storage::check`].
    fn check_dyn(&self) -> BoxFuture<'_, Result<(), StorageError>>;
    /// See [`Storage::reset`].
    fn reset_dyn(&self) -> BoxFuture<'_, Result<(), StorageError>>;
    /// Whether every future this storage returns is ready at its first
    /// poll (the memory storage): callers may then decide a request without
    /// boxing or storing any future. Default: `false`.
    fn immediate(&self) -> bool {
        false
    }
    /// Decides `batch` at once, without boxing a future, if this storage
    /// can; `None` (the default) means "call
    /// [`decide_dyn`](Self::decide_dyn)", and nothing has been done yet.
    fn decide_now<'a>(&'a self, strategy: StrategyKind, batch: &'a Batch<'a>) -> Option<Result<Outcome, StorageError>> {
        let _ = (strategy, batch);
        None
    }
}

/// Polls `future` once, with a waker that does nothing: its output if it
/// was ready. For storages declared `immediate` in
/// [`dyn_storage!`](crate::dyn_storage), whose futures always are.
#[doc(hidden)]
pub fn poll_once<F: Future>(future: F) -> Option<F::Output> {
    let future = std::pin::pin!(future);
    match future.poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
        std::task::Poll::Ready(output) => Some(output),
        std::task::Poll::Pending => None,
    }
}

/// What an immediate storage answers if, against its promise, it did not
/// answer at once: a storage failure, for the failure policy to handle.
#[doc(hidden)]
pub fn not_immediate(storage: &'static str) -> StorageError {
    StorageError::new(StorageErrorKind::Other, storage, "declared immediate but did not answer at once".to_owned())
}

/// Implements [`DynStorage`] for a storage type, given the strategies it
/// supports: `dyn_storage!(MyStorage: FixedWindow, SlidingWindowCounter);`
///
/// A storage whose futures are all ready at their first poll (it never
/// waits on I/O) may say so with `; immediate` at the end:
/// `dyn_storage!(MyStorage: FixedWindow; immediate);`. Its decisions are
/// then taken without boxing a future (see [`DynStorage::immediate`]).
#[macro_export]
macro_rules! dyn_storage {
    ($ty:ty : $($strategy:ident),+ $(,)?) => {
        $crate::dyn_storage!(@impl $ty; $($strategy),+; {});
    };
    ($ty:ty : $($strategy:ident),+ ; immediate) => {
        $crate::dyn_storage!(@impl $ty; $($strategy),+; {
            fn immediate(&self) -> bool {
                true
            }
            fn decide_now<'a>(
                &'a self,
                strategy: $crate::StrategyKind,
                batch: &'a $crate::storage::Batch<'a>,
            ) -> ::std::option::Option<Result<$crate::storage::Outcome, $crate::StorageError>> {
                let answer = match strategy {
                    $($crate::StrategyKind::$strategy => $crate::storage::poll_once(
                        <$ty as $crate::storage::Supports<$crate::$strategy>>::decide(
                            self, $crate::$strategy, batch,
                        ),
                    ),)+
                    #[allow(unreachable_patterns)]
                    other => ::std::option::Option::Some(Err(
                        $crate::storage::unsupported($crate::storage::Storage::name(self), other),
                    )),
                };
                ::std::option::Option::Some(answer.unwrap_or_else(|| {
                    Err($crate::storage::not_immediate($crate::storage::Storage::name(self)))
                }))
            }
        });
    };
    (@impl $ty:ty; $($strategy:ident),+; { $($extra:tt)* }) => {
        impl $crate::storage::DynStorage for $ty {
            $($extra)*
            fn name(&self) -> &'static str {
                $crate::storage::Storage::name(self)
            }
            fn strategies(&self) -> &'static [$crate::StrategyKind] {
                &[$($crate::StrategyKind::$strategy),+]
            }
            fn decide_dyn<'a>(
                &'a self,
                strategy: $crate::StrategyKind,
                batch: &'a $crate::storage::Batch<'a>,
            ) -> $crate::storage::BoxFuture<'a, Result<$crate::storage::Outcome, $crate::StorageError>> {
                match strategy {
                    $($crate::StrategyKind::$strategy => ::std::boxed::Box::pin(
                        <$ty as $crate::storage::Supports<$crate::$strategy>>::decide(
                            self, $crate::$strategy, batch,
                        ),
                    ),)+
                    #[allow(unreachable_patterns)]
                    other => ::std::boxed::Box::pin(::std::future::ready(Err(
                        $crate::storage::unsupported($crate::storage::Storage::name(self), other),
                    ))),
                }
            }
            fn clear_dyn<'a>(
                &'a self,
                strategy: $crate::StrategyKind,
                limit: &'a $crate::RateLimit,
                key: $crate::storage::Key<'a>,
            ) -> $crate::storage::BoxFuture<'a, Result<(), $crate::StorageError>> {
                match strategy {
                    $($crate::StrategyKind::$strategy => ::std::boxed::Box::pin(
                        <$ty as $crate::storage::Supports<$crate::$strategy>>::clear(
                            self, $crate::$strategy, limit, key,
                        ),
                    ),)+
                    #[allow(unreachable_patterns)]
                    other => ::std::boxed::Box::pin(::std::future::ready(Err(
                        $crate::storage::unsupported($crate::storage::Storage::name(self), other),
                    ))),
                }
            }
            fn check_dyn(&self) -> $crate::storage::BoxFuture<'_, Result<(), $crate::StorageError>> {
                ::std::boxed::Box::pin($crate::storage::Storage::check(self))
            }
            fn reset_dyn(&self) -> $crate::storage::BoxFuture<'_, Result<(), $crate::StorageError>> {
                ::std::boxed::Box::pin($crate::storage::Storage::reset(self))
            }
        }
    };
}

/// The error a storage returns for a strategy it cannot run.
#[doc(hidden)]
pub fn unsupported(storage: &'static str, strategy: StrategyKind) -> StorageError {
    StorageError::new(
        StorageErrorKind::Unsupported,
        storage,
        format!("cannot run the {strategy} strategy; the limiter should have refused this configuration"),
    )
}

/// Any storage, chosen at runtime; runs the strategy named by a
/// [`StrategyKind`].
#[derive(Clone)]
pub struct AnyStorage(Arc<dyn DynStorage>);

impl AnyStorage {
    /// Wraps a storage.
    pub fn new(storage: impl DynStorage) -> Self {
        AnyStorage(Arc::new(storage))
    }

    /// Wraps a shared storage.
    pub fn from_arc(storage: Arc<dyn DynStorage>) -> Self {
        AnyStorage(storage)
    }

    /// The strategies the storage can run.
    pub fn strategies(&self) -> &'static [StrategyKind] {
        self.0.strategies()
    }

    /// Whether the storage answers every call at once (the memory storage;
    /// see [`DynStorage::immediate`]).
    pub fn immediate(&self) -> bool {
        self.0.immediate()
    }

    /// The answer of a storage that answers at once, without the future
    /// [`Supports::decide`] wraps it in (a storage without
    /// [`DynStorage::decide_now`] has its future polled once); `None` if it
    /// did not answer.
    pub(crate) fn decide_now<'a>(
        &'a self,
        strategy: StrategyKind,
        batch: &'a Batch<'a>,
    ) -> Option<Result<Outcome, StorageError>> {
        self.0.decide_now(strategy, batch).or_else(|| poll_once(self.0.decide_dyn(strategy, batch)))
    }

    /// Checks that the storage can run `strategy`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::UnsupportedStrategy`] naming the strategies it can run.
    pub fn ensure_supports(&self, strategy: StrategyKind) -> Result<(), ConfigError> {
        if self.strategies().contains(&strategy) {
            Ok(())
        } else {
            Err(ConfigError::UnsupportedStrategy { storage: self.0.name(), strategy, supported: self.strategies() })
        }
    }
}

impl fmt::Debug for AnyStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnyStorage").field("name", &self.0.name()).finish()
    }
}

impl Storage for AnyStorage {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn check(&self) -> impl Future<Output = Result<(), StorageError>> + Send {
        self.0.check_dyn()
    }

    fn reset(&self) -> impl Future<Output = Result<(), StorageError>> + Send {
        self.0.reset_dyn()
    }
}

impl Supports<StrategyKind> for AnyStorage {
    fn decide<'a>(
        &'a self,
        strategy: StrategyKind,
        batch: &'a Batch<'a>,
    ) -> impl Future<Output = Result<Outcome, StorageError>> + Send + 'a {
        match self.0.decide_now(strategy, batch) {
            Some(answer) => MaybeBoxed::Ready(Some(answer)),
            None => MaybeBoxed::Boxed(self.0.decide_dyn(strategy, batch)),
        }
    }

    fn clear<'a>(
        &'a self,
        strategy: StrategyKind,
        limit: &'a RateLimit,
        key: Key<'a>,
    ) -> impl Future<Output = Result<(), StorageError>> + Send + 'a {
        self.0.clear_dyn(strategy, limit, key)
    }
}

impl<T: Storage> Storage for Arc<T> {
    fn name(&self) -> &'static str {
        (**self).name()
    }

    fn check(&self) -> impl Future<Output = Result<(), StorageError>> + Send {
        (**self).check()
    }

    fn reset(&self) -> impl Future<Output = Result<(), StorageError>> + Send {
        (**self).reset()
    }
}

impl<S: Strategy, T: Supports<S>> Supports<S> for Arc<T> {
    fn decide<'a>(
        &'a self,
        strategy: S,
        batch: &'a Batch<'a>,
    ) -> impl Future<Output = Result<Outcome, StorageError>> + Send + 'a {
        (**self).decide(strategy, batch)
    }

    fn clear<'a>(
        &'a self,
        strategy: S,
        limit: &'a RateLimit,
        key: Key<'a>,
    ) -> impl Future<Output = Result<(), StorageError>> + Send + 'a {
        (**self).clear(strategy, limit, key)
    }
}

/// An answer already there, or a boxed future: what [`AnyStorage`] returns,
/// so that an immediate storage's answer needs no allocation.
enum MaybeBoxed<'a, T> {
    Ready(Option<T>),
    Boxed(BoxFuture<'a, T>),
}

// The answer is moved out, never pinned.
impl<T> Unpin for MaybeBoxed<'_, T> {}

impl<T> Future for MaybeBoxed<'_, T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<T> {
        match self.get_mut() {
            MaybeBoxed::Ready(answer) => match answer.take() {
                Some(answer) => std::task::Poll::Ready(answer),
                None => std::task::Poll::Pending,
            },
            MaybeBoxed::Boxed(future) => future.as_mut().poll(cx),
        }
    }
}

//! What happens when the storage fails: fail open, fail closed, or count in
//! memory until it is back.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use super::limiter::Sleeper;
use crate::clock::Timestamp;
use crate::error::{StorageError, StorageErrorKind};

/// What a limiter does when its storage fails or times out. It never
/// answers 500.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailurePolicy {
    /// Refuse the request with a 503 and this `Retry-After` (the default:
    /// Flask-Limiter raises, which Flask answers with a 500).
    FailClosed {
        /// How long clients are told to wait.
        retry_after: Duration,
    },
    /// Let the request through unlimited, and log (`RATELIMIT_SWALLOW_ERRORS`).
    FailOpen,
    /// Count in a memory storage while the storage is down, probing it after
    /// 1, 2, 4, 8, 16 and 32 seconds (then from 1 again) and switching back
    /// once it answers (`RATELIMIT_IN_MEMORY_FALLBACK_ENABLED`).
    InMemoryFallback,
}

impl Default for FailurePolicy {
    fn default() -> Self {
        FailurePolicy::FailClosed { retry_after: Duration::from_secs(1) }
    }
}

/// Flask-Limiter's `MAX_BACKEND_CHECKS`: back-off exponents 0..=5.
const MAX_BACKOFF_EXPONENT: u32 = 5;

/// Whether the storage is down, and when to probe it next.
#[derive(Debug)]
pub(crate) struct Health {
    down: AtomicBool,
    probes: AtomicU32,
    next_probe: AtomicU64,
}

impl Health {
    pub(crate) fn new() -> Self {
        Health { down: AtomicBool::new(false), probes: AtomicU32::new(0), next_probe: AtomicU64::new(0) }
    }

    pub(crate) fn use_fallback(&self, policy: &FailurePolicy) -> bool {
        *policy == FailurePolicy::InMemoryFallback && self.down.load(Ordering::Acquire)
    }

    pub(crate) fn failed(&self, now: Timestamp) {
        if !self.down.swap(true, Ordering::AcqRel) {
            self.probes.store(0, Ordering::Release);
            self.schedule(now);
        }
    }

    /// Whether this caller should probe now; only one caller wins each slot.
    pub(crate) fn probe_due(&self, now: Timestamp) -> bool {
        let due = self.next_probe.load(Ordering::Acquire);
        now.as_nanos() >= due
            && self.next_probe.compare_exchange(due, u64::MAX, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    pub(crate) fn probed(&self, healthy: bool, now: Timestamp) {
        if healthy {
            tracing::info!("rate limit storage is back: leaving the in-memory fallback");
            self.down.store(false, Ordering::Release);
            self.next_probe.store(0, Ordering::Release);
        } else {
            self.schedule(now);
        }
    }

    fn schedule(&self, now: Timestamp) {
        let n = self.probes.fetch_add(1, Ordering::AcqRel);
        let exponent = if n > MAX_BACKOFF_EXPONENT {
            self.probes.store(1, Ordering::Release);
            0
        } else {
            n
        };
        let wait = Duration::from_secs(1 << exponent);
        self.next_probe.store(now.saturating_add(wait).as_nanos(), Ordering::Release);
    }
}

/// Runs `call`, failing it as a timeout if `timeout` passes first.
pub(crate) async fn with_timeout<T>(
    call: impl Future<Output = Result<T, StorageError>>,
    timeout: Option<&(Duration, Sleeper)>,
) -> Result<T, StorageError> {
    let Some((limit, sleep)) = timeout else { return call.await };
    let mut call = pin!(call);
    let mut timer = sleep(*limit);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(result) = call.as_mut().poll(cx) {
            return Poll::Ready(result);
        }
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(StorageError::new(
                StorageErrorKind::Timeout,
                "storage",
                format!("no answer within {limit:?}"),
            ))),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_back_off_1_2_4_8_16_32_then_restart() {
        let health = Health::new();
        let t0 = Timestamp::from_secs(1_000);
        health.failed(t0);
        let mut now = t0;
        let mut waits = Vec::new();
        for _ in 0..8 {
            let next = Timestamp::from_nanos(health.next_probe.load(Ordering::Acquire));
            waits.push(next.saturating_duration_since(now).as_secs());
            assert!(!health.probe_due(Timestamp::from_nanos(next.as_nanos() - 1)));
            assert!(health.probe_due(next));
            assert!(!health.probe_due(next), "one prober per slot");
            now = next;
            health.probed(false, now);
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 1, 2]);
        assert!(health.use_fallback(&FailurePolicy::InMemoryFallback));
        assert!(!health.use_fallback(&FailurePolicy::FailOpen));
        health.probed(true, now);
        assert!(!health.use_fallback(&FailurePolicy::InMemoryFallback));
    }
}

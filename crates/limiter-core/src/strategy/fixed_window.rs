//! Fixed window arithmetic (`limits`' `FixedWindowRateLimiter`).

use crate::clock::Timestamp;
use crate::limit::RateLimit;
use crate::storage::LimitState;
use crate::strategy::{Counter, Expiring};

/// One key's window: when it ends and how much was hit in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct FixedWindowState {
    /// End of the window in nanoseconds; the state is empty from then on.
    pub(crate) window_end: u64,
    pub(crate) count: u64,
}

impl FixedWindowState {
    fn live_count(&self, now: u64) -> u64 {
        if now < self.window_end { self.count } else { 0 }
    }

    fn state(&self, limit: &RateLimit, allowed: bool, cost: u64, now: u64) -> LimitState {
        let count = self.live_count(now);
        // A missing window "resets" now, as `limits`' get_expiry does.
        let reset_at = Timestamp::from_nanos(if count > 0 || now < self.window_end { self.window_end } else { now });
        let remaining = limit.amount().saturating_sub(count);
        if allowed {
            LimitState::allowed(remaining, reset_at)
        } else {
            let retry = (cost <= limit.amount()).then_some(reset_at);
            LimitState::limited(remaining, reset_at, retry)
        }
    }
}

impl Expiring for FixedWindowState {
    fn expires_at(&self) -> u64 {
        self.window_end
    }
}

impl Counter for FixedWindowState {
    /// Whether `cost` would pass now (`limits`: `get(key) < amount - cost + 1`).
    fn test(&self, limit: &RateLimit, cost: u64, now: u64) -> LimitState {
        let allowed = cost <= limit.amount() && self.live_count(now) + cost <= limit.amount();
        self.state(limit, allowed, cost, now)
    }

    /// Counts `cost`, allowed or not, as `limits` does; a cost above the
    /// amount is refused without being counted since it can never pass.
    fn hit(&mut self, limit: &RateLimit, cost: u64, now: u64) -> LimitState {
        if cost > limit.amount() {
            return self.state(limit, false, cost, now);
        }
        if now >= self.window_end {
            self.window_end = now.saturating_add(limit.window_nanos());
            self.count = 0;
        }
        self.count = self.count.saturating_add(cost);
        let allowed = self.count <= limit.amount();
        self.state(limit, allowed, cost, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limit::Granularity;

    const S: u64 = 1_000_000_000;

    #[test]
    fn counts_refused_hits_like_limits() {
        // limits: 3/minute, costs 1, 2, 1 -> stored 4, the last refused.
        let limit = RateLimit::new(3, 1, Granularity::Minute).unwrap();
        let mut st = FixedWindowState::default();
        assert!(st.hit(&limit, 1, 100 * S).allowed);
        assert!(st.hit(&limit, 2, 101 * S).allowed);
        let refused = st.hit(&limit, 1, 102 * S);
        assert!(!refused.allowed);
        assert_eq!(st.count, 4);
        assert_eq!(refused.remaining, 0);
        assert_eq!(refused.retry_at, Some(Timestamp::from_secs(160)));
        assert_eq!(refused.reset_at, Timestamp::from_secs(160));
    }

    #[test]
    fn window_starts_at_first_hit_and_ends_exactly_at_expiry() {
        let limit = RateLimit::new(1, 1, Granularity::Second).unwrap();
        let mut st = FixedWindowState::default();
        assert!(st.hit(&limit, 1, 10 * S + 500).allowed);
        assert!(!st.hit(&limit, 1, 11 * S + 499).allowed);
        assert!(st.hit(&limit, 1, 11 * S + 500).allowed);
    }

    #[test]
    fn cost_above_amount_is_never_counted() {
        let limit = RateLimit::new(2, 1, Granularity::Second).unwrap();
        let mut st = FixedWindowState::default();
        let refused = st.hit(&limit, 3, S);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_at, None);
        assert_eq!(st, FixedWindowState::default());
        assert!(!st.test(&limit, 3, S).allowed);
    }

    #[test]
    fn test_does_not_consume() {
        let limit = RateLimit::new(2, 1, Granularity::Second).unwrap();
        let mut st = FixedWindowState::default();
        assert!(st.test(&limit, 2, S).allowed);
        st.hit(&limit, 1, S);
        assert!(st.test(&limit, 1, S).allowed);
        assert!(!st.test(&limit, 2, S).allowed);
        assert_eq!(st.count, 1);
        let empty = FixedWindowState::default().test(&limit, 1, 5 * S);
        assert_eq!((empty.remaining, empty.reset_at), (2, Timestamp::from_secs(5)));
    }
}

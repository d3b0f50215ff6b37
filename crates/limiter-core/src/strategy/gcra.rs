//! GCRA: a token bucket of `amount` tokens refilled evenly over the window,
//! kept as one "theoretical arrival time" per key (as `governor` does).
//!
//! With `T = window / amount` per token, the bucket's backlog is
//! `max(tat, now) - now`; a cost `n` passes if `backlog + n·T <= window`.
//! Comparisons multiply through by `amount` in 128-bit integers, so no
//! rounding can admit a hit the exact rule would refuse.

use crate::clock::Timestamp;
use crate::limit::RateLimit;
use crate::storage::LimitState;
use crate::strategy::{Counter, Expiring, mul_div_ceil, mul_div_floor};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct GcraState {
    /// Theoretical arrival time in nanoseconds: when the bucket is full again.
    pub(crate) tat: u64,
}

impl GcraState {
    fn backlog(&self, now: u64) -> u64 {
        self.tat.saturating_sub(now)
    }

    fn fits(limit: &RateLimit, backlog: u64, cost: u64) -> bool {
        let (amount, window) = (u128::from(limit.amount()), u128::from(limit.window_nanos()));
        u128::from(backlog) * amount + u128::from(cost) * window <= window * amount
    }

    fn state(&self, limit: &RateLimit, allowed: bool, cost: u64, now: u64) -> LimitState {
        state_from_tat(limit, Timestamp::from_nanos(self.tat), Timestamp::from_nanos(now), allowed, cost)
    }
}

/// The state GCRA reports for a key whose theoretical arrival time is
/// `tat`: what remains, when the bucket is full again, and, for a refusal,
/// when `cost` fits. For storages that keep the TAT themselves (Redis).
pub fn state_from_tat(limit: &RateLimit, tat: Timestamp, now: Timestamp, allowed: bool, cost: u64) -> LimitState {
    let (amount, window) = (limit.amount(), limit.window_nanos());
    let (tat, now) = (tat.as_nanos(), now.as_nanos());
    // Tokens in use, rounded up: a partly refilled token is not available.
    let used = mul_div_ceil(tat.saturating_sub(now), amount, window);
    let remaining = amount.saturating_sub(used);
    let reset_at = Timestamp::from_nanos(tat.max(now));
    if allowed {
        return LimitState::allowed(remaining, reset_at);
    }
    // Passes once backlog <= (amount - cost) * T; never if cost > amount.
    let retry = amount.checked_sub(cost).filter(|_| amount > 0).map(|left| {
        let slack = mul_div_floor(left, window, amount);
        Timestamp::from_nanos(tat.saturating_sub(slack).max(now))
    });
    LimitState::limited(remaining, reset_at, retry)
}

impl Expiring for GcraState {
    fn expires_at(&self) -> u64 {
        self.tat
    }
}

impl Counter for GcraState {
    fn test(&self, limit: &RateLimit, cost: u64, now: u64) -> LimitState {
        let allowed = cost <= limit.amount() && Self::fits(limit, self.backlog(now), cost);
        self.state(limit, allowed, cost, now)
    }

    fn hit(&mut self, limit: &RateLimit, cost: u64, now: u64) -> LimitState {
        let allowed = cost <= limit.amount() && Self::fits(limit, self.backlog(now), cost);
        if allowed && cost > 0 {
            // Rounded down: the error favours the client by under 1 ns per hit,
            // where rounding up would refuse the last token of a full burst.
            // At least 1 ns, or a limit of more than one hit per nanosecond
            // would never be recorded; so limits of over 500 million hits
            // a second are the only ones off by more than a nanosecond a
            // hit (at most twice the rate between 500 million and a billion,
            // fewer hits than the limit beyond).
            let step = mul_div_floor(cost, limit.window_nanos(), limit.amount()).max(1);
            self.tat = self.tat.max(now).saturating_add(step);
        }
        self.state(limit, allowed, cost, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limit::Granularity;

    const S: u64 = 1_000_000_000;

    #[test]
    fn full_burst_then_one_token_per_interval() {
        let limit = RateLimit::new(3, 1, Granularity::Second).unwrap();
        let mut st = GcraState::default();
        let now = 100 * S;
        for left in [2, 1, 0] {
            let s = st.hit(&limit, 1, now);
            assert!(s.allowed);
            assert_eq!(s.remaining, left);
        }
        let refused = st.hit(&limit, 1, now);
        assert!(!refused.allowed);
        // One token comes back after a third of a second.
        let retry = refused.retry_at.unwrap().as_nanos();
        assert!((now + S / 3 - 1..=now + S / 3 + 1).contains(&retry), "{retry}");
        assert!(!st.hit(&limit, 1, retry - 2).allowed);
        assert!(st.hit(&limit, 1, retry).allowed);
        assert!(!st.hit(&limit, 1, retry).allowed);
    }

    #[test]
    fn costs_and_reset() {
        let limit = RateLimit::new(10, 1, Granularity::Minute).unwrap();
        let mut st = GcraState::default();
        let s = st.hit(&limit, 4, 0);
        assert_eq!(s.remaining, 6);
        assert_eq!(s.reset_at, Timestamp::from_secs(24));
        assert!(!st.test(&limit, 7, 0).allowed);
        assert!(st.test(&limit, 6, 0).allowed);
        assert_eq!(st.test(&limit, 1, 12 * S).remaining, 8);
        assert!(!st.hit(&limit, 11, 0).allowed);
        assert_eq!(st.hit(&limit, 11, 0).retry_at, None);
        assert_eq!(st.tat, 24 * S);
    }

    #[test]
    fn a_limit_above_one_hit_per_nanosecond_is_still_recorded() {
        let limit = RateLimit::new(2_000_000_000, 1, Granularity::Second).unwrap();
        let mut st = GcraState::default();
        assert!(st.hit(&limit, 1, S).allowed);
        assert_eq!(st.tat, S + 1, "one nanosecond, not nothing");
    }

    #[test]
    fn zero_amount_refuses_everything_without_dividing_by_zero() {
        let limit = RateLimit::new(0, 1, Granularity::Second).unwrap();
        let mut st = GcraState::default();
        assert!(!st.hit(&limit, 1, S).allowed);
        assert!(st.hit(&limit, 0, S).allowed);
        assert_eq!(st.test(&limit, 0, S).remaining, 0);
    }
}

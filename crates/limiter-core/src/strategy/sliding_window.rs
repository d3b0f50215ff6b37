//! Sliding window counter arithmetic (`limits`' `SlidingWindowCounterRateLimiter`)
//! with windows aligned to the epoch, as `limits`' memory and Memcached
//! storages align them (`key/<int(now / window)>`).
//!
//! The weighted count is `prev · (time left in the current window) / window + cur`;
//! a cost passes if `floor(weighted) + cost <= amount`. It is computed in
//! integer nanoseconds (128-bit), so it cannot round the wrong way.

use crate::clock::Timestamp;
use crate::limit::RateLimit;
use crate::storage::LimitState;
use crate::strategy::{Counter, Expiring, mul_div_floor, mul_rem};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SlidingWindowState {
    /// Index of the current window: `start / window`.
    bucket: u64,
    prev: u64,
    cur: u64,
    /// The window of the last hit, for expiry.
    window: u64,
}

/// The counts as seen at one instant.
struct View {
    prev: u64,
    cur: u64,
    /// Nanoseconds until the current window ends (the previous one's weight).
    left: u64,
    window: u64,
}

impl View {
    /// `floor(prev · left / window)`: the previous window's weighted share.
    fn prev_share(&self) -> u64 {
        mul_div_floor(self.prev, self.left, self.window)
    }

    fn weighted(&self) -> u64 {
        self.prev_share().saturating_add(self.cur)
    }
}

impl SlidingWindowState {
    fn view(&self, window: u64, now: u64) -> View {
        let bucket = now / window;
        let end = bucket.saturating_add(1).saturating_mul(window);
        let (prev, cur) = if bucket == self.bucket {
            (self.prev, self.cur)
        } else if bucket == self.bucket.saturating_add(1) {
            (self.cur, 0)
        } else if bucket < self.bucket {
            // The clock went back: keep the counts rather than forget hits.
            (self.prev, self.cur)
        } else {
            (0, 0)
        };
        View { prev, cur, left: end.saturating_sub(now).min(window), window }
    }

    fn state(view: &View, limit: &RateLimit, allowed: bool, cost: u64, now: u64) -> LimitState {
        let remaining = limit.amount().saturating_sub(view.weighted());
        let reset_at = Timestamp::from_nanos(now.saturating_add(Self::until_remaining_grows(view)));
        if allowed {
            return LimitState::allowed(remaining, reset_at);
        }
        let retry = limit.amount().checked_sub(cost).map(|budget| now.saturating_add(Self::until_fits(view, budget)));
        LimitState::limited(remaining, reset_at, retry.map(Timestamp::from_nanos))
    }

    /// Nanoseconds until `floor(weighted)` next drops (0 if nothing is counted).
    fn until_remaining_grows(v: &View) -> u64 {
        // `limits`: prev_ttl % (window / prev) (the whole `left` while the
        // previous window weighs less than one hit).
        match mul_rem(v.prev, v.left, v.window).checked_div(v.prev) {
            Some(until) => until,
            None if v.cur > 0 => v.left,
            None => 0,
        }
    }

    /// Nanoseconds until `floor(weighted) <= budget`.
    fn until_fits(v: &View, budget: u64) -> u64 {
        let window = u128::from(v.window);
        let need = u128::from(budget) + 1;
        if v.cur <= budget {
            // Within this window: prev · left' < (budget - cur + 1) · window.
            let allowance = u128::from(budget - v.cur) + 1;
            if v.prev == 0 {
                return 0;
            }
            let max_left = (allowance * window).div_ceil(u128::from(v.prev)).saturating_sub(1);
            return u64::try_from(u128::from(v.left).saturating_sub(max_left)).unwrap_or(u64::MAX);
        }
        // After the boundary `cur` becomes the previous window:
        // cur · left' < (budget + 1) · window.
        let max_left = (need * window).div_ceil(u128::from(v.cur)).saturating_sub(1);
        let after = window.saturating_sub(max_left);
        u64::try_from(u128::from(v.left) + after).unwrap_or(u64::MAX)
    }

    fn allows(view: &View, limit: &RateLimit, cost: u64) -> bool {
        cost <= limit.amount() && view.weighted().saturating_add(cost) <= limit.amount()
    }
}

/// The state the sliding window counter reports from its two counts, for
/// storages that keep them themselves (Redis anchors windows at the first
/// hit rather than at the epoch): `prev` weighs for `left` more, the rest of
/// the current window.
pub fn state_from_counts(
    limit: &RateLimit,
    prev: u64,
    cur: u64,
    left: std::time::Duration,
    now: Timestamp,
    allowed: bool,
    cost: u64,
) -> LimitState {
    let window = limit.window_nanos();
    let left = u64::try_from(left.as_nanos()).unwrap_or(u64::MAX).min(window);
    SlidingWindowState::state(&View { prev, cur, left, window }, limit, allowed, cost, now.as_nanos())
}

impl Expiring for SlidingWindowState {
    /// After this both windows are past and the state is empty.
    fn expires_at(&self) -> u64 {
        self.bucket.saturating_add(2).saturating_mul(self.window)
    }
}

impl Counter for SlidingWindowState {
    fn test(&self, limit: &RateLimit, cost: u64, now: u64) -> LimitState {
        let view = self.view(limit.window_nanos(), now);
        let allowed = Self::allows(&view, limit, cost);
        Self::state(&view, limit, allowed, cost, now)
    }

    fn hit(&mut self, limit: &RateLimit, cost: u64, now: u64) -> LimitState {
        let window = limit.window_nanos();
        let mut view = self.view(window, now);
        let allowed = Self::allows(&view, limit, cost);
        if allowed {
            view.cur = view.cur.saturating_add(cost);
            let bucket = now / window;
            *self = SlidingWindowState { bucket: bucket.max(self.bucket), prev: view.prev, cur: view.cur, window };
        }
        Self::state(&view, limit, allowed, cost, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limit::Granularity;

    const S: u64 = 1_000_000_000;

    #[test]
    fn a_previous_window_weighing_under_one_hit_resets_when_the_window_ends() {
        // `limits`: previous_expires_in % (window / previous) is the whole
        // time left while previous · left < window.
        let v = View { prev: 1, cur: 0, left: 30 * S, window: 60 * S };
        assert_eq!(SlidingWindowState::until_remaining_grows(&v), 30 * S);
        let v = View { prev: 4, cur: 0, left: 30 * S, window: 60 * S };
        assert_eq!(SlidingWindowState::until_remaining_grows(&v), 0, "30 s % 15 s");
        let v = View { prev: 0, cur: 0, left: 30 * S, window: 60 * S };
        assert_eq!(SlidingWindowState::until_remaining_grows(&v), 0);
    }

    #[test]
    fn weighs_the_previous_window() {
        let limit = RateLimit::new(10, 1, Granularity::Minute).unwrap();
        let mut st = SlidingWindowState::default();
        // Window [600 s, 660 s): 10 hits.
        for _ in 0..10 {
            assert!(st.hit(&limit, 1, 600 * S).allowed);
        }
        assert!(!st.hit(&limit, 1, 659 * S).allowed);
        // 15 s into the next window, 3/4 of the previous one still counts: 7.5 -> 7.
        let s = st.test(&limit, 1, 675 * S);
        assert!(s.allowed);
        assert_eq!(s.remaining, 3);
        for _ in 0..3 {
            assert!(st.hit(&limit, 1, 675 * S).allowed);
        }
        assert!(!st.hit(&limit, 1, 675 * S).allowed);
        // Two windows later everything is forgotten.
        assert_eq!(st.test(&limit, 1, 780 * S).remaining, 10);
    }

    #[test]
    fn retry_at_is_when_the_weighted_count_makes_room() {
        let limit = RateLimit::new(10, 1, Granularity::Minute).unwrap();
        let mut st = SlidingWindowState::default();
        st.hit(&limit, 10, 600 * S);
        let refused = st.hit(&limit, 1, 660 * S);
        assert!(!refused.allowed);
        let retry = refused.retry_at.unwrap().as_nanos();
        // prev = 10 must weigh < 10 - 1 + 1 = 10 -> just after 660 s.
        assert_eq!(retry, 660 * S + 1);
        assert!(st.test(&limit, 1, retry).allowed);

        let refused = st.hit(&limit, 5, 660 * S);
        let retry = refused.retry_at.unwrap().as_nanos();
        // 10 · left / 60 < 6  <=>  left < 36 s  <=>  now > 684 s.
        assert_eq!(retry, 684 * S + 1);
        assert!(!st.test(&limit, 5, retry - 1).allowed);
        assert!(st.test(&limit, 5, retry).allowed);
    }

    #[test]
    fn retry_after_the_boundary_when_current_is_full() {
        let limit = RateLimit::new(4, 1, Granularity::Second).unwrap();
        let mut st = SlidingWindowState::default();
        st.hit(&limit, 4, 10 * S);
        let refused = st.hit(&limit, 2, 10 * S + S / 2);
        let retry = refused.retry_at.unwrap().as_nanos();
        // At 11 s cur=4 becomes prev: 4 · left / 1 s < 3 <=> left < 0.75 s.
        assert_eq!(retry, 11 * S + S / 4 + 1);
        assert!(!st.test(&limit, 2, retry - 1).allowed);
        assert!(st.test(&limit, 2, retry).allowed);
    }

    #[test]
    fn reset_is_now_when_empty_and_when_remaining_grows_otherwise() {
        let limit = RateLimit::new(10, 1, Granularity::Minute).unwrap();
        let st = SlidingWindowState::default();
        assert_eq!(st.test(&limit, 1, 5 * S).reset_at, Timestamp::from_secs(5));
        let mut st = st;
        st.hit(&limit, 1, 600 * S);
        assert_eq!(st.test(&limit, 1, 630 * S).reset_at, Timestamp::from_secs(660));
        st.hit(&limit, 5, 600 * S);
        // prev = 6 at 666 s: weight 6 · 54 / 60 = 5.4 -> drops to 5 when left < 50 s.
        assert_eq!(st.test(&limit, 1, 666 * S).reset_at, Timestamp::from_secs(670));
    }

    #[test]
    fn cost_above_amount_never_passes() {
        let limit = RateLimit::new(2, 1, Granularity::Second).unwrap();
        let mut st = SlidingWindowState::default();
        let s = st.hit(&limit, 3, S);
        assert!(!s.allowed);
        assert_eq!(s.retry_at, None);
        assert_eq!(st, SlidingWindowState::default());
    }
}

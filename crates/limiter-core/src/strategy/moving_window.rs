//! Moving window arithmetic (`limits`' `MovingWindowRateLimiter`).
//!
//! `limits` keeps one timestamp per hit and pushes `cost` copies; here equal
//! timestamps are kept as one run `(time, count)`, so a hit of any cost is one
//! push and the log holds at most `amount` hits in at most `amount` runs.

use std::collections::VecDeque;

use crate::clock::Timestamp;
use crate::limit::RateLimit;
use crate::storage::LimitState;
use crate::strategy::{Counter, Expiring};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct MovingWindowState {
    /// Runs of hits, newest first: (time in nanoseconds, how many hits).
    runs: VecDeque<(u64, u64)>,
    /// The sum of the runs' counts; never above the limit's amount.
    total: u64,
    /// The window of the last hit, for expiry.
    window: u64,
}

impl MovingWindowState {
    /// Drops runs that left the window `[now - window, now]`. An entry exactly
    /// at `now - window` is still inside, as in `limits`' acquire and its Redis
    /// script (its memory storage counts it out for reads; we count it in).
    fn forget_old(&mut self, window_start: u64) {
        while let Some(&(t, n)) = self.runs.back() {
            if t >= window_start {
                break;
            }
            self.total -= n;
            self.runs.pop_back();
        }
    }

    /// Hits inside the window, and the time of the oldest of them. Walks only
    /// the runs that left the window (none after `forget_old`).
    fn in_window(&self, window_start: u64) -> (u64, Option<u64>) {
        let mut gone = 0;
        for &(t, n) in self.runs.iter().rev() {
            if t >= window_start {
                return (self.total - gone, Some(t));
            }
            gone += n;
        }
        (0, None)
    }

    /// The time of the `index`-th newest hit (0-based), if the log has one.
    /// The log never holds more than `amount` hits, so for a cost of 1 the
    /// hit at `amount - 1` is the oldest: the walk starts from that end.
    fn nth_newest(&self, index: u64) -> Option<u64> {
        let from_oldest = self.total.checked_sub(index)?.checked_sub(1)?;
        let mut seen = 0u64;
        for &(t, n) in self.runs.iter().rev() {
            seen += n;
            if seen > from_oldest {
                return Some(t);
            }
        }
        None
    }

    /// Keeps only the newest `amount` hits: older ones can never block.
    fn trim_to(&mut self, amount: u64) {
        while self.total > amount {
            let Some(oldest) = self.runs.back_mut() else {
                break;
            };
            let excess = self.total - amount;
            if oldest.1 > excess {
                oldest.1 -= excess;
                self.total = amount;
            } else {
                self.total -= oldest.1;
                self.runs.pop_back();
            }
        }
    }

    fn state(&self, limit: &RateLimit, allowed: bool, cost: u64, now: u64) -> LimitState {
        let window = limit.window_nanos();
        let start = now.saturating_sub(window);
        let (count, oldest) = self.in_window(start);
        let oldest = oldest.unwrap_or(now);
        let reset_at = Timestamp::from_nanos(oldest.saturating_add(window));
        let remaining = limit.amount().saturating_sub(count);
        if allowed {
            return LimitState::allowed(remaining, reset_at);
        }
        // The hit passes once the (amount - cost)-th newest entry leaves the window.
        let retry = limit.amount().checked_sub(cost).map(|index| {
            let blocking = self.nth_newest(index).unwrap_or(now);
            Timestamp::from_nanos(blocking.saturating_add(window).saturating_add(1).max(now))
        });
        LimitState::limited(remaining, reset_at, retry)
    }

    fn allows(&self, limit: &RateLimit, cost: u64, window_start: u64) -> bool {
        match limit.amount().checked_sub(cost) {
            None => false,
            Some(index) => self.nth_newest(index).is_none_or(|t| t < window_start),
        }
    }
}

impl Expiring for MovingWindowState {
    /// After this the log holds nothing inside any window.
    fn expires_at(&self) -> u64 {
        self.runs.front().map_or(0, |&(t, _)| t.saturating_add(self.window).saturating_add(1))
    }
}

impl Counter for MovingWindowState {
    fn test(&self, limit: &RateLimit, cost: u64, now: u64) -> LimitState {
        let allowed = self.allows(limit, cost, now.saturating_sub(limit.window_nanos()));
        self.state(limit, allowed, cost, now)
    }

    fn hit(&mut self, limit: &RateLimit, cost: u64, now: u64) -> LimitState {
        self.window = limit.window_nanos();
        let start = now.saturating_sub(self.window);
        self.forget_old(start);
        let allowed = self.allows(limit, cost, start);
        if allowed && cost > 0 {
            match self.runs.front_mut() {
                Some((t, n)) if *t == now => *n += cost,
                _ => self.runs.push_front((now, cost)),
            }
            self.total += cost;
            self.trim_to(limit.amount());
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
    fn refuses_while_amount_hits_are_in_the_last_window() {
        let limit = RateLimit::new(2, 1, Granularity::Minute).unwrap();
        let mut st = MovingWindowState::default();
        assert!(st.hit(&limit, 1, 0).allowed);
        assert!(st.hit(&limit, 1, 30 * S).allowed);
        let refused = st.hit(&limit, 1, 59 * S);
        assert!(!refused.allowed);
        assert_eq!(refused.reset_at, Timestamp::from_secs(60));
        assert_eq!(refused.retry_at, Some(Timestamp::from_nanos(60 * S + 1)));
        // The first hit at 0 is still inside at exactly 60 s, out just after.
        assert!(!st.hit(&limit, 1, 60 * S).allowed);
        assert!(st.hit(&limit, 1, 60 * S + 1).allowed);
        assert!(!st.hit(&limit, 1, 61 * S).allowed);
        assert_eq!(st.test(&limit, 1, 90 * S + 1).remaining, 1);
    }

    #[test]
    fn costs_use_the_entry_at_amount_minus_cost() {
        let limit = RateLimit::new(5, 1, Granularity::Second).unwrap();
        let mut st = MovingWindowState::default();
        assert!(st.hit(&limit, 3, 0).allowed);
        assert!(!st.hit(&limit, 3, S / 2).allowed);
        assert!(st.hit(&limit, 2, S / 2).allowed);
        let s = st.test(&limit, 1, S / 2);
        assert!(!s.allowed);
        assert_eq!(s.remaining, 0);
        // The three hits at 0 leave first; then a cost of 3 fits.
        assert!(st.test(&limit, 3, S + 1).allowed);
        assert!(!st.test(&limit, 4, S + 1).allowed);
        assert_eq!(st.test(&limit, 4, S + 1).retry_at, Some(Timestamp::from_nanos(S + S / 2 + 1)));
    }

    #[test]
    fn huge_cost_is_one_run() {
        let limit = RateLimit::new(2_000_000, 1, Granularity::Hour).unwrap();
        let mut st = MovingWindowState::default();
        assert!(st.hit(&limit, 1_000_000, 0).allowed);
        assert!(st.hit(&limit, 1_000_000, 0).allowed);
        assert!(!st.hit(&limit, 1, 1).allowed);
        assert_eq!(st.runs.len(), 1);
        assert!(!st.hit(&limit, 2_000_001, 1).allowed);
        assert_eq!(st.hit(&limit, 2_000_001, 1).retry_at, None);
    }

    #[test]
    fn log_is_trimmed_to_amount() {
        let limit = RateLimit::new(3, 1, Granularity::Second).unwrap();
        let mut st = MovingWindowState::default();
        for i in 0..10 {
            st.hit(&limit, 1, i * S);
        }
        // Only the hits at 8 s (on the window edge) and 9 s are still inside.
        assert_eq!(st.runs.iter().map(|r| r.1).sum::<u64>(), 2);
        assert_eq!(st.total, 2);
        let empty = MovingWindowState::default().test(&limit, 1, 7 * S);
        assert_eq!((empty.remaining, empty.reset_at), (3, Timestamp::from_secs(8)));
    }
}

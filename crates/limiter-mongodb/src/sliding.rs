//! The sliding window counter on `limits`' `windows` document:
//! `{_id: key, previousCount: int, currentCount: int, expireAt: date,
//! _acquired: bool}`. The window starts at the first hit: a new document
//! gets `expireAt = now + 2 windows`; once less than a window is left the
//! counts shift (`previousCount = currentCount`, `currentCount = 0`,
//! `expireAt += window`). The previous count weighs for what is left of the
//! current window, `expireAt - (now + window)`:
//! `floor(previousCount * left / window) + currentCount + cost <= amount`.
//!
//! Two differences from `limits`, both invisible to a Python peer:
//! - Date arithmetic goes through `$toLong` (milliseconds), never date
//!   minus date, which SecantusDB cannot evaluate.
//! - A document whose `expireAt` is already past (the TTL monitor removes
//!   documents late) starts over as a new window. `limits` shifts it once
//!   per call instead, which resets `currentCount` at every hit until the
//!   monitor runs, so the limit does not hold meanwhile.
//!
//! The comparison is made on integers (`previousCount * left <
//! (budget + 1) * window`), so the server and this crate agree exactly.

use std::time::Duration;

use limiter_core::storage::Item;
use limiter_core::strategy::sliding_window_state;
use limiter_core::{LimitState, StorageError};
use mongodb::bson::{Bson, DateTime, Document, doc};
use mongodb::options::UpdateModifications;

use crate::error::protocol;

use crate::model::{Collection, Model, Now, count, date_ms, int, window_ms};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    prev: u64,
    cur: u64,
    expire_ms: Option<i64>,
}

impl Counts {
    /// The counts after the shift `limits` makes before reading them.
    fn shifted(&self, window: i64, now: &Now) -> Counts {
        match self.expire_ms {
            Some(e) if e > now.ms => {
                if e - now.ms <= window {
                    Counts { prev: self.cur, cur: 0, expire_ms: Some(e.saturating_add(window)) }
                } else {
                    *self
                }
            }
            _ => Counts { prev: 0, cur: 0, expire_ms: Some(now.ms.saturating_add(window.saturating_mul(2))) },
        }
    }

    /// Milliseconds left in the current window (the previous count's weight).
    fn left(&self, window: i64, now: &Now) -> i64 {
        self.expire_ms.map_or(0, |e| e.saturating_sub(now.ms.saturating_add(window)).max(0))
    }

    /// Whether `cost` fits these (shifted) counts.
    fn fits_shifted(&self, item: &Item<'_>, window: i64, now: &Now) -> bool {
        let Some(budget) = item.limit.amount().checked_sub(item.cost).and_then(|b| b.checked_sub(self.cur)) else {
            return false;
        };
        let weighed = i128::from(self.prev) * i128::from(self.left(window, now));
        weighed < (i128::from(budget) + 1) * i128::from(window)
    }
}

impl Model for Counts {
    const COLLECTION: Collection = Collection::Windows;

    fn parse(doc: Option<&Document>) -> Result<Self, StorageError> {
        let Some(doc) = doc else { return Ok(Counts::default()) };
        Ok(Counts {
            prev: count(doc, "previousCount")?,
            cur: count(doc, "currentCount")?,
            expire_ms: date_ms(doc, "expireAt")?,
        })
    }

    fn fits(&self, item: &Item<'_>, now: &Now) -> bool {
        let window = window_ms(item);
        self.shifted(window, now).fits_shifted(item, window, now)
    }

    /// `limits`' `acquire_sliding_window_entry` pipeline, on the decision's
    /// time and with `$toLong` date arithmetic.
    fn server_hit(item: &Item<'_>, now: &Now, id: &str) -> (Document, UpdateModifications) {
        let window = window_ms(item);
        let expire_ms = doc! { "$toLong": "$expireAt" };
        // Null (no document, no expireAt) compares below every number.
        let left_before = doc! { "$subtract": [expire_ms.clone(), now.ms] };
        let stale = doc! { "$lte": [left_before.clone(), 0_i64] };
        let shift = doc! { "$lte": [left_before, window] };
        let left = doc! { "$max": [0_i64, { "$subtract": [expire_ms, now.ms.saturating_add(window)] }] };
        let budget = doc! { "$subtract": [
            i64::try_from(item.limit.amount() - item.cost).unwrap_or(i64::MAX), "$currentCount"
        ] };
        let pipeline = vec![
            doc! { "$set": {
                "previousCount": { "$cond": {
                    "if": stale.clone(),
                    "then": int(0),
                    "else": { "$cond": {
                        "if": shift.clone(),
                        "then": { "$ifNull": ["$currentCount", int(0)] },
                        "else": { "$ifNull": ["$previousCount", int(0)] },
                    } },
                } },
                "currentCount": { "$cond": {
                    "if": shift.clone(), "then": int(0), "else": { "$ifNull": ["$currentCount", int(0)] },
                } },
                "expireAt": { "$cond": {
                    "if": stale,
                    "then": now.date(window.saturating_mul(2)),
                    "else": { "$cond": { "if": shift, "then": { "$add": ["$expireAt", window] }, "else": "$expireAt" } },
                } },
            } },
            doc! { "$set": { "_acquired": { "$and": [
                { "$gte": [budget.clone(), 0_i64] },
                { "$lt": [
                    { "$multiply": ["$previousCount", left] },
                    { "$multiply": [{ "$add": [budget, 1_i64] }, window] },
                ] },
            ] } } },
            doc! { "$set": { "currentCount": { "$cond": {
                "if": "$_acquired", "then": { "$add": ["$currentCount", int(item.cost)] }, "else": "$currentCount",
            } } } },
        ];
        (doc! { "_id": id }, pipeline.into())
    }

    fn server_answer(after: &Document, _: &Item<'_>) -> Result<(bool, Self), StorageError> {
        let acquired = match after.get("_acquired") {
            Some(Bson::Boolean(acquired)) => *acquired,
            other => return Err(protocol(format!("_acquired is {other:?}, not a boolean"))),
        };
        Ok((acquired, Counts::parse(Some(after))?))
    }

    fn document(&self, id: &str, allowed: bool) -> Document {
        let expire_at = self.expire_ms.map(|ms| Bson::DateTime(DateTime::from_millis(ms))).unwrap_or(Bson::Null);
        doc! {
            "_id": id,
            "previousCount": int(self.prev),
            "currentCount": int(self.cur),
            "expireAt": expire_at,
            "_acquired": allowed,
        }
    }

    fn apply(&self, item: &Item<'_>, now: &Now, _: bool) -> (bool, Self) {
        let window = window_ms(item);
        let mut after = self.shifted(window, now);
        let allowed = after.fits_shifted(item, window, now);
        if allowed {
            after.cur = after.cur.saturating_add(item.cost);
        }
        (allowed, after)
    }

    fn state(&self, item: &Item<'_>, now: &Now, allowed: bool) -> LimitState {
        let window = window_ms(item);
        let counts = self.shifted(window, now);
        let left = Duration::from_millis(u64::try_from(counts.left(window, now)).unwrap_or(0));
        sliding_window_state(&item.limit, counts.prev, counts.cur, left, now.ts, allowed, item.cost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use limiter_core::{Key, Timestamp};

    fn item(limit: &str, cost: u64) -> Item<'static> {
        Item::new(limit.parse().unwrap(), Key::new(&[])).with_cost(cost)
    }

    #[test]
    fn a_new_window_lasts_two_windows_and_shifts_in_its_second() {
        let now = Now::new(Timestamp::from_secs(1_000));
        let (allowed, after) = Counts::default().apply(&item("10/minute", 4), &now, false);
        assert!(allowed);
        assert_eq!(after, Counts { prev: 0, cur: 4, expire_ms: Some(now.ms + 120_000) });
        let later = Now::new(Timestamp::from_secs(1_075));
        // 15 s into the second window: 4 * 45 / 60 = 3 still weigh.
        let (allowed, shifted) = after.apply(&item("10/minute", 7), &later, false);
        assert!(allowed);
        assert_eq!(shifted, Counts { prev: 4, cur: 7, expire_ms: Some(now.ms + 180_000) });
        assert!(!shifted.fits(&item("10/minute", 1), &later));
    }

    #[test]
    fn a_document_past_its_expiry_starts_over() {
        let now = Now::new(Timestamp::from_secs(1_000));
        let stale = Counts { prev: 10, cur: 10, expire_ms: Some(now.ms - 5_000) };
        let (allowed, after) = stale.apply(&item("10/minute", 10), &now, false);
        assert!(allowed);
        assert_eq!(after, Counts { prev: 0, cur: 10, expire_ms: Some(now.ms + 120_000) });
    }
}

//! The fixed window on `limits`' `counters` document:
//! `{_id: key, count: int, expireAt: date}`. A counter whose `expireAt` is
//! past starts over (the TTL monitor removes documents late).

use limiter_core::storage::Item;
use limiter_core::{LimitState, StorageError};
use mongodb::bson::{Bson, DateTime, Document, doc};
use mongodb::options::UpdateModifications;

use crate::model::{Collection, Model, Now, count, date_ms, int, ms_to_ts, window_ms};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counter {
    count: u64,
    expire_ms: Option<i64>,
}

impl Counter {
    /// As `limits`' `incr`: live while `expireAt >= now`.
    fn live(&self, now: &Now) -> Option<i64> {
        self.expire_ms.filter(|&e| e >= now.ms)
    }

    fn live_count(&self, now: &Now) -> u64 {
        if self.live(now).is_some() { self.count } else { 0 }
    }
}

impl Model for Counter {
    const COLLECTION: Collection = Collection::Counters;

    fn parse(doc: Option<&Document>) -> Result<Self, StorageError> {
        let Some(doc) = doc else { return Ok(Counter::default()) };
        Ok(Counter { count: count(doc, "count")?, expire_ms: date_ms(doc, "expireAt")? })
    }

    fn fits(&self, item: &Item<'_>, now: &Now) -> bool {
        let amount = item.limit.amount();
        item.cost <= amount && self.live_count(now).saturating_add(item.cost) <= amount
    }

    fn apply(&self, item: &Item<'_>, now: &Now, count_refused: bool) -> (bool, Self) {
        let live = self.live(now);
        let after = Counter {
            count: self.live_count(now).saturating_add(item.cost),
            expire_ms: Some(live.unwrap_or_else(|| now.ms.saturating_add(window_ms(item)))),
        };
        let allowed = after.count <= item.limit.amount();
        if allowed || count_refused { (allowed, after) } else { (false, *self) }
    }

    fn state(&self, item: &Item<'_>, now: &Now, allowed: bool) -> LimitState {
        let amount = item.limit.amount();
        let remaining = amount.saturating_sub(self.live_count(now));
        // A missing window "resets" now, as `limits`' get_expiry does.
        let live = self.live(now);
        let reset_at = live.map_or(now.ts, ms_to_ts);
        if allowed {
            return LimitState::allowed(remaining, reset_at);
        }
        // The counter is live through its `expireAt` millisecond.
        let retry = live.map_or(now.ts, |e| ms_to_ts(e.saturating_add(1)));
        LimitState::limited(remaining, reset_at, (item.cost <= amount).then_some(retry))
    }

    fn document(&self, id: &str, _: bool) -> Document {
        let expire_at = self.expire_ms.map(|ms| Bson::DateTime(DateTime::from_millis(ms))).unwrap_or(Bson::Null);
        doc! { "_id": id, "count": int(self.count), "expireAt": expire_at }
    }

    /// `limits`' `incr` pipeline, with the decision's time in place of
    /// `$$NOW`: the count goes up even when the hit is refused.
    fn server_hit(item: &Item<'_>, now: &Now, id: &str) -> (Document, UpdateModifications) {
        let expired = doc! { "$lt": ["$expireAt", now.date(0)] };
        let pipeline = vec![doc! { "$set": {
            "count": { "$cond": {
                "if": expired.clone(), "then": int(item.cost), "else": { "$add": ["$count", int(item.cost)] },
            } },
            "expireAt": { "$cond": { "if": expired, "then": now.date(window_ms(item)), "else": "$expireAt" } },
        } }];
        (doc! { "_id": id }, pipeline.into())
    }

    fn server_answer(after: &Document, item: &Item<'_>) -> Result<(bool, Self), StorageError> {
        let counter = Counter::parse(Some(after))?;
        Ok((counter.count <= item.limit.amount(), counter))
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
    fn counts_refused_hits_only_when_asked() {
        let now = Now::new(Timestamp::from_secs(1_000));
        let full = Counter { count: 3, expire_ms: Some(now.ms + 10) };
        let (allowed, after) = full.apply(&item("3/minute", 1), &now, true);
        assert!(!allowed);
        assert_eq!(after.count, 4, "limits counts refused hits");
        let (allowed, after) = full.apply(&item("3/minute", 1), &now, false);
        assert!(!allowed);
        assert_eq!(after, full);
    }

    #[test]
    fn an_expired_counter_starts_over() {
        let now = Now::new(Timestamp::from_secs(1_000));
        let old = Counter { count: 3, expire_ms: Some(now.ms - 1) };
        let (allowed, after) = old.apply(&item("3/minute", 2), &now, true);
        assert!(allowed);
        assert_eq!(after, Counter { count: 2, expire_ms: Some(now.ms + 60_000) });
        let state = after.state(&item("3/minute", 2), &now, allowed);
        assert_eq!((state.remaining, state.reset_at), (1, Timestamp::from_secs(1_060)));
    }
}

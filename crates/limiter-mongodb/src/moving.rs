//! The moving window on `limits`' `windows` document:
//! `{_id: key, entries: [double, ...], expireAt: date}`, the entries being
//! hit times in seconds since the epoch, newest first, trimmed to the
//! amount; `expireAt` is moved to a window after every accepted hit.
//!
//! As in `limits`, the filter on `entries.<amount - cost>` decides: an
//! update that matches nothing is a refusal (or a missing document, which
//! the first hit inserts). A refusal then costs one more round trip, a read
//! for the window's statistics.

use std::time::Duration;

use limiter_core::storage::Item;
use limiter_core::{LimitState, StorageError};
use mongodb::bson::{Bson, DateTime, Document, doc};
use mongodb::options::UpdateModifications;

use crate::error::protocol;
use crate::model::{Collection, Model, Now, date_ms, secs_to_ts, window_ms};

#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Log {
    entries: Vec<f64>,
    expire_ms: Option<i64>,
}

/// Where the window starts: hits at or after it count, as in `limits`.
fn start(item: &Item<'_>, now: &Now) -> f64 {
    now.secs - item.limit.window_secs() as f64
}

/// An index or length for the pipeline: MongoDB wants int32 there.
fn int32(n: u64) -> Option<i32> {
    i32::try_from(n).ok()
}

impl Log {
    /// The entry that decides whether `cost` fits: the `(amount - cost)`-th newest.
    fn blocking(&self, item: &Item<'_>) -> Option<f64> {
        let index = item.limit.amount().checked_sub(item.cost)?;
        self.entries.get(usize::try_from(index).ok()?).copied()
    }
}

impl Model for Log {
    const COLLECTION: Collection = Collection::Windows;
    const REFUSES_BY_FILTER: bool = true;

    fn parse(doc: Option<&Document>) -> Result<Self, StorageError> {
        let Some(doc) = doc else { return Ok(Log::default()) };
        let entries = match doc.get("entries") {
            None | Some(Bson::Null) => Vec::new(),
            Some(Bson::Array(values)) => values
                .iter()
                .map(|v| match v {
                    Bson::Double(t) => Ok(*t),
                    Bson::Int32(t) => Ok(f64::from(*t)),
                    Bson::Int64(t) => Ok(*t as f64),
                    other => Err(protocol(format!("moving-window entry {other:?} is not a time"))),
                })
                .collect::<Result<_, _>>()?,
            Some(other) => return Err(protocol(format!("moving-window entries are {other:?}, not an array"))),
        };
        Ok(Log { entries, expire_ms: date_ms(doc, "expireAt")? })
    }

    fn fits(&self, item: &Item<'_>, now: &Now) -> bool {
        if item.cost > item.limit.amount() {
            return false;
        }
        item.cost == 0 || self.blocking(item).is_none_or(|t| t < start(item, now))
    }

    fn apply(&self, item: &Item<'_>, now: &Now, _: bool) -> (bool, Self) {
        if !self.fits(item, now) {
            return (false, self.clone());
        }
        let amount = usize::try_from(item.limit.amount()).unwrap_or(usize::MAX);
        let cost = usize::try_from(item.cost).unwrap_or(usize::MAX);
        let mut entries = Vec::with_capacity(amount.min(cost.saturating_add(self.entries.len())));
        entries.extend(std::iter::repeat_n(now.secs, cost.min(amount)));
        entries.extend(self.entries.iter().copied());
        entries.truncate(amount);
        (true, Log { entries, expire_ms: Some(now.ms.saturating_add(window_ms(item))) })
    }

    fn state(&self, item: &Item<'_>, now: &Now, allowed: bool) -> LimitState {
        let amount = item.limit.amount();
        let window = item.limit.window();
        let start = start(item, now);
        let considered = usize::try_from(amount).unwrap_or(usize::MAX);
        let inside = self.entries.iter().take(considered).copied().filter(|&t| t >= start);
        let (count, oldest) =
            inside.fold((0u64, None::<f64>), |(n, oldest), t| (n + 1, Some(oldest.map_or(t, |o: f64| o.min(t)))));
        let remaining = amount.saturating_sub(count);
        // `limits`: the oldest hit in the window plus the window; now plus the window if none.
        let reset_at = oldest.map_or(now.ts, secs_to_ts).saturating_add(window);
        if allowed {
            return LimitState::allowed(remaining, reset_at);
        }
        // The blocking hit leaves the window just after `hit + window`.
        let retry = (item.cost <= amount).then(|| {
            self.blocking(item).map_or(now.ts, |hit| {
                secs_to_ts(hit).saturating_add(window).saturating_add(Duration::from_micros(1)).max(now.ts)
            })
        });
        LimitState::limited(remaining, reset_at, retry)
    }

    fn document(&self, id: &str, _: bool) -> Document {
        let expire_at = self.expire_ms.map(|ms| Bson::DateTime(DateTime::from_millis(ms))).unwrap_or(Bson::Null);
        doc! { "_id": id, "entries": self.entries.clone(), "expireAt": expire_at }
    }

    /// `limits`' `acquire_entry`: the filter holds the condition (the
    /// `(amount - cost)`-th newest entry is missing or older than the
    /// window), the update pushes `cost` copies of now at the front, trims
    /// to the amount and moves `expireAt`.
    fn server_hit(item: &Item<'_>, now: &Now, id: &str) -> (Document, UpdateModifications) {
        let amount = item.limit.amount();
        let mut filter = doc! { "_id": id };
        // An index beyond int32 is beyond any document's size: it always fits.
        if let Some(index) = int32(amount - item.cost) {
            filter.insert(format!("entries.{index}"), doc! { "$not": { "$gte": start(item, now) } });
        }
        let pushed: Vec<Bson> = (0..item.cost).map(|_| Bson::Double(now.secs)).collect();
        let update = doc! {
            "$push": { "entries": { "$each": pushed, "$position": 0, "$slice": int32(amount).unwrap_or(i32::MAX) } },
            "$set": { "expireAt": now.date(window_ms(item)) },
        };
        (filter, update.into())
    }

    fn server_answer(after: &Document, _: &Item<'_>) -> Result<(bool, Self), StorageError> {
        Ok((true, Log::parse(Some(after))?))
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
    fn pushes_cost_copies_newest_first_trimmed_to_the_amount() {
        let now = Now::new(Timestamp::from_secs(1_000));
        let log = Log { entries: vec![990.0], expire_ms: None };
        let (allowed, after) = log.apply(&item("3/minute", 2), &now, false);
        assert!(allowed);
        assert_eq!(after.entries, vec![1_000.0, 1_000.0, 990.0]);
        let (allowed, same) = after.apply(&item("3/minute", 1), &now, false);
        assert!(!allowed);
        assert_eq!(same, after);
        let state = after.state(&item("3/minute", 1), &now, false);
        assert_eq!(state.remaining, 0);
        assert_eq!(state.reset_at, Timestamp::from_secs(1_050));
        assert_eq!(state.retry_at, Some(Timestamp::from_secs(1_050).saturating_add(Duration::from_micros(1))));
    }

    #[test]
    fn entries_older_than_the_window_do_not_block() {
        let now = Now::new(Timestamp::from_secs(1_000));
        let log = Log { entries: vec![950.0, 939.0], expire_ms: None };
        assert!(log.fits(&item("2/minute", 1), &now));
        assert!(!log.fits(&item("2/minute", 2), &now));
        assert!(
            Log { entries: vec![940.0], expire_ms: None }.state(&item("1/minute", 1), &now, false).retry_at
                > Some(now.ts)
        );
    }
}

//! GCRA on a document of this crate's own (`limits` has no GCRA):
//! `{_id: "gcra:" + key, tat: long, at: long, expireAt: date, _acquired: bool}`
//! in the `windows` collection: `tat` is the theoretical arrival time and
//! `at` the latest decision time seen, both in nanoseconds since the epoch;
//! `expireAt` is a window after the last accepted hit (the bucket is full
//! again by then, so the TTL monitor may remove it).
//!
//! Decisions are taken at `max(now, at)`: a request whose timestamp is
//! older than one already decided (it lost a race, or its transaction
//! started over) is decided at the later time, as a server's clock would
//! decide it, rather than against a bucket that has moved past it.
//!
//! Exact as the memory storage is: with `T = window / amount`, a cost `n`
//! fits if `backlog * amount + n * window <= window * amount`. Since the
//! backlog is a whole number of nanoseconds, that is
//! `backlog <= window - ceil(n * window / amount)`, computed here in 128 bits
//! and sent to the server as one integer; an accepted hit moves `tat` to
//! `max(tat, now) + floor(n * window / amount)`, as the memory storage does.

use limiter_core::storage::{Item, Key};
use limiter_core::strategy::gcra_state;
use limiter_core::{LimitState, RateLimit, StorageError, Timestamp};
use mongodb::bson::{Bson, Document, doc};
use mongodb::options::UpdateModifications;

use crate::error::protocol;
use crate::model::{Collection, Model, Now, window_ms};

/// The `_id` prefix that keeps GCRA documents apart from moving and sliding
/// windows of the same limit, as the Redis storage's `gcra:` keys do.
const PREFIX: &str = "gcra:";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Tat {
    /// Nanoseconds since the epoch; 0 for a new key.
    tat: u64,
    /// The latest decision time, in nanoseconds since the epoch.
    at: u64,
    expire_ms: Option<i64>,
}

/// `floor(cost * window / amount)` nanoseconds: what an accepted hit adds.
fn step(item: &Item<'_>) -> u64 {
    let amount = item.limit.amount();
    if amount == 0 {
        return 0;
    }
    let step = u128::from(item.cost) * u128::from(item.limit.window_nanos()) / u128::from(amount);
    u64::try_from(step).unwrap_or(u64::MAX)
}

/// The largest backlog with which `item`'s cost fits, `None` if it never does.
fn slack(item: &Item<'_>) -> Option<u64> {
    let (amount, window) = (u128::from(item.limit.amount()), u128::from(item.limit.window_nanos()));
    if item.cost == 0 {
        return u64::try_from(window).ok();
    }
    if amount == 0 || u128::from(item.cost) > amount {
        return None;
    }
    let needed = (u128::from(item.cost) * window).div_ceil(amount);
    u64::try_from(window - needed).ok()
}

fn long(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Tat {
    /// When to decide: now, or the latest decision time if later.
    fn at(&self, now: &Now) -> u64 {
        self.at.max(now.ts.as_nanos())
    }

    fn backlog(&self, now: &Now) -> u64 {
        self.tat.saturating_sub(self.at(now))
    }
}

impl Model for Tat {
    const COLLECTION: Collection = Collection::Windows;

    fn id(limit: &RateLimit, key: &Key<'_>) -> String {
        let mut id = String::with_capacity(PREFIX.len() + 48);
        id.push_str(PREFIX);
        limit.write_key(key.namespace(), key.identifiers(), &mut id);
        id
    }

    fn parse(doc: Option<&Document>) -> Result<Self, StorageError> {
        let Some(doc) = doc else { return Ok(Tat::default()) };
        let nanos = |field: &str| match doc.get(field) {
            None | Some(Bson::Null) => Ok(0),
            Some(Bson::Int64(n)) => Ok(u64::try_from(*n).unwrap_or(0)),
            Some(Bson::Int32(n)) => Ok(u64::try_from(*n).unwrap_or(0)),
            Some(other) => Err(protocol(format!("GCRA {field} is {other:?}, not nanoseconds"))),
        };
        Ok(Tat { tat: nanos("tat")?, at: nanos("at")?, expire_ms: crate::model::date_ms(doc, "expireAt")? })
    }

    fn fits(&self, item: &Item<'_>, now: &Now) -> bool {
        slack(item).is_some_and(|slack| self.backlog(now) <= slack)
    }

    fn apply(&self, item: &Item<'_>, now: &Now, _: bool) -> (bool, Self) {
        let at = self.at(now);
        if !self.fits(item, now) {
            return (false, Tat { at, ..*self });
        }
        if item.cost == 0 {
            return (true, Tat { at, ..*self });
        }
        let tat = self.tat.max(at).saturating_add(step(item));
        (true, Tat { tat, at, expire_ms: Some(now.ms.saturating_add(window_ms(item))) })
    }

    fn state(&self, item: &Item<'_>, now: &Now, allowed: bool) -> LimitState {
        let at = Timestamp::from_nanos(self.at(now));
        gcra_state(&item.limit, Timestamp::from_nanos(self.tat), at, allowed, item.cost)
    }

    fn document(&self, id: &str, allowed: bool) -> Document {
        let expire_at =
            self.expire_ms.map_or(Bson::Null, |ms| Bson::DateTime(mongodb::bson::DateTime::from_millis(ms)));
        doc! { "_id": id, "tat": long(self.tat), "at": long(self.at), "expireAt": expire_at, "_acquired": allowed }
    }

    /// The bucket is at most a window ahead of the decision after an
    /// accepted hit, so `expireAt` is now plus a window (give or take the
    /// small lead `at` may have over now).
    fn server_hit(item: &Item<'_>, now: &Now, id: &str) -> (Document, UpdateModifications) {
        let now_ns = long(now.ts.as_nanos());
        let tat = doc! { "$ifNull": ["$tat", 0_i64] };
        // `slack` exists: the driver sends only costs within the amount.
        let slack = slack(item).map_or(-1, long);
        let pipeline = vec![
            doc! { "$set": { "at": { "$max": [{ "$ifNull": ["$at", 0_i64] }, now_ns] } } },
            doc! { "$set": { "_acquired": {
                "$lte": [{ "$max": [0_i64, { "$subtract": [tat.clone(), "$at"] }] }, slack]
            } } },
            doc! { "$set": {
                "tat": { "$cond": {
                    "if": "$_acquired", "then": { "$add": [{ "$max": [tat.clone(), "$at"] }, long(step(item))] }, "else": tat,
                } },
                "expireAt": { "$cond": { "if": "$_acquired", "then": now.date(window_ms(item)), "else": "$expireAt" } },
            } },
        ];
        (doc! { "_id": id }, pipeline.into())
    }

    fn server_answer(after: &Document, _: &Item<'_>) -> Result<(bool, Self), StorageError> {
        let acquired = match after.get("_acquired") {
            Some(Bson::Boolean(acquired)) => *acquired,
            other => return Err(protocol(format!("_acquired is {other:?}, not a boolean"))),
        };
        Ok((acquired, Tat::parse(Some(after))?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(limit: &str, cost: u64) -> Item<'static> {
        Item::new(limit.parse().unwrap(), Key::new(&[])).with_cost(cost)
    }

    #[test]
    fn the_slack_is_the_exact_rule_of_the_memory_storage() {
        // 3 per second: T = 333_333_333.3 ns. A cost of 1 fits while the
        // backlog is at most 1 s - 333_333_334 ns.
        assert_eq!(slack(&item("3/second", 1)), Some(666_666_666));
        assert_eq!(step(&item("3/second", 1)), 333_333_333);
        assert_eq!(slack(&item("3/second", 3)), Some(0));
        assert_eq!(slack(&item("3/second", 4)), None);
        assert_eq!(slack(&item("0/second", 1)), None);
    }

    #[test]
    fn a_burst_of_the_amount_passes_and_the_next_waits_one_interval() {
        let now = Now::new(Timestamp::from_secs(1_000));
        let mut tat = Tat::default();
        for _ in 0..3 {
            let (allowed, after) = tat.apply(&item("3/second", 1), &now, false);
            assert!(allowed);
            tat = after;
        }
        let (allowed, same) = tat.apply(&item("3/second", 1), &now, false);
        assert!(!allowed);
        assert_eq!(same, tat);
        let retry = tat.state(&item("3/second", 1), &now, false).retry_at.unwrap();
        assert!(tat.fits(&item("3/second", 1), &Now::new(retry)));
        assert!(!tat.fits(&item("3/second", 1), &Now::new(Timestamp::from_nanos(retry.as_nanos() - 1))));
        assert_eq!(PREFIX, "gcra:");
    }

    #[test]
    fn an_older_timestamp_is_decided_at_the_latest_decision_time() {
        let later = Now::new(Timestamp::from_secs(1_000));
        let earlier = Now::new(Timestamp::from_nanos(later.ts.as_nanos() - 5));
        let mut tat = Tat::default();
        for _ in 0..2 {
            tat = tat.apply(&item("3/second", 1), &later, false).1;
        }
        // At `earlier` the backlog would be 5 ns too long for the third token.
        let (allowed, after) = tat.apply(&item("3/second", 1), &earlier, false);
        assert!(allowed, "decided at {} rather than {}", later.ts, earlier.ts);
        assert_eq!(after.at, later.ts.as_nanos());
    }
}

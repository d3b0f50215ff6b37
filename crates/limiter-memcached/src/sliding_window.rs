//! The sliding window counter on `limits`' Memcached layout: windows aligned
//! to the epoch, each counted at `<key>/<int(now / window)>` (a decimal
//! counter created by its first hit with twice the window as TTL); the
//! previous window's count weighs for the time left in the current one.

use std::time::Duration;

use limiter_core::storage::{Action, Batch, Outcome};
use limiter_core::strategy::sliding_window_state;
use limiter_core::{RateLimit, StorageError, StorageErrorKind, Timestamp};

use crate::NAME;
use crate::modes::{Seen, allows, consumes, plan};
use crate::protocol::{Exptime, Reply};
use crate::servers::Servers;

/// `limits`' two keys at `now`: the previous window's and the current one's.
pub(crate) fn window_keys(key: &str, limit: &RateLimit, now: Timestamp) -> (String, String) {
    let bucket = now.as_nanos() / limit.window_nanos().max(1);
    (format!("{key}/{}", bucket.saturating_sub(1)), format!("{key}/{bucket}"))
}

fn count(reply: &Reply) -> Result<u64, StorageError> {
    match reply {
        Reply::Miss => Ok(0),
        other => other.number().ok_or_else(|| {
            StorageError::new(StorageErrorKind::Protocol, NAME, "a counter that is not a decimal number")
        }),
    }
}

/// `floor(a * b / c)` without overflow.
fn mul_div(a: u64, b: u64, c: u64) -> u64 {
    u64::try_from(u128::from(a) * u128::from(b) / u128::from(c.max(1))).unwrap_or(u64::MAX)
}

struct Step {
    prev: u64,
    cur: u64,
    seen: Seen,
}

pub(crate) async fn decide(servers: &Servers, batch: &Batch<'_>) -> Result<Outcome, StorageError> {
    let now = batch.now;
    let keys: Vec<(String, String)> =
        batch.items.iter().map(|item| window_keys(&item.key.storage_key(&item.limit), &item.limit, now)).collect();
    let mut pipeline = servers.pipeline();
    let mut hits = Vec::with_capacity(keys.len());
    for (item, (previous, current)) in batch.items.iter().zip(&keys) {
        let hit = consumes(batch.mode) && item.action == Action::Hit && item.cost <= item.limit.amount();
        pipeline.get(previous)?;
        if hit {
            let ttl = item.limit.window_secs().saturating_mul(2);
            pipeline.incr(current, item.cost, Exptime::after(ttl, now))?;
        } else {
            pipeline.get(current)?;
        }
        hits.push(hit);
    }
    let replies = pipeline.send().await?;

    let mut steps = Vec::with_capacity(keys.len());
    for (i, (item, hit)) in batch.items.iter().zip(&hits).enumerate() {
        let (prev, cur) = (count(replies.get(2 * i)?)?, count(replies.get(2 * i + 1)?)?);
        let (window, amount) = (item.limit.window_nanos(), item.limit.amount());
        let share = mul_div(prev, left(&item.limit, now), window);
        // Saturating: another client may have left a count near `u64::MAX`.
        let allowed = allows(*hit, share.saturating_add(cur), item.cost, amount);
        steps.push(Step { prev, cur, seen: Seen { allowed, consumed: *hit } });
    }

    let seen: Vec<Seen> = steps.iter().map(|s| s.seen).collect();
    let plan = plan(batch.mode, &seen, true);
    let mut undos: Vec<(&str, u64)> = Vec::new();
    for ((item, (_, current)), undo) in batch.items.iter().zip(&keys).zip(&plan.undo) {
        if *undo {
            match undos.iter_mut().find(|(k, _)| *k == current.as_str()) {
                Some((_, delta)) => *delta = delta.saturating_add(item.cost),
                None => undos.push((current, item.cost)),
            }
        }
    }
    if !undos.is_empty() {
        // Each window has its own key, which outlives the window: a plain
        // decrement cannot reach another window's count. If it fails the
        // count stays higher, which only refuses more.
        let mut pipeline = servers.pipeline();
        for (key, delta) in &undos {
            pipeline.decr(key, *delta, None)?;
        }
        let _ = pipeline.send().await;
    }

    let mut outcome = Outcome::with_capacity(keys.len());
    for (i, ((item, (_, current)), step)) in batch.items.iter().zip(&keys).zip(&steps).enumerate() {
        if !plan.reported.get(i).copied().unwrap_or(false) {
            outcome.push(None);
            continue;
        }
        let cur = match undos.iter().find(|(k, _)| *k == current.as_str()) {
            Some((_, delta)) if plan.undo.get(i).copied().unwrap_or(false) => {
                let last = steps.iter().zip(&keys).filter(|(_, (_, k))| k == current).map(|(s, _)| s.cur).next_back();
                last.unwrap_or(step.cur).saturating_sub(*delta)
            }
            _ => step.cur,
        };
        let left = Duration::from_nanos(left(&item.limit, now));
        outcome.push(Some(sliding_window_state(&item.limit, step.prev, cur, left, now, step.seen.allowed, item.cost)));
    }
    Ok(outcome)
}

/// Nanoseconds left in the current window: the previous count's weight.
fn left(limit: &RateLimit, now: Timestamp) -> u64 {
    let window = limit.window_nanos().max(1);
    window - now.as_nanos() % window
}

pub(crate) async fn clear(servers: &Servers, key: &str, limit: &RateLimit, now: Timestamp) -> Result<(), StorageError> {
    let (previous, current) = window_keys(key, limit, now);
    let mut pipeline = servers.pipeline();
    pipeline.delete(&previous)?;
    pipeline.delete(&current)?;
    pipeline.send().await.map(drop)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// `limits`' example: key "mykey", expiry 60, at 1738576292.6631825.
    #[test]
    fn keys_are_those_of_limits() {
        let limit: RateLimit = "5/minute".parse().unwrap();
        let at = Timestamp::from_nanos(1_738_576_292_663_182_500);
        let (previous, current) = window_keys("mykey", &limit, at);
        assert_eq!((previous.as_str(), current.as_str()), ("mykey/28976270", "mykey/28976271"));
        assert_eq!(left(&limit, at), 60_000_000_000 - 32_663_182_500);
    }
}

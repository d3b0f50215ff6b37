//! The fixed window on `limits`' layout: a decimal counter at the raw key
//! (`LIMITER/<identifiers…>/<amount>/<multiples>/<granularity>`), created by
//! the first hit of a window with the window as its TTL, and next to it
//! `<key>/expires` holding the window's end in float seconds, which `limits`
//! reads for the reset time.

use std::time::Duration;

use limiter_core::storage::{Action, Batch, LimitState, Outcome};
use limiter_core::{RateLimit, StorageError, StorageErrorKind, Timestamp};

use crate::NAME;
use crate::modes::{Seen, allows, consumes, plan};
use crate::protocol::{Exptime, Meta, Reply};
use crate::servers::Servers;

/// How many times a CAS undo retries after another client changed the counter.
const MAX_CAS_RETRIES: usize = 4;

/// `limits`' expiry key for the counter `key`.
pub(crate) fn expires_key(key: &str) -> String {
    format!("{key}/expires")
}

/// Seconds since the epoch as Python's `repr(float)` writes them: the
/// shortest text that reads back as the same double (Rust's `Display` for
/// `f64` gives the same digits).
fn float_seconds(t: Timestamp) -> String {
    let secs = t.as_secs_f64();
    if secs.fract() == 0.0 { format!("{secs}.0") } else { format!("{secs}") }
}

/// A counter's value, from a reply: 0 if it is missing.
fn count(reply: &Reply) -> Result<u64, StorageError> {
    match reply {
        Reply::Miss => Ok(0),
        other => other.number().ok_or_else(|| {
            StorageError::new(StorageErrorKind::Protocol, NAME, "a counter that is not a decimal number")
        }),
    }
}

/// A decrement to give back, with what identifies the window it belongs to.
#[derive(Debug)]
struct Undo<'k> {
    key: &'k str,
    delta: u64,
    /// The CAS the counter had after our last increment.
    cas: Option<u64>,
    /// Its TTL then.
    ttl: Option<i64>,
    window: u64,
}

/// Whether a counter with TTL `now` is still the one that had `before`
/// (TTLs only go down), rather than the next window's, which was created
/// with a full window to live after the first one ended.
fn same_window(before: Option<i64>, now: Option<i64>, window: u64) -> bool {
    match (before, now) {
        // Within one second a 1-second window's next counter can show the
        // same TTL: leave it counted (refusing more, never admitting more).
        (Some(before), Some(now)) => now < before || (now == before && window > 1),
        _ => false,
    }
}

/// A counter with at least this many seconds to live cannot expire within
/// the next second of real time (memcached's clock ticks once a second).
const SAFE_TTL: i64 = 2;

/// Gives back `undos`, each only to the window that counted it.
///
/// A counter that had [`SAFE_TTL`] seconds or more to live after our
/// increment is still the same window's a round trip later, so a plain
/// decrement gives back exactly what was taken, however many clients hit it
/// meanwhile. Its reply's TTL confirms it; a server that took over a second
/// between the two commands (the next window's counter, with a longer TTL)
/// gets the amount back. A counter in its last second or two is decremented
/// with a CAS, re-read and retried a few times if another client changed
/// it, and otherwise left counted: the limit is then stricter for the rest
/// of that window, never looser.
async fn undo(servers: &Servers, undos: Vec<Undo<'_>>) -> Result<(), StorageError> {
    let (plain, mut guarded): (Vec<_>, Vec<_>) = undos.into_iter().partition(|u| u.ttl.is_some_and(|t| t >= SAFE_TTL));
    let mut pipeline = servers.pipeline();
    for u in &plain {
        pipeline.decr(u.key, u.delta, None)?;
    }
    for u in &guarded {
        pipeline.decr(u.key, u.delta, u.cas)?;
    }
    let replies = pipeline.send().await?;
    let mut restore = servers.pipeline();
    for (slot, u) in plain.iter().enumerate() {
        if let Some(meta) = replies.get(slot)?.meta()
            && !same_window(u.ttl, meta.ttl, u.window)
        {
            restore.add_to(u.key, u.delta)?;
        }
    }
    if !restore.is_empty() {
        restore.send().await?;
    }
    let mut changed = Vec::new();
    for (slot, u) in guarded.drain(..).enumerate() {
        if *replies.get(plain.len() + slot)? == Reply::Exists {
            changed.push(u);
        }
    }
    for _ in 0..MAX_CAS_RETRIES {
        if changed.is_empty() {
            break;
        }
        let mut pipeline = servers.pipeline();
        for u in &changed {
            pipeline.get(u.key)?;
        }
        let replies = pipeline.send().await?;
        let mut retry = Vec::new();
        for (slot, mut u) in changed.into_iter().enumerate() {
            let Some(Meta { ttl, cas }) = replies.get(slot)?.meta() else { continue };
            if same_window(u.ttl, ttl, u.window) {
                u.cas = cas;
                retry.push(u);
            }
        }
        let mut pipeline = servers.pipeline();
        for u in &retry {
            pipeline.decr(u.key, u.delta, u.cas)?;
        }
        let replies = pipeline.send().await?;
        changed = Vec::new();
        for (slot, u) in retry.into_iter().enumerate() {
            if *replies.get(slot)? == Reply::Exists {
                changed.push(u);
            }
        }
    }
    Ok(())
}

/// One item after the first round trip.
struct Step {
    count: u64,
    ttl: Option<i64>,
    cas: Option<u64>,
    seen: Seen,
}

pub(crate) async fn decide(servers: &Servers, batch: &Batch<'_>) -> Result<Outcome, StorageError> {
    let now = batch.now;
    let keys: Vec<String> = batch.items.iter().map(|item| item.key.storage_key(&item.limit)).collect();
    let mut pipeline = servers.pipeline();
    let mut hits = Vec::with_capacity(keys.len());
    for (item, key) in batch.items.iter().zip(&keys) {
        // A cost above the amount can never pass: it is refused without
        // being counted.
        let hit = consumes(batch.mode) && item.action == Action::Hit && item.cost <= item.limit.amount();
        if hit {
            pipeline.incr(key, item.cost, Exptime::after(item.limit.window_secs(), now))?;
        } else {
            pipeline.get(key)?;
        }
        hits.push(hit);
    }
    let replies = pipeline.send().await?;

    let mut steps = Vec::with_capacity(keys.len());
    let mut expires = servers.pipeline();
    for (slot, ((item, key), hit)) in batch.items.iter().zip(&keys).zip(&hits).enumerate() {
        let reply = replies.get(slot)?;
        let count = count(reply)?;
        let meta = reply.meta().unwrap_or_default();
        let amount = item.limit.amount();
        let allowed = allows(*hit, count, item.cost, amount);
        let exptime = Exptime::after(item.limit.window_secs(), now);
        // Only the hit that created the counter writes the expiry `limits`
        // reads for its reset time (without waiting for it): its count is
        // its cost and its TTL the full window (`ma` has no flag saying it
        // created the item). A live counter an undo brought back to 0 keeps
        // the end it has, unless it was created moments before (the same
        // second, or within a minute for a window over 30 days) and its end
        // then moves by as much.
        if *hit && count == item.cost && exptime.is_fresh(meta.ttl, now) {
            let end = float_seconds(now.saturating_add(item.limit.window()));
            // A key too long for its `/expires` sibling goes without (as
            // `limits` could not use it at all); the refused command leaves
            // the pipeline as it was.
            let _ = expires.set(&expires_key(key), end.as_bytes(), exptime);
        }
        steps.push(Step { count, ttl: meta.ttl, cas: meta.cas, seen: Seen { allowed, consumed: *hit } });
    }
    if !expires.is_empty() {
        expires.send_detached();
    }

    let seen: Vec<Seen> = steps.iter().map(|s| s.seen).collect();
    let plan = plan(batch.mode, &seen, false);
    // One decrement per key, with the CAS and TTL of our last increment.
    let mut undos: Vec<Undo<'_>> = Vec::new();
    for (((item, key), step), undo) in batch.items.iter().zip(&keys).zip(&steps).zip(&plan.undo) {
        if !undo {
            continue;
        }
        match undos.iter_mut().find(|u| u.key == key.as_str()) {
            Some(u) => {
                u.delta = u.delta.saturating_add(item.cost);
                (u.cas, u.ttl) = (step.cas, step.ttl);
            }
            None => undos.push(Undo {
                key,
                delta: item.cost,
                cas: step.cas,
                ttl: step.ttl,
                window: item.limit.window_secs(),
            }),
        }
    }
    // The decision stands if the undo fails: the counters then stay
    // higher, which only refuses more.
    let given_back: Vec<(String, u64)> = undos.iter().map(|u| (u.key.to_owned(), u.delta)).collect();
    if !undos.is_empty() {
        let _ = undo(servers, undos).await;
    }

    let mut outcome = Outcome::with_capacity(keys.len());
    for (i, ((item, key), step)) in batch.items.iter().zip(&keys).zip(&steps).enumerate() {
        if !plan.reported.get(i).copied().unwrap_or(false) {
            outcome.push(None);
            continue;
        }
        let count = match given_back.iter().find(|(k, _)| k == key) {
            // The counter as the undo left it: the last value this batch
            // saw for the key, less what was given back.
            Some((_, delta)) if plan.undo.get(i).copied().unwrap_or(false) => {
                let last = steps.iter().zip(&keys).filter(|(_, k)| *k == key).map(|(s, _)| s.count).next_back();
                last.unwrap_or(step.count).saturating_sub(*delta)
            }
            _ => step.count,
        };
        outcome.push(Some(state(&item.limit, count, step.ttl, step.seen.allowed, item.cost, now)));
    }
    Ok(outcome)
}

fn state(limit: &RateLimit, count: u64, ttl: Option<i64>, allowed: bool, cost: u64, now: Timestamp) -> LimitState {
    let amount = limit.amount();
    let remaining = amount.saturating_sub(count);
    // Memcached's clock ticks in whole seconds, so `now + ttl` is never
    // before the counter really expires (and at most a second after).
    let reset_at = match ttl.and_then(|t| u64::try_from(t).ok()) {
        Some(secs) if secs > 0 => now.saturating_add(Duration::from_secs(secs)),
        _ => now,
    };
    if allowed {
        LimitState::allowed(remaining, reset_at)
    } else {
        LimitState::limited(remaining, reset_at, (cost <= amount).then_some(reset_at))
    }
}

pub(crate) async fn clear(servers: &Servers, key: &str) -> Result<(), StorageError> {
    let mut pipeline = servers.pipeline();
    pipeline.delete(key)?;
    pipeline.delete(&expires_key(key))?;
    pipeline.send().await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_written_as_python_writes_floats() {
        assert_eq!(float_seconds(Timestamp::from_nanos(1_795_706_165_115_997_800)), "1795706165.1159978");
        assert_eq!(float_seconds(Timestamp::from_secs(1_795_706_165)), "1795706165.0");
    }

    #[test]
    fn an_undo_belongs_to_its_window() {
        assert!(same_window(Some(60), Some(59), 60));
        assert!(same_window(Some(60), Some(60), 60), "no tick between the increment and the undo");
        assert!(!same_window(Some(1), Some(60), 60), "the next window's counter");
        assert!(!same_window(Some(1), Some(1), 1), "ambiguous for one-second windows: left counted");
        assert!(!same_window(Some(5), None, 60));
    }
}

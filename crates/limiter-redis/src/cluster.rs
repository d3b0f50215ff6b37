//! Batches on a Redis cluster, whose scripts may only touch keys of one
//! slot. `limits`' keys carry no hash tag (the sliding window's pair shares
//! the `{…}` tag around its key), so a request's limits usually lie in as
//! many slots as it has limits.
//!
//! * One slot: one script call, atomic, as on a single server.
//! * Several slots, [`Mode::Peek`] or `Sequential` without stop: the items
//!   grouped by slot, one call per group, the groups sent in parallel and
//!   the answers put back in batch order. Each item is decided exactly;
//!   only the snapshot is per slot.
//! * Several slots, `Sequential` stopping at the first refusal (the
//!   default): the items after a refusal must not be consumed. Two
//!   parallel phases: a trial without consuming ([`Run::Trial`]) finds the
//!   first item that would refuse; then the items up to it are hit, one
//!   call per slot, each stopping at its own first refusal. Exact unless a
//!   concurrent request changes a counter between the phases: if an
//!   earlier item then refuses, the items hit after it stay counted
//!   (reported as not evaluated: over-counting, never over-admitting); if
//!   the item the trial saw refusing passes, the rest is decided in order,
//!   one call per run of one slot.
//! * Several slots, [`Mode::AllOrNothing`]: two phases, each in parallel.
//!   First every group is decided without consuming ([`Run::Trial`]); if
//!   any item refuses, that is the answer and nothing is consumed. Otherwise
//!   every group runs all-or-nothing for real. Atomicity holds per slot
//!   only: a concurrent request between the phases can make one group
//!   refuse while another has consumed. The request is then refused (its
//!   states say so) and the consumed groups stay counted: the error is
//!   over-counting, never admitting beyond a limit.
//!
//! A call of one group that fails (its node down or too slow) fails the
//! whole request with that error, for the failure policy to answer; the
//! calls of the other groups are not undone, so the hits they counted stay
//! counted. A failed call is never sent again (see the crate docs).

use limiter_core::StorageError;
use limiter_core::Timestamp;
use limiter_core::storage::{Item, LimitState, Mode};

use crate::{RedisStorage, Run, ScriptStrategy, slot};

type States = Vec<Option<LimitState>>;

fn passed(state: &Option<LimitState>) -> bool {
    state.as_ref().is_some_and(|s| s.allowed)
}

/// Decides `items` on a cluster; see the [module docs](self).
pub(crate) async fn decide<S: ScriptStrategy>(
    storage: &RedisStorage,
    mode: Mode,
    items: &[&Item<'_>],
    now: Timestamp,
) -> Result<States, StorageError> {
    let slots: Vec<u16> = items.iter().map(|item| slot::slot(&S::first_key(storage, item))).collect();
    let run = Run::from(mode);
    if slots.windows(2).all(|pair| pair.first() == pair.get(1)) {
        return storage.call::<S>(run, items, now).await;
    }
    match run {
        Run::Stop => stop_at_first_refusal::<S>(storage, items, &slots, now).await,
        Run::NoStop | Run::Peek => in_parallel::<S>(storage, run, items, &slots, now).await,
        Run::AllOrNothing | Run::Trial => {
            let dry = in_parallel::<S>(storage, Run::Trial, items, &slots, now).await?;
            if !dry.iter().all(passed) {
                return Ok(dry);
            }
            in_parallel::<S>(storage, Run::AllOrNothing, items, &slots, now).await
        }
    }
}

/// Sequential, stopping at the first refusal, in two parallel phases: a
/// trial finds the first item that would refuse; then the items up to it
/// are hit, each slot's share stopping at its own first refusal.
async fn stop_at_first_refusal<S: ScriptStrategy>(
    storage: &RedisStorage,
    items: &[&Item<'_>],
    slots: &[u16],
    now: Timestamp,
) -> Result<States, StorageError> {
    let trial = in_parallel::<S>(storage, Run::Trial, items, slots, now).await?;
    let cut = trial.iter().position(|s| !passed(s)).map_or(items.len(), |first| first + 1);
    let (now_items, later_items) = items.split_at(cut.min(items.len()));
    let (now_slots, later_slots) = slots.split_at(cut.min(slots.len()));
    let mut states = in_parallel::<S>(storage, Run::Stop, now_items, now_slots, now).await?;
    if let Some(first) = states.iter().position(|s| !passed(s)) {
        // A concurrent request made an earlier item refuse after the trial:
        // the items hit after it stay counted, but are reported unevaluated.
        states.truncate(first + 1);
        states.resize(items.len(), None);
        return Ok(states);
    }
    if !later_items.is_empty() {
        // The item the trial saw refusing passed after all: go on in order.
        states.extend(in_order::<S>(storage, later_items, later_slots, now).await?);
    }
    Ok(states)
}

/// Runs of one slot, in order, stopping after the first refusal.
async fn in_order<S: ScriptStrategy>(
    storage: &RedisStorage,
    items: &[&Item<'_>],
    slots: &[u16],
    now: Timestamp,
) -> Result<States, StorageError> {
    let mut states = Vec::with_capacity(items.len());
    let mut rest_items = items;
    let mut rest_slots = slots;
    while let Some(first) = rest_slots.first() {
        let run = rest_slots.iter().take_while(|s| *s == first).count();
        let (now_items, later_items) = rest_items.split_at(run.min(rest_items.len()));
        let part = storage.call::<S>(Run::Stop, now_items, now).await?;
        let stopped = !part.iter().all(passed);
        states.extend(part);
        if stopped {
            break;
        }
        rest_items = later_items;
        rest_slots = rest_slots.get(run..).unwrap_or_default();
    }
    states.resize(items.len(), None);
    Ok(states)
}

/// One call per slot, all at once, the answers in batch order.
async fn in_parallel<S: ScriptStrategy>(
    storage: &RedisStorage,
    run: Run,
    items: &[&Item<'_>],
    slots: &[u16],
    now: Timestamp,
) -> Result<States, StorageError> {
    let mut groups: Vec<(u16, Vec<usize>)> = Vec::new();
    for (index, &slot) in slots.iter().enumerate() {
        match groups.iter_mut().find(|(s, _)| *s == slot) {
            Some((_, members)) => members.push(index),
            None => groups.push((slot, vec![index])),
        }
    }
    let calls = groups.iter().map(|(_, members)| {
        let part: Vec<&Item<'_>> = members.iter().filter_map(|&i| items.get(i).copied()).collect();
        async move { storage.call::<S>(run, &part, now).await }
    });
    let answers = futures_util::future::try_join_all(calls).await?;
    let mut states: States = vec![None; items.len()];
    for ((_, members), part) in groups.iter().zip(answers) {
        for (&index, state) in members.iter().zip(part) {
            if let Some(place) = states.get_mut(index) {
                *place = state;
            }
        }
    }
    Ok(states)
}

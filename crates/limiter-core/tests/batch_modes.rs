//! Batch decisions through `RateLimiter::decide`, for every strategy on the
//! memory storage: `Mode::AllOrNothing` leaves every state as it was when it
//! refuses and consumes every cost when it allows; `Mode::Sequential` with
//! `stop_at_first_breach` evaluates nothing after the first refusal. Some
//! items are marked `Action::Peek`: they take part in the decision and never
//! consume.

use std::collections::HashMap;
use std::time::Duration;

use limiter_core::storage::Action;
use limiter_core::{
    AnyStorage, Granularity, Item, Key, LimitState, ManualClock, MemoryStorage, Mode, RateLimit, RateLimiter,
    StrategyKind, Timestamp, WindowStats,
};
use proptest::prelude::*;
use proptest::sample::select;

use crate::support::{NS, START_SECS, block_on, config};

type Limiter = RateLimiter<StrategyKind, AnyStorage, ManualClock>;

const KEYS: [&[&str]; 2] = [&["10.0.0.1", "batch"], &["10.0.0.2", "batch"]];

/// A previous hit: which limit, which key, what cost, after how long.
type Past = (usize, usize, u64, u64);
/// An item of the batch: which limit, which key, what cost, whether only
/// peeked.
type Wanted = (usize, usize, u64, bool);

#[derive(Clone, Debug)]
struct Case {
    kind: StrategyKind,
    /// (amount, window in seconds) of each limit.
    limits: Vec<(u64, u64)>,
    history: Vec<Past>,
    items: Vec<Wanted>,
}

fn case() -> impl Strategy<Value = Case> {
    let limit = (0..=8u64, 1..=3u64);
    let past = (0..2usize, 0..KEYS.len(), 0..=3u64, 0..=2 * NS);
    let cost = prop_oneof![4 => 0..=2u64, 1 => 0..=9u64];
    let item = (0..2usize, 0..KEYS.len(), cost, prop::bool::weighted(0.2));
    (
        select(StrategyKind::ALL.to_vec()),
        prop::collection::vec(limit, 2),
        prop::collection::vec(past, 0..12),
        prop::collection::vec(item, 1..5),
        any::<bool>(),
    )
        .prop_map(|(kind, limits, history, mut items, twice)| {
            // Often the same counter twice in one batch.
            if twice {
                items.push(items[0]);
            }
            Case { kind, limits, history, items }
        })
}

/// A limiter with `case.kind` on a fresh memory storage, after `case.history`.
fn prepared(case: &Case, limits: &[RateLimit]) -> Limiter {
    prepared_on(case, limits, MemoryStorage::new())
}

/// A limiter with `case.kind` on `storage`, after `case.history`.
fn prepared_on(case: &Case, limits: &[RateLimit], storage: MemoryStorage) -> Limiter {
    let clock = ManualClock::new(Timestamp::from_secs(START_SECS));
    let limiter = RateLimiter::dynamic(case.kind, AnyStorage::new(storage)).unwrap().with_clock(clock.clone());
    for &(li, ki, cost, after) in &case.history {
        clock.advance(Duration::from_nanos(after));
        block_on(limiter.hit(&limits[li], KEYS[ki], cost)).unwrap();
    }
    limiter
}

fn limits_of(case: &Case) -> Vec<RateLimit> {
    case.limits.iter().map(|&(amount, secs)| RateLimit::new(amount, secs, Granularity::Second).unwrap()).collect()
}

fn items_of<'a>(case: &Case, limits: &[RateLimit]) -> Vec<Item<'a>> {
    case.items
        .iter()
        .map(|&(li, ki, cost, peek)| {
            let item = Item::new(limits[li], Key::new(KEYS[ki])).with_cost(cost);
            if peek { item.peek() } else { item }
        })
        .collect()
}

/// What a peek sees of each item's counter: its stats, and its full state
/// for the item's cost.
fn observe(limiter: &Limiter, items: &[Item<'_>]) -> Vec<(WindowStats, LimitState)> {
    items
        .iter()
        .map(|item| {
            let stats = block_on(limiter.window_stats(&item.limit, item.key.identifiers())).unwrap();
            let peek = block_on(limiter.decide(std::slice::from_ref(item), Mode::Peek)).unwrap();
            (stats, *peek.get(0).unwrap())
        })
        .collect()
}

fn check_all_or_nothing(case: &Case) -> Result<(), TestCaseError> {
    let limits = limits_of(case);
    let items = items_of(case, &limits);
    let limiter = prepared(case, &limits);
    let before = observe(&limiter, &items);
    let outcome = block_on(limiter.decide(&items, Mode::AllOrNothing)).unwrap();
    let after = observe(&limiter, &items);
    prop_assert_eq!(outcome.states().len(), items.len());
    prop_assert!(outcome.states().iter().all(Option::is_some));

    // The same hits one after the other, on a twin storage with the same past.
    let twin = prepared(case, &limits);
    let one_by_one = block_on(twin.decide(&items, Mode::Sequential { stop_at_first_breach: false })).unwrap();
    prop_assert_eq!(outcome.allowed(), one_by_one.allowed());

    if !outcome.allowed() {
        prop_assert!(outcome.states().iter().flatten().any(|s| !s.allowed), "{:?}", outcome);
        prop_assert_eq!(before, after, "a refused batch changed a counter");
        return Ok(());
    }
    // Allowed: exactly what hitting each item in turn does.
    prop_assert_eq!(&outcome, &one_by_one);
    prop_assert_eq!(&after, &observe(&twin, &items));
    if case.kind != StrategyKind::Gcra {
        // Every counter went down by the costs of its items, peeks aside.
        // (GCRA rounds each hit's time to the nanosecond; the twin
        // comparison covers it.)
        let mut spent: HashMap<(RateLimit, usize), u64> = HashMap::new();
        for &(li, ki, cost, peek) in &case.items {
            *spent.entry((limits[li], ki)).or_default() += if peek { 0 } else { cost };
        }
        for (i, &(li, ki, _, _)) in case.items.iter().enumerate() {
            prop_assert_eq!(
                after[i].0.remaining,
                before[i].0.remaining - spent[&(limits[li], ki)],
                "item {} ({:?})",
                i,
                items[i]
            );
        }
    }
    Ok(())
}

/// On a storage too small for the batch, a refused all-or-nothing batch may
/// evict other keys, but must still leave its own items as they were.
fn check_refused_in_a_full_storage(case: &Case, max_keys: usize) -> Result<(), TestCaseError> {
    let limits = limits_of(case);
    let items = items_of(case, &limits);
    let storage = MemoryStorage::builder().max_keys(max_keys).shards(1).build();
    let limiter = prepared_on(case, &limits, storage);
    let before = observe(&limiter, &items);
    let outcome = block_on(limiter.decide(&items, Mode::AllOrNothing)).unwrap();
    if !outcome.allowed() {
        prop_assert_eq!(before, observe(&limiter, &items), "a refused batch changed a counter");
    }
    Ok(())
}

fn check_stop_at_first_breach(case: &Case) -> Result<(), TestCaseError> {
    let limits = limits_of(case);
    let items = items_of(case, &limits);
    let limiter = prepared(case, &limits);
    let before = observe(&limiter, &items);
    let outcome = block_on(limiter.decide(&items, Mode::Sequential { stop_at_first_breach: true })).unwrap();
    let after = observe(&limiter, &items);
    let states = outcome.states();
    prop_assert_eq!(states.len(), items.len());

    // The same, item by item, on a twin with the same past.
    let twin = prepared(case, &limits);
    let mut refused_at = None;
    for (i, item) in items.iter().enumerate() {
        let (limit, ids) = (&item.limit, item.key.identifiers());
        let allowed = match item.action {
            Action::Hit => block_on(twin.hit(limit, ids, item.cost)).unwrap(),
            Action::Peek => block_on(twin.test(limit, ids, item.cost)).unwrap(),
        };
        prop_assert_eq!(states[i].map(|s| s.allowed), Some(allowed), "item {}", i);
        if !allowed {
            refused_at = Some(i);
            break;
        }
    }
    let Some(first) = refused_at else {
        prop_assert!(outcome.allowed());
        return Ok(());
    };
    prop_assert!(!outcome.allowed());
    // Two limit slots with the same amount and window are the same counter.
    let counter = |i: usize| (limits[case.items[i].0], case.items[i].1);
    for i in first + 1..items.len() {
        prop_assert_eq!(states[i], None, "item {} after the first refusal", i);
        // Untouched, unless an earlier item hit the same counter.
        if (0..=first).all(|j| counter(j) != counter(i) || items[j].action == Action::Peek) {
            prop_assert_eq!(before[i], after[i], "item {} after the first refusal", i);
        }
    }
    Ok(())
}

/// A refused all-or-nothing batch on a full storage: the batch's own new
/// key evicts an earlier item of the batch, which must still end as it was.
#[test]
fn refused_batch_restores_an_item_its_own_insert_evicted() {
    let storage = MemoryStorage::builder().max_keys(1).shards(1).build();
    let clock = ManualClock::new(Timestamp::from_secs(START_SECS));
    let limiter = RateLimiter::new(limiter_core::FixedWindow, storage).with_clock(clock);
    let limit = RateLimit::new(5, 1, Granularity::Minute).unwrap();
    assert!(block_on(limiter.hit(&limit, &["a"], 1)).unwrap());
    let items = [Item::new(limit, Key::new(&["a"])), Item::new(limit, Key::new(&["b"])).with_cost(6)];
    let outcome = block_on(limiter.decide(&items, Mode::AllOrNothing)).unwrap();
    assert!(!outcome.allowed());
    let stats = block_on(limiter.window_stats(&limit, &["a"])).unwrap();
    assert_eq!(stats.remaining, 4, "the refused batch reset the counter of \"a\"");
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn all_or_nothing_is_all_or_nothing(case in case()) {
        check_all_or_nothing(&case)?;
    }

    #[test]
    fn sequential_stops_at_the_first_breach(case in case()) {
        check_stop_at_first_breach(&case)?;
    }

    #[test]
    fn refused_all_or_nothing_changes_nothing_in_a_full_storage(
        case in case(),
        max_keys in 1..=4usize,
    ) {
        check_refused_in_a_full_storage(&case, max_keys)?;
    }
}

//! Each strategy, run through `RateLimiter` on the memory storage with a
//! manual clock, against a naive model written straight from the semantics
//! of `limits` (reference §2.3, §2.8) and the strategies' documentation.
//!
//! The models are deliberately simple (a list of every hit, a map of every
//! bucket, exact rationals) so that they are obviously right; the property is
//! that the real thing decides every hit and peek the same way, and reports
//! the same `remaining`, at every step of a random history whose clock stops
//! on window boundaries, one nanosecond either side of them, and in between.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::Duration;

use limiter_core::{
    Clock, FixedWindow, Gcra, Granularity, ManualClock, MemoryStorage, MovingWindow, RateLimit, RateLimiter,
    SlidingWindowCounter, Strategy as LimiterStrategy, Supports, Timestamp,
};
use proptest::prelude::*;
use proptest::sample::Index;

use crate::support::{NS, START_SECS, block_on, config};

/// The limit as the models see it: an amount per a window of nanoseconds.
#[derive(Clone, Copy, Debug)]
struct Lim {
    amount: u64,
    window: u64,
}

/// The state of one key in a model.
trait KeyModel: Default + Debug {
    /// `hit`: consumes `cost` if it passes; returns whether it did.
    fn hit(&mut self, l: Lim, cost: u64, now: u64) -> bool;
    /// `test`: whether `cost` would pass now.
    fn test(&self, l: Lim, cost: u64, now: u64) -> bool;
    /// `get_window_stats(...).remaining`.
    fn remaining(&self, l: Lim, now: u64) -> u64;
    /// Times at which the state's answers may change.
    fn boundaries(&self, l: Lim) -> Vec<u64>;
}

/// Fixed window: a counter and the end of its window, set by the first hit
/// (`incr(key, expiry, cost)`). Refused hits count, as in `limits`, except a
/// cost above the amount, which can never pass and is not counted. The key
/// expires when `now >= end`, as `limits`' memory storage expires it.
#[derive(Default, Debug)]
struct FixedModel {
    count: u64,
    end: u64,
}

impl FixedModel {
    fn live(&self, now: u64) -> u64 {
        if now < self.end { self.count } else { 0 }
    }
}

impl KeyModel for FixedModel {
    fn hit(&mut self, l: Lim, cost: u64, now: u64) -> bool {
        if cost > l.amount {
            return false;
        }
        if now >= self.end {
            self.end = now + l.window;
            self.count = 0;
        }
        self.count += cost;
        self.count <= l.amount
    }

    fn test(&self, l: Lim, cost: u64, now: u64) -> bool {
        // limits: get(key) < amount - cost + 1.
        cost <= l.amount && self.live(now) + cost <= l.amount
    }

    fn remaining(&self, l: Lim, now: u64) -> u64 {
        l.amount.saturating_sub(self.live(now))
    }

    fn boundaries(&self, _: Lim) -> Vec<u64> {
        vec![self.end]
    }
}

/// Moving window: every hit's timestamp, newest first (`events[key]`).
/// `acquire_entry` refuses if `cost > amount` or if the entry at index
/// `amount - cost` is at or after `now - window`; otherwise it records
/// `cost` copies of `now`. `test` applies the same rule without recording;
/// `remaining` counts the entries at or after `now - window` (the rule of
/// `acquire`; `limits`' memory storage counts strictly after for reads, a
/// difference the crate documents).
#[derive(Default, Debug)]
struct MovingModel {
    log: Vec<u64>,
}

impl KeyModel for MovingModel {
    fn hit(&mut self, l: Lim, cost: u64, now: u64) -> bool {
        if !self.test(l, cost, now) {
            return false;
        }
        let mut newer = vec![now; usize::try_from(cost).unwrap()];
        newer.append(&mut self.log);
        self.log = newer;
        true
    }

    fn test(&self, l: Lim, cost: u64, now: u64) -> bool {
        let Some(index) = l.amount.checked_sub(cost) else {
            return false;
        };
        match self.log.get(usize::try_from(index).unwrap()) {
            Some(&t) => t < now.saturating_sub(l.window),
            None => true,
        }
    }

    fn remaining(&self, l: Lim, now: u64) -> u64 {
        let start = now.saturating_sub(l.window);
        let count = self.log.iter().filter(|&&t| t >= start).count();
        l.amount.saturating_sub(count as u64)
    }

    fn boundaries(&self, l: Lim) -> Vec<u64> {
        self.log.iter().map(|&t| t + l.window).collect()
    }
}

/// Sliding window counter with epoch-aligned buckets (`key/<now // window>`,
/// as `limits`' memory storage): the weighted count is
/// `floor(prev · left / window) + cur`, where `left` is the time left in the
/// current bucket; a hit is refused if `cost > amount` or
/// `weighted + cost > amount`, otherwise the current bucket grows by `cost`.
#[derive(Default, Debug)]
struct SlidingModel {
    buckets: BTreeMap<u64, u64>,
}

impl SlidingModel {
    fn weighted(&self, l: Lim, now: u64) -> u64 {
        let bucket = now / l.window;
        let cur = self.buckets.get(&bucket).copied().unwrap_or(0);
        let prev = bucket.checked_sub(1).and_then(|b| self.buckets.get(&b)).copied().unwrap_or(0);
        let left = (bucket + 1) * l.window - now;
        let share = u128::from(prev) * u128::from(left) / u128::from(l.window);
        u64::try_from(share).unwrap() + cur
    }
}

impl KeyModel for SlidingModel {
    fn hit(&mut self, l: Lim, cost: u64, now: u64) -> bool {
        if !self.test(l, cost, now) {
            return false;
        }
        *self.buckets.entry(now / l.window).or_default() += cost;
        true
    }

    fn test(&self, l: Lim, cost: u64, now: u64) -> bool {
        cost <= l.amount && self.weighted(l, now) + cost <= l.amount
    }

    fn remaining(&self, l: Lim, now: u64) -> u64 {
        l.amount.saturating_sub(self.weighted(l, now))
    }

    fn boundaries(&self, l: Lim) -> Vec<u64> {
        let mut out = Vec::new();
        for (&bucket, &count) in &self.buckets {
            let next = (bucket + 1) * l.window;
            let end = (bucket + 2) * l.window;
            out.extend([next, end]);
            // While this bucket is the previous one, its weighted share drops
            // by one each time `count · left / window` crosses an integer.
            for k in 1..=count {
                let left = u128::from(k) * u128::from(l.window) / u128::from(count);
                out.push(end - u64::try_from(left).unwrap());
            }
        }
        out
    }
}

/// GCRA as a token bucket, in exact rationals: with `T = window / amount`,
/// a cost passes iff `max(tat, now) - now + cost · T <= window` (multiplied
/// through by `amount`, in 128 bits); a pass moves `tat` to
/// `max(tat, now) + floor(cost · T)`. Remaining is `amount` minus the tokens
/// in use, a partly refilled token counting as in use.
#[derive(Default, Debug)]
struct GcraModel {
    tat: u64,
}

impl KeyModel for GcraModel {
    fn hit(&mut self, l: Lim, cost: u64, now: u64) -> bool {
        if !self.test(l, cost, now) {
            return false;
        }
        if cost > 0 {
            let step = u128::from(cost) * u128::from(l.window) / u128::from(l.amount);
            self.tat = self.tat.max(now) + u64::try_from(step).unwrap();
        }
        true
    }

    fn test(&self, l: Lim, cost: u64, now: u64) -> bool {
        let backlog = u128::from(self.tat.saturating_sub(now));
        let (amount, window) = (u128::from(l.amount), u128::from(l.window));
        cost <= l.amount && backlog * amount + u128::from(cost) * window <= window * amount
    }

    fn remaining(&self, l: Lim, now: u64) -> u64 {
        let backlog = u128::from(self.tat.saturating_sub(now));
        let used = (backlog * u128::from(l.amount)).div_ceil(u128::from(l.window));
        l.amount.saturating_sub(u64::try_from(used).unwrap())
    }

    fn boundaries(&self, l: Lim) -> Vec<u64> {
        // A token comes back every T before the bucket is full again at `tat`.
        (0..=l.amount)
            .map(|j| {
                let back = u128::from(j) * u128::from(l.window) / u128::from(l.amount.max(1));
                self.tat.saturating_sub(u64::try_from(back).unwrap())
            })
            .collect()
    }
}

#[derive(Clone, Debug)]
enum Op {
    /// `hit` on one of the keys.
    Hit { key: usize, cost: u64 },
    /// `test` on one of the keys.
    Test { key: usize, cost: u64 },
    /// Moves the clock forward by this many nanoseconds.
    Advance(u64),
    /// Moves the clock to one of the models' boundaries still ahead, plus
    /// `delta` ns (if that is in the future).
    ToBoundary { pick: Index, delta: i8 },
    /// `clear` on one of the keys.
    Clear { key: usize },
}

#[derive(Clone, Debug)]
struct Case {
    amount: u64,
    window_secs: u64,
    /// Nanoseconds after `START_SECS` at which the clock starts.
    start: u64,
    ops: Vec<Op>,
}

const KEYS: [&[&str]; 2] = [&["10.0.0.1", "model"], &["10.0.0.2", "model"]];

fn op(amount: u64, window: u64) -> impl Strategy<Value = Op> {
    let key = 0..KEYS.len();
    let cost = 0..=amount + 2;
    let advance = prop_oneof![
        0..=2u64,
        0..=1_000u64,
        0..=window,
        Just(window),
        (1..=amount.max(1)).prop_map(move |k| window / amount.max(1) * k),
        (0..=3u64).prop_map(|s| s * NS),
        0..=3 * window,
    ];
    prop_oneof![
        4 => (key.clone(), cost.clone()).prop_map(|(key, cost)| Op::Hit { key, cost }),
        2 => (key.clone(), cost).prop_map(|(key, cost)| Op::Test { key, cost }),
        2 => advance.prop_map(Op::Advance),
        2 => (any::<Index>(), -1..=1i8).prop_map(|(pick, delta)| Op::ToBoundary { pick, delta }),
        1 => key.prop_map(|key| Op::Clear { key }),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (0..=10u64, 1..=3u64).prop_flat_map(|(amount, window_secs)| {
        (prop_oneof![Just(0u64), 0..3 * NS], prop::collection::vec(op(amount, window_secs * NS), 1..80))
            .prop_map(move |(start, ops)| Case { amount, window_secs, start, ops })
    })
}

/// Runs `case` through the real limiter and through `M`, comparing every
/// decision and, after every step, both keys' `remaining`.
fn check<S, M>(strategy: S, case: &Case) -> Result<(), TestCaseError>
where
    S: LimiterStrategy,
    MemoryStorage: Supports<S>,
    M: KeyModel,
{
    let limit = RateLimit::new(case.amount, case.window_secs, Granularity::Second).unwrap();
    let l = Lim { amount: case.amount, window: limit.window_nanos() };
    let clock = ManualClock::new(Timestamp::from_nanos(START_SECS * NS + case.start));
    let limiter = RateLimiter::new(strategy, MemoryStorage::new()).with_clock(clock.clone());
    let mut models: Vec<M> = KEYS.iter().map(|_| M::default()).collect();
    let now = || clock.now().as_nanos();

    for (step, op) in case.ops.iter().enumerate() {
        match *op {
            Op::Hit { key, cost } => {
                let got = block_on(limiter.hit(&limit, KEYS[key], cost)).unwrap();
                let want = models[key].hit(l, cost, now());
                prop_assert_eq!(got, want, "step {}: {:?} at {}", step, op, now());
            }
            Op::Test { key, cost } => {
                let got = block_on(limiter.test(&limit, KEYS[key], cost)).unwrap();
                let want = models[key].test(l, cost, now());
                prop_assert_eq!(got, want, "step {}: {:?} at {}", step, op, now());
            }
            Op::Advance(by) => clock.advance(Duration::from_nanos(by)),
            Op::ToBoundary { pick, delta } => {
                let mut times: Vec<u64> = models.iter().flat_map(|m| m.boundaries(l)).filter(|&t| t >= now()).collect();
                times.sort_unstable();
                times.dedup();
                if !times.is_empty() {
                    let to = times[pick.index(times.len())].saturating_add_signed(delta.into());
                    if to > now() {
                        clock.set(Timestamp::from_nanos(to));
                    }
                }
            }
            Op::Clear { key } => {
                block_on(limiter.clear(&limit, KEYS[key])).unwrap();
                models[key] = M::default();
            }
        }
        for (key, model) in models.iter().enumerate() {
            let stats = block_on(limiter.window_stats(&limit, KEYS[key])).unwrap();
            prop_assert_eq!(
                stats.remaining,
                model.remaining(l, now()),
                "step {}: {:?}; remaining of key {} at {}",
                step,
                op,
                key,
                now()
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn fixed_window_matches_its_model(case in case()) {
        check::<_, FixedModel>(FixedWindow, &case)?;
    }

    #[test]
    fn moving_window_matches_its_model(case in case()) {
        check::<_, MovingModel>(MovingWindow, &case)?;
    }

    #[test]
    fn sliding_window_counter_matches_its_model(case in case()) {
        check::<_, SlidingModel>(SlidingWindowCounter, &case)?;
    }

    #[test]
    fn gcra_matches_its_model(case in case()) {
        check::<_, GcraModel>(Gcra, &case)?;
    }
}

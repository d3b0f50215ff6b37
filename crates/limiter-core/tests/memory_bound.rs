//! The memory storage's bound: however many unique keys arrive, a storage
//! built with `max_keys(M).shards(S)` never holds more than `M` keys (as
//! documented; so never more than `M + S` either), and a key just hit is
//! always among them.

use limiter_core::{FixedWindow, Granularity, ManualClock, MemoryStorage, RateLimit, RateLimiter, Timestamp};
use proptest::prelude::*;

use crate::support::{START_SECS, block_on, config};

/// Hits `n` distinct keys of a one-hour limit (nothing expires during the
/// test) on a storage of `max_keys` keys in `shards` shards, checking the
/// number of keys held along the way.
fn check_bound(n: usize, max_keys: usize, shards: usize) -> Result<(), TestCaseError> {
    let storage = MemoryStorage::builder().max_keys(max_keys).shards(shards).build();
    // `max_keys(0)` means 1.
    let bound = max_keys.max(1);
    prop_assert_eq!(storage.max_keys(), bound);
    let limiter =
        RateLimiter::new(FixedWindow, storage.clone()).with_clock(ManualClock::new(Timestamp::from_secs(START_SECS)));
    let limit = RateLimit::new(10, 1, Granularity::Hour).unwrap();
    for i in 0..n {
        let id = i.to_string();
        prop_assert!(block_on(limiter.hit(&limit, &[&id], 1)).unwrap());
        prop_assert_eq!(block_on(limiter.window_stats(&limit, &[&id])).unwrap().remaining, 9, "key {} was lost", i);
        if i % 16 == 15 || i + 1 == n {
            let held = storage.len();
            prop_assert!(
                held <= bound && held <= max_keys + shards,
                "{} keys held after {} inserts with max_keys({}).shards({})",
                held,
                i + 1,
                max_keys,
                shards
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn never_holds_more_than_max_keys(
        n in 0..3_000usize,
        max_keys in 0..300usize,
        shards in 1..70usize,
    ) {
        check_bound(n, max_keys, shards)?;
    }
}

/// Shard counts above `max_keys`, not powers of two, or at the clamp.
#[test]
fn bound_holds_for_awkward_shard_counts() {
    for (max_keys, shards) in [(1, 1), (1, 5), (2, 67), (3, 3), (10, 4), (100, 16), (7, 65_536), (1_000, 64)] {
        check_bound(4 * max_keys + 200, max_keys, shards).unwrap();
    }
}

//! The conformance cases. Each runs one strategy on one storage and panics,
//! naming what it expected, if the storage breaks the contract.
//!
//! Windows of a day are used where only counting matters, so that a case on
//! a real clock never straddles a window boundary; cases about time use
//! windows of two seconds.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use limiter_core::{Item, Key, Mode, RateLimit, RateLimiter, Strategy, StrategyKind, Supports};

use crate::env::{Env, TestClock};

fn limit(s: &str) -> RateLimit {
    s.parse().unwrap_or_else(|e| panic!("bad limit in the suite: {e}"))
}

/// The bounds every case needs.
pub trait Suitable<S: Strategy>: Supports<S> + Clone + Send + Sync + 'static {}
impl<S: Strategy, St: Supports<S> + Clone + Send + Sync + 'static> Suitable<S> for St {}

async fn hit<S: Strategy, St: Supports<S>, C: TestClock>(
    limiter: &RateLimiter<S, St, C>,
    limit: &RateLimit,
    id: &str,
    cost: u64,
) -> bool {
    limiter.hit(limit, &[id], cost).await.unwrap_or_else(|e| panic!("hit failed: {e}"))
}

async fn remaining<S: Strategy, St: Supports<S>, C: TestClock>(
    limiter: &RateLimiter<S, St, C>,
    limit: &RateLimit,
    id: &str,
) -> u64 {
    limiter.window_stats(limit, &[id]).await.unwrap_or_else(|e| panic!("window_stats failed: {e}")).remaining
}

/// `amount` hits pass, the next is refused, and `test` agrees.
pub async fn allows_amount_then_refuses<S: Strategy, St: Suitable<S>, C: TestClock>(env: Env<St, C>, strategy: S) {
    let limiter = env.limiter(strategy);
    let (l, id) = (limit("5/day"), env.id("a"));
    for n in 1..=5 {
        assert!(hit(&limiter, &l, &id, 1).await, "hit {n} of 5 should pass");
    }
    assert!(!hit(&limiter, &l, &id, 1).await, "hit 6 of 5 should be refused");
    assert!(!limiter.test(&l, &[&id], 1).await.unwrap(), "test after the limit should be false");
    assert_eq!(remaining(&limiter, &l, &id).await, 0);
}

/// Different identifiers, and different limits, count separately.
pub async fn keys_and_limits_are_independent<S: Strategy, St: Suitable<S>, C: TestClock>(env: Env<St, C>, strategy: S) {
    let limiter = env.limiter(strategy);
    let (l, a, b) = (limit("2/day"), env.id("a"), env.id("b"));
    assert!(hit(&limiter, &l, &a, 2).await);
    assert!(!hit(&limiter, &l, &a, 1).await);
    assert!(hit(&limiter, &l, &b, 1).await, "another identifier has its own counter");
    assert!(hit(&limiter, &limit("2/hour"), &a, 1).await, "another limit has its own counter");
    assert!(hit(&limiter, &limit("3/day"), &a, 1).await, "another amount is another limit");
    let two_ids = limiter.hit(&l, &[&a, "x"], 1).await.unwrap();
    assert!(two_ids, "more identifiers make another key");
}

/// `test` never consumes.
pub async fn test_consumes_nothing<S: Strategy, St: Suitable<S>, C: TestClock>(env: Env<St, C>, strategy: S) {
    let limiter = env.limiter(strategy);
    let (l, id) = (limit("3/day"), env.id("a"));
    for _ in 0..10 {
        assert!(limiter.test(&l, &[&id], 3).await.unwrap());
    }
    assert_eq!(remaining(&limiter, &l, &id).await, 3);
    assert!(hit(&limiter, &l, &id, 3).await);
    assert!(!limiter.test(&l, &[&id], 1).await.unwrap());
}

/// Costs are consumed whole; what remains is reported after the deduction.
pub async fn costs_are_counted<S: Strategy, St: Suitable<S>, C: TestClock>(env: Env<St, C>, strategy: S) {
    let limiter = env.limiter(strategy);
    let (l, id) = (limit("5/day"), env.id("a"));
    assert!(hit(&limiter, &l, &id, 3).await);
    assert_eq!(remaining(&limiter, &l, &id).await, 2);
    assert!(!limiter.test(&l, &[&id], 3).await.unwrap());
    assert!(limiter.test(&l, &[&id], 2).await.unwrap());
    assert!(!hit(&limiter, &l, &id, 3).await, "3 more do not fit in 2");
    if strategy.kind() == StrategyKind::FixedWindow {
        // As in `limits`: the refused hit was counted, so nothing fits now.
        assert!(!hit(&limiter, &l, &id, 2).await, "fixed window counts refused hits");
    } else {
        assert!(hit(&limiter, &l, &id, 2).await, "a refused hit consumes nothing");
        assert!(!hit(&limiter, &l, &id, 1).await);
    }
    assert_eq!(remaining(&limiter, &l, &id).await, 0);
}

/// A cost above the amount can never pass, and is not counted.
pub async fn cost_above_amount_is_refused<S: Strategy, St: Suitable<S>, C: TestClock>(env: Env<St, C>, strategy: S) {
    let limiter = env.limiter(strategy);
    let (l, id) = (limit("5/day"), env.id("a"));
    assert!(!hit(&limiter, &l, &id, 6).await);
    assert!(!hit(&limiter, &l, &id, 1_000_000).await);
    assert!(!limiter.test(&l, &[&id], 6).await.unwrap());
    let ids = [id.as_str()];
    let items = [Item::new(l, Key::new(&ids)).with_cost(6)];
    let outcome = limiter.decide(&items, Mode::AllOrNothing).await.unwrap();
    assert_eq!(outcome.get(0).map(|s| s.retry_at), Some(None), "a cost that can never pass has no retry time");
    for n in 1..=5 {
        assert!(hit(&limiter, &l, &id, 1).await, "hit {n}: the oversized costs must not have been counted");
    }
}

/// An amount of 0 refuses everything.
pub async fn zero_amount_refuses_everything<S: Strategy, St: Suitable<S>, C: TestClock>(env: Env<St, C>, strategy: S) {
    let limiter = env.limiter(strategy);
    let (l, id) = (limit("0/day"), env.id("a"));
    assert!(!hit(&limiter, &l, &id, 1).await);
    assert_eq!(remaining(&limiter, &l, &id).await, 0);
}

/// Window statistics: full when fresh, after-deduction values, a reset time
/// within the window.
pub async fn window_stats<S: Strategy, St: Suitable<S>, C: TestClock>(env: Env<St, C>, strategy: S) {
    let limiter = env.limiter(strategy);
    let (l, id) = (limit("5/day"), env.id("a"));
    let before = env.clock().now();
    let fresh = limiter.window_stats(&l, &[&id]).await.unwrap();
    assert_eq!(fresh.remaining, 5);
    assert!(fresh.reset_at >= before, "a fresh window resets now or later");
    assert!(hit(&limiter, &l, &id, 2).await);
    let stats = limiter.window_stats(&l, &[&id]).await.unwrap();
    let after = env.clock().now();
    assert_eq!(stats.remaining, 3);
    assert!(stats.reset_at > before, "reset {} must be after the hits at {before}", stats.reset_at);
    assert!(
        stats.reset_at <= after.saturating_add(l.window() + env.clock().margin()),
        "reset {} is more than a window after {after}",
        stats.reset_at
    );
}

/// After the window (two, for the sliding window counter) everything passes again.
pub async fn resets_after_the_window<S: Strategy, St: Suitable<S>, C: TestClock>(env: Env<St, C>, strategy: S) {
    let limiter = env.limiter(strategy);
    let (l, id) = (limit("2 per 2 seconds"), env.id("a"));
    assert!(hit(&limiter, &l, &id, 2).await);
    assert!(!hit(&limiter, &l, &id, 1).await);
    let windows = if strategy.kind() == StrategyKind::SlidingWindowCounter { 2 } else { 1 };
    // Moving-window hits exactly one window old still count: step past them.
    env.clock().advance(l.window() * windows + env.clock().margin() + Duration::from_nanos(1)).await;
    assert_eq!(remaining(&limiter, &l, &id).await, 2, "everything is available again");
    assert!(hit(&limiter, &l, &id, 2).await);
}

/// A refusal says when to retry, and the same hit passes then (and, on an
/// exact clock, not a nanosecond before).
pub async fn retry_at_is_honest<S: Strategy, St: Suitable<S>, C: TestClock>(env: Env<St, C>, strategy: S) {
    let limiter = env.limiter(strategy);
    let (l, id) = (limit("2 per 2 seconds"), env.id("a"));
    assert!(hit(&limiter, &l, &id, 1).await);
    assert!(hit(&limiter, &l, &id, 1).await);
    let ids = [id.as_str()];
    let items = [Item::new(l, Key::new(&ids))];
    let refused = limiter.decide(&items, Mode::Peek).await.unwrap();
    let now = env.clock().now();
    let state = *refused.get(0).unwrap();
    assert!(!state.allowed);
    let retry = state.retry_at.expect("a cost within the amount can pass later");
    assert!(retry > now, "retry {retry} must be after now {now}");
    assert!(retry <= now.saturating_add(l.window() * 2), "retry {retry} is more than two windows away");
    assert_eq!(refused.retry_at(), Some(retry));
    if C::EXACT {
        env.clock().advance(retry.saturating_duration_since(now) - Duration::from_nanos(1)).await;
        assert!(!limiter.test(&l, &[&id], 1).await.unwrap(), "refused a nanosecond before retry_at");
        env.clock().advance(Duration::from_nanos(1)).await;
    } else {
        env.clock().advance(retry.saturating_duration_since(now) + env.clock().margin()).await;
    }
    assert!(hit(&limiter, &l, &id, 1).await, "passes at retry_at");
}

/// `clear` forgets one counter, and only that one.
pub async fn clear_forgets_one_counter<S: Strategy, St: Suitable<S>, C: TestClock>(env: Env<St, C>, strategy: S) {
    let limiter = env.limiter(strategy);
    let (l, a, b) = (limit("1/day"), env.id("a"), env.id("b"));
    assert!(hit(&limiter, &l, &a, 1).await);
    assert!(hit(&limiter, &l, &b, 1).await);
    limiter.clear(&l, &[&a]).await.unwrap();
    assert!(hit(&limiter, &l, &a, 1).await, "cleared");
    assert!(!hit(&limiter, &l, &b, 1).await, "not cleared");
    limiter.clear(&l, &[&env.id("never-hit")]).await.unwrap();
}

/// `reset` forgets every counter; `check` succeeds on a healthy storage.
pub async fn reset_forgets_everything<S: Strategy, St: Suitable<S>, C: TestClock>(env: Env<St, C>, strategy: S) {
    let limiter = env.limiter(strategy);
    env.storage().check().await.unwrap();
    let (l, a, b) = (limit("1/day"), env.id("a"), env.id("b"));
    assert!(hit(&limiter, &l, &a, 1).await);
    assert!(hit(&limiter, &l, &b, 1).await);
    env.storage().reset().await.unwrap();
    assert!(hit(&limiter, &l, &a, 1).await);
    assert!(hit(&limiter, &l, &b, 1).await);
}

/// For the batch cases: `1/day` already used up by `a`, `5/day` untouched
/// for `b`.
async fn tight_used_loose_fresh<S: Strategy, St: Suitable<S>, C: TestClock>(
    env: &Env<St, C>,
    limiter: &RateLimiter<S, St, C>,
) -> (RateLimit, RateLimit, String, String) {
    let (tight, loose) = (limit("1/day"), limit("5/day"));
    let (a, b) = (env.id("a"), env.id("b"));
    assert!(hit(limiter, &tight, &a, 1).await);
    (tight, loose, a, b)
}

/// Flask-Limiter's order: stop at the first breach, or go on without stopping.
pub async fn sequential_batches<S: Strategy, St: Suitable<S>, C: TestClock>(env: Env<St, C>, strategy: S) {
    let limiter = env.limiter(strategy);
    let (tight, loose, a, b) = tight_used_loose_fresh(&env, &limiter).await;
    let (ka, kb) = ([a.as_str()], [b.as_str()]);
    let items = [Item::new(tight, Key::new(&ka)), Item::new(loose, Key::new(&kb))];

    let stopped = limiter.decide(&items, Mode::Sequential { stop_at_first_breach: true }).await.unwrap();
    assert!(!stopped.allowed());
    assert!(!stopped.get(0).unwrap().allowed);
    assert_eq!(stopped.states()[1], None, "items after the first breach are not evaluated");
    assert_eq!(remaining(&limiter, &loose, &b).await, 5, "and not consumed");

    let all = limiter.decide(&items, Mode::Sequential { stop_at_first_breach: false }).await.unwrap();
    assert!(!all.allowed());
    let second = all.get(1).expect("evaluated without stop_at_first_breach");
    assert!(second.allowed);
    assert_eq!(second.remaining, 4);
    assert_eq!(remaining(&limiter, &loose, &b).await, 4, "earlier and later items stay consumed");
}

/// All or nothing: one refusal consumes nothing anywhere, even when one key
/// appears twice in the batch.
pub async fn all_or_nothing_batches<S: Strategy, St: Suitable<S>, C: TestClock>(env: Env<St, C>, strategy: S) {
    let limiter = env.limiter(strategy);
    let (tight, loose, a, b) = tight_used_loose_fresh(&env, &limiter).await;
    let (ka, kb) = ([a.as_str()], [b.as_str()]);
    let refused = [Item::new(loose, Key::new(&kb)), Item::new(tight, Key::new(&ka))];
    let outcome = limiter.decide(&refused, Mode::AllOrNothing).await.unwrap();
    assert!(!outcome.allowed());
    assert!(outcome.get(0).unwrap().allowed, "the loose limit alone would pass");
    assert!(!outcome.get(1).unwrap().allowed);
    assert_eq!(remaining(&limiter, &loose, &b).await, 5, "nothing consumed");

    let twice = [Item::new(loose, Key::new(&kb)).with_cost(3), Item::new(loose, Key::new(&kb)).with_cost(3)];
    let outcome = limiter.decide(&twice, Mode::AllOrNothing).await.unwrap();
    assert!(!outcome.allowed(), "3 + 3 do not fit in 5, even as two items");
    assert_eq!(remaining(&limiter, &loose, &b).await, 5, "nothing consumed");

    let c = env.id("c");
    let kc = [c.as_str()];
    let fits = [Item::new(loose, Key::new(&kb)).with_cost(2), Item::new(tight, Key::new(&kc))];
    let outcome = limiter.decide(&fits, Mode::AllOrNothing).await.unwrap();
    assert!(outcome.allowed());
    assert_eq!(outcome.get(0).unwrap().remaining, 3);
    assert_eq!(outcome.get(1).unwrap().remaining, 0);
    assert_eq!(remaining(&limiter, &loose, &b).await, 3, "everything consumed");
    assert!(!hit(&limiter, &tight, &c, 1).await);
}

/// Peek reports every item and consumes nothing.
pub async fn peek_batches<S: Strategy, St: Suitable<S>, C: TestClock>(env: Env<St, C>, strategy: S) {
    let limiter = env.limiter(strategy);
    let (tight, loose, a, b) = tight_used_loose_fresh(&env, &limiter).await;
    let (ka, kb) = ([a.as_str()], [b.as_str()]);
    let items = [Item::new(tight, Key::new(&ka)), Item::new(loose, Key::new(&kb))];
    let outcome = limiter.decide(&items, Mode::Peek).await.unwrap();
    assert!(!outcome.allowed());
    assert!(!outcome.get(0).unwrap().allowed);
    assert_eq!(outcome.get(1).map(|s| (s.allowed, s.remaining)), Some((true, 5)));
    assert_eq!(remaining(&limiter, &loose, &b).await, 5);
}

/// Items marked to peek take part in the decision but never consume, in
/// every mode.
pub async fn peeked_items_decide_without_consuming<S: Strategy, St: Suitable<S>, C: TestClock>(
    env: Env<St, C>,
    strategy: S,
) {
    let limiter = env.limiter(strategy);
    let (tight, loose, a, b) = tight_used_loose_fresh(&env, &limiter).await;
    let (ka, kb) = ([a.as_str()], [b.as_str()]);

    let blocked = [Item::new(tight, Key::new(&ka)).peek(), Item::new(loose, Key::new(&kb))];
    let outcome = limiter.decide(&blocked, Mode::Sequential { stop_at_first_breach: true }).await.unwrap();
    assert!(!outcome.allowed(), "a refusing peeked item refuses the request");
    assert_eq!(outcome.states()[1], None);
    let outcome = limiter.decide(&blocked, Mode::AllOrNothing).await.unwrap();
    assert!(!outcome.allowed());
    assert_eq!(remaining(&limiter, &loose, &b).await, 5, "nothing consumed");

    let passing = [Item::new(loose, Key::new(&kb)).peek(), Item::new(loose, Key::new(&kb)).with_cost(2)];
    for mode in [Mode::Sequential { stop_at_first_breach: true }, Mode::AllOrNothing] {
        let outcome = limiter.decide(&passing, mode).await.unwrap();
        assert!(outcome.allowed(), "{mode:?}");
    }
    assert_eq!(remaining(&limiter, &loose, &b).await, 1, "only the hit items consumed");
}

const CONCURRENT_HITS: usize = 100;

/// `limits`' concurrency test with async tasks: 100 concurrent hits on
/// `5/minute`, exactly 5 pass.
pub async fn exact_under_concurrent_tasks<S: Strategy, St: Suitable<S>, C: TestClock + Send + Sync + 'static>(
    env: Env<St, C>,
    strategy: S,
) {
    let limiter = Arc::new(env.limiter(strategy));
    let (l, id) = (limit("5/minute"), Arc::new(env.id("a")));
    let tasks: Vec<_> = (0..CONCURRENT_HITS)
        .map(|_| {
            let (limiter, id) = (Arc::clone(&limiter), Arc::clone(&id));
            tokio::spawn(async move { limiter.hit(&l, &[id.as_str()], 1).await.unwrap() })
        })
        .collect();
    let mut passed = 0;
    for task in tasks {
        passed += usize::from(task.await.unwrap());
    }
    assert_eq!(passed, 5, "exactly 5 of {CONCURRENT_HITS} concurrent hits may pass");
}

/// The same with OS threads released together by a barrier.
pub async fn exact_under_concurrent_threads<S: Strategy, St: Suitable<S>, C: TestClock + Send + Sync + 'static>(
    env: Env<St, C>,
    strategy: S,
) {
    let limiter = Arc::new(env.limiter(strategy));
    let (l, id) = (limit("5/minute"), env.id("a"));
    let runtime = tokio::runtime::Handle::current();
    let passed = passes_in_threads(move || runtime.block_on(limiter.hit(&l, &[id.as_str()], 1)).unwrap()).await;
    assert_eq!(passed, 5, "exactly 5 of {CONCURRENT_HITS} concurrent hits may pass");
}

/// The two limits of the batch cases below: 5, then 3, per day.
const OUTER: &str = "5/day";
const INNER: &str = "3/day";

/// Batches of two limits on one client, sent by threads released together:
/// Flask-Limiter's order (stop at the first breach), each item decided
/// atomically, lets exactly the tighter limit's amount through whatever the
/// interleaving (the first 5 to reach the outer limit pass it, the first 3
/// of those the inner one), and leaves both counters spent.
pub async fn exact_sequential_batches_under_concurrent_threads<
    S: Strategy,
    St: Suitable<S>,
    C: TestClock + Send + Sync + 'static,
>(
    env: Env<St, C>,
    strategy: S,
) {
    let (limiter, id) = (Arc::new(env.limiter(strategy)), env.id("a"));
    let passed = two_limit_batches_in_threads(&limiter, &id).await;
    assert_eq!(passed, 3, "exactly 3 of {CONCURRENT_HITS} concurrent two-limit batches may pass");
    assert_eq!(
        remaining(&limiter, &limit(OUTER), &id).await,
        0,
        "the 5 batches that reached the second limit spent the first"
    );
    assert_eq!(remaining(&limiter, &limit(INNER), &id).await, 0);
}

/// The same batches on a storage documented to over-count, never to
/// over-admit, under concurrency: at most the tighter limit's amount passes.
pub async fn sequential_batches_never_over_admit_under_concurrent_threads<
    S: Strategy,
    St: Suitable<S>,
    C: TestClock + Send + Sync + 'static,
>(
    env: Env<St, C>,
    strategy: S,
) {
    let (limiter, id) = (Arc::new(env.limiter(strategy)), env.id("a"));
    let passed = two_limit_batches_in_threads(&limiter, &id).await;
    assert!(passed <= 3, "{passed} of {CONCURRENT_HITS} concurrent two-limit batches passed a 3/day limit");
}

/// How many of [`CONCURRENT_HITS`] threads sending `[OUTER, INNER]` for
/// `id` in one sequential batch (stopping at the first breach) pass.
async fn two_limit_batches_in_threads<S: Strategy, St: Suitable<S>, C: TestClock + Send + Sync + 'static>(
    limiter: &Arc<RateLimiter<S, St, C>>,
    id: &str,
) -> usize {
    let (limiter, id, limits) = (Arc::clone(limiter), id.to_owned(), [limit(OUTER), limit(INNER)]);
    let runtime = tokio::runtime::Handle::current();
    passes_in_threads(move || {
        let ids = [id.as_str()];
        let items = limits.map(|l| Item::new(l, Key::new(&ids)));
        let outcome = runtime.block_on(limiter.decide(&items, Mode::Sequential { stop_at_first_breach: true }));
        outcome.unwrap_or_else(|e| panic!("decide failed: {e}")).allowed()
    })
    .await
}

/// Runs `attempt` on [`CONCURRENT_HITS`] OS threads released together by a
/// barrier; how many returned `true`.
async fn passes_in_threads(attempt: impl Fn() -> bool + Send + Sync + 'static) -> usize {
    let (attempt, barrier) = (Arc::new(attempt), Arc::new(Barrier::new(CONCURRENT_HITS)));
    let threads: Vec<_> = (0..CONCURRENT_HITS)
        .map(|_| {
            let (attempt, barrier) = (Arc::clone(&attempt), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                attempt()
            })
        })
        .collect();
    tokio::task::spawn_blocking(move || threads.into_iter().map(|t| usize::from(t.join().unwrap())).sum())
        .await
        .unwrap()
}

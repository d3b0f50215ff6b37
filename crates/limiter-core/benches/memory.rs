//! Time per check of the memory storage, side by side with `governor` 0.10
//! (keyed, `DashMap` state store, default `QuantaClock`), in the same run, on
//! the real clocks (our `SystemClock`, governor's default clock).
//!
//! Cases, each with our four strategies through the public API, async
//! (`RateLimiter::new(strategy, MemoryStorage).hit(&limit, &[ip], 1)`, polled
//! once) and sync (`.hit_sync(&limit, &[ip], 1)`), and governor's
//! `check_key(&ip)`:
//!
//! - `hot_key_allow` / `hot_key_deny`: one key checked over and over;
//! - `1m_keys_allow` / `1m_keys_deny`: 1,000,000 distinct keys inserted
//!   first, then checked in a pseudo-random order (a fixed shuffle of the
//!   insertion order), so that every check misses the CPU caches.
//!
//! Keys are IPv4 addresses: `IpAddr` for governor, the address formatted as a
//! string (formatted before the timed loop) for us. Limits: `allow` uses a
//! limit the check path never exhausts (10⁹ per second for the hot key,
//! 1,000 per hour for 1 M keys, so that every key stays live); `deny` uses
//! 1 per hour, already spent by the pre-population. See `BENCHMARKS.md`.
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-bench cargo bench -p limiter-core --bench memory -- \
//!     --warm-up-time 1 --measurement-time 3 --noplot
//! ```

// Setup failures (an invalid limit or quota) must abort the benchmark loudly;
// `expect` is used only while building the fixtures, never in a timed loop.
#![allow(clippy::expect_used)]

use std::fmt::Write as _;
use std::future::Future;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use governor::Quota;
use governor::clock::DefaultClock;
use governor::state::keyed::DashMapStateStore;
use limiter_core::storage::memory::MemoryStrategy;
use limiter_core::{
    FixedWindow, Gcra, Granularity, MemoryStorage, MovingWindow, RateLimit, RateLimiter, SlidingWindowCounter,
    Strategy, Supports,
};

/// How many distinct keys the many-keys cases hold.
const MANY: usize = 1_000_000;

/// governor keyed by `IpAddr` on its default `DashMap` store and default clock.
type Governor = governor::RateLimiter<IpAddr, DashMapStateStore<IpAddr>, DefaultClock>;

/// Polls a future once; the memory storage's futures are always ready.
fn poll_once<F: Future>(future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    }
}

/// One of our checks: `hit(&limit, &[id], 1)`, allowed or not.
fn hit<S>(limiter: &RateLimiter<S, MemoryStorage>, limit: &RateLimit, id: &str) -> bool
where
    S: Strategy,
    MemoryStorage: Supports<S>,
{
    matches!(poll_once(limiter.hit(limit, &[id], 1)), Some(Ok(true)))
}

/// SplitMix64, for a reproducible shuffle without another dependency.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The keys of a case: inserted in `insert` order, checked in `visit` order.
struct Keys {
    insert: Vec<IpAddr>,
    visit_ips: Vec<IpAddr>,
    /// The same addresses as `visit_ips`, formatted, allocated in visit order.
    visit_strs: Vec<String>,
}

impl Keys {
    /// One key, checked over and over.
    fn hot() -> Self {
        let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        Keys { insert: vec![ip], visit_ips: vec![ip], visit_strs: vec![ip.to_string()] }
    }

    /// `n` distinct addresses from 10.0.0.0 up, visited in a shuffled order.
    fn many(n: usize) -> Self {
        let insert: Vec<IpAddr> = (0..n)
            .map(|i| {
                let offset = u32::try_from(i).expect("fewer than 2^24 keys");
                IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + offset))
            })
            .collect();
        let mut visit_ips = insert.clone();
        let mut seed = 0x5EED;
        for i in (1..visit_ips.len()).rev() {
            let j = usize::try_from(splitmix(&mut seed) % (i as u64 + 1)).unwrap_or(0);
            visit_ips.swap(i, j);
        }
        let visit_strs = visit_ips.iter().map(IpAddr::to_string).collect();
        Keys { insert, visit_ips, visit_strs }
    }
}

/// The limits of a case, ours and governor's.
#[derive(Clone, Copy)]
struct Limits {
    ours: RateLimit,
    governor: Quota,
}

fn limits(amount: u32, granularity: Granularity) -> Limits {
    let n = NonZeroU32::new(amount).expect("a positive amount");
    let governor = match granularity {
        Granularity::Second => Quota::per_second(n),
        Granularity::Minute => Quota::per_minute(n),
        _ => Quota::per_hour(n),
    };
    Limits { ours: RateLimit::per(u64::from(amount), granularity).expect("a valid limit"), governor }
}

fn bench_governor(group: &mut BenchmarkGroup<'_, WallTime>, case: &str, limits: Limits, keys: &Keys) {
    let limiter: Governor = governor::RateLimiter::keyed(limits.governor);
    for ip in &keys.insert {
        black_box(limiter.check_key(ip).is_ok());
    }
    let mut next = keys.visit_ips.iter().cycle();
    group.bench_function(BenchmarkId::new("governor", "keyed_dashmap"), |b| {
        b.iter(|| next.next().is_some_and(|ip| limiter.check_key(ip).is_ok()));
    });
    report_allowed(case, "governor/keyed_dashmap", || next.next().is_some_and(|ip| limiter.check_key(ip).is_ok()));
}

fn bench_ours<S>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    case: &str,
    name: &str,
    strategy: S,
    limits: Limits,
    keys: &Keys,
) where
    S: MemoryStrategy,
{
    let storage = MemoryStorage::builder().max_keys(2 * MANY).build();
    let limiter = RateLimiter::new(strategy, storage);
    let mut id = String::new();
    for ip in &keys.insert {
        id.clear();
        let _ = write!(id, "{ip}");
        black_box(hit(&limiter, &limits.ours, &id));
    }
    let mut next = keys.visit_strs.iter().cycle();
    group.bench_function(BenchmarkId::new("ours", name), |b| {
        b.iter(|| next.next().is_some_and(|id| hit(&limiter, &limits.ours, id)));
    });
    report_allowed(case, &format!("ours/{name}"), || next.next().is_some_and(|id| hit(&limiter, &limits.ours, id)));
    // The same limiter, called without a future (`hit_sync`), as governor is.
    let sync = |id: &String| limiter.hit_sync(&limits.ours, &[id], 1).allowed;
    group.bench_function(BenchmarkId::new("ours_sync", name), |b| {
        b.iter(|| next.next().is_some_and(sync));
    });
    report_allowed(case, &format!("ours_sync/{name}"), || next.next().is_some_and(sync));
}

/// After a benchmark, prints how many of the next checks were allowed: the
/// evidence that an `allow` case ran the allow path and a `deny` case the
/// deny path.
fn report_allowed(case: &str, id: &str, mut check: impl FnMut() -> bool) {
    const N: usize = 100_000;
    let allowed = (0..N).filter(|_| check()).count();
    eprintln!("{case}/{id}: {allowed} of {N} following checks allowed");
}

fn run_case(c: &mut Criterion, case: &str, limits: Limits, keys: &Keys) {
    let mut group = c.benchmark_group(case);
    group.throughput(Throughput::Elements(1));
    bench_governor(&mut group, case, limits, keys);
    bench_ours(&mut group, case, "fixed_window", FixedWindow, limits, keys);
    bench_ours(&mut group, case, "moving_window", MovingWindow, limits, keys);
    let sliding = SlidingWindowCounter;
    bench_ours(&mut group, case, "sliding_window_counter", sliding, limits, keys);
    bench_ours(&mut group, case, "gcra", Gcra, limits, keys);
    group.finish();
}

fn memory_storage(c: &mut Criterion) {
    let allow_hot = limits(1_000_000_000, Granularity::Second);
    let allow_many = limits(1_000, Granularity::Hour);
    let deny = limits(1, Granularity::Hour);

    let hot = Keys::hot();
    run_case(c, "hot_key_allow", allow_hot, &hot);
    run_case(c, "hot_key_deny", deny, &hot);

    let many = Keys::many(MANY);
    run_case(c, "1m_keys_allow", allow_many, &many);
    run_case(c, "1m_keys_deny", deny, &many);
}

criterion_group!(benches, memory_storage);
criterion_main!(benches);

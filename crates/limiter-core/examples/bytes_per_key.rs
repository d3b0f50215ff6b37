//! Process memory per key: the resident set size (`VmRSS` in
//! `/proc/self/status`) before and after inserting distinct keys, for each of
//! our strategies on [`MemoryStorage`] and for `governor` 0.10 keyed
//! (`DashMap` store, `IpAddr` keys).
//!
//! Each case runs in a child process of its own, so that memory one case
//! freed and the allocator kept cannot count for the next.
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-bench cargo run --release -p limiter-core --example bytes_per_key
//! CARGO_TARGET_DIR=/work/target-bench cargo run --release -p limiter-core --example bytes_per_key -- 1000000 fixed_window
//! ```
//!
//! Keys are the IPv4 addresses 10.0.0.0, 10.0.0.1, …; ours are the address
//! formatted as one identifier (`hit(&limit, &[ip], 1)`), formatted into a
//! reused buffer so that no key string stays allocated. Every key is hit once
//! with `100/minute` (governor: `Quota::per_minute(100)`), which allows.
//! Linux only (it reads `/proc/self/status`).

use std::error::Error;
use std::fmt::Write as _;
use std::future::Future;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::pin::pin;
use std::process::Command;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use governor::Quota;
use governor::clock::DefaultClock;
use governor::state::keyed::DashMapStateStore;
use limiter_core::{
    FixedWindow, Gcra, Granularity, MemoryStorage, MovingWindow, RateLimit, RateLimiter, SlidingWindowCounter,
    Strategy, Supports,
};

/// The cases, in the order they are reported.
const CASES: [&str; 5] = ["fixed_window", "moving_window", "sliding_window_counter", "gcra", "governor"];

const DEFAULT_KEYS: u32 = 1_000_000;

/// governor keyed by `IpAddr` on its default `DashMap` store and default clock.
type Governor = governor::RateLimiter<IpAddr, DashMapStateStore<IpAddr>, DefaultClock>;

/// What one case measured.
struct Measure {
    rss_before: u64,
    rss_after: u64,
    keys_held: usize,
    insert_ns: f64,
}

/// The resident set size of this process, in bytes.
fn vm_rss() -> Result<u64, Box<dyn Error>> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).ok_or("no VmRSS in /proc/self/status")?;
    let kib: u64 = line.trim_start_matches("VmRSS:").trim().trim_end_matches("kB").trim().parse()?;
    Ok(kib * 1024)
}

fn ip(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + i))
}

/// Polls a future once; the memory storage's futures are always ready.
fn poll_once<F: Future>(future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    }
}

fn ours<S>(strategy: S, keys: u32) -> Result<Measure, Box<dyn Error>>
where
    S: Strategy,
    MemoryStorage: Supports<S>,
{
    let limit = RateLimit::per(100, Granularity::Minute)?;
    // Room for twice the keys: nothing is evicted.
    let storage = MemoryStorage::builder().max_keys(2 * keys as usize).build();
    let limiter = RateLimiter::new(strategy, storage);
    let mut id = String::with_capacity(16);
    let rss_before = vm_rss()?;
    let start = Instant::now();
    for i in 0..keys {
        id.clear();
        write!(id, "{}", ip(i))?;
        let allowed = poll_once(limiter.hit(&limit, &[&id], 1)).ok_or("pending")??;
        black_box(allowed);
    }
    let insert_ns = start.elapsed().as_secs_f64() * 1e9 / f64::from(keys);
    let rss_after = vm_rss()?;
    Ok(Measure { rss_before, rss_after, keys_held: limiter.storage().len(), insert_ns })
}

fn governor(keys: u32) -> Result<Measure, Box<dyn Error>> {
    let quota = Quota::per_minute(NonZeroU32::new(100).ok_or("zero")?);
    let limiter: Governor = governor::RateLimiter::keyed(quota);
    let rss_before = vm_rss()?;
    let start = Instant::now();
    for i in 0..keys {
        black_box(limiter.check_key(&ip(i)).is_ok());
    }
    let insert_ns = start.elapsed().as_secs_f64() * 1e9 / f64::from(keys);
    let rss_after = vm_rss()?;
    Ok(Measure { rss_before, rss_after, keys_held: limiter.len(), insert_ns })
}

/// Runs one case in this process and prints one line of the table.
fn run_case(case: &str, keys: u32) -> Result<(), Box<dyn Error>> {
    let m = match case {
        "fixed_window" => ours(FixedWindow, keys)?,
        "moving_window" => ours(MovingWindow, keys)?,
        "sliding_window_counter" => ours(SlidingWindowCounter, keys)?,
        "gcra" => ours(Gcra, keys)?,
        "governor" => governor(keys)?,
        other => return Err(format!("unknown case {other:?}; one of {CASES:?}").into()),
    };
    let grown = m.rss_after.saturating_sub(m.rss_before);
    let per_key = grown as f64 / f64::from(keys);
    println!(
        "| {case} | {keys} | {} | {:.1} | {per_key:.1} | {:.0} |",
        m.keys_held,
        grown as f64 / 1_048_576.0,
        m.insert_ns
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    let keys = match args.get(1) {
        Some(n) => n.parse()?,
        None => DEFAULT_KEYS,
    };
    if let Some(case) = args.get(2) {
        return run_case(case, keys);
    }
    println!("| case | keys inserted | keys held | RSS growth (MiB) | bytes/key | insert+check ns/key |");
    println!("|---|---|---|---|---|---|");
    let me = std::env::current_exe()?;
    for case in CASES {
        let status = Command::new(&me).arg(keys.to_string()).arg(case).status()?;
        if !status.success() {
            return Err(format!("case {case} failed: {status}").into());
        }
    }
    Ok(())
}

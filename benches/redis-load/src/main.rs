//! Decisions per second through `RedisStorage` (the quickstart's two default
//! limits in one batch, one `EVALSHA` per decision), then the arguments that
//! make `redis-benchmark` send the very same `EVALSHA` (same script, keys and
//! ARGV), so that `scripts/bench-redis.sh` can load the server both ways at
//! the same concurrency.
//!
//! Usage: bench-redis-load <redis-url> <concurrency> <seconds>

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use limiter_core::storage::{Item, Key, Mode};
use limiter_core::{FixedWindow, RateLimit, RateLimiter};
use limiter_redis::{DEFAULT_KEY_PREFIX, RedisStorage};

/// Large enough that no decision is a refusal: the benchmark measures the
/// round trip and the script, not the 429 path.
const DAY: &str = "1000000000 per day";
const HOUR: &str = "1000000000 per hour";
const IDENTIFIERS: [&str; 2] = ["127.0.0.1", "fast"];

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args.next().ok_or("usage: bench-redis-load <redis-url> <concurrency> <seconds>")?;
    let concurrency: usize = args.next().ok_or("missing concurrency")?.parse()?;
    let seconds: u64 = args.next().ok_or("missing seconds")?.parse()?;

    let client = redis::Client::open(url.as_str())?;
    let mut admin = client.get_multiplexed_async_connection().await?;
    redis::cmd("FLUSHALL").query_async::<()>(&mut admin).await?;
    redis::cmd("SCRIPT").arg("FLUSH").query_async::<()>(&mut admin).await?;

    let limits: [RateLimit; 2] = [DAY.parse()?, HOUR.parse()?];
    let limiter = Arc::new(RateLimiter::new(FixedWindow, RedisStorage::connect(&url).await?));
    let done = Arc::new(AtomicBool::new(false));
    let decisions = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (limiter, done, decisions) = (limiter.clone(), done.clone(), decisions.clone());
        tasks.push(tokio::spawn(async move {
            let items = limits.map(|limit| Item::new(limit, Key::new(&IDENTIFIERS)));
            let mut count = 0;
            while !done.load(Ordering::Relaxed) {
                let outcome = limiter.decide(&items, Mode::Sequential { stop_at_first_breach: true }).await?;
                if !outcome.allowed() {
                    return Err("a decision was refused: the limits are meant never to be reached".into());
                }
                count += 1;
            }
            decisions.fetch_add(count, Ordering::Relaxed);
            Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    done.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await?.map_err(|e| e.to_string())?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    let rate = decisions.load(Ordering::Relaxed) as f64 / elapsed;
    println!("limiter {rate:.0}");

    // The script the storage loaded is the fixed window's part followed by
    // the shared driver; SCRIPT EXISTS proves the hash below is that script.
    let source =
        concat!(include_str!("../../../crates/limiter-redis/src/lua/fixed_window.lua"), include_str!("../../../crates/limiter-redis/src/lua/driver.lua"));
    let sha = redis::Script::new(source).get_hash().to_owned();
    let exists: Vec<i64> = redis::cmd("SCRIPT").arg("EXISTS").arg(&sha).query_async(&mut admin).await?;
    if exists.first() != Some(&1) {
        return Err("the storage did not run the script this tool hashed: update the include_str! paths".into());
    }
    let keys: Vec<String> =
        limits.iter().map(|limit| format!("{DEFAULT_KEY_PREFIX}:{}", Key::new(&IDENTIFIERS).storage_key(limit))).collect();
    // ARGV: mode 0 (sequential, stop at the first breach), 0, then amount,
    // window seconds, cost, peek for each limit, as the storage sends them.
    let mut argv = vec!["0".to_owned(), "0".to_owned()];
    for limit in &limits {
        argv.extend([limit.amount().to_string(), limit.window_secs().to_string(), "1".to_owned(), "0".to_owned()]);
    }
    println!("evalsha {sha} {} {} {}", keys.len(), keys.join(" "), argv.join(" "));
    Ok(())
}

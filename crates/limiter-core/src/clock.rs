//! Time, injected: strategies and the memory storage never read the system
//! clock themselves, so tests drive them with a [`ManualClock`].

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time: nanoseconds since the Unix epoch.
///
/// Wall-clock based, as in Python's `limits`, because remote storages share
/// timestamps (moving-window entries, reset times) across processes and with
/// Python services. Arithmetic saturates instead of overflowing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// From nanoseconds since the Unix epoch.
    pub const fn from_nanos(nanos: u64) -> Self {
        Timestamp(nanos)
    }

    /// From whole seconds since the Unix epoch.
    pub const fn from_secs(secs: u64) -> Self {
        Timestamp(secs.saturating_mul(1_000_000_000))
    }

    /// Nanoseconds since the Unix epoch.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Seconds since the Unix epoch, with a fraction (Python's `time.time()`).
    pub fn as_secs_f64(self) -> f64 {
        Duration::from_nanos(self.0).as_secs_f64()
    }

    /// Whole seconds since the Unix epoch, rounded down.
    pub const fn as_secs(self) -> u64 {
        self.0 / 1_000_000_000
    }

    /// Whole seconds since the Unix epoch, rounded up.
    pub const fn as_secs_ceil(self) -> u64 {
        self.0.div_ceil(1_000_000_000)
    }

    /// `self + d`, saturating.
    pub fn saturating_add(self, d: Duration) -> Self {
        Timestamp(self.0.saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)))
    }

    /// The time from `earlier` to `self`, or zero if `earlier` is later.
    pub const fn saturating_duration_since(self, earlier: Timestamp) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// As a [`SystemTime`].
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.0)
    }

    /// From a [`SystemTime`]; times before the epoch become the epoch.
    pub fn from_system_time(t: SystemTime) -> Self {
        let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        Timestamp(u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:09}", self.0 / 1_000_000_000, self.0 % 1_000_000_000)
    }
}

/// A source of the current time.
///
/// Implement it to drive a limiter from another time source; the crate ships
/// [`SystemClock`] and [`ManualClock`].
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The operating system's wall clock, read cheaply.
///
/// `SystemTime::now()` costs a `clock_gettime` call (about 50 ns on the
/// machines measured in `BENCHMARKS.md`), more than a whole in-memory check.
/// This clock instead reads the CPU's time-stamp counter through `quanta` (as
/// `governor` does) and adds an offset to the wall clock that it takes again
/// from `SystemTime` once a second. It therefore follows the wall clock,
/// adjustments included, to within a second's drift of the counter
/// (microseconds), which is what timestamps shared with other processes and
/// with Python need. Where no usable counter exists, `quanta` falls back to
/// the operating system's monotonic clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

/// The counter, and the wall-clock offset taken at the last sync.
struct WallSource {
    counter: quanta::Clock,
    origin: u64,
    /// Wall-clock nanoseconds minus counter nanoseconds, wrapping.
    offset: AtomicU64,
    /// Counter nanoseconds after which to sync again.
    next_sync: AtomicU64,
}

const SYNC_EVERY_NANOS: u64 = 1_000_000_000;

impl WallSource {
    fn new() -> Self {
        let counter = quanta::Clock::new();
        let origin = counter.raw();
        let source = WallSource { counter, origin, offset: AtomicU64::new(0), next_sync: AtomicU64::new(0) };
        source.sync(0);
        source
    }

    fn sync(&self, mono: u64) -> u64 {
        let wall = Timestamp::from_system_time(SystemTime::now()).as_nanos();
        let offset = wall.wrapping_sub(mono);
        self.offset.store(offset, Ordering::Relaxed);
        self.next_sync.store(mono.saturating_add(SYNC_EVERY_NANOS), Ordering::Relaxed);
        offset
    }

    fn now(&self) -> Timestamp {
        let mono = self.counter.delta_as_nanos(self.origin, self.counter.raw());
        let offset = if mono >= self.next_sync.load(Ordering::Relaxed) {
            self.sync(mono)
        } else {
            self.offset.load(Ordering::Relaxed)
        };
        Timestamp::from_nanos(mono.wrapping_add(offset))
    }
}

static WALL: std::sync::OnceLock<WallSource> = std::sync::OnceLock::new();

impl Clock for SystemClock {
    #[inline]
    fn now(&self) -> Timestamp {
        WALL.get_or_init(WallSource::new).now()
    }
}

/// A clock that moves only when told to; clones share the same time.
///
/// ```
/// use limiter_core::{Clock, ManualClock, Timestamp};
/// use std::time::Duration;
///
/// let clock = ManualClock::new(Timestamp::from_secs(1_000));
/// let shared = clock.clone();
/// clock.advance(Duration::from_millis(1_500));
/// assert_eq!(shared.now(), Timestamp::from_nanos(1_001_500_000_000));
/// ```
#[derive(Clone, Debug, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: Timestamp) -> Self {
        ManualClock(Arc::new(AtomicU64::new(start.as_nanos())))
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        // fetch_update cannot fail with a closure that always returns Some.
        let _ = self.0.fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| Some(t.saturating_add(by)));
    }

    /// Sets the clock to `to` (which may move it backwards).
    pub fn set(&self, to: Timestamp) {
        self.0.store(to.as_nanos(), Ordering::Release);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_nanos(self.0.load(Ordering::Acquire))
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}

impl<C: Clock + ?Sized> Clock for Box<C> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_conversions() {
        let t = Timestamp::from_nanos(1_500_000_001);
        assert_eq!(t.as_secs(), 1);
        assert_eq!(t.as_secs_ceil(), 2);
        assert_eq!(Timestamp::from_secs(2).as_secs_ceil(), 2);
        assert_eq!(t.to_string(), "1.500000001");
        assert_eq!(Timestamp::from_system_time(t.to_system_time()), t);
        assert_eq!(t.saturating_duration_since(Timestamp::from_secs(5)), Duration::ZERO);
        assert_eq!(Timestamp::from_nanos(u64::MAX).saturating_add(Duration::from_secs(1)).as_nanos(), u64::MAX);
    }

    #[test]
    fn system_clock_follows_the_wall_clock() {
        let before = Timestamp::from_system_time(SystemTime::now());
        let ours = SystemClock.now();
        let after = Timestamp::from_system_time(SystemTime::now());
        // The counter and the OS clock may disagree by the counter's drift
        // since the last sync, far below a millisecond.
        let slack = Duration::from_millis(5);
        assert!(ours.saturating_add(slack) >= before, "{ours} is before {before}");
        assert!(ours <= after.saturating_add(slack), "{ours} is after {after}");
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(Timestamp::from_secs(10));
        assert_eq!(clock.now(), Timestamp::from_secs(10));
        clock.advance(Duration::from_secs(5));
        assert_eq!(clock.now(), Timestamp::from_secs(15));
        clock.set(Timestamp::from_secs(3));
        assert_eq!(clock.now(), Timestamp::from_secs(3));
    }
}

//! The counting strategies, as types (for compile-time capability checks) and
//! as a runtime [`StrategyKind`] (for configuration by name).
//!
//! The submodules hold each strategy's state and arithmetic, free of any
//! storage, so the memory storage runs exactly the rules documented here and
//! remote backends mirror them in server-side scripts.

use std::fmt;
use std::str::FromStr;

use crate::error::ConfigError;
use crate::limit::RateLimit;
use crate::storage::LimitState;

pub(crate) mod fixed_window;
pub(crate) mod gcra;

pub use gcra::state_from_tat as gcra_state;
pub use sliding_window::state_from_counts as sliding_window_state;
pub(crate) mod moving_window;
pub(crate) mod sliding_window;

/// `a · b / c`, rounded down, saturating; `c` must not be 0. In 64 bits when
/// the product fits, as it does for any realistic limit: a 128-bit division
/// costs more than the rest of a check.
#[inline]
pub(crate) fn mul_div_floor(a: u64, b: u64, c: u64) -> u64 {
    match a.checked_mul(b) {
        Some(product) => product / c,
        None => u64::try_from(u128::from(a) * u128::from(b) / u128::from(c)).unwrap_or(u64::MAX),
    }
}

/// `a · b / c`, rounded up, saturating; `c` must not be 0.
#[inline]
pub(crate) fn mul_div_ceil(a: u64, b: u64, c: u64) -> u64 {
    match a.checked_mul(b) {
        Some(product) => product.div_ceil(c),
        None => u64::try_from((u128::from(a) * u128::from(b)).div_ceil(u128::from(c))).unwrap_or(u64::MAX),
    }
}

/// `(a · b) mod c`; `c` must not be 0.
#[inline]
pub(crate) fn mul_rem(a: u64, b: u64, c: u64) -> u64 {
    match a.checked_mul(b) {
        Some(product) => product % c,
        // The remainder is below c, so it fits.
        None => u64::try_from(u128::from(a) * u128::from(b) % u128::from(c)).unwrap_or(0),
    }
}

/// A stored state that becomes meaningless at some point in time.
pub(crate) trait Expiring: Default + Clone {
    /// From this time (nanoseconds since the Unix epoch) on, the state is the
    /// same as no state at all.
    fn expires_at(&self) -> u64;
}

/// One key's state under a strategy, and the strategy's rules applied to it.
/// Times are nanoseconds since the Unix epoch.
pub(crate) trait Counter: Expiring {
    /// Whether `cost` would pass now; changes nothing (`limits`' `test`).
    fn test(&self, limit: &RateLimit, cost: u64, now: u64) -> LimitState;
    /// Consumes `cost` if it passes (`limits`' `hit`).
    fn hit(&mut self, limit: &RateLimit, cost: u64, now: u64) -> LimitState;
}

/// A counting strategy: a marker type such as [`FixedWindow`], or a
/// [`StrategyKind`] chosen at runtime.
pub trait Strategy: Copy + fmt::Debug + Send + Sync + 'static {
    /// Which strategy this is.
    fn kind(&self) -> StrategyKind;
}

macro_rules! marker {
    ($(#[$doc:meta])* $name:ident => $kind:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
        pub struct $name;

        impl Strategy for $name {
            fn kind(&self) -> StrategyKind {
                StrategyKind::$kind
            }
        }
    };
}

marker!(
    /// Fixed window: a counter per window, starting at the first hit.
    ///
    /// Cheapest and exact within a window, but allows up to twice the amount
    /// across a window boundary. Like `limits`, a refused hit still counts
    /// (only a cost above the amount, which can never pass, is not counted).
    FixedWindow => FixedWindow
);
marker!(
    /// Moving window: a log of hit timestamps; a hit passes if fewer than
    /// `amount` hits happened in the last window.
    ///
    /// Exact at every instant; memory and work grow with the amount.
    MovingWindow => MovingWindow
);
marker!(
    /// Sliding window counter: the current window's count plus the previous
    /// window's, weighted by how much of it still overlaps the sliding window.
    ///
    /// Two counters per key; approximates the moving window (it assumes the
    /// previous window's hits were evenly spread).
    SlidingWindowCounter => SlidingWindowCounter
);
marker!(
    /// GCRA (generic cell rate algorithm), a token bucket of `amount` tokens
    /// refilled continuously over the window, as in `governor`.
    ///
    /// One timestamp per key; smooth (no boundary bursts) and exact.
    Gcra => Gcra
);

/// A strategy chosen by name at runtime, e.g. from `RATELIMIT_STRATEGY`.
///
/// Parses the names Flask-Limiter uses (`fixed-window`, `moving-window`,
/// `sliding-window-counter`) plus `gcra`; case and `_` for `-` do not matter.
///
/// ```
/// use limiter_core::StrategyKind;
///
/// assert_eq!("moving-window".parse::<StrategyKind>()?, StrategyKind::MovingWindow);
/// assert_eq!("SLIDING_WINDOW_COUNTER".parse::<StrategyKind>()?, StrategyKind::SlidingWindowCounter);
/// assert!("leaky-bucket".parse::<StrategyKind>().is_err());
/// # Ok::<(), limiter_core::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StrategyKind {
    /// [`FixedWindow`].
    FixedWindow,
    /// [`MovingWindow`].
    MovingWindow,
    /// [`SlidingWindowCounter`].
    SlidingWindowCounter,
    /// [`Gcra`].
    Gcra,
}

impl StrategyKind {
    /// Every strategy.
    pub const ALL: [StrategyKind; 4] =
        [StrategyKind::FixedWindow, StrategyKind::MovingWindow, StrategyKind::SlidingWindowCounter, StrategyKind::Gcra];

    /// The configuration name (`"fixed-window"`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            StrategyKind::FixedWindow => "fixed-window",
            StrategyKind::MovingWindow => "moving-window",
            StrategyKind::SlidingWindowCounter => "sliding-window-counter",
            StrategyKind::Gcra => "gcra",
        }
    }
}

impl Strategy for StrategyKind {
    fn kind(&self) -> StrategyKind {
        *self
    }
}

impl fmt::Display for StrategyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for StrategyKind {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, ConfigError> {
        let wanted = s.trim().replace('_', "-");
        StrategyKind::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(&wanted))
            .ok_or_else(|| ConfigError::UnknownStrategy { given: s.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in StrategyKind::ALL {
            assert_eq!(kind.name().parse::<StrategyKind>().unwrap(), kind);
            assert_eq!(kind.to_string(), kind.name());
        }
        assert_eq!(FixedWindow.kind(), StrategyKind::FixedWindow);
        assert_eq!(Gcra.kind(), StrategyKind::Gcra);
    }

    #[test]
    fn mul_div_is_exact_with_and_without_overflow() {
        assert_eq!(mul_div_floor(7, 3, 2), 10);
        assert_eq!(mul_div_ceil(7, 3, 2), 11);
        assert_eq!(mul_rem(7, 3, 2), 1);
        let big = 1u64 << 62;
        assert_eq!(mul_div_floor(big, 8, 16), big / 2);
        assert_eq!(mul_div_ceil(big + 1, 8, 16), big / 2 + 1);
        assert_eq!(mul_rem(big + 1, 8, 16), 8);
        assert_eq!(mul_div_floor(u64::MAX, u64::MAX, 1), u64::MAX);
    }

    #[test]
    fn unknown_names_are_config_errors_naming_the_value() {
        let err = "fixed-window-elastic-expiry".parse::<StrategyKind>().unwrap_err();
        assert!(err.to_string().contains("\"fixed-window-elastic-expiry\""), "{err}");
        assert!(err.to_string().contains("gcra"), "{err}");
    }
}

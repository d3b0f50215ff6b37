//! The rate limit value: an amount of hits per a window of time.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::notation::{self, ParseError};

/// The namespace `limits` puts in front of every storage key.
pub const DEFAULT_NAMESPACE: &str = "LIMITER";

/// The largest amount a limit may allow.
///
/// Redis evaluates its scripts with Lua, whose numbers are IEEE doubles: above
/// 2^53 − 1 counters would silently lose precision, so such limits are refused
/// when they are built rather than miscounted later.
pub const MAX_AMOUNT: u64 = (1 << 53) - 1;

/// The longest window a limit may have: 100 years of 360 days, in seconds.
///
/// Storages keep expiries in nanoseconds and some double the window (the
/// sliding window counter keeps two), so the window must stay far from
/// `u64::MAX` nanoseconds (584 years).
pub const MAX_WINDOW_SECS: u64 = 100 * 360 * 86_400;

/// The unit of a limit's window.
///
/// `month` is 30 days and `year` is 360 days, as in Python's `limits`, so that
/// windows (and therefore storage keys and TTLs) are the same in both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Granularity {
    /// One second.
    Second,
    /// 60 seconds.
    Minute,
    /// 3 600 seconds.
    Hour,
    /// 86 400 seconds.
    Day,
    /// 30 days (2 592 000 seconds).
    Month,
    /// 360 days (31 104 000 seconds).
    Year,
}

impl Granularity {
    /// Every granularity, shortest first.
    pub const ALL: [Granularity; 6] = [
        Granularity::Second,
        Granularity::Minute,
        Granularity::Hour,
        Granularity::Day,
        Granularity::Month,
        Granularity::Year,
    ];

    /// The length of one unit, in seconds.
    pub const fn seconds(self) -> u64 {
        match self {
            Granularity::Second => 1,
            Granularity::Minute => 60,
            Granularity::Hour => 3_600,
            Granularity::Day => 86_400,
            Granularity::Month => 30 * 86_400,
            Granularity::Year => 360 * 86_400,
        }
    }

    /// The singular lowercase name used in notation and storage keys (`"minute"`).
    pub const fn name(self) -> &'static str {
        match self {
            Granularity::Second => "second",
            Granularity::Minute => "minute",
            Granularity::Hour => "hour",
            Granularity::Day => "day",
            Granularity::Month => "month",
            Granularity::Year => "year",
        }
    }

    /// Finds a granularity by name, singular or plural, in any case
    /// (`"Minutes"` -> [`Granularity::Minute`]). Abbreviations are not names.
    pub fn from_name(name: &str) -> Option<Granularity> {
        let singular = match name.len().checked_sub(1) {
            Some(last) if name.as_bytes().get(last).is_some_and(|b| b.eq_ignore_ascii_case(&b's')) => name.get(..last),
            _ => None,
        };
        Granularity::ALL
            .into_iter()
            .find(|g| name.eq_ignore_ascii_case(g.name()) || singular.is_some_and(|s| s.eq_ignore_ascii_case(g.name())))
    }
}

impl fmt::Display for Granularity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a combination of amount, multiples and granularity is not a valid limit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    /// The amount is above [`MAX_AMOUNT`].
    #[error("amount {amount} is too large: the most a limit may allow is {MAX_AMOUNT}")]
    AmountTooLarge {
        /// The amount given.
        amount: u64,
    },
    /// A window of zero units.
    #[error("a window of 0 {granularity}s is empty: give at least 1, e.g. '10 per 1 {granularity}'")]
    ZeroMultiples {
        /// The unit given.
        granularity: Granularity,
    },
    /// The window is longer than [`MAX_WINDOW_SECS`].
    #[error("a window of {multiples} {granularity}s is too long: the longest is 100 years (100 year)")]
    WindowTooLong {
        /// The number of units given.
        multiples: u64,
        /// The unit given.
        granularity: Granularity,
    },
}

/// A rate limit: `amount` hits per `multiples` × `granularity`.
///
/// Written in [notation](crate#rate-limit-notation) as `"10 per minute"` or
/// `"1/2 seconds"`; [`Display`](fmt::Display) gives the canonical
/// `"{amount} per {multiples} {granularity}"` (`"10 per 1 minute"`), which is
/// also what Flask-Limiter shows in its 429 messages, and which parses back to
/// the same value.
///
/// # Examples
///
/// ```
/// use limiter_core::{Granularity, RateLimit};
///
/// let limit: RateLimit = "5/2 seconds".parse()?;
/// assert_eq!(limit.amount(), 5);
/// assert_eq!(limit.multiples(), 2);
/// assert_eq!(limit.granularity(), Granularity::Second);
/// assert_eq!(limit.window().as_secs(), 2);
/// assert_eq!(limit.to_string(), "5 per 2 second");
/// assert_eq!(limit.key_for(&["127.0.0.1", "login"]), "LIMITER/127.0.0.1/login/5/2/second");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RateLimit {
    amount: u64,
    multiples: u32,
    granularity: Granularity,
}

impl RateLimit {
    /// Builds `amount` per `multiples` × `granularity`.
    ///
    /// An amount of 0 is allowed (as in `limits`): every hit is refused.
    ///
    /// # Errors
    ///
    /// [`LimitError`] if `multiples` is 0, the window is longer than 100 years,
    /// or `amount` exceeds [`MAX_AMOUNT`].
    pub fn new(amount: u64, multiples: u64, granularity: Granularity) -> Result<Self, LimitError> {
        if amount > MAX_AMOUNT {
            return Err(LimitError::AmountTooLarge { amount });
        }
        if multiples == 0 {
            return Err(LimitError::ZeroMultiples { granularity });
        }
        match multiples.checked_mul(granularity.seconds()) {
            Some(secs) if secs <= MAX_WINDOW_SECS => Ok(RateLimit {
                amount,
                // In range: MAX_WINDOW_SECS fits u32 units of one second.
                multiples: u32::try_from(multiples).unwrap_or(u32::MAX),
                granularity,
            }),
            _ => Err(LimitError::WindowTooLong { multiples, granularity }),
        }
    }

    /// `amount` per one `granularity`.
    ///
    /// # Errors
    ///
    /// [`LimitError::AmountTooLarge`] if `amount` exceeds [`MAX_AMOUNT`].
    pub fn per(amount: u64, granularity: Granularity) -> Result<Self, LimitError> {
        RateLimit::new(amount, 1, granularity)
    }

    /// How many hits the window allows.
    pub const fn amount(&self) -> u64 {
        self.amount
    }

    /// How many granularity units make the window.
    pub const fn multiples(&self) -> u64 {
        self.multiples as u64
    }

    /// The unit of the window.
    pub const fn granularity(&self) -> Granularity {
        self.granularity
    }

    /// The window length in whole seconds (`limits`' `get_expiry()`).
    pub const fn window_secs(&self) -> u64 {
        self.multiples as u64 * self.granularity.seconds()
    }

    /// The window length.
    pub const fn window(&self) -> Duration {
        Duration::from_secs(self.window_secs())
    }

    /// The window length in nanoseconds.
    pub const fn window_nanos(&self) -> u64 {
        self.window_secs() * 1_000_000_000
    }

    /// The storage key `limits` builds for this limit and these identifiers:
    /// `LIMITER/<identifiers…>/<amount>/<multiples>/<granularity>`.
    ///
    /// Identifiers are joined as they are, without escaping, exactly as
    /// `limits` does, so Rust and Python services address the same counters.
    pub fn key_for(&self, identifiers: &[&str]) -> String {
        self.key_for_namespace(DEFAULT_NAMESPACE, identifiers)
    }

    /// [`key_for`](Self::key_for) with another namespace than `LIMITER`.
    pub fn key_for_namespace(&self, namespace: &str, identifiers: &[&str]) -> String {
        let mut key = String::with_capacity(48);
        self.write_key(namespace, identifiers, &mut key);
        key
    }

    /// Appends the storage key to `out`, for backends that reuse a buffer.
    pub fn write_key(&self, namespace: &str, identifiers: &[&str], out: &mut String) {
        use fmt::Write as _;
        out.push_str(namespace);
        for id in identifiers {
            out.push('/');
            out.push_str(id);
        }
        // Writing to a String cannot fail.
        let _ = write!(out, "/{}/{}/{}", self.amount, self.multiples, self.granularity.name());
    }

    /// Parses one limit in [notation](crate#rate-limit-notation); the first
    /// of several is returned, as `limits.parse` does.
    ///
    /// # Errors
    ///
    /// [`ParseError`] pointing at the offending token.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        notation::parse(s)
    }
}

impl FromStr for RateLimit {
    type Err = ParseError;

    /// Parses exactly one limit; a string holding several is an error (use
    /// [`parse_many`](crate::parse_many)).
    fn from_str(s: &str) -> Result<Self, ParseError> {
        notation::parse_one(s)
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} per {} {}", self.amount, self.multiples, self.granularity.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn granularity_seconds_match_limits() {
        let secs: Vec<u64> = Granularity::ALL.iter().map(|g| g.seconds()).collect();
        assert_eq!(secs, [1, 60, 3600, 86_400, 2_592_000, 31_104_000]);
    }

    #[test]
    fn granularity_names_singular_plural_any_case() {
        assert_eq!(Granularity::from_name("minute"), Some(Granularity::Minute));
        assert_eq!(Granularity::from_name("MINUTES"), Some(Granularity::Minute));
        assert_eq!(Granularity::from_name("Years"), Some(Granularity::Year));
        assert_eq!(Granularity::from_name("sec"), None);
        assert_eq!(Granularity::from_name("secs"), None);
        assert_eq!(Granularity::from_name("s"), None);
        assert_eq!(Granularity::from_name(""), None);
        assert_eq!(Granularity::from_name("minutess"), None);
    }

    #[test]
    fn key_for_matches_limits_golden_keys() {
        // Keys observed from limits 5.8 / Flask-Limiter 4.1 (reference §1.7, §2.2, §2.5).
        let per_min = RateLimit::new(2, 1, Granularity::Minute).unwrap();
        assert_eq!(per_min.key_for(&["127.0.0.1", "a"]), "LIMITER/127.0.0.1/a/2/1/minute");
        let per_day = RateLimit::new(100, 1, Granularity::Day).unwrap();
        assert_eq!(per_day.key_for(&["127.0.0.1", "global"]), "LIMITER/127.0.0.1/global/100/1/day");
        let one_day = RateLimit::new(1, 1, Granularity::Day).unwrap();
        assert_eq!(one_day.key_for(&["moo", "127.0.0.1", "test"]), "LIMITER/moo/127.0.0.1/test/1/1/day");
        let three = RateLimit::new(3, 1, Granularity::Minute).unwrap();
        assert_eq!(three.key_for(&["fixed", "user1"]), "LIMITER/fixed/user1/3/1/minute");
        assert_eq!(three.key_for(&[]), "LIMITER/3/1/minute");
        assert_eq!(three.key_for_namespace("NS", &["a/b"]), "NS/a/b/3/1/minute");
    }

    #[test]
    fn construction_limits() {
        assert_eq!(
            RateLimit::new(MAX_AMOUNT + 1, 1, Granularity::Second),
            Err(LimitError::AmountTooLarge { amount: MAX_AMOUNT + 1 })
        );
        assert!(RateLimit::new(MAX_AMOUNT, 1, Granularity::Second).is_ok());
        assert_eq!(
            RateLimit::new(1, 0, Granularity::Hour),
            Err(LimitError::ZeroMultiples { granularity: Granularity::Hour })
        );
        assert!(RateLimit::new(1, 100, Granularity::Year).is_ok());
        assert!(matches!(RateLimit::new(1, 101, Granularity::Year), Err(LimitError::WindowTooLong { .. })));
        assert!(matches!(RateLimit::new(1, u64::MAX, Granularity::Year), Err(LimitError::WindowTooLong { .. })));
        let zero = RateLimit::new(0, 1, Granularity::Second).unwrap();
        assert_eq!(zero.amount(), 0);
    }

    #[test]
    fn display_is_limits_str() {
        let limit = RateLimit::new(5, 2, Granularity::Second).unwrap();
        assert_eq!(limit.to_string(), "5 per 2 second");
        assert_eq!(RateLimit::new(1, 1, Granularity::Day).unwrap().to_string(), "1 per 1 day");
        assert_eq!(limit.window(), Duration::from_secs(2));
        assert_eq!(RateLimit::new(1, 1, Granularity::Month).unwrap().window_secs(), 2_592_000);
    }
}

//! Failures. A request over its limit is not one of them: that is a normal
//! [`Outcome`](crate::Outcome).

use std::error::Error as StdError;
use std::fmt;

use crate::strategy::StrategyKind;

/// What kind of storage failure happened, for the failure policy to act on
/// (fail open, fail closed, fall back to memory).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StorageErrorKind {
    /// The storage could not be reached (refused, reset, DNS, no primary).
    Unavailable,
    /// A call did not finish within its timeout.
    Timeout,
    /// The storage answered something this crate does not understand.
    Protocol,
    /// The storage refused the operation (authentication, permissions, script errors).
    Rejected,
    /// The storage cannot run this strategy; configuration normally prevents it.
    Unsupported,
    /// Anything else.
    Other,
}

impl fmt::Display for StorageErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StorageErrorKind::Unavailable => "unavailable",
            StorageErrorKind::Timeout => "timed out",
            StorageErrorKind::Protocol => "protocol error",
            StorageErrorKind::Rejected => "rejected",
            StorageErrorKind::Unsupported => "unsupported",
            StorageErrorKind::Other => "error",
        })
    }
}

/// A storage call failed.
///
/// Messages never contain credentials: backends redact URIs before they get
/// here.
#[derive(Debug)]
pub struct StorageError {
    kind: StorageErrorKind,
    backend: &'static str,
    message: String,
    source: Option<Box<dyn StdError + Send + Sync + 'static>>,
}

impl StorageError {
    /// A new error of `kind` from the storage named `backend` (`"redis"`, ...).
    pub fn new(kind: StorageErrorKind, backend: &'static str, message: impl Into<String>) -> Self {
        StorageError { kind, backend, message: message.into(), source: None }
    }

    /// Attaches the underlying error.
    #[must_use]
    pub fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> StorageErrorKind {
        self.kind
    }

    /// The name of the storage that failed.
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// Whether retrying later may succeed (unavailable or timed out).
    pub fn is_transient(&self) -> bool {
        matches!(self.kind, StorageErrorKind::Unavailable | StorageErrorKind::Timeout)
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} storage {}: {}", self.backend, self.kind, self.message)
    }
}

impl StdError for StorageError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn StdError + 'static))
    }
}

/// A configuration that cannot work, reported when the limiter is built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A rate limit string did not parse.
    #[error(transparent)]
    InvalidLimit(#[from] crate::ParseError),
    /// A rate limit string did not parse, in a named place of the configuration.
    #[error("{place}: {source}")]
    InvalidLimitIn {
        /// Where the string was (`route "slow"`, `default limits`, ...).
        place: String,
        /// What is wrong with it.
        source: crate::ParseError,
    },
    /// Something in the configuration contradicts itself or is missing.
    #[error("{0}")]
    Invalid(String),
    /// A strategy name nobody knows.
    #[error("unknown strategy {given:?}: expected one of fixed-window, moving-window, sliding-window-counter or gcra")]
    UnknownStrategy {
        /// The name given.
        given: String,
    },
    /// A storage that cannot run the chosen strategy.
    #[error(
        "the {storage} storage cannot run the {strategy} strategy: choose one of {supported} or another storage",
        supported = list(supported)
    )]
    UnsupportedStrategy {
        /// The storage's name.
        storage: &'static str,
        /// The strategy asked for.
        strategy: StrategyKind,
        /// The strategies the storage can run.
        supported: &'static [StrategyKind],
    },
    /// An option with a value that cannot work.
    #[error("invalid value {value:?} for {option}: {fix}")]
    InvalidOption {
        /// The option's name.
        option: &'static str,
        /// The value given.
        value: String,
        /// What would work instead.
        fix: String,
    },
    /// A configuration key nobody knows (in a file or the environment).
    #[error("unknown configuration key {key:?} in {origin}{}", did_you_mean(.suggestion))]
    UnknownKey {
        /// The key as written.
        key: String,
        /// Where it was (`the environment`, a file name, ...).
        origin: String,
        /// The closest known key, if one is close.
        suggestion: Option<&'static str>,
    },
    /// A Flask-Limiter key whose value is a Python function there
    /// (`RATELIMIT_KEY_FUNC`, `*_EXEMPT_WHEN`, ...): text cannot hold it.
    #[error(
        "{key} in {origin} cannot be set from configuration text: its Flask-Limiter value is a Python \
         function; remove it and set it in code with {instead}"
    )]
    CodeOnly {
        /// The key as written.
        key: String,
        /// Where it was.
        origin: String,
        /// The code that replaces it.
        instead: &'static str,
    },
    /// A configuration file that cannot be read or parsed.
    #[error("cannot load the configuration from {origin}: {source}")]
    Unreadable {
        /// The file (or `TOML text`).
        origin: String,
        /// Why: an I/O or syntax error.
        source: Box<dyn StdError + Send + Sync + 'static>,
    },
}

fn did_you_mean(suggestion: &Option<&'static str>) -> String {
    suggestion.map(|s| format!(": did you mean {s}?")).unwrap_or_default()
}

fn list(kinds: &[StrategyKind]) -> String {
    kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_error_display_and_source() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let err = StorageError::new(StorageErrorKind::Unavailable, "redis", "cannot connect to 127.0.0.1:6379")
            .with_source(io);
        assert_eq!(err.to_string(), "redis storage unavailable: cannot connect to 127.0.0.1:6379");
        assert!(err.is_transient());
        assert_eq!(err.source().map(ToString::to_string).as_deref(), Some("refused"));
    }

    #[test]
    fn config_errors_name_the_value_and_the_fix() {
        let err = ConfigError::UnsupportedStrategy {
            storage: "memcached",
            strategy: StrategyKind::MovingWindow,
            supported: &[StrategyKind::FixedWindow, StrategyKind::SlidingWindowCounter],
        };
        assert_eq!(
            err.to_string(),
            "the memcached storage cannot run the moving-window strategy: choose one of fixed-window, \
             sliding-window-counter or another storage"
        );
    }
}

//! What every strategy provides to the batch driver: the document it keeps,
//! the update that decides one hit on the server, and the same rules
//! in Rust.
//!
//! Hits are decided on the server, atomically on one document, and answered
//! from the document *after* the update (MongoDB-compatible servers that
//! retry internally, SecantusDB among them, may hand back a stale document
//! *before* it). The same rules in Rust decide peeks, first hits (inserted,
//! so two first hits cannot both create the document) and transactions.

use std::time::Duration;

use limiter_core::storage::{Item, Key};
use limiter_core::{LimitState, RateLimit, StorageError, Timestamp};
use mongodb::bson::{Bson, DateTime, Document};
use mongodb::options::UpdateModifications;

use crate::error::protocol;

/// Which of `limits`' two collections a strategy keeps its documents in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Collection {
    /// `counters`: the fixed window.
    Counters,
    /// `windows`: the moving window and the sliding window counter.
    Windows,
}

/// The time of a decision, in the units the documents use.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Now {
    pub(crate) ts: Timestamp,
    /// Milliseconds since the epoch (BSON dates have no finer unit).
    pub(crate) ms: i64,
    /// Seconds since the epoch, as `limits` writes moving-window entries.
    pub(crate) secs: f64,
}

impl Now {
    pub(crate) fn new(ts: Timestamp) -> Self {
        Now { ts, ms: i64::try_from(ts.as_nanos() / 1_000_000).unwrap_or(i64::MAX), secs: ts.as_secs_f64() }
    }

    /// `now + plus_ms` as a BSON date.
    pub(crate) fn date(&self, plus_ms: i64) -> Bson {
        Bson::DateTime(DateTime::from_millis(self.ms.saturating_add(plus_ms)))
    }
}

/// A strategy's document and rules.
pub(crate) trait Model: Clone + Send + Sized {
    const COLLECTION: Collection;

    /// Whether [`server_hit`](Self::server_hit)'s filter holds the
    /// condition, so that an update matching an existing document's `_id`
    /// may still match nothing: a refusal.
    const REFUSES_BY_FILTER: bool = false;

    /// The `_id` of `limit`'s document for `key`: `limits`' key.
    fn id(limit: &RateLimit, key: &Key<'_>) -> String {
        key.storage_key(limit)
    }

    /// The document of one key, `None` if there is none.
    fn parse(doc: Option<&Document>) -> Result<Self, StorageError>;

    /// Whether `item`'s cost fits now, consuming nothing.
    fn fits(&self, item: &Item<'_>, now: &Now) -> bool;

    /// What a hit of `item` does to this document: whether it was allowed,
    /// and the document after it. With `count_refused`, the fixed window
    /// counts a refused hit, as `limits` does.
    fn apply(&self, item: &Item<'_>, now: &Now, count_refused: bool) -> (bool, Self);

    /// The state the headers need.
    fn state(&self, item: &Item<'_>, now: &Now, allowed: bool) -> LimitState;

    /// The document as `limits` writes it, for key `id`; `allowed` is the
    /// last hit's answer (the sliding window keeps it as `_acquired`).
    fn document(&self, id: &str, allowed: bool) -> Document;

    /// One hit of `item` (`0 < cost <= amount`) on an existing document,
    /// decided on the server under its document lock: the filter and update
    /// of a `findAndModify` returning the document after it. Counts refused
    /// hits where `limits` does (the fixed window).
    fn server_hit(item: &Item<'_>, now: &Now, id: &str) -> (Document, UpdateModifications);

    /// The answer to [`server_hit`](Self::server_hit), read from the
    /// document after it. `None` when the update matched nothing: for a
    /// strategy whose filter holds the condition (the moving window), a
    /// refusal or a missing document; for the others, a missing document.
    fn server_answer(after: &Document, item: &Item<'_>) -> Result<(bool, Self), StorageError>;
}

/// An integer as `pymongo` writes a Python `int`: int32 when it fits.
pub(crate) fn int(n: u64) -> Bson {
    match i32::try_from(n) {
        Ok(small) => Bson::Int32(small),
        Err(_) => Bson::Int64(i64::try_from(n).unwrap_or(i64::MAX)),
    }
}

/// A window in milliseconds.
pub(crate) fn window_ms(item: &Item<'_>) -> i64 {
    i64::try_from(item.limit.window_secs().saturating_mul(1_000)).unwrap_or(i64::MAX)
}

/// A count field (int32, int64 or double); 0 when missing or null.
pub(crate) fn count(doc: &Document, field: &str) -> Result<u64, StorageError> {
    match doc.get(field) {
        None | Some(Bson::Null) => Ok(0),
        Some(Bson::Int32(n)) => Ok(u64::try_from(*n).unwrap_or(0)),
        Some(Bson::Int64(n)) => Ok(u64::try_from(*n).unwrap_or(0)),
        Some(Bson::Double(n)) if n.is_finite() && *n >= 0.0 => Ok(n.floor() as u64),
        Some(other) => Err(protocol(format!("field {field:?} holds {other:?}, not a count"))),
    }
}

/// A date field in milliseconds since the epoch; `None` when missing.
pub(crate) fn date_ms(doc: &Document, field: &str) -> Result<Option<i64>, StorageError> {
    match doc.get(field) {
        None | Some(Bson::Null) => Ok(None),
        Some(Bson::DateTime(date)) => Ok(Some(date.timestamp_millis())),
        Some(other) => Err(protocol(format!("field {field:?} holds {other:?}, not a date"))),
    }
}

/// Milliseconds since the epoch as a timestamp (0 if negative).
pub(crate) fn ms_to_ts(ms: i64) -> Timestamp {
    Timestamp::from_nanos(u64::try_from(ms).unwrap_or(0).saturating_mul(1_000_000))
}

/// Seconds since the epoch (a moving-window entry) as a timestamp.
pub(crate) fn secs_to_ts(secs: f64) -> Timestamp {
    Timestamp::EPOCH.saturating_add(Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(Duration::ZERO))
}

//! What the limiter reports through the [`metrics`](https://docs.rs/metrics)
//! facade, with the `metrics` feature of `limiter-core` (or of `limiter`).
//!
//! Install any recorder (`metrics-exporter-prometheus`, say) and the
//! limiter's metrics appear in it; without the feature nothing is recorded
//! and nothing is paid. Install the recorder before building the limiter
//! (the fallback gauge starts at 0 when the limiter is built), and call
//! [`describe`] once, after installing it, to give the metrics their help
//! texts and units.
//!
//! | metric | kind | labels | what |
//! |---|---|---|---|
//! | [`DECISIONS`] `limiter_decisions_total` | counter | `route`, `limit`, `decision` | one per request decided: `decision` is `allowed`, `limited`, `shadow_limited` (a shadow limit would have refused it; it passed), `unavailable` (storage failed, 503) or `failed_open` (storage failed, let through); `limit` is the limit the headers describe (empty when the storage failed) |
//! | [`BREACHES`] `limiter_breaches_total` | counter | `route`, `limit`, `shadow` | one per limit breached (`shadow="true"`: in shadow mode, not enforced) |
//! | [`STORAGE_ERRORS`] `limiter_storage_errors_total` | counter | `storage`, `operation`, `kind` | failed storage calls (`kind`: `unavailable`, `timeout`, `protocol`, `rejected`, `unsupported`, `other`) |
//! | [`STORAGE_CALL_SECONDS`] `limiter_storage_call_seconds` | histogram | `storage`, `operation` | the time of each storage call (`decide` for requests, `check` for health probes) |
//! | [`FALLBACK_ACTIVE`] `limiter_in_memory_fallback_active` | gauge | `storage` | 1 while the in-memory fallback replaces the storage, else 0 (set to 0 when a limiter with the fallback policy is built, so install the recorder first) |
//!
//! `route` is the route's name (or its path pattern when it has none), or
//! `<unmatched>` for requests that matched no route, or `<undeclared>` for
//! the paths of routes the limiter was not told about when the adapter's
//! routes are the request paths themselves
//! ([`RequestInfo::route_is_template`](super::RequestInfo::route_is_template)
//! false: tonic, plain hyper); `limit` is the limit in
//! the notation (`"50 per 1 hour"`). Both come from the configuration, never
//! from the client, so their number stays small (as long as dynamic limits
//! do not invent new limits per request). Exempt requests are not counted.
//! Limits on code paths ([`Limiter::inline`](super::Limiter::inline)) report
//! storage calls only: their caller decides.

/// Counter of decided requests.
pub const DECISIONS: &str = "limiter_decisions_total";
/// Counter of breached limits.
pub const BREACHES: &str = "limiter_breaches_total";
/// Counter of failed storage calls.
pub const STORAGE_ERRORS: &str = "limiter_storage_errors_total";
/// Histogram of storage call durations, in seconds.
pub const STORAGE_CALL_SECONDS: &str = "limiter_storage_call_seconds";
/// Gauge: 1 while the in-memory fallback is in use.
pub const FALLBACK_ACTIVE: &str = "limiter_in_memory_fallback_active";

pub(crate) const ALLOWED: &str = "allowed";
pub(crate) const LIMITED: &str = "limited";
pub(crate) const SHADOW_LIMITED: &str = "shadow_limited";
pub(crate) const UNAVAILABLE: &str = "unavailable";
pub(crate) const FAILED_OPEN: &str = "failed_open";

/// Gives the limiter's metrics their descriptions and units in the
/// installed recorder; does nothing without the `metrics` feature.
pub fn describe() {
    #[cfg(feature = "metrics")]
    {
        use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
        describe_counter!(DECISIONS, Unit::Count, "Requests decided by the rate limiter, by outcome");
        describe_counter!(BREACHES, Unit::Count, "Rate limits breached (shadow=\"true\": not enforced)");
        describe_counter!(STORAGE_ERRORS, Unit::Count, "Failed rate limit storage calls");
        describe_histogram!(STORAGE_CALL_SECONDS, Unit::Seconds, "Duration of rate limit storage calls");
        describe_gauge!(FALLBACK_ACTIVE, "1 while the in-memory fallback replaces the rate limit storage");
    }
}

#[cfg(feature = "metrics")]
mod record {
    use std::time::Duration;

    use metrics::{counter, gauge, histogram};

    use super::{BREACHES, DECISIONS, FALLBACK_ACTIVE, STORAGE_CALL_SECONDS, STORAGE_ERRORS};
    use crate::error::{StorageError, StorageErrorKind};
    use crate::limit::RateLimit;

    fn route_label(route: Option<&str>) -> String {
        route.unwrap_or(super::super::limiter::UNMATCHED).to_owned()
    }

    pub(crate) fn decision(route: Option<&str>, limit: Option<&RateLimit>, decision: &'static str) {
        let limit = limit.map(ToString::to_string).unwrap_or_default();
        counter!(DECISIONS, "route" => route_label(route), "limit" => limit, "decision" => decision).increment(1);
    }

    pub(crate) fn breach(route: Option<&str>, limit: &RateLimit, shadow: bool) {
        let shadow = if shadow { "true" } else { "false" };
        counter!(BREACHES, "route" => route_label(route), "limit" => limit.to_string(), "shadow" => shadow)
            .increment(1);
    }

    pub(crate) fn storage_call(storage: &'static str, operation: &'static str, took: Duration) {
        histogram!(STORAGE_CALL_SECONDS, "storage" => storage, "operation" => operation).record(took.as_secs_f64());
    }

    pub(crate) fn storage_error(storage: &'static str, operation: &'static str, error: &StorageError) {
        let kind = match error.kind() {
            StorageErrorKind::Unavailable => "unavailable",
            StorageErrorKind::Timeout => "timeout",
            StorageErrorKind::Protocol => "protocol",
            StorageErrorKind::Rejected => "rejected",
            StorageErrorKind::Unsupported => "unsupported",
            _ => "other",
        };
        counter!(STORAGE_ERRORS, "storage" => storage, "operation" => operation, "kind" => kind).increment(1);
    }

    pub(crate) fn fallback_active(storage: &'static str, active: bool) {
        gauge!(FALLBACK_ACTIVE, "storage" => storage).set(if active { 1.0 } else { 0.0 });
    }
}

#[cfg(not(feature = "metrics"))]
mod record {
    //! Nothing is recorded without the feature; the calls compile away.

    use std::time::Duration;

    use crate::error::StorageError;
    use crate::limit::RateLimit;

    #[inline(always)]
    pub(crate) fn decision(_: Option<&str>, _: Option<&RateLimit>, _: &'static str) {}

    #[inline(always)]
    pub(crate) fn breach(_: Option<&str>, _: &RateLimit, _: bool) {}

    #[inline(always)]
    pub(crate) fn storage_call(_: &'static str, _: &'static str, _: Duration) {}

    #[inline(always)]
    pub(crate) fn storage_error(_: &'static str, _: &'static str, _: &StorageError) {}

    #[inline(always)]
    pub(crate) fn fallback_active(_: &'static str, _: bool) {}
}

pub(crate) use record::{breach, decision, fallback_active, storage_call, storage_error};

/// Times a storage call when metrics are on; free otherwise.
pub(crate) struct Timer {
    #[cfg(feature = "metrics")]
    started: std::time::Instant,
}

impl Timer {
    #[inline(always)]
    pub(crate) fn start() -> Self {
        Timer {
            #[cfg(feature = "metrics")]
            started: std::time::Instant::now(),
        }
    }

    /// Records the call's duration, and its error if it failed.
    #[inline(always)]
    pub(crate) fn finish<T>(
        self,
        storage: &'static str,
        operation: &'static str,
        result: &Result<T, crate::error::StorageError>,
    ) {
        #[cfg(feature = "metrics")]
        let took = self.started.elapsed();
        #[cfg(not(feature = "metrics"))]
        let took = std::time::Duration::ZERO;
        storage_call(storage, operation, took);
        if let Err(e) = result {
            storage_error(storage, operation, e);
        }
    }
}

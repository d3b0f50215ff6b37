//! [`Settings`]: the limiter's configuration from a TOML file and from
//! `RATELIMIT_*` environment variables, under Flask-Limiter's names, mapped
//! onto a [`LimiterBuilder`].

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::declare::Limit;
use super::failure::FailurePolicy;
use super::limiter::{LimiterBuilder, Sleeper};
use super::request::RequestInfo;
use super::response::{HEADER_NAME_RULE, HeaderSettings, RetryAfterFormat, is_header_name};
use crate::error::ConfigError;
use crate::limit::RateLimit;
use crate::notation::parse_many;
use crate::storage::memory::MemoryStorage;
use crate::strategy::StrategyKind;

/// The limiter's configuration as text can hold it: Flask-Limiter's
/// `RATELIMIT_*` config keys, read from a TOML file, from the environment,
/// or from any format serde reads, then applied to a [`LimiterBuilder`].
///
/// Every field is optional: an absent one leaves the builder as it is.
/// Values are checked when they are loaded (a bad boolean, limit string,
/// strategy, header name or duration is an error naming the key), except the
/// storage URI, which [`apply`](Self::apply) checks, so that a build with
/// more storages can take it out first (see [`storage_uri`](Self::storage_uri)).
/// [`Debug`](fmt::Debug) hides the URI's password and storage options named
/// like secrets (`password`, `token`, ...).
///
/// # Loading
///
/// - [`Settings::from_toml_file`] / [`Settings::from_toml_str`]: a TOML
///   document (feature `toml`, on by default).
/// - [`Settings::from_env`]: the process environment; [`Settings::from_env_iter`]
///   takes the variables from an iterator (tests).
/// - [`Settings::load`]: a file, then the environment over it.
/// - `serde::Deserialize` (feature `serde`, implied by `toml`): to embed the
///   settings in your own configuration struct, e.g. a
///   `#[serde(default)] ratelimit: Settings` field, read from TOML, JSON, YAML...
///
/// ```
/// # #[cfg(feature = "toml")]
/// # fn main() -> Result<(), limiter_core::ConfigError> {
/// use limiter_core::engine::{Limiter, Settings};
/// # struct Request;
/// # impl limiter_core::engine::RequestInfo for Request {
/// #     fn method(&self) -> &str { "GET" }
/// #     fn route(&self) -> Option<&str> { None }
/// #     fn header(&self, _: &str) -> Option<&str> { None }
/// #     fn header_values(&self, _: &str) -> Vec<&str> { Vec::new() }
/// #     fn peer_addr(&self) -> Option<std::net::IpAddr> { None }
/// # }
///
/// let file = Settings::from_toml_str(r#"
///     [ratelimit]
///     default = "200 per day; 50 per hour"
///     headers_enabled = true
/// "#)?;
/// let env = Settings::from_env_iter([("RATELIMIT_DEFAULT".to_owned(), "10/minute".to_owned())])?;
/// let settings = file.merge(env); // the environment overrides the file
/// assert_eq!(settings.default_limits.as_deref(), Some("10/minute"));
///
/// let limiter = settings
///     .apply(Limiter::<Request>::builder())?
///     .fail_on_first_breach(false) // code after `apply` overrides both
///     .build()?;
/// # let _ = limiter;
/// # Ok(())
/// # }
/// # #[cfg(not(feature = "toml"))]
/// # fn main() {}
/// ```
///
/// # Key spellings
///
/// **In TOML** (and anything read through serde), a key may be written as:
///
/// 1. the Flask-Limiter config key: `RATELIMIT_DEFAULT = "200 per day"`;
/// 2. that key without the `RATELIMIT_` prefix: `default = "200 per day"`;
/// 3. the Flask-Limiter constructor parameter, which is also the field name
///    here: `default_limits = "200 per day"`.
///
/// Case does not matter and `-` may replace `_` (`storage-uri`,
/// `ratelimit_default`). Keys may stand at the top level of the document or
/// in a `[ratelimit]` table, or both, as long as no setting is given twice.
/// Any other key is an error naming the closest known one.
///
/// **In the environment**, only the exact Flask-Limiter names count
/// (`RATELIMIT_DEFAULT`, upper case). Other variables are ignored, but an
/// unknown `RATELIMIT_*` variable is an error (a typo such as
/// `RATELIMIT_DEFAULTS` would otherwise be silently ignored).
///
/// # Values
///
/// | kind | accepted |
/// |---|---|
/// | boolean | TOML `true`/`false`; `true`/`false`, `yes`/`no`, `1`/`0` as text or integer, any case |
/// | limits | the [notation](crate#rate-limit-notation) (`"200 per day; 50/hour"`); in TOML also an array of such strings. Empty text means no limits (and, in the environment, overrides a file's limits with none) |
/// | cost | a whole number ≥ 0 (text or integer) |
/// | strategy | `fixed-window`, `moving-window`, `sliding-window-counter` or `gcra` (any case, `_` for `-`) |
/// | header name | an HTTP field name (an RFC 9110 token: letters, digits and some symbols, no spaces) |
/// | `Retry-After` format | `http-date` or `delta-seconds` (Flask-Limiter treats any other text as delta-seconds; here it is an error) |
/// | storage options | a TOML table, or (in the environment) a JSON object, of strings, numbers or booleans, kept as strings |
/// | duration | `"250ms"`, `"2s"`, `"1.5s"`, or a number of seconds (`0.25`, `"0.25"`); more than zero |
///
/// # Precedence
///
/// Lowest to highest: the file, then the environment
/// ([`merge`](Self::merge): every variable that is set replaces the file's
/// value, `RATELIMIT_STORAGE_OPTIONS` as a whole), then code: builder calls
/// made **after** [`apply`](Self::apply) win, since `apply` only calls the
/// builder's own methods. Two kinds of settings do not simply override:
///
/// - Limit groups add up: [`LimiterBuilder::default_limits`] (and
///   `application_limits`, `meta_limits`, `in_memory_fallback_limits`) adds
///   a group. To replace the configured limits in code, clear the field
///   first (`settings.default_limits = None`) — the fields are public.
/// - Any header key (names, `Retry-After` format, IETF) replaces the whole
///   [`HeaderSettings`] given to the builder before `apply`.
///
/// Builder calls made **before** `apply` are overridden by the settings that
/// are present. This is simpler than Flask-Limiter, where constructor
/// arguments win over config values if they are truthy, except `enabled` and
/// `storage_options`, where config wins or is merged.
///
/// # Example file
///
/// ```toml
/// # limiter.toml: every key, with Flask-Limiter's defaults unless noted.
/// [ratelimit]
/// enabled = true
///
/// # Limits for every route without its own (none by default).
/// default = "200 per day; 50 per hour"
/// defaults_per_method = false       # one bucket per HTTP method
/// defaults_cost = 1                 # what each request consumes
///
/// # One bucket per client across all routes (none by default).
/// application = "5000 per day"
/// application_per_method = false
/// application_cost = 1
///
/// # Limits on how often a client may breach the others (none by default).
/// meta = "5 per hour"
///
/// strategy = "fixed-window"         # moving-window, sliding-window-counter, gcra
/// storage_uri = "memory://"         # remote URIs: see `storage_uri` below
/// storage_timeout = "250ms"         # our addition; none by default
/// key_prefix = "myapp"              # "" by default
///
/// headers_enabled = true            # false by default
/// headers_ietf = false              # our addition: RateLimit and RateLimit-Policy
/// header_limit = "X-RateLimit-Limit"
/// header_remaining = "X-RateLimit-Remaining"
/// header_reset = "X-RateLimit-Reset"
/// header_retry_after = "Retry-After"
/// header_retry_after_value = "delta-seconds"   # or "http-date"
///
/// swallow_errors = false            # true: let requests through when the storage fails
/// in_memory_fallback_enabled = false
/// in_memory_fallback = "10 per minute"   # implies in_memory_fallback_enabled
/// fail_on_first_breach = true
/// shadow = false                    # our addition: count and log breaches, refuse nothing
///
/// [ratelimit.storage_options]       # for memory://: max_keys, shards
/// max_keys = 100000
/// ```
///
/// # Migrating from Flask-Limiter
///
/// Every constructor parameter and config key of Flask-Limiter 4.1, and where
/// it went. "Code only" keys hold Python functions in Flask-Limiter: in TOML
/// or the environment they are an error that names the replacement.
///
/// | Flask-Limiter parameter / config key | here, in code | here, in TOML / env |
/// |---|---|---|
/// | `key_func` / `RATELIMIT_KEY_FUNC` (never read by Flask-Limiter) | [`LimiterBuilder::key`] ([`PeerIp`](super::PeerIp) by default, [`HeaderKey`](super::HeaderKey), [`GlobalKey`](super::GlobalKey), a closure); per limit [`Limit::key`] | code only |
/// | `app` | the web adapter's layer or middleware | – |
/// | `default_limits` / `RATELIMIT_DEFAULT` | [`LimiterBuilder::default_limits`] | `RATELIMIT_DEFAULT`, `default`, `default_limits` |
/// | `default_limits_per_method` / `RATELIMIT_DEFAULTS_PER_METHOD` | [`Limit::per_method`] | `RATELIMIT_DEFAULTS_PER_METHOD`, `defaults_per_method`, `default_limits_per_method`: applies to the `RATELIMIT_DEFAULT` limits only (Flask-Limiter: also to default limits given as strings in code); `true` without `RATELIMIT_DEFAULT` is an error |
/// | `default_limits_exempt_when` / `RATELIMIT_DEFAULTS_EXEMPT_WHEN` | [`Limit::exempt_when`] on the default limits | code only |
/// | `default_limits_deduct_when` / `RATELIMIT_DEFAULTS_DEDUCT_WHEN` | [`Limit::deduct_when`] on the default limits | code only |
/// | `default_limits_cost` / `RATELIMIT_DEFAULTS_COST` | [`Limit::cost`], [`Limit::cost_with`] (a function) | `RATELIMIT_DEFAULTS_COST`, `defaults_cost`, `default_limits_cost` (a number): as the previous row; other than 1 without `RATELIMIT_DEFAULT` is an error |
/// | `application_limits` / `RATELIMIT_APPLICATION` | [`LimiterBuilder::application_limits`] | `RATELIMIT_APPLICATION`, `application`, `application_limits` |
/// | `application_limits_per_method` / `RATELIMIT_APPLICATION_PER_METHOD` | [`Limit::per_method`] | `RATELIMIT_APPLICATION_PER_METHOD`, `application_per_method`, `application_limits_per_method`: applies to the `RATELIMIT_APPLICATION` limits only; `true` without them is an error |
/// | `application_limits_exempt_when` / `RATELIMIT_APPLICATION_EXEMPT_WHEN` | [`Limit::exempt_when`] on the application limits | code only |
/// | `application_limits_deduct_when` / `RATELIMIT_APPLICATION_DEDUCT_WHEN` | [`Limit::deduct_when`] on the application limits | code only |
/// | `application_limits_cost` / `RATELIMIT_APPLICATION_COST` | [`Limit::cost`], [`Limit::cost_with`] | `RATELIMIT_APPLICATION_COST`, `application_cost`, `application_limits_cost`: applies to the `RATELIMIT_APPLICATION` limits only; other than 1 without them is an error |
/// | `headers_enabled` / `RATELIMIT_HEADERS_ENABLED` | [`LimiterBuilder::headers_enabled`] | `RATELIMIT_HEADERS_ENABLED`, `headers_enabled` |
/// | `header_name_mapping` / `RATELIMIT_HEADER_LIMIT`, `_REMAINING`, `_RESET`, `_RETRY_AFTER` | [`HeaderSettings`] fields, [`LimiterBuilder::headers`] | `RATELIMIT_HEADER_LIMIT`, `header_limit`, ... |
/// | `retry_after` / `RATELIMIT_HEADER_RETRY_AFTER_VALUE` | [`HeaderSettings::retry_after_format`] | `RATELIMIT_HEADER_RETRY_AFTER_VALUE`, `header_retry_after_value`, `retry_after` |
/// | `strategy` / `RATELIMIT_STRATEGY` | [`LimiterBuilder::strategy`], [`LimiterBuilder::strategy_name`] (also `gcra`) | `RATELIMIT_STRATEGY`, `strategy` |
/// | `storage_uri` / `RATELIMIT_STORAGE_URI` | [`LimiterBuilder::storage`] (memory), [`LimiterBuilder::any_storage`] | `RATELIMIT_STORAGE_URI`, `storage_uri`: [`apply`](Settings::apply) serves `memory://`; Redis, Valkey, Memcached and MongoDB URIs are connected with `limiter::storage_from_uri_with` (features `redis`, `memcached`, `mongodb` of `limiter`) after taking `settings.storage_uri`, and `apply` refuses them with an error that says so |
/// | `storage_options` / `RATELIMIT_STORAGE_OPTIONS` | the storage's own builder ([`MemoryStorage::builder`]) | `RATELIMIT_STORAGE_OPTIONS` (JSON object in the environment), `storage_options`: `max_keys`, `shards` for `memory://`; each remote backend's options, named as in `limits`, through `limiter::storage_from_uri_with` |
/// | `swallow_errors` / `RATELIMIT_SWALLOW_ERRORS` | [`LimiterBuilder::on_storage_failure`] with [`FailurePolicy::FailOpen`] | `RATELIMIT_SWALLOW_ERRORS`, `swallow_errors` |
/// | `fail_on_first_breach` / `RATELIMIT_FAIL_ON_FIRST_BREACH` | [`LimiterBuilder::fail_on_first_breach`] | `RATELIMIT_FAIL_ON_FIRST_BREACH`, `fail_on_first_breach` |
/// | `on_breach` / `RATELIMIT_ON_BREACH_CALLBACK` | [`LimiterBuilder::on_breach`], [`Limit::on_breach`] | code only |
/// | `meta_limits` / `RATELIMIT_META` | [`LimiterBuilder::meta_limits`] | `RATELIMIT_META`, `meta`, `meta_limits` |
/// | `on_meta_breach` / `RATELIMIT_ON_META_BREACH_CALLBACK` | [`LimiterBuilder::on_meta_breach`] | code only |
/// | `in_memory_fallback` / `RATELIMIT_IN_MEMORY_FALLBACK` | [`LimiterBuilder::in_memory_fallback_limits`] | `RATELIMIT_IN_MEMORY_FALLBACK`, `in_memory_fallback` (implies the next one) |
/// | `in_memory_fallback_enabled` / `RATELIMIT_IN_MEMORY_FALLBACK_ENABLED` | [`LimiterBuilder::on_storage_failure`] with [`FailurePolicy::InMemoryFallback`] | `RATELIMIT_IN_MEMORY_FALLBACK_ENABLED`, `in_memory_fallback_enabled` |
/// | `key_prefix` / `RATELIMIT_KEY_PREFIX` | [`LimiterBuilder::key_prefix`] | `RATELIMIT_KEY_PREFIX`, `key_prefix` |
/// | `request_identifier` / `RATELIMIT_REQUEST_IDENTIFIER` | [`Route::new`](super::Route::new)'s name (the endpoint); unnamed routes are identified by their path pattern | code only |
/// | `enabled` / `RATELIMIT_ENABLED` | [`LimiterBuilder::enabled`] | `RATELIMIT_ENABLED`, `enabled` |
/// | `RATELIMIT_STORAGE_URL` (removed in Flask-Limiter 3.0) | – | unknown key; the error suggests `RATELIMIT_STORAGE_URI` |
/// | (ours) | [`HeaderSettings::ietf`] | `RATELIMIT_HEADERS_IETF`, `headers_ietf` |
/// | (ours) | [`LimiterBuilder::shadow`], [`Limit::shadow`] (shadow mode: roll out a limit without enforcing it) | `RATELIMIT_SHADOW`, `shadow` |
/// | (ours) | [`LimiterBuilder::storage_timeout`] | `RATELIMIT_STORAGE_TIMEOUT`, `storage_timeout` (needs [`apply_with_timer`](Self::apply_with_timer)) |
///
/// The decorators and methods map onto code only: `@limiter.limit` →
/// [`Route::limit`](super::Route::limit); `shared_limit` → [`Limit::shared`];
/// `scope=` → [`Limit::scope`]; `methods=` → [`Limit::methods`];
/// `error_message=` → [`Limit::error_message`]; `override_defaults=` →
/// [`Limit::override_defaults`]; a blueprint → [`Group`](super::Group);
/// `@limiter.exempt` → [`Route::exempt`](super::Route::exempt);
/// `request_filter` → [`LimiterBuilder::request_filter`]; callable limit
/// strings → [`Limit::dynamic`].
///
/// Other differences: malformed limit strings fail when the settings are
/// loaded or applied, not on the first request; with both
/// `swallow_errors` and the in-memory fallback, the fallback wins (a
/// failing fallback lets requests through, as `swallow_errors` would).
#[derive(Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Settings {
    /// `RATELIMIT_ENABLED`: limiting on or off.
    pub enabled: Option<bool>,
    /// `RATELIMIT_DEFAULT`: limits for every route without its own, in the
    /// notation; empty means none.
    pub default_limits: Option<String>,
    /// `RATELIMIT_DEFAULTS_PER_METHOD`: a bucket per HTTP method for the
    /// default limits.
    pub default_limits_per_method: Option<bool>,
    /// `RATELIMIT_DEFAULTS_COST`: what a request consumes of the default limits.
    pub default_limits_cost: Option<u64>,
    /// `RATELIMIT_APPLICATION`: limits shared by all routes, one bucket per client.
    pub application_limits: Option<String>,
    /// `RATELIMIT_APPLICATION_PER_METHOD`.
    pub application_limits_per_method: Option<bool>,
    /// `RATELIMIT_APPLICATION_COST`.
    pub application_limits_cost: Option<u64>,
    /// `RATELIMIT_META`: limits on how often a client may breach limits.
    pub meta_limits: Option<String>,
    /// `RATELIMIT_STRATEGY`.
    pub strategy: Option<StrategyKind>,
    /// `RATELIMIT_STORAGE_URI`: only `memory://` (or `async+memory://`) in
    /// this build; checked by [`apply`](Settings::apply). A build with
    /// remote storages takes the URI (`settings.storage_uri.take()`) and
    /// gives the storage to the builder itself.
    pub storage_uri: Option<String>,
    /// `RATELIMIT_STORAGE_OPTIONS`: the storage's options, as text. For
    /// `memory://`: `max_keys` and `shards`.
    pub storage_options: Option<BTreeMap<String, String>>,
    /// `RATELIMIT_STORAGE_TIMEOUT` (ours): the longest a storage call may
    /// take before it counts as a failure.
    pub storage_timeout: Option<Duration>,
    /// `RATELIMIT_KEY_PREFIX`: a leading identifier in storage keys.
    pub key_prefix: Option<String>,
    /// `RATELIMIT_HEADERS_ENABLED`: send `X-RateLimit-*` and `Retry-After`.
    pub headers_enabled: Option<bool>,
    /// `RATELIMIT_HEADERS_IETF` (ours): send the IETF `RateLimit` and
    /// `RateLimit-Policy` fields.
    pub headers_ietf: Option<bool>,
    /// `RATELIMIT_HEADER_LIMIT`: the name of the limit header.
    pub header_limit: Option<String>,
    /// `RATELIMIT_HEADER_REMAINING`: the name of the remaining header.
    pub header_remaining: Option<String>,
    /// `RATELIMIT_HEADER_RESET`: the name of the reset header.
    pub header_reset: Option<String>,
    /// `RATELIMIT_HEADER_RETRY_AFTER`: the name of the retry header.
    pub header_retry_after: Option<String>,
    /// `RATELIMIT_HEADER_RETRY_AFTER_VALUE`: `http-date` or `delta-seconds`.
    pub retry_after: Option<RetryAfterFormat>,
    /// `RATELIMIT_SWALLOW_ERRORS`: let requests through when the storage fails.
    pub swallow_errors: Option<bool>,
    /// `RATELIMIT_IN_MEMORY_FALLBACK`: the limits that replace all others
    /// while the storage is down; non-empty, it enables the fallback.
    pub in_memory_fallback: Option<String>,
    /// `RATELIMIT_IN_MEMORY_FALLBACK_ENABLED`: count in memory while the
    /// storage is down.
    pub in_memory_fallback_enabled: Option<bool>,
    /// `RATELIMIT_FAIL_ON_FIRST_BREACH`: stop at the first breached limit.
    pub fail_on_first_breach: Option<bool>,
    /// `RATELIMIT_SHADOW` (ours): shadow mode for every limit; breaches are
    /// logged and counted, never enforced ([`LimiterBuilder::shadow`]).
    pub shadow: Option<bool>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let options = self.storage_options.as_ref().map(|options| {
            options
                .iter()
                .map(|(k, v)| (k.as_str(), if is_secret(k) { "***" } else { v.as_str() }))
                .collect::<BTreeMap<_, _>>()
        });
        f.debug_struct("Settings")
            .field("enabled", &self.enabled)
            .field("default_limits", &self.default_limits)
            .field("default_limits_per_method", &self.default_limits_per_method)
            .field("default_limits_cost", &self.default_limits_cost)
            .field("application_limits", &self.application_limits)
            .field("application_limits_per_method", &self.application_limits_per_method)
            .field("application_limits_cost", &self.application_limits_cost)
            .field("meta_limits", &self.meta_limits)
            .field("strategy", &self.strategy)
            .field("storage_uri", &self.storage_uri.as_deref().map(redact_uri))
            .field("storage_options", &options)
            .field("storage_timeout", &self.storage_timeout)
            .field("key_prefix", &self.key_prefix)
            .field("headers_enabled", &self.headers_enabled)
            .field("headers_ietf", &self.headers_ietf)
            .field("header_limit", &self.header_limit)
            .field("header_remaining", &self.header_remaining)
            .field("header_reset", &self.header_reset)
            .field("header_retry_after", &self.header_retry_after)
            .field("retry_after", &self.retry_after)
            .field("swallow_errors", &self.swallow_errors)
            .field("in_memory_fallback", &self.in_memory_fallback)
            .field("in_memory_fallback_enabled", &self.in_memory_fallback_enabled)
            .field("fail_on_first_breach", &self.fail_on_first_breach)
            .field("shadow", &self.shadow)
            .finish()
    }
}

// ---------------------------------------------------------------------------
// Keys

/// Which field a key sets, or which code replaces it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Enabled,
    DefaultLimits,
    DefaultPerMethod,
    DefaultCost,
    ApplicationLimits,
    ApplicationPerMethod,
    ApplicationCost,
    MetaLimits,
    Strategy,
    StorageUri,
    StorageOptions,
    StorageTimeout,
    KeyPrefix,
    HeadersEnabled,
    HeadersIetf,
    HeaderLimit,
    HeaderRemaining,
    HeaderReset,
    HeaderRetryAfter,
    RetryAfter,
    SwallowErrors,
    InMemoryFallback,
    InMemoryFallbackEnabled,
    FailOnFirstBreach,
    Shadow,
    /// A Python callable in Flask-Limiter; the text is the code to use.
    CodeOnly(&'static str),
}

/// One key: its Flask-Limiter config name, short name and field (or
/// constructor parameter) name.
#[derive(Debug)]
struct Spec {
    flask: &'static str,
    short: &'static str,
    field: &'static str,
    target: Target,
}

const fn spec(flask: &'static str, short: &'static str, field: &'static str, target: Target) -> Spec {
    Spec { flask, short, field, target }
}

const DEFAULTS_CODE: &str = "`LimiterBuilder::default_limits(Limit::new(..).exempt_when(..))` (or `.deduct_when(..)`), \
     leaving RATELIMIT_DEFAULT out of the configuration";
const APPLICATION_CODE: &str = "`LimiterBuilder::application_limits(Limit::new(..).exempt_when(..))` (or \
     `.deduct_when(..)`), leaving RATELIMIT_APPLICATION out of the configuration";

const KEYS: &[Spec] = &[
    spec("RATELIMIT_ENABLED", "enabled", "enabled", Target::Enabled),
    spec("RATELIMIT_DEFAULT", "default", "default_limits", Target::DefaultLimits),
    spec("RATELIMIT_DEFAULTS_PER_METHOD", "defaults_per_method", "default_limits_per_method", Target::DefaultPerMethod),
    spec("RATELIMIT_DEFAULTS_COST", "defaults_cost", "default_limits_cost", Target::DefaultCost),
    spec("RATELIMIT_APPLICATION", "application", "application_limits", Target::ApplicationLimits),
    spec(
        "RATELIMIT_APPLICATION_PER_METHOD",
        "application_per_method",
        "application_limits_per_method",
        Target::ApplicationPerMethod,
    ),
    spec("RATELIMIT_APPLICATION_COST", "application_cost", "application_limits_cost", Target::ApplicationCost),
    spec("RATELIMIT_META", "meta", "meta_limits", Target::MetaLimits),
    spec("RATELIMIT_STRATEGY", "strategy", "strategy", Target::Strategy),
    spec("RATELIMIT_STORAGE_URI", "storage_uri", "storage_uri", Target::StorageUri),
    spec("RATELIMIT_STORAGE_OPTIONS", "storage_options", "storage_options", Target::StorageOptions),
    spec("RATELIMIT_STORAGE_TIMEOUT", "storage_timeout", "storage_timeout", Target::StorageTimeout),
    spec("RATELIMIT_KEY_PREFIX", "key_prefix", "key_prefix", Target::KeyPrefix),
    spec("RATELIMIT_HEADERS_ENABLED", "headers_enabled", "headers_enabled", Target::HeadersEnabled),
    spec("RATELIMIT_HEADERS_IETF", "headers_ietf", "headers_ietf", Target::HeadersIetf),
    spec("RATELIMIT_HEADER_LIMIT", "header_limit", "header_limit", Target::HeaderLimit),
    spec("RATELIMIT_HEADER_REMAINING", "header_remaining", "header_remaining", Target::HeaderRemaining),
    spec("RATELIMIT_HEADER_RESET", "header_reset", "header_reset", Target::HeaderReset),
    spec("RATELIMIT_HEADER_RETRY_AFTER", "header_retry_after", "header_retry_after", Target::HeaderRetryAfter),
    spec("RATELIMIT_HEADER_RETRY_AFTER_VALUE", "header_retry_after_value", "retry_after", Target::RetryAfter),
    spec("RATELIMIT_SWALLOW_ERRORS", "swallow_errors", "swallow_errors", Target::SwallowErrors),
    spec("RATELIMIT_IN_MEMORY_FALLBACK", "in_memory_fallback", "in_memory_fallback", Target::InMemoryFallback),
    spec(
        "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED",
        "in_memory_fallback_enabled",
        "in_memory_fallback_enabled",
        Target::InMemoryFallbackEnabled,
    ),
    spec("RATELIMIT_FAIL_ON_FIRST_BREACH", "fail_on_first_breach", "fail_on_first_breach", Target::FailOnFirstBreach),
    spec("RATELIMIT_SHADOW", "shadow", "shadow", Target::Shadow),
    spec(
        "RATELIMIT_KEY_FUNC",
        "key_func",
        "key_func",
        Target::CodeOnly("`LimiterBuilder::key` (PeerIp, HeaderKey, GlobalKey or a closure)"),
    ),
    spec(
        "RATELIMIT_REQUEST_IDENTIFIER",
        "request_identifier",
        "request_identifier",
        Target::CodeOnly("the route's name, `Route::new(name)` (unnamed routes are identified by their path pattern)"),
    ),
    spec(
        "RATELIMIT_ON_BREACH_CALLBACK",
        "on_breach_callback",
        "on_breach",
        Target::CodeOnly("`LimiterBuilder::on_breach`"),
    ),
    spec(
        "RATELIMIT_ON_META_BREACH_CALLBACK",
        "on_meta_breach_callback",
        "on_meta_breach",
        Target::CodeOnly("`LimiterBuilder::on_meta_breach`"),
    ),
    spec(
        "RATELIMIT_DEFAULTS_EXEMPT_WHEN",
        "defaults_exempt_when",
        "default_limits_exempt_when",
        Target::CodeOnly(DEFAULTS_CODE),
    ),
    spec(
        "RATELIMIT_DEFAULTS_DEDUCT_WHEN",
        "defaults_deduct_when",
        "default_limits_deduct_when",
        Target::CodeOnly(DEFAULTS_CODE),
    ),
    spec(
        "RATELIMIT_APPLICATION_EXEMPT_WHEN",
        "application_exempt_when",
        "application_limits_exempt_when",
        Target::CodeOnly(APPLICATION_CODE),
    ),
    spec(
        "RATELIMIT_APPLICATION_DEDUCT_WHEN",
        "application_deduct_when",
        "application_limits_deduct_when",
        Target::CodeOnly(APPLICATION_CODE),
    ),
];

const ENV_PREFIX: &str = "RATELIMIT_";

/// A TOML key in canonical form: lower case, `_` for `-`.
fn normalize(key: &str) -> String {
    key.trim().to_ascii_lowercase().replace('-', "_")
}

fn lookup_text_key(key: &str) -> Option<&'static Spec> {
    let key = normalize(key);
    let short = key.strip_prefix("ratelimit_");
    KEYS.iter().find(|s| key == s.short || key == s.field || short == Some(s.short))
}

fn lookup_env_key(key: &str) -> Option<&'static Spec> {
    KEYS.iter().find(|s| key == s.flask)
}

/// The closest known key to `key`, in the same spelling, if one is close.
fn suggest(key: &str, env: bool) -> Option<&'static str> {
    let key = normalize(key);
    let (stripped, prefixed) = match key.strip_prefix("ratelimit_") {
        Some(rest) => (rest, true),
        None => (key.as_str(), env),
    };
    let candidates = KEYS.iter().flat_map(|s| {
        let shown = |name: &'static str| if prefixed { s.flask } else { name };
        let field = (!prefixed).then(|| (s.field, shown(s.field)));
        std::iter::once((s.short, shown(s.short))).chain(field)
    });
    let (distance, best) =
        candidates.map(|(name, shown)| (edit_distance(stripped, name), shown)).min_by_key(|(d, _)| *d)?;
    (distance <= (stripped.chars().count() / 3).max(2)).then_some(best)
}

/// Levenshtein distance, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = Vec::with_capacity(b.len() + 1);
        current.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous.get(j).map_or(usize::MAX, |d| d + usize::from(ca != *cb));
            let delete = previous.get(j + 1).map_or(usize::MAX, |d| d + 1);
            let insert = current.last().map_or(usize::MAX, |d| d + 1);
            current.push(substitute.min(delete).min(insert));
        }
        previous = current;
    }
    previous.last().copied().unwrap_or(0)
}

// ---------------------------------------------------------------------------
// Values

/// A configuration value before it is checked: text from the environment,
/// or whatever a TOML (or other serde) document holds.
#[derive(Clone, Debug, PartialEq)]
enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    #[cfg_attr(not(feature = "serde"), allow(dead_code))]
    Datetime(String),
    List(Vec<Value>),
    Table(Vec<(String, Value)>),
}

impl Value {
    /// How an error shows the value.
    fn shown(&self) -> String {
        match self {
            Value::Null => "null".to_owned(),
            Value::Bool(b) => b.to_string(),
            Value::Int(n) => n.to_string(),
            Value::Float(x) => x.to_string(),
            Value::Str(s) | Value::Datetime(s) => s.clone(),
            Value::List(_) => "an array".to_owned(),
            Value::Table(_) => "a table".to_owned(),
        }
    }
}

/// Where values come from, for error messages.
#[derive(Clone, Copy, Debug)]
struct Origin<'a> {
    name: &'a str,
    env: bool,
}

/// Accumulates values into [`Settings`], rejecting a setting given twice.
struct Loader<'a> {
    settings: Settings,
    seen: BTreeMap<&'static str, String>,
    origin: Origin<'a>,
}

fn invalid(spec: &Spec, value: &Value, fix: impl Into<String>) -> ConfigError {
    ConfigError::InvalidOption { option: spec.flask, value: value.shown(), fix: fix.into() }
}

impl<'a> Loader<'a> {
    fn new(origin: Origin<'a>) -> Self {
        Loader { settings: Settings::default(), seen: BTreeMap::new(), origin }
    }

    /// Reads the entries of a document (or of its `[ratelimit]` table when
    /// `path` is `ratelimit.`).
    fn table(&mut self, entries: Vec<(String, Value)>, path: &str) -> Result<(), ConfigError> {
        for (key, value) in entries {
            let written = format!("{path}{key}");
            if path.is_empty() && normalize(&key) == "ratelimit" {
                match value {
                    Value::Table(inner) => self.table(inner, "ratelimit.")?,
                    other => {
                        return Err(ConfigError::Invalid(format!(
                            "`{written}` in {} must be a table of settings, not {}",
                            self.origin.name,
                            other.shown()
                        )));
                    }
                }
                continue;
            }
            match lookup_text_key(&key) {
                Some(spec) => self.set(spec, &written, value)?,
                None => {
                    return Err(ConfigError::UnknownKey {
                        key: written,
                        origin: self.origin.name.to_owned(),
                        suggestion: suggest(&key, false),
                    });
                }
            }
        }
        Ok(())
    }

    fn set(&mut self, spec: &'static Spec, written: &str, value: Value) -> Result<(), ConfigError> {
        if let Target::CodeOnly(instead) = spec.target {
            return Err(ConfigError::CodeOnly {
                key: written.to_owned(),
                origin: self.origin.name.to_owned(),
                instead,
            });
        }
        if value == Value::Null {
            return Ok(());
        }
        if let Some(first) = self.seen.insert(spec.flask, written.to_owned()) {
            return Err(ConfigError::Invalid(format!(
                "{} is given twice in {}: as `{first}` and as `{written}`",
                spec.flask, self.origin.name
            )));
        }
        let place = || format!("{written} in {}", self.origin.name);
        let s = &mut self.settings;
        match spec.target {
            Target::Enabled => s.enabled = Some(boolean(spec, &value)?),
            Target::DefaultLimits => s.default_limits = Some(limits(&value, spec, place)?),
            Target::DefaultPerMethod => s.default_limits_per_method = Some(boolean(spec, &value)?),
            Target::DefaultCost => s.default_limits_cost = Some(cost(spec, &value)?),
            Target::ApplicationLimits => s.application_limits = Some(limits(&value, spec, place)?),
            Target::ApplicationPerMethod => s.application_limits_per_method = Some(boolean(spec, &value)?),
            Target::ApplicationCost => s.application_limits_cost = Some(cost(spec, &value)?),
            Target::MetaLimits => s.meta_limits = Some(limits(&value, spec, place)?),
            Target::Strategy => s.strategy = Some(strategy(spec, &value)?),
            Target::StorageUri => s.storage_uri = Some(uri(spec, value)?),
            Target::StorageOptions => s.storage_options = Some(options(spec, value)?),
            Target::StorageTimeout => s.storage_timeout = Some(duration(spec, &value)?),
            Target::KeyPrefix => s.key_prefix = Some(text(spec, value)?),
            Target::HeadersEnabled => s.headers_enabled = Some(boolean(spec, &value)?),
            Target::HeadersIetf => s.headers_ietf = Some(boolean(spec, &value)?),
            Target::HeaderLimit => s.header_limit = Some(header_name(spec, value)?),
            Target::HeaderRemaining => s.header_remaining = Some(header_name(spec, value)?),
            Target::HeaderReset => s.header_reset = Some(header_name(spec, value)?),
            Target::HeaderRetryAfter => s.header_retry_after = Some(header_name(spec, value)?),
            Target::RetryAfter => s.retry_after = Some(retry_after(spec, &value)?),
            Target::SwallowErrors => s.swallow_errors = Some(boolean(spec, &value)?),
            Target::InMemoryFallback => s.in_memory_fallback = Some(limits(&value, spec, place)?),
            Target::InMemoryFallbackEnabled => s.in_memory_fallback_enabled = Some(boolean(spec, &value)?),
            Target::FailOnFirstBreach => s.fail_on_first_breach = Some(boolean(spec, &value)?),
            Target::Shadow => s.shadow = Some(boolean(spec, &value)?),
            Target::CodeOnly(_) => {}
        }
        Ok(())
    }
}

const EXPECTED_BOOL: &str = "expected a boolean: true or false, yes or no, 1 or 0 (any case)";

fn boolean(spec: &Spec, value: &Value) -> Result<bool, ConfigError> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::Int(0) => Ok(false),
        Value::Int(1) => Ok(true),
        Value::Str(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => Ok(true),
            "false" | "no" | "0" => Ok(false),
            _ => Err(invalid(spec, value, EXPECTED_BOOL)),
        },
        _ => Err(invalid(spec, value, EXPECTED_BOOL)),
    }
}

/// Limits in the notation, checked now; an array of strings is joined with
/// `; `. Empty text stays empty: no limits.
fn limits(value: &Value, spec: &Spec, place: impl FnOnce() -> String) -> Result<String, ConfigError> {
    let text = match value {
        Value::Str(s) => s.clone(),
        Value::List(items) => {
            let mut parts = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::Str(s) => parts.push(s.as_str()),
                    other => {
                        return Err(invalid(spec, other, "expected rate limit strings, e.g. \"10 per minute\""));
                    }
                }
            }
            parts.join("; ")
        }
        other => {
            return Err(invalid(spec, other, "expected a rate limit string, e.g. \"200 per day; 50 per hour\""));
        }
    };
    parse_limits(&text).map_err(|source| ConfigError::InvalidLimitIn { place: place(), source })?;
    Ok(text)
}

/// The limits of a notation string; none for blank text.
fn parse_limits(text: &str) -> Result<Vec<RateLimit>, crate::ParseError> {
    if text.trim().is_empty() { Ok(Vec::new()) } else { parse_many(text) }
}

fn cost(spec: &Spec, value: &Value) -> Result<u64, ConfigError> {
    const EXPECTED: &str = "expected a whole number of at least 0 (what each request consumes)";
    match value {
        Value::Int(n) => u64::try_from(*n).map_err(|_| invalid(spec, value, EXPECTED)),
        Value::Str(s) => s.trim().parse().map_err(|_| invalid(spec, value, EXPECTED)),
        _ => Err(invalid(spec, value, EXPECTED)),
    }
}

fn strategy(spec: &Spec, value: &Value) -> Result<StrategyKind, ConfigError> {
    const EXPECTED: &str = "expected fixed-window, moving-window, sliding-window-counter or gcra";
    match value {
        Value::Str(s) => s.parse().map_err(|_| invalid(spec, value, EXPECTED)),
        _ => Err(invalid(spec, value, EXPECTED)),
    }
}

fn text(spec: &Spec, value: Value) -> Result<String, ConfigError> {
    match value {
        Value::Str(s) => Ok(s),
        other => Err(invalid(spec, &other, "expected a string")),
    }
}

fn uri(spec: &Spec, value: Value) -> Result<String, ConfigError> {
    match value {
        Value::Str(s) => Ok(s.trim().to_owned()),
        other => Err(invalid(spec, &other, "expected a storage URI such as \"memory://\"")),
    }
}

fn header_name(spec: &Spec, value: Value) -> Result<String, ConfigError> {
    let expected = format!("expected {HEADER_NAME_RULE}");
    let name = match value {
        Value::Str(s) => s.trim().to_owned(),
        other => return Err(invalid(spec, &other, expected)),
    };
    if !is_header_name(&name) {
        return Err(ConfigError::InvalidOption { option: spec.flask, value: name, fix: expected });
    }
    Ok(name)
}

fn retry_after(spec: &Spec, value: &Value) -> Result<RetryAfterFormat, ConfigError> {
    const EXPECTED: &str = "expected http-date or delta-seconds";
    let Value::Str(s) = value else { return Err(invalid(spec, value, EXPECTED)) };
    match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
        "http-date" => Ok(RetryAfterFormat::HttpDate),
        "delta-seconds" => Ok(RetryAfterFormat::DeltaSeconds),
        _ => Err(invalid(spec, value, EXPECTED)),
    }
}

fn duration(spec: &Spec, value: &Value) -> Result<Duration, ConfigError> {
    const EXPECTED: &str = "expected a duration of more than zero, e.g. \"250ms\", \"2s\" or 0.5 (seconds)";
    let seconds = match value {
        Value::Int(n) => *n as f64,
        Value::Float(x) => *x,
        Value::Str(s) => {
            let s = s.trim();
            let (number, scale) = match (s.strip_suffix("ms"), s.strip_suffix('s')) {
                (Some(ms), _) => (ms, 1e-3),
                (None, Some(secs)) => (secs, 1.0),
                (None, None) => (s, 1.0),
            };
            number.trim().parse::<f64>().map_err(|_| invalid(spec, value, EXPECTED))? * scale
        }
        _ => return Err(invalid(spec, value, EXPECTED)),
    };
    match Duration::try_from_secs_f64(seconds) {
        Ok(d) if !d.is_zero() && seconds < 9_007_199_254_740_992.0 => Ok(d),
        _ => Err(invalid(spec, value, EXPECTED)),
    }
}

/// Storage options as text: a table (TOML) or a JSON object (environment).
fn options(spec: &Spec, value: Value) -> Result<BTreeMap<String, String>, ConfigError> {
    const EXPECTED: &str = "expected a table (in the environment, a JSON object) of strings, numbers or booleans";
    let entries = match value {
        Value::Table(entries) => entries,
        Value::Str(json) => {
            let object: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&json).map_err(|e| ConfigError::InvalidOption {
                    option: spec.flask,
                    // The text may hold credentials: not shown.
                    value: "<not shown>".to_owned(),
                    fix: format!("{EXPECTED}, e.g. {{\"max_keys\": 100000}}: {e}"),
                })?;
            object.into_iter().map(|(k, v)| (k, from_json(v))).collect()
        }
        other => return Err(invalid(spec, &other, EXPECTED)),
    };
    let mut options = BTreeMap::new();
    for (name, value) in entries {
        let text = match value {
            Value::Str(s) => s,
            Value::Bool(b) => b.to_string(),
            Value::Int(n) => n.to_string(),
            Value::Float(x) => x.to_string(),
            _ => {
                return Err(ConfigError::InvalidOption {
                    option: spec.flask,
                    value: name,
                    fix: format!("{EXPECTED}, not {}", value.shown()),
                });
            }
        };
        options.insert(name, text);
    }
    Ok(options)
}

fn from_json(value: serde_json::Value) -> Value {
    match value {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Value::Int(i128::from(i)),
            (None, Some(u), _) => Value::Int(i128::from(u)),
            (None, None, Some(x)) => Value::Float(x),
            (None, None, None) => Value::Str(n.to_string()),
        },
        serde_json::Value::String(s) => Value::Str(s),
        serde_json::Value::Array(items) => Value::List(items.into_iter().map(from_json).collect()),
        serde_json::Value::Object(map) => Value::Table(map.into_iter().map(|(k, v)| (k, from_json(v))).collect()),
    }
}

// ---------------------------------------------------------------------------
// Loading

impl Settings {
    /// The `RATELIMIT_*` variables of the process environment.
    ///
    /// Only the exact Flask-Limiter names count; other variables are
    /// ignored. `RATELIMIT_STORAGE_OPTIONS` is a JSON object.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the variable: an unknown `RATELIMIT_*` name
    /// (with the closest known one), a key that only code can set, a value
    /// that does not parse, or a value that is not UTF-8.
    pub fn from_env() -> Result<Settings, ConfigError> {
        let mut vars = Vec::new();
        for (name, value) in std::env::vars_os() {
            let Some(name) = name.to_str().filter(|n| n.starts_with(ENV_PREFIX)).map(str::to_owned) else { continue };
            match value.into_string() {
                Ok(value) => vars.push((name, value)),
                Err(raw) => {
                    return Err(ConfigError::Invalid(format!(
                        "environment variable {name} is not valid UTF-8: {:?}",
                        raw.to_string_lossy()
                    )));
                }
            }
        }
        Settings::from_env_iter(vars)
    }

    /// Like [`from_env`](Self::from_env), with the variables given
    /// (name, value); names not starting with `RATELIMIT_` are ignored.
    ///
    /// # Errors
    ///
    /// As [`from_env`](Self::from_env).
    pub fn from_env_iter(vars: impl IntoIterator<Item = (String, String)>) -> Result<Settings, ConfigError> {
        let mut vars: Vec<(String, String)> =
            vars.into_iter().filter(|(name, _)| name.starts_with(ENV_PREFIX)).collect();
        // Environments have no order; errors should not depend on it.
        vars.sort();
        let mut loader = Loader::new(Origin { name: "the environment", env: true });
        for (name, value) in vars {
            let Some(spec) = lookup_env_key(&name) else {
                let suggestion = suggest(&name, loader.origin.env);
                return Err(ConfigError::UnknownKey { key: name, origin: loader.origin.name.to_owned(), suggestion });
            };
            loader.set(spec, &name, Value::Str(value))?;
        }
        Ok(loader.settings)
    }

    /// These settings with every setting present in `overrides` replaced:
    /// `file.merge(env)` is the environment over the file.
    /// `storage_options` is replaced as a whole, not merged key by key.
    #[must_use]
    pub fn merge(self, overrides: Settings) -> Settings {
        macro_rules! over {
            ($($field:ident),* $(,)?) => {
                Settings { $($field: overrides.$field.or(self.$field)),* }
            };
        }
        over!(
            enabled,
            default_limits,
            default_limits_per_method,
            default_limits_cost,
            application_limits,
            application_limits_per_method,
            application_limits_cost,
            meta_limits,
            strategy,
            storage_uri,
            storage_options,
            storage_timeout,
            key_prefix,
            headers_enabled,
            headers_ietf,
            header_limit,
            header_remaining,
            header_reset,
            header_retry_after,
            retry_after,
            swallow_errors,
            in_memory_fallback,
            in_memory_fallback_enabled,
            fail_on_first_breach,
            shadow,
        )
    }
}

#[cfg(feature = "toml")]
impl Settings {
    /// Settings from a TOML document (see [key spellings](Settings#key-spellings)).
    ///
    /// # Errors
    ///
    /// [`ConfigError::Unreadable`] for invalid TOML (with line and column);
    /// otherwise as [`from_env`](Self::from_env), naming the key as written.
    pub fn from_toml_str(text: &str) -> Result<Settings, ConfigError> {
        Settings::from_toml_named(text, "TOML text")
    }

    /// Settings from a TOML file.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Unreadable`] if the file cannot be read or is not
    /// TOML; otherwise as [`from_toml_str`](Self::from_toml_str), naming the file.
    pub fn from_toml_file(path: impl AsRef<std::path::Path>) -> Result<Settings, ConfigError> {
        let path = path.as_ref();
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Unreadable { origin: origin.clone(), source: Box::new(e) })?;
        Settings::from_toml_named(&text, &origin)
    }

    /// The file at `path`, then the `RATELIMIT_*` environment variables over
    /// it: `from_toml_file(path)?.merge(from_env()?)`.
    ///
    /// # Errors
    ///
    /// As [`from_toml_file`](Self::from_toml_file) and [`from_env`](Self::from_env).
    pub fn load(path: impl AsRef<std::path::Path>) -> Result<Settings, ConfigError> {
        Ok(Settings::from_toml_file(path)?.merge(Settings::from_env()?))
    }

    fn from_toml_named(text: &str, origin: &str) -> Result<Settings, ConfigError> {
        let document: de::Document = toml::from_str(text)
            .map_err(|e| ConfigError::Unreadable { origin: origin.to_owned(), source: Box::new(e) })?;
        Settings::from_entries(document.0, origin)
    }
}

impl Settings {
    #[cfg_attr(not(feature = "serde"), allow(dead_code))]
    fn from_entries(entries: Vec<(String, Value)>, origin: &str) -> Result<Settings, ConfigError> {
        let mut loader = Loader::new(Origin { name: origin, env: false });
        loader.table(entries, "")?;
        Ok(loader.settings)
    }
}

#[cfg(feature = "serde")]
mod de {
    //! `serde::Deserialize` for [`Settings`], through a format-neutral value.

    use std::fmt;

    use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

    use super::{Settings, Value};

    /// toml's private marker for date-times.
    const TOML_DATETIME: &str = "$__toml_private_datetime";

    /// A document: its top-level entries.
    pub(super) struct Document(pub(super) Vec<(String, Value)>);

    impl<'de> Deserialize<'de> for Value {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_any(ValueVisitor)
        }
    }

    struct ValueVisitor;

    impl<'de> Visitor<'de> for ValueVisitor {
        type Value = Value;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a configuration value")
        }

        fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
            Ok(Value::Bool(v))
        }

        fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
            Ok(Value::Int(i128::from(v)))
        }

        fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
            Ok(Value::Int(i128::from(v)))
        }

        fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
            Ok(Value::Float(v))
        }

        fn visit_str<E>(self, v: &str) -> Result<Value, E> {
            Ok(Value::Str(v.to_owned()))
        }

        fn visit_string<E>(self, v: String) -> Result<Value, E> {
            Ok(Value::Str(v))
        }

        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }

        fn visit_none<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }

        fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
            deserializer.deserialize_any(ValueVisitor)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element()? {
                items.push(item);
            }
            Ok(Value::List(items))
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let mut entries = Vec::new();
            while let Some(key) = map.next_key::<String>()? {
                if key == TOML_DATETIME && entries.is_empty() {
                    return Ok(Value::Datetime(map.next_value::<String>()?));
                }
                entries.push((key, map.next_value()?));
            }
            Ok(Value::Table(entries))
        }
    }

    impl<'de> Deserialize<'de> for Document {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            match Value::deserialize(deserializer)? {
                Value::Table(entries) => Ok(Document(entries)),
                other => {
                    Err(de::Error::custom(format!("expected a table of rate limit settings, not {}", other.shown())))
                }
            }
        }
    }

    /// Reads a table of settings with the same key spellings and checks as
    /// [`Settings::from_toml_str`]; errors become the format's errors.
    impl<'de> Deserialize<'de> for Settings {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            let document = Document::deserialize(deserializer)?;
            Settings::from_entries(document.0, "the configuration").map_err(de::Error::custom)
        }
    }
}

// ---------------------------------------------------------------------------
// Applying

impl Settings {
    /// Sets every setting present on `builder` (see [precedence](Settings#precedence)).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for a storage URI it cannot serve (remote storages
    /// are connected outside the settings, with `limiter::storage_from_uri_with`
    /// and [`LimiterBuilder::any_storage`]; the message says so and names
    /// the URI with any password replaced by `***`), storage options `memory://` does not
    /// take, options without a URI, a storage timeout (it needs a timer: use
    /// [`apply_with_timer`](Self::apply_with_timer)), limit strings set in
    /// code that do not parse, or a per-method or cost setting
    /// (`RATELIMIT_DEFAULTS_PER_METHOD = true`, `RATELIMIT_DEFAULTS_COST`
    /// other than 1, and the application ones) without the limits it is for
    /// (`RATELIMIT_DEFAULT`, `RATELIMIT_APPLICATION`): Flask-Limiter applies
    /// these to limits given in code as well, which `apply` cannot reach.
    pub fn apply<R>(&self, builder: LimiterBuilder<R>) -> Result<LimiterBuilder<R>, ConfigError>
    where
        R: RequestInfo + Send + Sync + 'static,
    {
        self.apply_inner(builder, None)
    }

    /// [`apply`](Self::apply), with the runtime's timer for
    /// `RATELIMIT_STORAGE_TIMEOUT` (the tower adapter's `tokio_sleeper()`);
    /// the timer is unused without a storage timeout.
    ///
    /// # Errors
    ///
    /// As [`apply`](Self::apply), except for the storage timeout.
    pub fn apply_with_timer<R>(
        &self,
        builder: LimiterBuilder<R>,
        sleep: Sleeper,
    ) -> Result<LimiterBuilder<R>, ConfigError>
    where
        R: RequestInfo + Send + Sync + 'static,
    {
        self.apply_inner(builder, Some(sleep))
    }

    fn apply_inner<R>(&self, mut b: LimiterBuilder<R>, sleep: Option<Sleeper>) -> Result<LimiterBuilder<R>, ConfigError>
    where
        R: RequestInfo + Send + Sync + 'static,
    {
        if let Some(enabled) = self.enabled {
            b = b.enabled(enabled);
        }
        if let Some(strategy) = self.strategy {
            b = b.strategy(strategy);
        }
        match (&self.storage_uri, &self.storage_options) {
            (Some(uri), options) => b = b.storage(storage_for(uri, options.as_ref())?),
            (None, Some(options)) if !options.is_empty() => {
                return Err(ConfigError::Invalid(
                    "RATELIMIT_STORAGE_OPTIONS is set but RATELIMIT_STORAGE_URI is not: give the URI the options are for"
                        .to_owned(),
                ));
            }
            (None, _) => {}
        }
        if let Some(timeout) = self.storage_timeout {
            let Some(sleep) = sleep else {
                return Err(ConfigError::InvalidOption {
                    option: "RATELIMIT_STORAGE_TIMEOUT",
                    value: format!("{timeout:?}"),
                    fix: "a storage timeout needs the runtime's timer: apply the settings with \
                          Settings::apply_with_timer (e.g. with limiter_tower::tokio_sleeper())"
                        .to_owned(),
                });
            };
            b = b.storage_timeout(timeout, sleep);
        }
        if let Some(prefix) = &self.key_prefix {
            b = b.key_prefix(prefix.as_str());
        }
        let defaults = Modifiers {
            limits: ("RATELIMIT_DEFAULT", self.default_limits.as_deref()),
            builder_call: "default_limits",
            per_method: ("RATELIMIT_DEFAULTS_PER_METHOD", self.default_limits_per_method),
            cost: ("RATELIMIT_DEFAULTS_COST", self.default_limits_cost),
        };
        if let Some(limit) = defaults.limit()? {
            b = b.default_limits(limit);
        }
        let application = Modifiers {
            limits: ("RATELIMIT_APPLICATION", self.application_limits.as_deref()),
            builder_call: "application_limits",
            per_method: ("RATELIMIT_APPLICATION_PER_METHOD", self.application_limits_per_method),
            cost: ("RATELIMIT_APPLICATION_COST", self.application_limits_cost),
        };
        if let Some(limit) = application.limit()? {
            b = b.application_limits(limit);
        }
        if let Some(limits) = configured("RATELIMIT_META", self.meta_limits.as_deref())? {
            b = b.meta_limits(Limit::from_limits(limits));
        }
        b = self.apply_headers(b);
        let fallback = configured("RATELIMIT_IN_MEMORY_FALLBACK", self.in_memory_fallback.as_deref())?;
        // As in Flask-Limiter, fallback limits imply the fallback.
        if self.in_memory_fallback_enabled == Some(true) || fallback.is_some() {
            b = b.on_storage_failure(FailurePolicy::InMemoryFallback);
        } else if self.swallow_errors == Some(true) {
            b = b.on_storage_failure(FailurePolicy::FailOpen);
        } else if self.swallow_errors.is_some() || self.in_memory_fallback_enabled.is_some() {
            b = b.on_storage_failure(FailurePolicy::default());
        }
        if let Some(limits) = fallback {
            b = b.in_memory_fallback_limits(Limit::from_limits(limits));
        }
        if let Some(stop) = self.fail_on_first_breach {
            b = b.fail_on_first_breach(stop);
        }
        if let Some(shadow) = self.shadow {
            b = b.shadow(shadow);
        }
        Ok(b)
    }

    fn apply_headers<R>(&self, mut b: LimiterBuilder<R>) -> LimiterBuilder<R>
    where
        R: RequestInfo + Send + Sync + 'static,
    {
        let names = [&self.header_limit, &self.header_remaining, &self.header_reset, &self.header_retry_after];
        if self.headers_ietf.is_some() || self.retry_after.is_some() || names.iter().any(|n| n.is_some()) {
            let mut headers = HeaderSettings {
                enabled: self.headers_enabled.unwrap_or(false),
                ietf: self.headers_ietf.unwrap_or(false),
                retry_after_format: self.retry_after.unwrap_or_default(),
                ..HeaderSettings::default()
            };
            let slots = [&mut headers.limit, &mut headers.remaining, &mut headers.reset, &mut headers.retry_after];
            for (slot, name) in slots.into_iter().zip(names) {
                if let Some(name) = name {
                    *slot = name.as_str().into();
                }
            }
            b = b.headers(headers);
        } else if let Some(enabled) = self.headers_enabled {
            b = b.headers_enabled(enabled);
        }
        b
    }
}

/// One kind of configured limits (default, application) with its
/// per-method and cost settings, each with its key.
struct Modifiers<'s> {
    limits: (&'static str, Option<&'s str>),
    builder_call: &'static str,
    per_method: (&'static str, Option<bool>),
    cost: (&'static str, Option<u64>),
}

impl Modifiers<'_> {
    /// The configured limits with their per-method and cost settings;
    /// `None` when no limits are configured (and then neither setting may
    /// be: see [`unreachable_modifiers`]).
    fn limit<R>(self) -> Result<Option<Limit<R>>, ConfigError> {
        match configured(self.limits.0, self.limits.1)? {
            Some(limits) => Ok(Some(
                Limit::from_limits(limits)
                    .per_method(self.per_method.1.unwrap_or(false))
                    .cost(self.cost.1.unwrap_or(1)),
            )),
            None => unreachable_modifiers(&self).map(|()| None),
        }
    }
}

/// Flask-Limiter applies `RATELIMIT_DEFAULTS_PER_METHOD`, `_COST` (and the
/// application ones) to limits given to its constructor too; `apply` cannot
/// reach the builder's limits, so a setting that would change them is an
/// error here rather than silently ignored. Values equal to the defaults
/// (`false`, `1`) change nothing and pass.
fn unreachable_modifiers(m: &Modifiers<'_>) -> Result<(), ConfigError> {
    let (option, value, call) = match (m.per_method, m.cost) {
        ((option, Some(true)), _) => (option, "true".to_owned(), ".per_method(true)".to_owned()),
        (_, (option, Some(cost))) if cost != 1 => (option, cost.to_string(), format!(".cost({cost})")),
        _ => return Ok(()),
    };
    Err(ConfigError::InvalidOption {
        option,
        value,
        fix: format!(
            "it applies to {limits} only, which is not set (unlike Flask-Limiter, it cannot reach limits given \
             in code): set {limits} too, or give the limits {call} in code (LimiterBuilder::{builder})",
            limits = m.limits.0,
            builder = m.builder_call,
        ),
    })
}

/// The limits of a setting, or `None` when it is absent or blank.
fn configured(key: &str, text: Option<&str>) -> Result<Option<Vec<RateLimit>>, ConfigError> {
    match text.map(parse_limits) {
        None => Ok(None),
        Some(Ok(limits)) if limits.is_empty() => Ok(None),
        Some(Ok(limits)) => Ok(Some(limits)),
        Some(Err(source)) => Err(ConfigError::InvalidLimitIn { place: key.to_owned(), source }),
    }
}

// ---------------------------------------------------------------------------
// Storage URIs

/// A storage of a scheme this build does not serve: its name, the `limiter`
/// feature and the crate that will.
struct Remote {
    schemes: &'static [&'static str],
    name: &'static str,
    feature: &'static str,
    krate: &'static str,
}

const REMOTES: &[Remote] = &[
    Remote {
        schemes: &[
            "redis",
            "rediss",
            "redis+unix",
            "redis+cluster",
            "redis+sentinel",
            "valkey",
            "valkeys",
            "valkey+unix",
            "valkey+cluster",
            "valkey+sentinel",
        ],
        name: "Redis",
        feature: "redis",
        krate: "limiter-redis",
    },
    Remote { schemes: &["memcached"], name: "Memcached", feature: "memcached", krate: "limiter-memcached" },
    Remote { schemes: &["mongodb", "mongodb+srv"], name: "MongoDB", feature: "mongodb", krate: "limiter-mongodb" },
];

const URI_OPTION: &str = "RATELIMIT_STORAGE_URI";

/// The storage a URI names, with its options, if this build has it.
fn storage_for(uri: &str, options: Option<&BTreeMap<String, String>>) -> Result<MemoryStorage, ConfigError> {
    let bad = |fix: String| ConfigError::InvalidOption { option: URI_OPTION, value: redact_uri(uri), fix };
    let Some((scheme, rest)) = uri.trim().split_once("://") else {
        return Err(bad("expected a storage URI such as memory:// or redis://localhost:6379".to_owned()));
    };
    let scheme = scheme.to_ascii_lowercase();
    // limits' asyncio storages: everything here is async already.
    let scheme = scheme.strip_prefix("async+").unwrap_or(&scheme);
    if scheme == "memory" {
        if !rest.is_empty() {
            return Err(bad("memory:// takes no host, path or query; use RATELIMIT_STORAGE_OPTIONS".to_owned()));
        }
        return memory_storage(options);
    }
    if let Some(remote) = REMOTES.iter().find(|r| r.schemes.contains(&scheme)) {
        return Err(bad(format!(
            "the {} storage is connected outside the settings, since connecting waits on the network: take \
             storage_uri and storage_options out of the settings and give \
             `limiter::storage_from_uri_with(uri, &options).await?` (the `{}` feature of `limiter`, crate {}) to \
             LimiterBuilder::any_storage",
            remote.name, remote.feature, remote.krate
        )));
    }
    let known: Vec<String> = std::iter::once("memory")
        .chain(REMOTES.iter().flat_map(|r| r.schemes.iter().copied()))
        .map(|s| format!("{s}://"))
        .collect();
    Err(bad(format!(
        "unknown storage scheme {scheme:?}: expected one of {} (optionally with async+ before)",
        known.join(", ")
    )))
}

fn memory_storage(options: Option<&BTreeMap<String, String>>) -> Result<MemoryStorage, ConfigError> {
    let mut builder = MemoryStorage::builder();
    for (name, value) in options.into_iter().flatten() {
        let count = || {
            value.trim().parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| ConfigError::InvalidOption {
                option: "RATELIMIT_STORAGE_OPTIONS",
                value: format!("{name} = {value}"),
                fix: "expected a whole number of at least 1".to_owned(),
            })
        };
        builder = match name.as_str() {
            "max_keys" => builder.max_keys(count()?),
            "shards" => builder.shards(count()?),
            _ => {
                return Err(ConfigError::InvalidOption {
                    option: "RATELIMIT_STORAGE_OPTIONS",
                    value: name.clone(),
                    fix: "memory:// takes only max_keys and shards".to_owned(),
                });
            }
        };
    }
    Ok(builder.build())
}

/// Whether a storage option's value should not be shown.
fn is_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["pass", "secret", "token", "credential", "apikey", "api_key"].iter().any(|s| name.contains(s))
}

/// Whether a MongoDB `authMechanismProperties` property (`KEY:value`)
/// holds a credential (an `AWS_SESSION_TOKEN`, say): every property but the
/// few that configure Kerberos or OIDC rather than prove an identity
/// (`SERVICE_NAME`, `SERVICE_REALM`, `SERVICE_HOST`,
/// `CANONICALIZE_HOST_NAME`, `ENVIRONMENT`, `TOKEN_RESOURCE`), in any case.
/// [`redact_uri`] hides the values of secret ones; storages use it to
/// scrub their drivers' messages the same way.
///
/// # Example
///
/// ```
/// use limiter_core::engine::is_secret_mechanism_property;
///
/// assert!(is_secret_mechanism_property("AWS_SESSION_TOKEN"));
/// assert!(!is_secret_mechanism_property("service_name"));
/// ```
pub fn is_secret_mechanism_property(key: &str) -> bool {
    const SETTINGS: [&str; 6] =
        ["SERVICE_NAME", "SERVICE_REALM", "SERVICE_HOST", "CANONICALIZE_HOST_NAME", "ENVIRONMENT", "TOKEN_RESOURCE"];
    !SETTINGS.iter().any(|setting| setting.eq_ignore_ascii_case(key))
}

/// A storage URI fit for logs and error messages: the password (or a lone
/// user name, which may be a token) becomes `***`, as do query parameters
/// named like secrets (`password`, `token`, ...) and, in MongoDB's
/// `authMechanismProperties`, the value of every property but the few known
/// to be settings (`SERVICE_NAME`, `ENVIRONMENT`, ...), so that an
/// `AWS_SESSION_TOKEN` never shows.
///
/// ```
/// use limiter_core::engine::redact_uri;
///
/// assert_eq!(redact_uri("redis://:secret@cache:6379/0"), "redis://:***@cache:6379/0");
/// assert_eq!(redact_uri("redis://app:secret@cache:6379"), "redis://app:***@cache:6379");
/// assert_eq!(redact_uri("mongodb://db/?authSource=admin&password=x"), "mongodb://db/?authSource=admin&password=***");
/// assert_eq!(
///     redact_uri("mongodb://db/?authMechanismProperties=SERVICE_NAME:mongodb,AWS_SESSION_TOKEN:FwoG"),
///     "mongodb://db/?authMechanismProperties=SERVICE_NAME:mongodb,AWS_SESSION_TOKEN:***"
/// );
/// assert_eq!(redact_uri("memory://"), "memory://");
/// ```
pub fn redact_uri(uri: &str) -> String {
    /// `s` around its first `plain` byte or that byte's percent escape
    /// (`escaped`, any case): MongoDB drivers decode the whole value before
    /// splitting it, so `%2C` separates properties as `,` does. A `%` is
    /// never a hex digit, so a match is never the tail of another escape.
    fn split_at_separator<'s>(s: &'s str, plain: u8, escaped: &[u8; 3]) -> Option<(&'s str, &'s str, &'s str)> {
        let bytes = s.as_bytes();
        let (start, end) = (0..bytes.len()).find_map(|i| {
            let rest = bytes.get(i..)?;
            if rest.first() == Some(&plain) {
                Some((i, i + 1))
            } else {
                rest.get(..3).filter(|e| e.eq_ignore_ascii_case(escaped)).map(|_| (i, i + 3))
            }
        })?;
        Some((s.get(..start)?, s.get(start..end)?, s.get(end..)?))
    }

    /// `KEY:value,KEY:value` with each value outside `SETTINGS` as `***`,
    /// and an entry without a key (a typo, maybe a bare token) as `***`.
    fn redact_properties(mut properties: &str) -> String {
        let mut redacted = String::with_capacity(properties.len());
        loop {
            let (entry, comma, rest) = split_at_separator(properties, b',', b"%2C").unwrap_or((properties, "", ""));
            match split_at_separator(entry, b':', b"%3A") {
                Some((key, _, _)) if !is_secret_mechanism_property(key) => {
                    redacted.push_str(entry);
                }
                Some((key, colon, _)) => {
                    redacted.push_str(key);
                    redacted.push_str(colon);
                    redacted.push_str("***");
                }
                None if entry.is_empty() => {}
                None => redacted.push_str("***"),
            }
            redacted.push_str(comma);
            if comma.is_empty() {
                return redacted;
            }
            properties = rest;
        }
    }

    let (scheme, rest) = match uri.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), uri),
    };
    // The last '@' ends the credentials, as in `limits`; a password may hold
    // '/', '?' or '@', so nothing before it is trusted to be a host.
    let (credentials, location) = match rest.rsplit_once('@') {
        Some((userinfo, location)) => {
            let redacted = match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:***@"),
                None => "***@".to_owned(),
            };
            (redacted, location)
        }
        None => (String::new(), rest),
    };
    let location = match location.split_once('?') {
        Some((path, query)) => {
            let pairs: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _)) if is_secret(name) => format!("{name}=***"),
                    // MongoDB reads option names in any case.
                    Some((name, value)) if name.eq_ignore_ascii_case("authMechanismProperties") => {
                        format!("{name}={}", redact_properties(value))
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", pairs.join("&"))
        }
        None => location.to_owned(),
    };
    format!("{scheme}{credentials}{location}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::Arc;

    use super::*;
    use crate::clock::{ManualClock, Timestamp};
    use crate::engine::{Limiter, Verdict};

    /// A request as a web adapter would describe it.
    struct Request {
        method: &'static str,
        route: Option<&'static str>,
        peer: IpAddr,
    }

    impl Request {
        fn get(route: &'static str) -> Self {
            Request { method: "GET", route: Some(route), peer: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)) }
        }
    }

    impl RequestInfo for Request {
        fn method(&self) -> &str {
            self.method
        }
        fn route(&self) -> Option<&str> {
            self.route
        }
        fn header(&self, _: &str) -> Option<&str> {
            None
        }
        fn header_values(&self, _: &str) -> Vec<&str> {
            Vec::new()
        }
        fn peer_addr(&self) -> Option<IpAddr> {
            Some(self.peer)
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        match f.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("the memory storage never waits"),
        }
    }

    fn env(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::from_env_iter(vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())))
    }

    fn env_err(vars: &[(&str, &str)]) -> String {
        env(vars).unwrap_err().to_string()
    }

    fn builder() -> LimiterBuilder<Request> {
        Limiter::<Request>::builder().clock(ManualClock::new(Timestamp::from_secs(1_700_000_000)))
    }

    fn header(limiter: &Limiter<Request>, decision: &crate::engine::Decision, name: &str) -> Option<String> {
        let headers = decision.headers(limiter.header_settings());
        headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.to_string())
    }

    fn apply_err(settings: &Settings) -> ConfigError {
        settings.apply(builder()).unwrap_err()
    }

    // --- environment -------------------------------------------------------

    #[test]
    fn env_reads_every_key_and_ignores_other_variables() {
        let settings = env(&[
            ("PATH", "/usr/bin"),
            ("ratelimit_default", "ignored: not upper case"),
            ("RATELIMIT_ENABLED", "yes"),
            ("RATELIMIT_DEFAULT", "200 per day; 50 per hour"),
            ("RATELIMIT_DEFAULTS_PER_METHOD", "1"),
            ("RATELIMIT_DEFAULTS_COST", "2"),
            ("RATELIMIT_APPLICATION", "5000/day"),
            ("RATELIMIT_APPLICATION_PER_METHOD", "FALSE"),
            ("RATELIMIT_APPLICATION_COST", "3"),
            ("RATELIMIT_META", "5 per hour"),
            ("RATELIMIT_STRATEGY", "sliding_window_counter"),
            ("RATELIMIT_STORAGE_URI", "memory://"),
            ("RATELIMIT_STORAGE_OPTIONS", r#"{"max_keys": 1000, "shards": "4"}"#),
            ("RATELIMIT_STORAGE_TIMEOUT", "250ms"),
            ("RATELIMIT_KEY_PREFIX", "svc"),
            ("RATELIMIT_HEADERS_ENABLED", "True"),
            ("RATELIMIT_HEADERS_IETF", "no"),
            ("RATELIMIT_HEADER_LIMIT", "X-Limit"),
            ("RATELIMIT_HEADER_REMAINING", "X-Remaining"),
            ("RATELIMIT_HEADER_RESET", "X-Reset"),
            ("RATELIMIT_HEADER_RETRY_AFTER", "X-Retry"),
            ("RATELIMIT_HEADER_RETRY_AFTER_VALUE", "http-date"),
            ("RATELIMIT_SWALLOW_ERRORS", "0"),
            ("RATELIMIT_IN_MEMORY_FALLBACK", "10/minute"),
            ("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", "true"),
            ("RATELIMIT_FAIL_ON_FIRST_BREACH", "false"),
            ("RATELIMIT_SHADOW", "yes"),
        ])
        .unwrap();
        let mut expected = Settings {
            enabled: Some(true),
            default_limits: Some("200 per day; 50 per hour".to_owned()),
            default_limits_per_method: Some(true),
            default_limits_cost: Some(2),
            application_limits: Some("5000/day".to_owned()),
            application_limits_per_method: Some(false),
            application_limits_cost: Some(3),
            meta_limits: Some("5 per hour".to_owned()),
            strategy: Some(StrategyKind::SlidingWindowCounter),
            storage_uri: Some("memory://".to_owned()),
            storage_options: Some(BTreeMap::from([
                ("max_keys".to_owned(), "1000".to_owned()),
                ("shards".to_owned(), "4".to_owned()),
            ])),
            storage_timeout: Some(Duration::from_millis(250)),
            key_prefix: Some("svc".to_owned()),
            headers_enabled: Some(true),
            headers_ietf: Some(false),
            header_limit: Some("X-Limit".to_owned()),
            header_remaining: Some("X-Remaining".to_owned()),
            header_reset: Some("X-Reset".to_owned()),
            header_retry_after: Some("X-Retry".to_owned()),
            retry_after: Some(RetryAfterFormat::HttpDate),
            swallow_errors: Some(false),
            in_memory_fallback: Some("10/minute".to_owned()),
            in_memory_fallback_enabled: Some(true),
            fail_on_first_breach: Some(false),
            shadow: Some(true),
        };
        assert_eq!(settings, expected);
        assert_eq!(env(&[]).unwrap(), Settings::default());
        expected.enabled = None;
        assert_ne!(settings, expected);
    }

    #[test]
    fn booleans_accept_the_usual_spellings_and_name_the_key_when_bad() {
        for (text, want) in
            [("true", true), ("TRUE", true), ("yes", true), ("Yes", true), ("1", true), (" no ", false), ("0", false)]
        {
            assert_eq!(env(&[("RATELIMIT_HEADERS_ENABLED", text)]).unwrap().headers_enabled, Some(want), "{text}");
        }
        let err = env(&[("RATELIMIT_HEADERS_ENABLED", "maybe")]).unwrap_err();
        assert!(matches!(err, ConfigError::InvalidOption { option: "RATELIMIT_HEADERS_ENABLED", .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "invalid value \"maybe\" for RATELIMIT_HEADERS_ENABLED: expected a boolean: true or false, yes or no, \
             1 or 0 (any case)"
        );
    }

    #[test]
    fn bad_limit_strings_name_the_key_and_point_at_the_token() {
        let err = env(&[("RATELIMIT_DEFAULT", "10 per fortnight")]).unwrap_err();
        let ConfigError::InvalidLimitIn { place, source } = &err else { panic!("{err:?}") };
        assert_eq!(place, "RATELIMIT_DEFAULT in the environment");
        assert_eq!(source.span(), 7..16);
        assert_eq!(
            err.to_string(),
            "RATELIMIT_DEFAULT in the environment: invalid rate limit \"10 per fortnight\": unknown granularity \
             'fortnight' at column 8, expected second, minute, hour, day, month or year (singular or plural)"
        );
        for key in ["RATELIMIT_APPLICATION", "RATELIMIT_META", "RATELIMIT_IN_MEMORY_FALLBACK"] {
            let message = env_err(&[(key, "1/second;")]);
            assert!(message.starts_with(&format!("{key} in the environment: invalid rate limit")), "{message}");
            assert!(message.contains("column 10"), "{message}");
        }
        // Empty text is no limits (and overrides a file's limits with none).
        assert_eq!(env(&[("RATELIMIT_DEFAULT", "  ")]).unwrap().default_limits.as_deref(), Some("  "));
    }

    #[test]
    fn other_bad_values_name_the_key_the_value_and_what_is_expected() {
        let cases = [
            ("RATELIMIT_DEFAULTS_COST", "-1", "expected a whole number of at least 0"),
            ("RATELIMIT_APPLICATION_COST", "two", "expected a whole number"),
            (
                "RATELIMIT_STRATEGY",
                "leaky-bucket",
                "expected fixed-window, moving-window, sliding-window-counter or gcra",
            ),
            ("RATELIMIT_HEADER_RETRY_AFTER_VALUE", "seconds", "expected http-date or delta-seconds"),
            ("RATELIMIT_HEADER_LIMIT", "X Limit", "expected an HTTP header name"),
            ("RATELIMIT_HEADER_RESET", "", "expected an HTTP header name"),
            ("RATELIMIT_STORAGE_TIMEOUT", "0ms", "expected a duration of more than zero"),
            ("RATELIMIT_STORAGE_TIMEOUT", "-1", "expected a duration"),
            ("RATELIMIT_STORAGE_TIMEOUT", "5 minutes", "expected a duration"),
            ("RATELIMIT_STORAGE_OPTIONS", r#"{"nested": {"a": 1}}"#, "not a table"),
            ("RATELIMIT_STORAGE_OPTIONS", r#"["max_keys"]"#, "expected a table (in the environment, a JSON object)"),
        ];
        for (key, value, fix) in cases {
            let err = env(&[(key, value)]).unwrap_err();
            let message = err.to_string();
            assert!(matches!(err, ConfigError::InvalidOption { option, .. } if option == key), "{key}: {err:?}");
            assert!(message.contains(key) && message.contains(fix), "{key}: {message}");
        }
        // Storage options may hold credentials: a JSON error does not echo them.
        let message = env_err(&[("RATELIMIT_STORAGE_OPTIONS", r#"{"password": "hunter2""#)]);
        assert!(!message.contains("hunter2") && message.contains("<not shown>"), "{message}");
    }

    #[test]
    fn durations_take_milliseconds_seconds_or_plain_numbers() {
        for (text, want) in [("250ms", 250), ("2s", 2000), ("1.5s", 1500), ("0.25", 250), (" 3 ", 3000), ("10 ms", 10)]
        {
            let settings = env(&[("RATELIMIT_STORAGE_TIMEOUT", text)]).unwrap();
            assert_eq!(settings.storage_timeout, Some(Duration::from_millis(want)), "{text}");
        }
    }

    const CODE_ONLY: [(&str, &str); 8] = [
        ("RATELIMIT_KEY_FUNC", "LimiterBuilder::key"),
        ("RATELIMIT_REQUEST_IDENTIFIER", "Route::new(name)"),
        ("RATELIMIT_ON_BREACH_CALLBACK", "LimiterBuilder::on_breach"),
        ("RATELIMIT_ON_META_BREACH_CALLBACK", "LimiterBuilder::on_meta_breach"),
        ("RATELIMIT_DEFAULTS_EXEMPT_WHEN", "LimiterBuilder::default_limits(Limit::new(..).exempt_when(..))"),
        ("RATELIMIT_DEFAULTS_DEDUCT_WHEN", ".deduct_when(..)"),
        ("RATELIMIT_APPLICATION_EXEMPT_WHEN", "LimiterBuilder::application_limits(Limit::new(..).exempt_when(..))"),
        ("RATELIMIT_APPLICATION_DEDUCT_WHEN", ".deduct_when(..)"),
    ];

    #[test]
    fn callable_keys_are_errors_naming_the_code_that_replaces_them() {
        for (key, instead) in CODE_ONLY {
            let err = env(&[(key, "myapp.limits:get_key")]).unwrap_err();
            let message = err.to_string();
            assert!(matches!(&err, ConfigError::CodeOnly { key: k, .. } if k == key), "{err:?}");
            assert!(message.starts_with(&format!("{key} in the environment cannot be set")), "{message}");
            assert!(message.contains("Python function") && message.contains(instead), "{message}");
        }
    }

    #[test]
    fn unknown_env_keys_suggest_the_closest_known_one() {
        let err = env(&[("RATELIMIT_DEFAULTS", "1/second")]).unwrap_err();
        assert!(
            matches!(&err, ConfigError::UnknownKey { key, suggestion: Some("RATELIMIT_DEFAULT"), .. } if key == "RATELIMIT_DEFAULTS"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "unknown configuration key \"RATELIMIT_DEFAULTS\" in the environment: did you mean RATELIMIT_DEFAULT?"
        );
        // Removed in Flask-Limiter 3.0.
        assert!(env_err(&[("RATELIMIT_STORAGE_URL", "memory://")]).ends_with("did you mean RATELIMIT_STORAGE_URI?"));
        assert!(env_err(&[("RATELIMIT_HEADER_ENABLED", "1")]).ends_with("did you mean RATELIMIT_HEADERS_ENABLED?"));
        assert_eq!(
            env_err(&[("RATELIMIT_COMPLETELY_DIFFERENT", "1")]),
            "unknown configuration key \"RATELIMIT_COMPLETELY_DIFFERENT\" in the environment"
        );
    }

    // --- TOML --------------------------------------------------------------

    #[cfg(feature = "toml")]
    fn toml_err(text: &str) -> String {
        Settings::from_toml_str(text).unwrap_err().to_string()
    }

    #[cfg(feature = "toml")]
    #[test]
    fn toml_with_flask_names_at_the_top_level() {
        let settings = Settings::from_toml_str(
            r#"
            RATELIMIT_DEFAULT = "200 per day; 50 per hour"
            RATELIMIT_DEFAULTS_COST = 2
            RATELIMIT_HEADERS_ENABLED = true
            RATELIMIT_STRATEGY = "moving-window"
            RATELIMIT_STORAGE_TIMEOUT = 0.5
            RATELIMIT_SWALLOW_ERRORS = "yes"
            RATELIMIT_STORAGE_OPTIONS = { max_keys = 10 }
            "#,
        )
        .unwrap();
        assert_eq!(settings.default_limits.as_deref(), Some("200 per day; 50 per hour"));
        assert_eq!(settings.default_limits_cost, Some(2));
        assert_eq!(settings.headers_enabled, Some(true));
        assert_eq!(settings.strategy, Some(StrategyKind::MovingWindow));
        assert_eq!(settings.storage_timeout, Some(Duration::from_millis(500)));
        assert_eq!(settings.swallow_errors, Some(true));
        assert_eq!(settings.storage_options, Some(BTreeMap::from([("max_keys".to_owned(), "10".to_owned())])));
    }

    #[cfg(feature = "toml")]
    #[test]
    fn toml_with_short_names_in_a_ratelimit_table() {
        let settings = Settings::from_toml_str(
            r#"
            key_prefix = "top-level short names work too"

            [ratelimit]
            default = ["200 per day", "50 per hour"]
            defaults-per-method = 1
            application_limits = "5000/day"      # the constructor parameter's name
            Meta = "5 per hour"
            ratelimit_fail_on_first_breach = false
            header_retry_after_value = "HTTP-Date"
            storage_timeout = "2s"

            [ratelimit.storage_options]
            max_keys = 100
            shards = "2"
            "#,
        )
        .unwrap();
        assert_eq!(settings.key_prefix.as_deref(), Some("top-level short names work too"));
        assert_eq!(settings.default_limits.as_deref(), Some("200 per day; 50 per hour"));
        assert_eq!(settings.default_limits_per_method, Some(true));
        assert_eq!(settings.application_limits.as_deref(), Some("5000/day"));
        assert_eq!(settings.meta_limits.as_deref(), Some("5 per hour"));
        assert_eq!(settings.fail_on_first_breach, Some(false));
        assert_eq!(settings.retry_after, Some(RetryAfterFormat::HttpDate));
        assert_eq!(settings.storage_timeout, Some(Duration::from_secs(2)));
        assert_eq!(settings.storage_options.as_ref().map(BTreeMap::len), Some(2));
    }

    #[cfg(feature = "toml")]
    #[test]
    fn toml_errors_name_the_key_as_written() {
        assert_eq!(
            toml_err("[ratelimit]\ndefualt = \"1/second\""),
            "unknown configuration key \"ratelimit.defualt\" in TOML text: did you mean default?"
        );
        assert!(toml_err("RATELIMIT_STRATGY = \"gcra\"").ends_with("did you mean RATELIMIT_STRATEGY?"));
        assert!(toml_err("default_limit = \"1/second\"").ends_with("did you mean default_limits?"));
        assert_eq!(toml_err("[server]\nport = 80"), "unknown configuration key \"server\" in TOML text");
        let message = toml_err("[ratelimit]\ndefault = \"10/secs\"");
        assert!(message.starts_with("ratelimit.default in TOML text: invalid rate limit \"10/secs\""), "{message}");
        assert!(message.contains("unknown granularity 'secs' at column 4"), "{message}");
        assert!(toml_err("RATELIMIT_META = [\"1/second\", 2]").contains("invalid value \"2\" for RATELIMIT_META"));
        assert!(toml_err("[ratelimit]\nenabled = \"sometimes\"").contains("for RATELIMIT_ENABLED: expected a boolean"));
        assert!(toml_err("enabled = 2").contains("invalid value \"2\" for RATELIMIT_ENABLED"));
        assert!(toml_err("key_prefix = 3").contains("expected a string"));
        assert!(
            toml_err("storage_options = { a = [1] }").contains("invalid value \"a\" for RATELIMIT_STORAGE_OPTIONS")
        );
        assert!(toml_err("strategy = 1979-05-27").contains("invalid value \"1979-05-27\" for RATELIMIT_STRATEGY"));
        assert!(toml_err("ratelimit = 3").contains("`ratelimit` in TOML text must be a table of settings"));
        assert_eq!(
            toml_err("RATELIMIT_DEFAULT = \"1/second\"\n[ratelimit]\ndefault = \"2/second\""),
            "RATELIMIT_DEFAULT is given twice in TOML text: as `RATELIMIT_DEFAULT` and as `ratelimit.default`"
        );
        for (key, instead) in CODE_ONLY {
            let short = key.trim_start_matches("RATELIMIT_").to_ascii_lowercase();
            let message = toml_err(&format!("[ratelimit]\n{short} = \"myapp.f\""));
            assert!(message.starts_with(&format!("ratelimit.{short} in TOML text cannot be set")), "{message}");
            assert!(message.contains(instead), "{message}");
        }
        let err = Settings::from_toml_str("default = ").unwrap_err();
        assert!(matches!(err, ConfigError::Unreadable { .. }), "{err:?}");
        assert!(err.to_string().starts_with("cannot load the configuration from TOML text: "), "{err}");
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    #[cfg(feature = "toml")]
    #[test]
    fn files_are_named_in_errors() {
        let dir = std::env::temp_dir().join(format!("limiter-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("limiter.toml");
        std::fs::write(&path, "[ratelimit]\nstrategy = \"leaky\"\n").unwrap();
        let message = Settings::from_toml_file(&path).unwrap_err().to_string();
        assert!(message.contains("for RATELIMIT_STRATEGY"), "{message}");
        std::fs::write(&path, "[ratelimit]\nstrategie = \"gcra\"\n").unwrap();
        let message = Settings::from_toml_file(&path).unwrap_err().to_string();
        assert!(message.contains(&format!("in {}", path.display())) && message.ends_with("did you mean strategy?"));
        std::fs::write(&path, "[ratelimit]\nstrategy = \"gcra\"\n").unwrap();
        assert_eq!(Settings::from_toml_file(&path).unwrap().strategy, Some(StrategyKind::Gcra));
        std::fs::remove_dir_all(&dir).unwrap();
        let err = Settings::from_toml_file(&path).unwrap_err();
        assert!(matches!(err, ConfigError::Unreadable { .. }), "{err:?}");
        assert!(err.to_string().starts_with(&format!("cannot load the configuration from {}", path.display())));
    }

    /// The example file in the documentation of [`Settings`] loads and applies.
    #[cfg(feature = "toml")]
    #[test]
    fn the_documented_example_file_loads() {
        let source = include_str!("config.rs");
        let start = source.find("/// ```toml\n").unwrap() + "/// ```toml\n".len();
        let end = start + source[start..].find("/// ```\n").unwrap();
        let text: String = source[start..end].lines().map(|l| format!("{}\n", l.trim_start_matches("///"))).collect();
        let settings = Settings::from_toml_str(&text).unwrap();
        assert_eq!(
            settings.storage_options.as_ref().and_then(|o| o.get("max_keys")).map(String::as_str),
            Some("100000")
        );
        assert_eq!(settings.in_memory_fallback.as_deref(), Some("10 per minute"));
        let fields = format!("{settings:?}");
        assert!(!fields.contains(": None"), "every key is in the example: {fields}");
        let sleep: Sleeper = Arc::new(|_| Box::pin(std::future::ready(())));
        settings.apply_with_timer(builder(), sleep).unwrap().build().unwrap();
    }

    #[cfg(feature = "serde")]
    #[test]
    fn deserializes_from_any_serde_format_with_the_same_keys_and_checks() {
        let settings: Settings =
            serde_json::from_str(r#"{"default_limits": "1/second", "RATELIMIT_HEADERS_ENABLED": "yes", "meta": null}"#)
                .unwrap();
        assert_eq!(settings.default_limits.as_deref(), Some("1/second"));
        assert_eq!(settings.headers_enabled, Some(true));
        assert_eq!(settings.meta_limits, None);
        let err = serde_json::from_str::<Settings>(r#"{"on_breach": "f"}"#).unwrap_err().to_string();
        assert!(err.contains("on_breach in the configuration cannot be set"), "{err}");
        let err = serde_json::from_str::<Settings>("[1]").unwrap_err().to_string();
        assert!(err.contains("expected a table of rate limit settings"), "{err}");
    }

    // --- precedence --------------------------------------------------------

    #[cfg(feature = "toml")]
    #[test]
    fn env_overrides_the_file_and_code_after_apply_overrides_both() {
        let file = Settings::from_toml_str(
            r#"
            [ratelimit]
            default = "5 per minute"
            headers_enabled = true
            key_prefix = "file"
            storage_options = { max_keys = 10, shards = 2 }
            storage_uri = "memory://"
            "#,
        )
        .unwrap();
        let env = env(&[
            ("RATELIMIT_DEFAULT", "2 per minute"),
            ("RATELIMIT_KEY_PREFIX", "env"),
            ("RATELIMIT_STORAGE_OPTIONS", r#"{"max_keys": 20}"#),
        ])
        .unwrap();
        let settings = file.merge(env);
        assert_eq!(settings.default_limits.as_deref(), Some("2 per minute"));
        assert_eq!(settings.headers_enabled, Some(true), "kept from the file");
        assert_eq!(settings.key_prefix.as_deref(), Some("env"));
        assert_eq!(
            settings.storage_options,
            Some(BTreeMap::from([("max_keys".to_owned(), "20".to_owned())])),
            "replaced as a whole"
        );

        let limiter = settings.apply(builder()).unwrap().headers_enabled(false).key_prefix("code").build().unwrap();
        let request = Request::get("/x");
        let first = block_on(limiter.check(&request));
        assert_eq!(first.verdict(), Verdict::Allowed);
        assert!(first.header_state().is_none(), "code turned the headers off: {:?}", first.header_state());
        assert_eq!(first.limits()[0].identifiers()[0], "code");
        assert_eq!(block_on(limiter.check(&request)).verdict(), Verdict::Allowed);
        assert_eq!(block_on(limiter.check(&request)).verdict(), Verdict::Limited, "the environment's 2 per minute");
    }

    // --- applying ----------------------------------------------------------

    #[test]
    fn a_limiter_built_from_settings_limits_as_configured() {
        let settings = env(&[
            ("RATELIMIT_DEFAULT", "2 per minute"),
            ("RATELIMIT_DEFAULTS_PER_METHOD", "true"),
            ("RATELIMIT_APPLICATION", "100 per day"),
            ("RATELIMIT_APPLICATION_COST", "10"),
            ("RATELIMIT_STRATEGY", "moving-window"),
            ("RATELIMIT_STORAGE_URI", "memory://"),
            ("RATELIMIT_KEY_PREFIX", "svc"),
            ("RATELIMIT_HEADERS_ENABLED", "true"),
            ("RATELIMIT_HEADER_LIMIT", "X-Limit"),
            ("RATELIMIT_HEADERS_IETF", "true"),
        ])
        .unwrap();
        let limiter = settings.apply(builder()).unwrap().build().unwrap();
        assert_eq!(limiter.strategy(), StrategyKind::MovingWindow);
        assert!(limiter.enabled());

        let request = Request::get("/items");
        let first = block_on(limiter.check(&request));
        assert_eq!(first.verdict(), Verdict::Allowed);
        assert_eq!(header(&limiter, &first, "X-Limit").as_deref(), Some("2"));
        assert_eq!(header(&limiter, &first, "X-RateLimit-Remaining").as_deref(), Some("1"));
        assert!(header(&limiter, &first, "RateLimit-Policy").is_some());
        let keys: Vec<String> = first.limits().iter().map(|l| l.identifiers().join("/")).collect();
        assert_eq!(keys, ["svc/10.0.0.1//items:GET", "svc/10.0.0.1/global"], "per method, then global");
        let shown = format!("{:?}", first.limits()[1]);
        assert!(shown.contains(r#"["svc", "10.0.0.1", "global"]"#), "identifiers shown as text: {shown}");
        let daily = first.limits().iter().find(|l| l.identifiers().last().copied() == Some("global"));
        assert_eq!(daily.map(|l| l.remaining), Some(90), "application cost 10");

        assert_eq!(block_on(limiter.check(&request)).verdict(), Verdict::Allowed);
        let third = block_on(limiter.check(&request));
        assert_eq!(third.verdict(), Verdict::Limited);
        assert_eq!(third.rejection().map(|r| r.status), Some(429));
        // Another method has its own bucket.
        let post = Request { method: "POST", ..Request::get("/items") };
        assert_eq!(block_on(limiter.check(&post)).verdict(), Verdict::Allowed);

        let off = env(&[("RATELIMIT_ENABLED", "no"), ("RATELIMIT_DEFAULT", "0/second")]).unwrap();
        let limiter = off.apply(builder()).unwrap().build().unwrap();
        assert_eq!(block_on(limiter.check(&request)).verdict(), Verdict::Exempt);
    }

    #[test]
    fn per_method_and_cost_without_their_limits_are_errors_not_ignored() {
        type Case = (&'static [(&'static str, &'static str)], &'static str, &'static str);
        let cases: [Case; 5] = [
            (&[("RATELIMIT_DEFAULTS_PER_METHOD", "true")], "RATELIMIT_DEFAULTS_PER_METHOD", ".per_method(true)"),
            (&[("RATELIMIT_DEFAULTS_COST", "3")], "RATELIMIT_DEFAULTS_COST", ".cost(3)"),
            // Blank limits are no limits.
            (&[("RATELIMIT_DEFAULT", ""), ("RATELIMIT_DEFAULTS_COST", "0")], "RATELIMIT_DEFAULTS_COST", ".cost(0)"),
            (&[("RATELIMIT_APPLICATION_PER_METHOD", "yes")], "RATELIMIT_APPLICATION_PER_METHOD", ".per_method(true)"),
            (&[("RATELIMIT_APPLICATION_COST", "10")], "RATELIMIT_APPLICATION_COST", ".cost(10)"),
        ];
        for (vars, key, call) in cases {
            let message = apply_err(&env(vars).unwrap()).to_string();
            let limits = if key.contains("APPLICATION") { "RATELIMIT_APPLICATION" } else { "RATELIMIT_DEFAULT" };
            assert!(message.contains(key), "{message}");
            assert!(message.contains(&format!("set {limits} too")), "{message}");
            assert!(message.contains(&format!("give the limits {call} in code")), "{message}");
        }
        // Values that change nothing are fine without the limits.
        let noop = env(&[
            ("RATELIMIT_DEFAULTS_PER_METHOD", "false"),
            ("RATELIMIT_DEFAULTS_COST", "1"),
            ("RATELIMIT_APPLICATION_PER_METHOD", "false"),
            ("RATELIMIT_APPLICATION_COST", "1"),
        ])
        .unwrap();
        let limiter = noop.apply(builder().default_limits("1 per minute")).unwrap().build().unwrap();
        assert_eq!(block_on(limiter.check(&Request::get("/x"))).verdict(), Verdict::Allowed);
        assert_eq!(block_on(limiter.check(&Request::get("/x"))).verdict(), Verdict::Limited);
    }

    #[test]
    fn failure_settings_choose_the_policy() {
        let policy = |vars: &[(&str, &str)]| {
            let limiter = env(vars).unwrap().apply(builder()).unwrap().build().unwrap();
            let debug = format!("{:?}", limiter.failure_policy());
            format!("policy: {}", debug.split([',', '}']).next().unwrap().trim())
        };
        assert!(policy(&[]).starts_with("policy: FailClosed"));
        assert_eq!(policy(&[("RATELIMIT_SWALLOW_ERRORS", "true")]), "policy: FailOpen");
        assert_eq!(policy(&[("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", "true")]), "policy: InMemoryFallback");
        // As in Flask-Limiter, fallback limits imply the fallback, and it wins over swallow_errors.
        assert_eq!(
            policy(&[
                ("RATELIMIT_IN_MEMORY_FALLBACK", "1/second"),
                ("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", "false"),
                ("RATELIMIT_SWALLOW_ERRORS", "true"),
            ]),
            "policy: InMemoryFallback"
        );
        let swallowing_then_not = env(&[("RATELIMIT_SWALLOW_ERRORS", "false")]).unwrap();
        let b = builder().on_storage_failure(FailurePolicy::FailOpen);
        let debug = format!("{:?}", swallowing_then_not.apply(b).unwrap().build().unwrap());
        assert!(debug.contains("policy: FailClosed"), "{debug}");
    }

    #[test]
    fn remote_storage_uris_name_their_crate_and_never_show_passwords() {
        let cases = [
            ("redis://:secret@cache:6379/0", "redis://:***@cache:6379/0", "`redis` feature", "limiter-redis"),
            ("rediss://app:secret@cache:6380", "rediss://app:***@cache:6380", "`redis` feature", "limiter-redis"),
            (
                "async+redis+sentinel://:secret@a:26379,b:26379/main",
                "async+redis+sentinel://:***@a:26379,b:26379/main",
                "`redis` feature",
                "limiter-redis",
            ),
            ("valkey://secret@cache", "valkey://***@cache", "`redis` feature", "limiter-redis"),
            ("memcached://cache:11211", "memcached://cache:11211", "`memcached` feature", "limiter-memcached"),
            (
                "mongodb+srv://u:se/cr@et@db.example/?password=secret",
                "mongodb+srv://u:***@db.example/?password=***",
                "`mongodb` feature",
                "limiter-mongodb",
            ),
        ];
        for (uri, shown, feature, krate) in cases {
            let settings = Settings { storage_uri: Some(uri.to_owned()), ..Settings::default() };
            let err = apply_err(&settings);
            let message = err.to_string();
            assert!(
                matches!(&err, ConfigError::InvalidOption { option: "RATELIMIT_STORAGE_URI", value, .. } if value == shown),
                "{err:?}"
            );
            assert!(!message.contains("secret") && !message.contains("cr@et"), "{message}");
            assert!(message.contains("storage_from_uri_with"), "{message}");
            assert!(message.contains(feature) && message.contains(krate), "{message}");
        }
        let message =
            apply_err(&Settings { storage_uri: Some("etcd://:pw@host".to_owned()), ..Settings::default() }).to_string();
        assert!(message.starts_with(
            "invalid value \"etcd://:***@host\" for RATELIMIT_STORAGE_URI: unknown storage scheme \"etcd\""
        ));
        assert!(message.contains("memory://, redis://, rediss://") && message.contains("mongodb+srv://"), "{message}");
        let message = apply_err(&Settings { storage_uri: Some("user:pw@localhost".to_owned()), ..Settings::default() })
            .to_string();
        assert!(message.contains("\"user:***@localhost\"") && message.contains("expected a storage URI"), "{message}");
    }

    #[test]
    fn redact_uri_hides_mongodb_mechanism_property_secrets() {
        let cases = [
            (
                "mongodb://db/?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:FwoGZX/tok+en=",
                "mongodb://db/?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:***",
            ),
            // Settings stay readable; the option name is matched in any case.
            (
                "mongodb://db/?authmechanismproperties=SERVICE_NAME:mongodb,AWS_SESSION_TOKEN:FwoG,ENVIRONMENT:azure",
                "mongodb://db/?authmechanismproperties=SERVICE_NAME:mongodb,AWS_SESSION_TOKEN:***,ENVIRONMENT:azure",
            ),
            (
                "mongodb+srv://u:pw@db/?AUTHMECHANISMPROPERTIES=aws_session_token:FwoG&w=majority",
                "mongodb+srv://u:***@db/?AUTHMECHANISMPROPERTIES=aws_session_token:***&w=majority",
            ),
            // The driver decodes before splitting: escaped separators split too.
            (
                "mongodb://db/?authMechanismProperties=SERVICE_NAME:x%2cAWS_SESSION_TOKEN%3AFwoG",
                "mongodb://db/?authMechanismProperties=SERVICE_NAME:x%2cAWS_SESSION_TOKEN%3A***",
            ),
            // Unknown properties and entries without a key are not trusted.
            (
                "mongodb://db/?authMechanismProperties=CUSTOM:FwoG,AWS_SESSION_TOKEN=FwoG,",
                "mongodb://db/?authMechanismProperties=CUSTOM:***,***,",
            ),
            ("mongodb://db/?authMechanismProperties=", "mongodb://db/?authMechanismProperties="),
        ];
        for (uri, shown) in cases {
            let redacted = redact_uri(uri);
            assert_eq!(redacted, shown, "{uri}");
            assert!(!redacted.contains("FwoG"), "{redacted}");
        }
    }

    #[test]
    fn redact_uri_hides_session_tokens_in_config_errors() {
        let uri = "mongodb://db/?authMechanismProperties=AWS_SESSION_TOKEN:FwoGZXIvYXdzEJr";
        let settings = Settings { storage_uri: Some(uri.to_owned()), ..Settings::default() };
        let message = apply_err(&settings).to_string();
        assert!(!message.contains("FwoG"), "{message}");
        assert!(message.contains("AWS_SESSION_TOKEN:***"), "{message}");
        assert!(!format!("{settings:?}").contains("FwoG"), "{settings:?}");
    }

    #[test]
    fn memory_storage_options_are_checked() {
        let with = |uri: Option<&str>, options: &[(&str, &str)]| Settings {
            storage_uri: uri.map(str::to_owned),
            storage_options: Some(options.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()),
            ..Settings::default()
        };
        let seven = with(Some("async+memory://"), &[("max_keys", "7"), ("shards", "2")]);
        seven.apply(builder()).unwrap().build().unwrap();
        assert_eq!(memory_storage(seven.storage_options.as_ref()).unwrap().max_keys(), 7);
        let message = apply_err(&with(Some("memory://"), &[("socket_timeout", "5")])).to_string();
        assert_eq!(
            message,
            "invalid value \"socket_timeout\" for RATELIMIT_STORAGE_OPTIONS: memory:// takes only max_keys and shards"
        );
        assert!(apply_err(&with(Some("memory://"), &[("shards", "0")])).to_string().contains("shards = 0"));
        assert!(apply_err(&with(Some("memory://localhost"), &[])).to_string().contains("memory:// takes no host"));
        assert!(apply_err(&with(None, &[("max_keys", "7")])).to_string().contains("RATELIMIT_STORAGE_URI is not"));
    }

    #[test]
    fn a_storage_timeout_needs_a_timer() {
        let settings = env(&[("RATELIMIT_STORAGE_TIMEOUT", "250ms")]).unwrap();
        let message = apply_err(&settings).to_string();
        assert!(message.contains("RATELIMIT_STORAGE_TIMEOUT") && message.contains("apply_with_timer"), "{message}");
        let sleep: Sleeper = Arc::new(|_| Box::pin(std::future::ready(())));
        settings.apply_with_timer(builder(), sleep).unwrap().build().unwrap();
    }

    #[test]
    fn limit_strings_set_in_code_are_checked_when_applied() {
        let settings = Settings { meta_limits: Some("5 per fortnight".to_owned()), ..Settings::default() };
        let err = apply_err(&settings);
        assert!(matches!(&err, ConfigError::InvalidLimitIn { place, .. } if place == "RATELIMIT_META"), "{err:?}");
        let blank = Settings { default_limits: Some(String::new()), ..Settings::default() };
        let limiter = blank.apply(builder()).unwrap().build().unwrap();
        assert_eq!(block_on(limiter.check(&Request::get("/x"))).verdict(), Verdict::Exempt, "no limits");
    }

    #[test]
    fn retry_after_and_header_names_replace_the_header_settings() {
        let settings =
            env(&[("RATELIMIT_HEADER_RETRY_AFTER_VALUE", "http-date"), ("RATELIMIT_DEFAULT", "1/minute")]).unwrap();
        let limiter = settings.apply(builder().headers_enabled(true)).unwrap().headers_enabled(true).build().unwrap();
        let request = Request::get("/x");
        block_on(limiter.check(&request));
        let limited = block_on(limiter.check(&request));
        let retry = limited.rejection().and_then(|r| r.headers.iter().find(|(n, _)| &**n == "Retry-After"));
        assert!(retry.is_some_and(|(_, v)| v.ends_with(" GMT")), "{retry:?}");
    }

    #[test]
    fn debug_output_hides_credentials() {
        let settings = Settings {
            storage_uri: Some("redis://:hunter2@cache".to_owned()),
            storage_options: Some(BTreeMap::from([
                ("password".to_owned(), "hunter2".to_owned()),
                ("socket_timeout".to_owned(), "5".to_owned()),
            ])),
            ..Settings::default()
        };
        let debug = format!("{settings:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("redis://:***@cache") && debug.contains("\"socket_timeout\": \"5\""), "{debug}");
    }

    #[test]
    fn edit_distance_counts_characters() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("default", "default"), 0);
        assert_eq!(edit_distance("defaults", "default"), 1);
        assert_eq!(edit_distance("defualt", "default"), 2);
        assert_eq!(edit_distance("", "meta"), 4);
        assert_eq!(edit_distance("héader", "header"), 1);
    }
}

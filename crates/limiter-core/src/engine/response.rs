//! What the limiter answers: rate-limit headers, 429 and 503 responses, and
//! what breach hooks see.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use smallvec::SmallVec;

use crate::clock::Timestamp;
use crate::limit::RateLimit;

/// How `Retry-After` is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryAfterFormat {
    /// Seconds to wait (`Retry-After: 30`), the default.
    #[default]
    DeltaSeconds,
    /// An HTTP date (`Retry-After: Wed, 21 Oct 2026 07:28:00 GMT`).
    HttpDate,
}

/// Which headers to send and under which names
/// (`RATELIMIT_HEADERS_ENABLED`, `RATELIMIT_HEADER_*`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeaderSettings {
    /// Send `X-RateLimit-*` and `Retry-After` on every limited response
    /// (Flask-Limiter's `headers_enabled`; off by default, as there).
    pub enabled: bool,
    /// Also send the IETF draft-10 `RateLimit` and `RateLimit-Policy` fields.
    pub ietf: bool,
    /// The name of the limit header.
    pub limit: Arc<str>,
    /// The name of the remaining header.
    pub remaining: Arc<str>,
    /// The name of the reset header (a Unix time in seconds).
    pub reset: Arc<str>,
    /// The name of the retry header.
    pub retry_after: Arc<str>,
    /// How the retry header is written.
    pub retry_after_format: RetryAfterFormat,
    /// The name of the IETF policy field (`RateLimit-Policy`).
    pub ietf_policy: Arc<str>,
    /// The name of the IETF state field (`RateLimit`).
    pub ietf_state: Arc<str>,
}

impl HeaderSettings {
    /// `X-RateLimit-Limit`'s index in [`names`](Self::names) (and in
    /// [`HeaderState::for_each`]).
    pub const LIMIT: usize = 0;
    /// `X-RateLimit-Remaining`'s index in [`names`](Self::names).
    pub const REMAINING: usize = 1;
    /// `X-RateLimit-Reset`'s index in [`names`](Self::names).
    pub const RESET: usize = 2;
    /// `Retry-After`'s index in [`names`](Self::names).
    pub const RETRY_AFTER: usize = 3;
    /// The IETF policy field's index in [`names`](Self::names).
    pub const IETF_POLICY: usize = 4;
    /// The IETF state field's index in [`names`](Self::names).
    pub const IETF_STATE: usize = 5;

    /// Whether any header is sent: Flask-Limiter's or the IETF fields.
    pub(crate) fn sends_any(&self) -> bool {
        self.enabled || self.ietf
    }

    /// Every header name these settings may send, by index
    /// ([`LIMIT`](Self::LIMIT) to [`IETF_STATE`](Self::IETF_STATE)).
    pub fn names(&self) -> [&Arc<str>; 6] {
        [&self.limit, &self.remaining, &self.reset, &self.retry_after, &self.ietf_policy, &self.ietf_state]
    }
}

impl Default for HeaderSettings {
    fn default() -> Self {
        HeaderSettings {
            enabled: false,
            ietf: false,
            limit: Arc::from("X-RateLimit-Limit"),
            remaining: Arc::from("X-RateLimit-Remaining"),
            reset: Arc::from("X-RateLimit-Reset"),
            retry_after: Arc::from("Retry-After"),
            retry_after_format: RetryAfterFormat::DeltaSeconds,
            ietf_policy: Arc::from("RateLimit-Policy"),
            ietf_state: Arc::from("RateLimit"),
        }
    }
}

/// A breached limit, as breach hooks see it (Flask-Limiter's `RequestLimit`
/// of a breach).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Breach {
    /// The limit.
    pub limit: RateLimit,
    /// The client key.
    pub key: String,
    /// The storage scope (route name, shared scope, `global`, `meta`).
    pub scope: String,
    /// The full storage key, as `limits` writes it.
    pub storage_key: String,
    /// The text the 429 shows: the limit's error message, or the limit
    /// (`"1 per 1 day"`).
    pub description: String,
    /// Hits of cost 1 still allowed.
    pub remaining: u64,
    /// When the window resets.
    pub reset_at: Timestamp,
    /// When the refused request could pass, if ever.
    pub retry_at: Option<Timestamp>,
}

/// A response the limiter answers instead of calling the handler: a 429,
/// a 503 when a failing storage fails closed, or what a breach hook chose.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rejection {
    /// The status code.
    pub status: u16,
    /// Headers, rate-limit headers included.
    pub headers: Vec<(Arc<str>, String)>,
    /// The `Content-Type` of the body.
    pub content_type: String,
    /// The body.
    pub body: String,
}

impl Rejection {
    /// A plain-text response.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Rejection {
            status,
            headers: Vec::new(),
            content_type: "text/plain; charset=utf-8".to_owned(),
            body: body.into(),
        }
    }

    /// A JSON response.
    pub fn json(status: u16, body: impl Into<String>) -> Self {
        Rejection { content_type: "application/json".to_owned(), ..Rejection::text(status, body) }
    }

    /// The same response with one more header.
    #[must_use]
    pub fn with_header(mut self, name: impl Into<Arc<str>>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Appends the limiter's rate-limit headers after the rejection's own (a
    /// breach hook's), which adapters then let them replace; except that a
    /// `Retry-After` (`retry_after`, the limiter's name for it) the
    /// rejection already has stays, and the limiter's is left out, when it
    /// names a later time: Flask-Limiter keeps the later.
    pub(crate) fn append_limiter_headers(&mut self, headers: Headers, retry_after: &Arc<str>, now: Timestamp) {
        let now = now.to_system_time();
        for (name, value) in headers.into_strings() {
            let theirs_later = Arc::ptr_eq(&name, retry_after)
                && self.headers.iter().any(|(own, existing)| {
                    own.eq_ignore_ascii_case(&name) && later_retry_after(existing, &value, now) == existing
                });
            if !theirs_later {
                self.headers.push((name, value));
            }
        }
    }
}

/// What an HTTP header name may hold (RFC 9110's `token`), for errors.
pub(crate) const HEADER_NAME_RULE: &str = "an HTTP header name: letters, digits and !#$%&'*+-.^_`|~";

/// Whether `name` is an HTTP header name (RFC 9110's `token`).
pub(crate) fn is_header_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c))
}

/// Seconds from `now` until `at`, rounded up, at least 1: a `Retry-After`
/// that never invites an immediate retry.
pub(crate) fn retry_seconds(at: Timestamp, now: Timestamp) -> u64 {
    at.saturating_duration_since(now).as_nanos().div_ceil(1_000_000_000).try_into().unwrap_or(u64::MAX).max(1)
}

pub(crate) fn http_date(at: Timestamp) -> String {
    httpdate::fmt_http_date(at.to_system_time())
}

/// A rate-limit header's value. Numbers (the limit, remaining hits, reset
/// time, delta-seconds `Retry-After`) are kept as numbers, so that
/// adapters can build their header value straight from the number; their
/// digits are rendered, inline and without allocating, only when asked
/// for as text ([`as_str`](Self::as_str)). Text (an HTTP date, the IETF
/// fields) is a `String`.
#[derive(Clone)]
pub struct HeaderText(Text);

#[derive(Clone)]
enum Text {
    Number { value: u64, digits: OnceLock<Digits> },
    Owned(String),
}

/// A number's decimal digits, rendered the first time they are read.
#[derive(Clone, Copy)]
struct Digits {
    len: u8,
    bytes: [u8; 20],
}

impl Digits {
    fn of(value: u64) -> Self {
        let mut buffer = itoa::Buffer::new();
        let written = buffer.format(value).as_bytes();
        let mut bytes = [0u8; 20];
        let len = written.len().min(bytes.len());
        if let (Some(to), Some(from)) = (bytes.get_mut(..len), written.get(..len)) {
            to.copy_from_slice(from);
        }
        Digits { len: u8::try_from(len).unwrap_or(20), bytes }
    }
}

impl PartialEq for HeaderText {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Text::Number { value: a, .. }, Text::Number { value: b, .. }) => a == b,
            (Text::Owned(a), Text::Owned(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for HeaderText {}

impl HeaderText {
    /// A number, in decimal.
    pub fn number(value: u64) -> Self {
        HeaderText(Text::Number { value, digits: OnceLock::new() })
    }

    /// Any text.
    pub fn text(text: impl Into<String>) -> Self {
        HeaderText(Text::Owned(text.into()))
    }

    /// The value as text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Text::Number { value, digits } => {
                let digits = digits.get_or_init(|| Digits::of(*value));
                digits
                    .bytes
                    .get(..usize::from(digits.len))
                    .and_then(|d| std::str::from_utf8(d).ok())
                    .unwrap_or_default()
            }
            Text::Owned(text) => text,
        }
    }

    /// The value, if it is a number.
    pub fn as_number(&self) -> Option<u64> {
        match &self.0 {
            Text::Number { value, .. } => Some(*value),
            Text::Owned(_) => None,
        }
    }

    /// The value as an owned `String`.
    pub fn into_string(self) -> String {
        match self.0 {
            Text::Owned(text) => text,
            Text::Number { value, .. } => itoa::Buffer::new().format(value).to_owned(),
        }
    }
}

impl fmt::Display for HeaderText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for HeaderText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl AsRef<str> for HeaderText {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for HeaderText {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for HeaderText {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// The rate-limit headers of one response, by name, in order: what
/// [`Decision::headers`](super::Decision::headers) renders. Up to four are
/// kept inline (Flask-Limiter's four headers), so that the common case
/// allocates nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers(SmallVec<[(Arc<str>, HeaderText); 4]>);

impl Headers {
    fn push(&mut self, name: &Arc<str>, value: HeaderText) {
        self.0.push((Arc::clone(name), value));
    }

    /// The headers as (name, value) strings, for [`Rejection::headers`].
    pub fn into_strings(self) -> impl Iterator<Item = (Arc<str>, String)> {
        self.0.into_iter().map(|(name, value)| (name, value.into_string()))
    }
}

impl std::ops::Deref for Headers {
    type Target = [(Arc<str>, HeaderText)];

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl IntoIterator for Headers {
    type Item = (Arc<str>, HeaderText);
    type IntoIter = HeadersIntoIter;

    fn into_iter(self) -> HeadersIntoIter {
        HeadersIntoIter(self.0.into_iter())
    }
}

/// The owning iterator of [`Headers`].
#[derive(Debug)]
pub struct HeadersIntoIter(smallvec::IntoIter<[(Arc<str>, HeaderText); 4]>);

impl Iterator for HeadersIntoIter {
    type Item = (Arc<str>, HeaderText);

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

/// What the headers show of one limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HeaderValues {
    pub(crate) limit: RateLimit,
    pub(crate) remaining: u64,
    pub(crate) reset_at: Timestamp,
    /// For a refusal, when to retry.
    pub(crate) retry_at: Option<Timestamp>,
}

impl HeaderValues {
    /// The values of `limit` in `state`.
    pub(crate) fn of(limit: RateLimit, state: &crate::storage::LimitState) -> Self {
        HeaderValues { limit, remaining: state.remaining, reset_at: state.reset_at, retry_at: state.retry_at }
    }
}

/// The rate-limit headers of a response before they are written: the limit
/// they describe, its state, and the time of the decision. A decision
/// carries this rather than the rendered headers, so that an adapter can
/// keep it cheaply until the response exists and then write each header
/// straight into the response ([`for_each`](Self::for_each)) with names it
/// parsed once.
///
/// Write it with the deciding limiter's own
/// [`header_settings`](super::Limiter::header_settings): the state holds
/// what those settings asked for (the IETF policy list only when the IETF
/// fields are on), and other settings would name or fill the headers
/// differently.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderState {
    shown: HeaderValues,
    limited: bool,
    now: Timestamp,
    /// The limits the IETF policy field lists, when those fields are on.
    policies: Option<Arc<[RateLimit]>>,
}

impl HeaderState {
    pub(crate) fn new(shown: HeaderValues, limited: bool, now: Timestamp, policies: Option<Arc<[RateLimit]>>) -> Self {
        HeaderState { shown, limited, now, policies }
    }

    /// Writes each header `settings` enables, in order: the limit,
    /// remaining hits, reset time and `Retry-After`, then the IETF fields.
    /// `write` gets the header's index in [`HeaderSettings::names`] (the
    /// same for a header on every response: adapters find their parsed
    /// names by it), its name (one of `settings`' own `Arc`s) and its value.
    pub fn for_each(&self, settings: &HeaderSettings, mut write: impl FnMut(usize, &Arc<str>, HeaderText)) {
        let shown = &self.shown;
        let (limited, now) = (self.limited, self.now);
        let names = settings.names();
        let mut emit = |index: usize, value: HeaderText| {
            if let Some(name) = names.get(index) {
                write(index, name, value);
            }
        };
        // Flask-Limiter: X-RateLimit-Reset is int(reset_time + 1).
        let reset_header = shown.reset_at.as_secs() + 1;
        if settings.enabled {
            emit(HeaderSettings::LIMIT, HeaderText::number(shown.limit.amount()));
            emit(HeaderSettings::REMAINING, HeaderText::number(shown.remaining));
            emit(HeaderSettings::RESET, HeaderText::number(reset_header));
            let retry_at = match (limited, shown.retry_at) {
                (true, Some(at)) => at,
                _ => Timestamp::from_secs(reset_header),
            };
            let value = match settings.retry_after_format {
                // A date has whole seconds: a 429's is rounded up (and is at
                // least a second away), so that it never names a time the
                // request would still be refused at.
                RetryAfterFormat::HttpDate if limited => {
                    let at = retry_at.as_secs_ceil().max(now.as_secs() + 1);
                    HeaderText::text(http_date(Timestamp::from_secs(at)))
                }
                RetryAfterFormat::HttpDate => HeaderText::text(http_date(retry_at)),
                // A 429 never says 0; elsewhere Flask-Limiter's int(reset - now).
                RetryAfterFormat::DeltaSeconds if limited => HeaderText::number(retry_seconds(retry_at, now)),
                RetryAfterFormat::DeltaSeconds => HeaderText::number(retry_at.saturating_duration_since(now).as_secs()),
            };
            emit(HeaderSettings::RETRY_AFTER, value);
        }
        if settings.ietf {
            let policies = self.policies.as_deref().unwrap_or_default();
            let policy =
                policies.iter().map(|l| format!("\"{}\";q={};w={}", policy_name(l), l.amount(), l.window_secs()));
            emit(HeaderSettings::IETF_POLICY, HeaderText::text(policy.collect::<Vec<_>>().join(", ")));
            let until = match (limited, shown.retry_at) {
                (true, Some(at)) => retry_seconds(at, now),
                _ => shown
                    .reset_at
                    .saturating_duration_since(now)
                    .as_nanos()
                    .div_ceil(1_000_000_000)
                    .try_into()
                    .unwrap_or(0),
            };
            emit(
                HeaderSettings::IETF_STATE,
                HeaderText::text(format!("\"{}\";r={};t={until}", policy_name(&shown.limit), shown.remaining)),
            );
        }
    }

    /// The headers `settings` (the deciding limiter's) enables, rendered.
    pub fn render(&self, settings: &HeaderSettings) -> Headers {
        let mut headers = Headers::default();
        self.for_each(settings, |_, name, value| headers.push(name, value));
        headers
    }
}

/// A policy name for the IETF fields: the limit in a token-safe spelling.
pub(crate) fn policy_name(limit: &RateLimit) -> String {
    format!("{}-per-{}-{}", limit.amount(), limit.multiples(), limit.granularity())
}

/// The default 429 body: plain text, or RFC 9457 problem details when the
/// client prefers JSON.
pub(crate) fn too_many_requests(description: &str, violated: &[RateLimit], wants_json: bool) -> Rejection {
    if wants_json {
        let body = serde_json::json!({
            "type": "https://iana.org/assignments/http-problem-types#quota-exceeded",
            "title": "Too Many Requests",
            "status": 429,
            "detail": format!("Rate limit exceeded: {description}"),
            "violated-policies": violated.iter().map(policy_name).collect::<Vec<_>>(),
        });
        Rejection { content_type: "application/problem+json".to_owned(), ..Rejection::json(429, body.to_string()) }
    } else {
        Rejection::text(429, format!("Rate limit exceeded: {description}"))
    }
}

/// Why a request could not be decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Undecided {
    /// The storage failed.
    Storage,
    /// The request carried no client key.
    NoKey,
}

/// The 503 answered when a request cannot be decided and the limiter fails
/// closed.
pub(crate) fn unavailable(
    why: Undecided,
    retry_after: Duration,
    wants_json: bool,
    retry_header: &Arc<str>,
) -> Rejection {
    let secs = retry_after.as_secs().max(1);
    let detail = match why {
        Undecided::Storage => "Service temporarily unavailable: rate limiting storage unreachable",
        Undecided::NoKey => "Service unavailable: the client could not be identified for rate limiting",
    };
    let rejection = if wants_json {
        let body = serde_json::json!({
            "type": "https://iana.org/assignments/http-problem-types#temporary-reduced-capacity",
            "title": "Service Unavailable",
            "status": 503,
            "detail": detail,
        });
        Rejection { content_type: "application/problem+json".to_owned(), ..Rejection::json(503, body.to_string()) }
    } else {
        Rejection::text(503, detail)
    };
    rejection.with_header(Arc::clone(retry_header), secs.to_string())
}

/// Of a `Retry-After` a response already carries and the limiter's, the one
/// naming the later time (Flask-Limiter keeps the later); each may be
/// delta-seconds or an HTTP date. An unreadable existing value loses.
pub fn later_retry_after<'a>(existing: &'a str, ours: &'a str, now: std::time::SystemTime) -> &'a str {
    let at = |value: &str| -> Option<std::time::SystemTime> {
        let value = value.trim();
        match value.parse::<u64>() {
            Ok(secs) => now.checked_add(Duration::from_secs(secs)),
            Err(_) => httpdate::parse_http_date(value).ok(),
        }
    };
    match (at(existing), at(ours)) {
        (Some(theirs), Some(mine)) if theirs > mine => existing,
        (Some(_), None) => existing,
        _ => ours,
    }
}

/// Whether an `Accept` header prefers JSON to plain text.
pub(crate) fn wants_json(accept: Option<&str>) -> bool {
    accept.is_some_and(|accept| {
        accept.split(',').any(|part| {
            let media = part.split(';').next().unwrap_or("").trim();
            media.eq_ignore_ascii_case("application/json")
                || media.eq_ignore_ascii_case("application/problem+json")
                || media.to_ascii_lowercase().ends_with("+json")
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limit::Granularity;

    fn find<'a>(headers: &'a [(Arc<str>, HeaderText)], name: &str) -> Option<&'a str> {
        headers.iter().find(|(n, _)| &**n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn flask_limiter_headers() {
        let settings = HeaderSettings { enabled: true, ..HeaderSettings::default() };
        let limit = RateLimit::new(2, 1, Granularity::Minute).unwrap();
        let now = Timestamp::from_nanos(1_000_000_000_500_000_000);
        let shown = HeaderValues {
            limit,
            remaining: 1,
            reset_at: Timestamp::from_nanos(1_000_000_060_500_000_000),
            retry_at: None,
        };
        let h = HeaderState::new(shown, false, now, Some(Arc::from([limit]))).render(&settings);
        assert_eq!(find(&h, "X-RateLimit-Limit"), Some("2"));
        assert_eq!(find(&h, "X-RateLimit-Remaining"), Some("1"));
        assert_eq!(find(&h, "X-RateLimit-Reset"), Some("1000000061"));
        assert_eq!(find(&h, "Retry-After"), Some("60"));
        assert_eq!(find(&h, "RateLimit"), None);
    }

    #[test]
    fn retry_after_on_429_is_rounded_up_and_never_zero() {
        let settings = HeaderSettings { enabled: true, ietf: true, ..HeaderSettings::default() };
        let limit = RateLimit::new(1, 1, Granularity::Second).unwrap();
        let now = Timestamp::from_nanos(10_000_000_000);
        let soon = HeaderValues {
            limit,
            remaining: 0,
            reset_at: Timestamp::from_nanos(10_000_000_001),
            retry_at: Some(Timestamp::from_nanos(10_000_000_001)),
        };
        let h = HeaderState::new(soon, true, now, Some(Arc::from([limit]))).render(&settings);
        assert_eq!(find(&h, "Retry-After"), Some("1"));
        assert_eq!(find(&h, "RateLimit"), Some("\"1-per-1-second\";r=0;t=1"));
        assert_eq!(find(&h, "RateLimit-Policy"), Some("\"1-per-1-second\";q=1;w=1"));
        let later = HeaderValues { retry_at: Some(Timestamp::from_nanos(12_100_000_000)), ..soon };
        let h = HeaderState::new(later, true, now, Some(Arc::from([limit]))).render(&settings);
        assert_eq!(find(&h, "Retry-After"), Some("3"));
        let date = HeaderSettings { retry_after_format: RetryAfterFormat::HttpDate, ..settings };
        let h = HeaderState::new(later, true, now, Some(Arc::from([limit]))).render(&date);
        assert_eq!(find(&h, "Retry-After"), Some("Thu, 01 Jan 1970 00:00:13 GMT"), "12.1 s, rounded up");
        let h = HeaderState::new(soon, true, now, Some(Arc::from([limit]))).render(&date);
        assert_eq!(find(&h, "Retry-After"), Some("Thu, 01 Jan 1970 00:00:11 GMT"), "10.000000001 s, rounded up");
        let past = HeaderValues { retry_at: Some(Timestamp::from_nanos(9_000_000_000)), ..soon };
        let h = HeaderState::new(past, true, now, Some(Arc::from([limit]))).render(&date);
        assert_eq!(find(&h, "Retry-After"), Some("Thu, 01 Jan 1970 00:00:11 GMT"), "never before a second from now");
    }

    #[test]
    fn header_text_keeps_numbers_as_numbers() {
        let n = HeaderText::number(u64::MAX);
        assert_eq!(n.as_str(), "18446744073709551615");
        assert_eq!(n.as_number(), Some(u64::MAX));
        assert_eq!(HeaderText::number(0).as_str(), "0");
        // Equal numbers are equal whether or not their digits were rendered.
        assert_eq!(n, HeaderText::number(u64::MAX));
        assert_ne!(HeaderText::number(1), HeaderText::text("1"));
        assert_eq!(n.clone().into_string(), "18446744073709551615");
        let t = HeaderText::text("Thu, 01 Jan 1970 00:00:12 GMT");
        assert_eq!(t.as_number(), None);
        assert_eq!(t, "Thu, 01 Jan 1970 00:00:12 GMT");
        assert_eq!(format!("{n} {t:?}"), "18446744073709551615 \"Thu, 01 Jan 1970 00:00:12 GMT\"");
    }

    #[test]
    fn the_later_retry_after_wins() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(later_retry_after("120", "60", now), "120");
        assert_eq!(later_retry_after("30", "60", now), "60");
        let date = http_date(Timestamp::from_secs(1_000_000 + 300));
        assert_eq!(later_retry_after(&date, "60", now), date);
        assert_eq!(later_retry_after(&date, "600", now), "600");
        assert_eq!(later_retry_after("soon", "60", now), "60");
    }

    #[test]
    fn bodies() {
        let limit = RateLimit::new(1, 1, Granularity::Day).unwrap();
        let text = too_many_requests("1 per 1 day", &[limit], false);
        assert_eq!(text.body, "Rate limit exceeded: 1 per 1 day");
        let json = too_many_requests("1 per 1 day", &[limit], true);
        let v: serde_json::Value = serde_json::from_str(&json.body).unwrap();
        assert_eq!(v["status"], 429);
        assert_eq!(v["violated-policies"][0], "1-per-1-day");
        assert_eq!(json.content_type, "application/problem+json");
        assert!(wants_json(Some("text/html, application/json;q=0.9")));
        assert!(wants_json(Some("application/problem+json")));
        assert!(!wants_json(Some("text/plain, */*")));
        assert!(!wants_json(None));
    }
}

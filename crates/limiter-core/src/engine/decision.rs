//! [`Decision`]: what the limiter concluded about one request.

use std::fmt;
use std::sync::Arc;

use smallvec::SmallVec;

use super::declare::ResponseInfo;
use super::response::{HeaderSettings, HeaderState, Headers, Rejection};
use crate::clock::Timestamp;
use crate::limit::RateLimit;
use crate::storage::LimitState;

/// The verdict on a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// No limit applies (exempt route, limiter disabled, nothing configured).
    Exempt,
    /// Every limit allows it.
    Allowed,
    /// A limit refused it: answer the [`Decision::rejection`] (a 429).
    Limited,
    /// The storage failed and the limiter fails closed: answer the
    /// [`Decision::rejection`] (a 503).
    Unavailable,
    /// The storage failed and the limiter fails open: let it through.
    FailedOpen,
}

/// One limit evaluated for a request: Flask-Limiter's `RequestLimit`
/// (`current_limits`), for handlers to read.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestLimit {
    /// The limit.
    pub limit: RateLimit,
    /// Whether this limit refused the request (in shadow mode: would have).
    pub breached: bool,
    /// Whether the limit is in shadow mode: a breach is recorded, never
    /// enforced ([`Limit::shadow`](super::Limit::shadow)).
    pub shadow: bool,
    /// Whether the bucket is shared across routes (application limits
    /// always are, as Flask-Limiter's `ApplicationLimit`).
    pub shared: bool,
    /// Hits of cost 1 still allowed.
    pub remaining: u64,
    /// When the window resets.
    pub reset_at: Timestamp,
    /// `[prefix,] client, scope`, as spans of a text shared with the
    /// request's other limits (one allocation per request, not per string).
    ids: Identifiers,
}

/// Identifiers as spans of one shared text, kept as bytes: only whole
/// strings go in, and they are read back as text only when asked for.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Identifiers {
    text: Arc<[u8]>,
    spans: Spans,
}

impl Identifiers {
    fn get(&self) -> Vec<&str> {
        let text = &*self.text;
        self.spans
            .as_slice()
            .iter()
            .map(|(start, end)| {
                // Each span is a whole string that went in, so valid UTF-8.
                text.get(*start as usize..*end as usize).and_then(|id| std::str::from_utf8(id).ok()).unwrap_or("")
            })
            .collect()
    }
}

impl fmt::Debug for Identifiers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.get()).finish()
    }
}

/// Where a limit's identifiers (at most three) are in the shared text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Spans {
    spans: [(u32, u32); 3],
    len: u8,
}

impl Spans {
    fn push(&mut self, span: (u32, u32)) {
        if let Some(slot) = self.spans.get_mut(usize::from(self.len)) {
            *slot = span;
            self.len += 1;
        }
    }

    fn as_slice(&self) -> &[(u32, u32)] {
        self.spans.get(..usize::from(self.len)).unwrap_or_default()
    }
}

/// Writes the identifiers of a request's limits into one text, each
/// distinct string once, on the stack until [`finish`](Self::finish).
pub(crate) struct IdentifierText<'a> {
    text: SmallVec<[u8; 128]>,
    spans: SmallVec<[(u32, u32); 8]>,
    /// The last limit's identifiers and spans: most limits of a request
    /// share them all.
    last: Option<(&'a [&'a str], Spans)>,
}

impl<'a> IdentifierText<'a> {
    pub(crate) fn new() -> Self {
        IdentifierText { text: SmallVec::new(), spans: SmallVec::new(), last: None }
    }

    /// The span of `id` in the text, appending it if it is new.
    fn span(&mut self, id: &str) -> (u32, u32) {
        let text = &self.text;
        let found =
            self.spans.iter().find(|(start, end)| text.get(*start as usize..*end as usize) == Some(id.as_bytes()));
        if let Some(found) = found {
            return *found;
        }
        let start = u32::try_from(self.text.len()).unwrap_or(u32::MAX);
        self.text.extend_from_slice(id.as_bytes());
        let span = (start, u32::try_from(self.text.len()).unwrap_or(u32::MAX));
        self.spans.push(span);
        span
    }

    /// Records one limit's identifiers; returns their spans.
    pub(crate) fn add(&mut self, ids: &'a [&'a str]) -> Spans {
        if let Some((last, spans)) = &self.last
            && same(last, ids)
        {
            return *spans;
        }
        let mut spans = Spans::default();
        for id in ids {
            spans.push(self.span(id));
        }
        self.last = Some((ids, spans));
        spans
    }

    /// The shared text, once every limit's identifiers are in.
    pub(crate) fn finish(&self) -> Arc<[u8]> {
        Arc::from(self.text.as_slice())
    }
}

/// Whether two limits' identifiers are equal: by address first, as the
/// limits of one request point at the very same client key and scope.
fn same(a: &[&str], b: &[&str]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| std::ptr::eq(*x, *y) || x == y)
}

impl RequestLimit {
    pub(crate) fn new(
        limit: RateLimit,
        text: &Arc<[u8]>,
        spans: Spans,
        state: &LimitState,
        shared: bool,
        shadow: bool,
    ) -> Self {
        RequestLimit {
            limit,
            breached: !state.allowed,
            shadow,
            shared,
            remaining: state.remaining,
            reset_at: state.reset_at,
            ids: Identifiers { text: Arc::clone(text), spans },
        }
    }

    /// The identifiers of its storage key: `[prefix,] client, scope`.
    pub fn identifiers(&self) -> Vec<&str> {
        self.ids.get()
    }

    /// The full storage key, as `limits` writes it.
    pub fn storage_key(&self) -> String {
        self.limit.key_for(&self.identifiers())
    }
}

/// Flask-Limiter's `current_limit` among evaluated limits: the breached one,
/// else the first not shared, else the first.
pub fn current_limit(limits: &[RequestLimit]) -> Option<&RequestLimit> {
    limits.iter().find(|l| l.breached).or_else(|| limits.iter().find(|l| !l.shared)).or_else(|| limits.first())
}

/// A limit to deduct once the response is known (`deduct_when`).
pub(crate) struct Deferred {
    pub(crate) limit: RateLimit,
    pub(crate) identifiers: Vec<String>,
    pub(crate) cost: u64,
    pub(crate) when: Arc<dyn Fn(&ResponseInfo) -> bool + Send + Sync>,
}

impl fmt::Debug for Deferred {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deferred")
            .field("limit", &self.limit)
            .field("identifiers", &self.identifiers)
            .field("cost", &self.cost)
            .finish_non_exhaustive()
    }
}

/// What the limiter concluded about one request: the verdict, the limits
/// evaluated, the headers for the response, or the response to send instead.
#[derive(Debug)]
pub struct Decision {
    verdict: Verdict,
    limits: Arc<[RequestLimit]>,
    /// For an allowed request whose limiter sends headers.
    headers: Option<HeaderState>,
    /// Boxed: allowed requests, the common case, move a smaller decision.
    rejection: Option<Box<Rejection>>,
    pub(crate) deferred: Vec<Deferred>,
    shadow_limited: bool,
}

impl Decision {
    pub(crate) fn new(
        verdict: Verdict,
        limits: Arc<[RequestLimit]>,
        headers: Option<HeaderState>,
        rejection: Option<Rejection>,
        deferred: Vec<Deferred>,
    ) -> Self {
        Decision { verdict, limits, headers, rejection: rejection.map(Box::new), deferred, shadow_limited: false }
    }

    /// Marks an allowed decision as refused in shadow mode.
    pub(crate) fn mark_shadow_limited(mut self) -> Self {
        self.shadow_limited = true;
        self
    }

    pub(crate) fn exempt() -> Self {
        Decision::new(Verdict::Exempt, no_limits(), None, None, Vec::new())
    }

    pub(crate) fn failed_open() -> Self {
        Decision::new(Verdict::FailedOpen, no_limits(), None, None, Vec::new())
    }

    pub(crate) fn unavailable(rejection: Rejection) -> Self {
        Decision::new(Verdict::Unavailable, no_limits(), None, Some(rejection), Vec::new())
    }

    /// The verdict.
    pub fn verdict(&self) -> Verdict {
        self.verdict
    }

    /// Whether a limit in shadow mode would have refused the request. The
    /// verdict is [`Verdict::Allowed`] (or [`Verdict::Limited`] if an
    /// enforced limit refused it as well), and the breached shadow limits are
    /// marked [`RequestLimit::breached`] and [`RequestLimit::shadow`] in
    /// [`limits`](Self::limits) (meta limits are not listed there).
    pub fn shadow_limited(&self) -> bool {
        self.shadow_limited
    }

    /// Whether the handler should run.
    pub fn is_allowed(&self) -> bool {
        self.rejection.is_none()
    }

    /// The response to send instead of calling the handler, if any.
    pub fn rejection(&self) -> Option<&Rejection> {
        self.rejection.as_deref()
    }

    /// Takes the response to send instead of calling the handler.
    pub fn take_rejection(&mut self) -> Option<Rejection> {
        self.rejection.take().map(|rejection| *rejection)
    }

    /// The headers to add to the handler's response (when allowed), before
    /// they are written: `None` when there are none. Adapters keep this
    /// until the response exists and write it with
    /// [`HeaderState::for_each`].
    pub fn header_state(&self) -> Option<&HeaderState> {
        self.headers.as_ref()
    }

    /// Takes the [`header_state`](Self::header_state) out of the decision.
    pub fn take_header_state(&mut self) -> Option<HeaderState> {
        self.headers.take()
    }

    /// The headers to add to the handler's response (when allowed), by
    /// name, as `settings` (the limiter's
    /// [`header_settings`](super::Limiter::header_settings)) names them.
    pub fn headers(&self, settings: &HeaderSettings) -> Headers {
        self.headers.as_ref().map(|state| state.render(settings)).unwrap_or_default()
    }

    /// Whether some limit waits for the response to be deducted
    /// (`deduct_when`): only then has [`Limiter::after_response`](super::Limiter::after_response)
    /// anything to do.
    pub fn has_deferred(&self) -> bool {
        !self.deferred.is_empty()
    }

    /// Every limit evaluated, in the order evaluated (`current_limits`):
    /// shortest window first, except that on a route with limits of its own
    /// the application limits come first (Flask-Limiter decides them in
    /// `before_request`).
    pub fn limits(&self) -> &[RequestLimit] {
        &self.limits
    }

    /// The evaluated limits, shared: what adapters hand to request handlers
    /// without copying.
    pub fn shared_limits(&self) -> Arc<[RequestLimit]> {
        Arc::clone(&self.limits)
    }

    /// The evaluated limits, taken from the decision: what adapters hand to
    /// request handlers once the decision is no longer needed.
    pub fn into_shared_limits(self) -> Arc<[RequestLimit]> {
        self.limits
    }

    /// The limit the headers describe (`current_limit`); see [`current_limit`].
    pub fn current_limit(&self) -> Option<&RequestLimit> {
        current_limit(&self.limits)
    }
}

/// The limits of a decision without any: shared, so that exempt requests
/// allocate nothing.
fn no_limits() -> Arc<[RequestLimit]> {
    static EMPTY: std::sync::OnceLock<Arc<[RequestLimit]>> = std::sync::OnceLock::new();
    Arc::clone(EMPTY.get_or_init(|| Arc::from(Vec::new())))
}

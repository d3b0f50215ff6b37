//! [`Decision`]: what the limiter concluded about one request.

use std::fmt;
use std::sync::Arc;

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
    /// `[prefix,] client, scope`.
    ids: Identifiers,
}

/// A limit's identifiers, copied into the limit itself: short ones (a
/// client address and a route name) stay inline, so the limits of a request
/// take one allocation, the list's, and share no reference count. Kept as
/// bytes: only whole strings go in, read back as text only when asked for.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Identifiers {
    text: IdText,
    /// Where each identifier ends in `text` (at most three).
    ends: [u32; 3],
    len: u8,
}

/// How many bytes of identifiers a limit holds without allocating.
const INLINE: usize = 40;

/// The identifiers' bytes, one after the other. Not a `SmallVec`: its
/// generic insertion cost about 170 instructions per limit on every
/// request, and a clone of an inline array is a plain copy.
#[derive(Clone, PartialEq, Eq)]
enum IdText {
    /// Zero-filled after the last identifier, so equal texts compare equal.
    Inline([u8; INLINE]),
    Heap(Box<[u8]>),
}

impl Identifiers {
    pub(crate) fn new(ids: &[&str]) -> Self {
        let ids = ids.get(..3).unwrap_or(ids);
        let mut ends = [0; 3];
        let mut total = 0;
        for (id, end) in ids.iter().zip(&mut ends) {
            total += id.len();
            *end = u32::try_from(total).unwrap_or(u32::MAX);
        }
        let text = if total <= INLINE {
            let mut bytes = [0; INLINE];
            let mut start = 0;
            for id in ids {
                if let Some(slot) = bytes.get_mut(start..start + id.len()) {
                    slot.copy_from_slice(id.as_bytes());
                }
                start += id.len();
            }
            IdText::Inline(bytes)
        } else {
            IdText::Heap(ids.concat().into_bytes().into_boxed_slice())
        };
        Identifiers { text, ends, len: u8::try_from(ids.len()).unwrap_or(3) }
    }

    fn get(&self) -> Vec<&str> {
        let text: &[u8] = match &self.text {
            IdText::Inline(bytes) => bytes,
            IdText::Heap(bytes) => bytes,
        };
        let ends = self.ends.get(..usize::from(self.len)).unwrap_or_default();
        let mut start = 0;
        ends.iter()
            .map(|&end| {
                let range = start..end as usize;
                start = end as usize;
                // Each span is a whole string that went in, so valid UTF-8.
                text.get(range).and_then(|id| std::str::from_utf8(id).ok()).unwrap_or("")
            })
            .collect()
    }
}

impl fmt::Debug for Identifiers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.get()).finish()
    }
}

impl RequestLimit {
    pub(crate) fn new(limit: RateLimit, ids: Identifiers, state: &LimitState, shared: bool, shadow: bool) -> Self {
        RequestLimit {
            limit,
            breached: !state.allowed,
            shadow,
            shared,
            remaining: state.remaining,
            reset_at: state.reset_at,
            ids,
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
    /// A boxed slice, not a `Vec`: a decision of at most 128 bytes is moved
    /// inline, without a call to `memcpy`.
    pub(crate) deferred: Box<[Deferred]>,
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
        let (rejection, deferred) = (rejection.map(Box::new), deferred.into_boxed_slice());
        Decision { verdict, limits, headers, rejection, deferred, shadow_limited: false }
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

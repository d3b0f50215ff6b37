//! [`Decision`]: what the limiter concluded about one request.

use std::fmt;
use std::sync::Arc;

use smallvec::SmallVec;

use super::declare::ResponseInfo;
use super::response::Rejection;
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
    /// Whether this limit refused the request.
    pub breached: bool,
    /// Whether the bucket is shared across routes.
    pub shared: bool,
    /// Hits of cost 1 still allowed.
    pub remaining: u64,
    /// When the window resets.
    pub reset_at: Timestamp,
    /// `[prefix,] client, scope`, shared with the request's other limits.
    ids: SmallVec<[Arc<str>; 3]>,
}

impl RequestLimit {
    pub(crate) fn new(limit: RateLimit, ids: SmallVec<[Arc<str>; 3]>, state: &LimitState, shared: bool) -> Self {
        RequestLimit {
            limit,
            breached: !state.allowed,
            shared,
            remaining: state.remaining,
            reset_at: state.reset_at,
            ids,
        }
    }

    /// The identifiers of its storage key: `[prefix,] client, scope`.
    pub fn identifiers(&self) -> Vec<&str> {
        self.ids.iter().map(|s| &**s).collect()
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
    headers: Vec<(Arc<str>, String)>,
    rejection: Option<Rejection>,
    pub(crate) deferred: Vec<Deferred>,
}

impl Decision {
    pub(crate) fn new(
        verdict: Verdict,
        limits: Vec<RequestLimit>,
        headers: Vec<(Arc<str>, String)>,
        rejection: Option<Rejection>,
        deferred: Vec<Deferred>,
    ) -> Self {
        Decision { verdict, limits: limits.into(), headers, rejection, deferred }
    }

    pub(crate) fn exempt() -> Self {
        Decision::new(Verdict::Exempt, Vec::new(), Vec::new(), None, Vec::new())
    }

    pub(crate) fn failed_open() -> Self {
        Decision::new(Verdict::FailedOpen, Vec::new(), Vec::new(), None, Vec::new())
    }

    pub(crate) fn unavailable(rejection: Rejection) -> Self {
        Decision::new(Verdict::Unavailable, Vec::new(), Vec::new(), Some(rejection), Vec::new())
    }

    /// The verdict.
    pub fn verdict(&self) -> Verdict {
        self.verdict
    }

    /// Whether the handler should run.
    pub fn is_allowed(&self) -> bool {
        self.rejection.is_none()
    }

    /// The response to send instead of calling the handler, if any.
    pub fn rejection(&self) -> Option<&Rejection> {
        self.rejection.as_ref()
    }

    /// Takes the response to send instead of calling the handler.
    pub fn take_rejection(&mut self) -> Option<Rejection> {
        self.rejection.take()
    }

    /// Headers to add to the handler's response (when allowed).
    pub fn headers(&self) -> &[(Arc<str>, String)] {
        &self.headers
    }

    /// Takes the headers to add to the handler's response.
    pub fn take_headers(&mut self) -> Vec<(Arc<str>, String)> {
        std::mem::take(&mut self.headers)
    }

    /// Whether some limit waits for the response to be deducted
    /// (`deduct_when`): only then has [`Limiter::after_response`](super::Limiter::after_response)
    /// anything to do.
    pub fn has_deferred(&self) -> bool {
        !self.deferred.is_empty()
    }

    /// Every limit evaluated, shortest window first (`current_limits`).
    pub fn limits(&self) -> &[RequestLimit] {
        &self.limits
    }

    /// The evaluated limits, shared: what adapters hand to request handlers
    /// without copying.
    pub fn shared_limits(&self) -> Arc<[RequestLimit]> {
        Arc::clone(&self.limits)
    }

    /// The limit the headers describe (`current_limit`); see [`current_limit`].
    pub fn current_limit(&self) -> Option<&RequestLimit> {
        current_limit(&self.limits)
    }
}

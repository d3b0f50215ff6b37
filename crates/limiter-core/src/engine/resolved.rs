//! A route's limits as resolved once: when nothing of their resolution
//! depends on the request (no dynamic limit, computed cost or scope,
//! `exempt_when`, method list or per-method count, attached meta limit),
//! every request of the route resolves to the same list, so the engine
//! records the first request's resolution and later requests copy it instead
//! of walking the declarations again. When, moreover, every recorded limit
//! counts by the limiter's key and none is a meta limit, deducted after the
//! response or in shadow mode, has an empty fixed scope or (counting every
//! limit) a pass of its own ([`Direct`]), a request on a storage that
//! answers at once is decided from the recording itself: no resolution, and
//! when allowed, no general conclusion. Filtered requests, the in-memory
//! fallback, an empty key or endpoint take the general path.

use super::declare::{Cost, Limit, Scope, Source};
use super::limiter::Kind;
use crate::limit::RateLimit;

/// One limit of a recorded resolution, in the order the engine evaluates it.
#[derive(Debug)]
pub(crate) struct Resolved {
    pub(crate) kind: Kind,
    /// The declaration's index in its list: the application, route, default
    /// or meta limits, as `kind` says.
    pub(crate) index: usize,
    pub(crate) limit: RateLimit,
    /// `None`: the route's endpoint, which for a route without a name is the
    /// matched path of each request.
    pub(crate) scope: Option<Box<str>>,
    pub(crate) cost: u64,
    pub(crate) shadow: bool,
    /// Flask-Limiter's `RuntimeLimit.shared`, as handlers see it.
    pub(crate) shared: bool,
    pub(crate) first_pass: bool,
}

/// Whether resolving `decl` reads nothing of the request.
pub(crate) fn request_independent<R>(decl: &Limit<R>) -> bool {
    let scope_fixed = match &decl.scope {
        None => true,
        // Unshared, it is prefixed with the endpoint: a request's path on a
        // route without a name.
        Some(Scope::Fixed(_)) => decl.shared,
        Some(Scope::Computed(_)) => false,
    };
    scope_fixed
        && matches!(decl.source, Source::Static(Ok(_)))
        && matches!(decl.cost, Cost::Fixed(_))
        && decl.exempt_when.is_none()
        && decl.methods.is_none()
        && !decl.per_method
        && decl.meta.is_empty()
}

/// What an allowed request of a recorded route needs beyond the storage's
/// answer, decided once from the recording (see the module docs).
#[derive(Debug)]
pub(crate) struct Direct {
    /// The limit the headers show when nothing breached.
    pub(crate) shown: usize,
    /// The IETF policy list, when those fields are on.
    pub(crate) policies: Option<std::sync::Arc<[RateLimit]>>,
}

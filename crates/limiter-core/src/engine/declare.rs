//! [`Limit`]: one declaration of limits with its options, Flask-Limiter's
//! `Limit` (and what `@limiter.limit(...)` takes).

use std::fmt;
use std::sync::Arc;

use super::key::{BoxedKey, KeyExtractor};
use super::response::{Breach, Rejection};
use crate::limit::RateLimit;
use crate::notation::{ParseError, parse_many};

type Predicate<R> = Arc<dyn Fn(&R) -> bool + Send + Sync>;
type DynamicLimits<R> = Arc<dyn Fn(&R) -> Vec<RateLimit> + Send + Sync>;
type CostFn<R> = Arc<dyn Fn(&R) -> u64 + Send + Sync>;
type ResponsePredicate = Arc<dyn Fn(&ResponseInfo) -> bool + Send + Sync>;
type ScopeFn = Arc<dyn Fn(&str) -> String + Send + Sync>;
pub(crate) type BreachHook = Arc<dyn Fn(&Breach) -> Option<Rejection> + Send + Sync>;

/// What `deduct_when` sees of a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResponseInfo {
    /// The status code.
    pub status: u16,
}

impl ResponseInfo {
    /// A response with `status`.
    pub const fn new(status: u16) -> Self {
        ResponseInfo { status }
    }
}

pub(crate) enum Source<R> {
    Static(Result<Arc<[RateLimit]>, ParseError>),
    Dynamic(DynamicLimits<R>),
}

impl<R> Clone for Source<R> {
    fn clone(&self) -> Self {
        match self {
            Source::Static(s) => Source::Static(s.clone()),
            Source::Dynamic(f) => Source::Dynamic(Arc::clone(f)),
        }
    }
}

pub(crate) enum Scope {
    Fixed(Arc<str>),
    Computed(ScopeFn),
}

impl Clone for Scope {
    fn clone(&self) -> Self {
        match self {
            Scope::Fixed(s) => Scope::Fixed(Arc::clone(s)),
            Scope::Computed(f) => Scope::Computed(Arc::clone(f)),
        }
    }
}

pub(crate) enum Cost<R> {
    /// At least 1 ([`Limit::cost`] makes it so).
    Fixed(u64),
    Computed(CostFn<R>),
}

impl<R> Clone for Cost<R> {
    fn clone(&self) -> Self {
        match self {
            Cost::Fixed(n) => Cost::Fixed(*n),
            Cost::Computed(f) => Cost::Computed(Arc::clone(f)),
        }
    }
}

/// One or more limits and how to apply them: Flask-Limiter's `Limit`.
///
/// Built from notation (`"10/minute; 100/day"`, checked when the limiter is
/// built) or from a function of the request (limits that depend on the
/// user's plan, say). `R` is the adapter's request type.
///
/// ```
/// use limiter_core::engine::Limit;
///
/// let login: Limit<()> = Limit::new("5/minute; 20/day")
///     .methods(["POST"])
///     .error_message("too many login attempts")
///     .deduct_when(|response| response.status >= 400);
/// # let _ = login;
/// ```
pub struct Limit<R> {
    pub(crate) source: Source<R>,
    pub(crate) scope: Option<Scope>,
    pub(crate) shared: bool,
    pub(crate) per_method: bool,
    pub(crate) methods: Option<Arc<[String]>>,
    pub(crate) cost: Cost<R>,
    pub(crate) exempt_when: Option<Predicate<R>>,
    pub(crate) deduct_when: Option<ResponsePredicate>,
    pub(crate) override_defaults: bool,
    pub(crate) error_message: Option<Arc<str>>,
    pub(crate) on_breach: Option<BreachHook>,
    pub(crate) key: Option<Arc<BoxedKey<R>>>,
    pub(crate) meta: Vec<Limit<R>>,
    pub(crate) shadow: bool,
}

impl<R> Clone for Limit<R> {
    fn clone(&self) -> Self {
        Limit {
            source: self.source.clone(),
            scope: self.scope.clone(),
            shared: self.shared,
            per_method: self.per_method,
            methods: self.methods.clone(),
            cost: self.cost.clone(),
            exempt_when: self.exempt_when.clone(),
            deduct_when: self.deduct_when.clone(),
            override_defaults: self.override_defaults,
            error_message: self.error_message.clone(),
            on_breach: self.on_breach.clone(),
            key: self.key.clone(),
            meta: self.meta.clone(),
            shadow: self.shadow,
        }
    }
}

impl<R> fmt::Debug for Limit<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Limit");
        match &self.source {
            Source::Static(Ok(limits)) => d.field("limits", limits),
            Source::Static(Err(e)) => d.field("invalid", e),
            Source::Dynamic(_) => d.field("limits", &"<computed per request>"),
        };
        d.field("shared", &self.shared)
            .field("per_method", &self.per_method)
            .field("methods", &self.methods)
            .field("override_defaults", &self.override_defaults)
            .field("shadow", &self.shadow)
            .finish_non_exhaustive()
    }
}

impl<R> Limit<R> {
    fn with_source(source: Source<R>) -> Self {
        Limit {
            source,
            scope: None,
            shared: false,
            per_method: false,
            methods: None,
            cost: Cost::Fixed(1),
            exempt_when: None,
            deduct_when: None,
            override_defaults: true,
            error_message: None,
            on_breach: None,
            key: None,
            meta: Vec::new(),
            shadow: false,
        }
    }

    /// The limits written in `notation`. A malformed string is reported when
    /// the limiter is built, never per request.
    pub fn new(notation: &str) -> Self {
        Limit::with_source(Source::Static(parse_many(notation).map(Arc::from)))
    }

    /// Limits already parsed.
    pub fn from_limits(limits: impl IntoIterator<Item = RateLimit>) -> Self {
        Limit::with_source(Source::Static(Ok(limits.into_iter().collect())))
    }

    /// Limits computed for each request (Flask-Limiter's callable limit
    /// strings), e.g. from the user's plan. An empty list applies no limit.
    pub fn dynamic(limits: impl Fn(&R) -> Vec<RateLimit> + Send + Sync + 'static) -> Self {
        Limit::with_source(Source::Dynamic(Arc::new(limits)))
    }

    /// A bucket shared by every route that uses this scope name, instead of
    /// one per route (`shared_limit`).
    #[must_use]
    pub fn shared(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(Scope::Fixed(Arc::from(scope.into())));
        self.shared = true;
        self
    }

    /// A sub-bucket within the route: the storage scope becomes
    /// `<route>:<scope>` (for a shared limit, the scope itself).
    #[must_use]
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(Scope::Fixed(Arc::from(scope.into())));
        self
    }

    /// The scope computed from the route name.
    #[must_use]
    pub fn scope_with(mut self, scope: impl Fn(&str) -> String + Send + Sync + 'static) -> Self {
        self.scope = Some(Scope::Computed(Arc::new(scope)));
        self
    }

    /// A separate bucket per HTTP method.
    #[must_use]
    pub fn per_method(mut self, per_method: bool) -> Self {
        self.per_method = per_method;
        self
    }

    /// Applies only to these methods (any case).
    #[must_use]
    pub fn methods<S: AsRef<str>>(mut self, methods: impl IntoIterator<Item = S>) -> Self {
        self.methods = Some(methods.into_iter().map(|m| m.as_ref().to_ascii_uppercase()).collect());
        self
    }

    /// How much each request consumes (default 1; 0 counts as 1, as
    /// Flask-Limiter's `cost or 1` does).
    #[must_use]
    pub fn cost(mut self, cost: u64) -> Self {
        // Flask-Limiter's `cost or 1`, once here for every reader.
        self.cost = Cost::Fixed(cost.max(1));
        self
    }

    /// The cost computed for each request.
    #[must_use]
    pub fn cost_with(mut self, cost: impl Fn(&R) -> u64 + Send + Sync + 'static) -> Self {
        self.cost = Cost::Computed(Arc::new(cost));
        self
    }

    /// Skips these limits for requests where `exempt` returns true.
    #[must_use]
    pub fn exempt_when(mut self, exempt: impl Fn(&R) -> bool + Send + Sync + 'static) -> Self {
        self.exempt_when = Some(Arc::new(exempt));
        self
    }

    /// Tests the limits before the handler runs but consumes only after the
    /// response, and only if `deduct` returns true for it (e.g. only failed
    /// logins count). As in Flask-Limiter, a refused request's 429 response
    /// is offered to `deduct` too.
    #[must_use]
    pub fn deduct_when(mut self, deduct: impl Fn(&ResponseInfo) -> bool + Send + Sync + 'static) -> Self {
        self.deduct_when = Some(Arc::new(deduct));
        self
    }

    /// Whether these route (or group) limits replace the default limits
    /// (default: true, as with `@limiter.limit`).
    #[must_use]
    pub fn override_defaults(mut self, override_defaults: bool) -> Self {
        self.override_defaults = override_defaults;
        self
    }

    /// The text of the 429 response instead of the limit itself.
    #[must_use]
    pub fn error_message(mut self, message: impl Into<String>) -> Self {
        self.error_message = Some(Arc::from(message.into()));
        self
    }

    /// Called when one of these limits is breached, after the limiter's own
    /// `on_breach`; a returned [`Rejection`] replaces the 429 response.
    #[must_use]
    pub fn on_breach(mut self, hook: impl Fn(&Breach) -> Option<Rejection> + Send + Sync + 'static) -> Self {
        self.on_breach = Some(Arc::new(hook));
        self
    }

    /// Meta limits of these limits (Flask-Limiter's `meta_limits=`): tested
    /// before them whenever they apply, and counted once each time one of
    /// them is breached. Their bucket is the limiter's `meta` scope, keyed by
    /// their own key or the limiter's.
    #[must_use]
    pub fn meta_limits(mut self, limits: impl Into<Limit<R>>) -> Self {
        self.meta.push(limits.into());
        self
    }

    /// Shadow mode (a dry run): these limits, and their meta limits, are
    /// evaluated and counted as usual, but a breach never refuses the
    /// request. It is logged instead (a `tracing` event at `WARN`, "rate
    /// limit exceeded in shadow mode", with the limit, key, route and scope)
    /// and counted (the `shadow_limited` decision of the `metrics` feature),
    /// and the rate-limit headers still describe the limit as it stands.
    ///
    /// This is how to roll out a new limit: deploy it in shadow mode, watch
    /// who would have been refused, then drop `.shadow(true)`. Shadow limits
    /// are decided after the enforced ones in the same storage call, so they
    /// never change what the enforced limits count; breach hooks
    /// ([`on_breach`](Self::on_breach)) are not called for them, since a
    /// hook's answer would refuse the request. Nor does anything else about
    /// them refuse: a shadow limit whose own [`key`](Self::key) is missing
    /// is left uncounted, and when only shadow limits apply, a missing
    /// client key or a failing storage lets the request through whatever
    /// the failure policy. See also
    /// [`LimiterBuilder::shadow`](super::LimiterBuilder::shadow) for every
    /// limit at once.
    ///
    /// ```
    /// use limiter_core::engine::{Limit, Route};
    ///
    /// // Enforce 10 per minute; try out 100 per day before enforcing it.
    /// let search: Route<()> = Route::new("search")
    ///     .path("/search")
    ///     .limit("10 per minute")
    ///     .limit(Limit::new("100 per day").shadow(true));
    /// # let _ = search;
    /// ```
    #[must_use]
    pub fn shadow(mut self, shadow: bool) -> Self {
        self.shadow = shadow;
        self
    }

    /// Counts these limits by another key than the limiter's.
    #[must_use]
    pub fn key(mut self, key: impl KeyExtractor<R>) -> Self {
        self.key = Some(Arc::new(BoxedKey(Box::new(key))));
        self
    }

    pub(crate) fn parse_error(&self) -> Option<&ParseError> {
        match &self.source {
            Source::Static(Err(e)) => Some(e),
            _ => self.meta.iter().find_map(Limit::parse_error),
        }
    }

    pub(crate) fn applies_to_method(&self, method: &str) -> bool {
        self.methods.as_ref().is_none_or(|ms| ms.iter().any(|m| m.eq_ignore_ascii_case(method)))
    }
}

impl<R> From<&str> for Limit<R> {
    fn from(notation: &str) -> Self {
        Limit::new(notation)
    }
}

impl<R> From<RateLimit> for Limit<R> {
    fn from(limit: RateLimit) -> Self {
        Limit::from_limits([limit])
    }
}

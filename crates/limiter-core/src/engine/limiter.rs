//! [`Limiter`]: Flask-Limiter's extension without Flask. It resolves which
//! limits apply to a request, decides them in one storage call, and says
//! what to answer.

use std::borrow::Cow;

use smallvec::SmallVec;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::decision::{Decision, Deferred, RequestLimit, Verdict};
use super::declare::{BreachHook, Cost, Limit, ResponseInfo, Scope, Source};
use super::failure::{FailurePolicy, Health, with_timeout};
use super::key::{BoxedKey, KeyError, KeyExtractor, PeerIp};
use super::plan::{Defaults, Plan, Plans};
use super::request::RequestInfo;
use super::response::{
    Breach, HeaderSettings, HeaderValues, Rejection, Undecided, render_headers, too_many_requests, unavailable,
    wants_json,
};
use super::route::{Group, Route};
use crate::clock::{Clock, SystemClock, Timestamp};
use crate::error::{ConfigError, StorageError};
use crate::limit::RateLimit;
use crate::storage::memory::MemoryStorage;
use crate::storage::{AnyStorage, Batch, BoxFuture, DynStorage, Item, Key, Mode, Outcome, Storage, Supports};
use crate::strategy::StrategyKind;

type Predicate<R> = Arc<dyn Fn(&R) -> bool + Send + Sync>;

/// Sleeps for a duration on the caller's runtime; the core has none of its
/// own, so the web adapters pass tokio's.
pub type Sleeper = Arc<dyn Fn(Duration) -> BoxFuture<'static, ()> + Send + Sync>;

/// What kind of limit an entry is; decides its scope and key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Meta,
    Application,
    Default,
    Route,
    Fallback,
}

/// Rate limiting for a web service, built once and shared by every request.
///
/// `R` is the web framework's request type (the adapters choose it). Cloning
/// is cheap and clones share everything.
pub struct Limiter<R> {
    inner: Arc<Shared<R>>,
}

impl<R> Clone for Limiter<R> {
    fn clone(&self) -> Self {
        Limiter { inner: Arc::clone(&self.inner) }
    }
}

impl<R> fmt::Debug for Limiter<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("Limiter")
            .field("enabled", &i.enabled)
            .field("strategy", &i.strategy)
            .field("storage", &i.storage)
            .field("key_prefix", &i.key_prefix)
            .field("headers", &i.headers)
            .field("policy", &i.policy)
            .finish_non_exhaustive()
    }
}

struct Shared<R> {
    enabled: bool,
    strategy: StrategyKind,
    storage: AnyStorage,
    policy: FailurePolicy,
    health: Health,
    fallback_storage: AnyStorage,
    fallback_limits: Vec<Limit<R>>,
    key: BoxedKey<R>,
    key_prefix: Option<Arc<str>>,
    application: Vec<Limit<R>>,
    defaults: Vec<Limit<R>>,
    meta: Vec<Limit<R>>,
    plans: Plans<R>,
    filters: Vec<Predicate<R>>,
    headers: HeaderSettings,
    fail_on_first_breach: bool,
    on_breach: Option<BreachHook>,
    on_meta_breach: Option<BreachHook>,
    clock: Arc<dyn Clock>,
    timeout: Option<(Duration, Sleeper)>,
    key_error_logged: std::sync::atomic::AtomicBool,
}

/// Builds a [`Limiter`]; every mistake is reported by [`build`](Self::build).
pub struct LimiterBuilder<R> {
    enabled: bool,
    strategy: Result<StrategyKind, ConfigError>,
    storage: Option<AnyStorage>,
    policy: FailurePolicy,
    fallback_limits: Vec<Limit<R>>,
    key: Option<BoxedKey<R>>,
    key_prefix: String,
    application: Vec<Limit<R>>,
    defaults: Vec<Limit<R>>,
    meta: Vec<Limit<R>>,
    routes: Vec<Route<R>>,
    groups: Vec<Group<R>>,
    filters: Vec<Predicate<R>>,
    headers: HeaderSettings,
    fail_on_first_breach: bool,
    on_breach: Option<BreachHook>,
    on_meta_breach: Option<BreachHook>,
    clock: Arc<dyn Clock>,
    timeout: Option<(Duration, Sleeper)>,
}

impl<R> fmt::Debug for LimiterBuilder<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimiterBuilder")
            .field("strategy", &self.strategy)
            .field("routes", &self.routes)
            .field("groups", &self.groups)
            .finish_non_exhaustive()
    }
}

impl<R: RequestInfo + Send + Sync + 'static> Limiter<R> {
    /// A builder with Flask-Limiter's defaults: fixed window, memory
    /// storage, clients keyed by peer address, no headers, stop at the first
    /// breach, and a 503 when the storage fails.
    pub fn builder() -> LimiterBuilder<R> {
        LimiterBuilder {
            enabled: true,
            strategy: Ok(StrategyKind::FixedWindow),
            storage: None,
            policy: FailurePolicy::default(),
            fallback_limits: Vec::new(),
            key: None,
            key_prefix: String::new(),
            application: Vec::new(),
            defaults: Vec::new(),
            meta: Vec::new(),
            routes: Vec::new(),
            groups: Vec::new(),
            filters: Vec::new(),
            headers: HeaderSettings::default(),
            fail_on_first_breach: true,
            on_breach: None,
            on_meta_breach: None,
            clock: Arc::new(SystemClock),
            timeout: None,
        }
    }
}

impl<R: RequestInfo + Send + Sync + 'static> LimiterBuilder<R> {
    /// Turns limiting on or off (`RATELIMIT_ENABLED`).
    #[must_use]
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// The counting strategy (`RATELIMIT_STRATEGY`).
    #[must_use]
    pub fn strategy(mut self, strategy: StrategyKind) -> Self {
        self.strategy = Ok(strategy);
        self
    }

    /// The counting strategy by name; an unknown name fails [`build`](Self::build).
    #[must_use]
    pub fn strategy_name(mut self, name: &str) -> Self {
        self.strategy = name.parse();
        self
    }

    /// Where counters live (default: a [`MemoryStorage`]).
    #[must_use]
    pub fn storage(mut self, storage: impl DynStorage) -> Self {
        self.storage = Some(AnyStorage::new(storage));
        self
    }

    /// Where counters live, already type-erased.
    #[must_use]
    pub fn any_storage(mut self, storage: AnyStorage) -> Self {
        self.storage = Some(storage);
        self
    }

    /// What to do when the storage fails (default: fail closed with a 503).
    #[must_use]
    pub fn on_storage_failure(mut self, policy: FailurePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// With [`FailurePolicy::InMemoryFallback`]: the limits that replace all
    /// others while the storage is down (`RATELIMIT_IN_MEMORY_FALLBACK`);
    /// without any, the usual limits apply in memory.
    #[must_use]
    pub fn in_memory_fallback_limits(mut self, limits: impl Into<Limit<R>>) -> Self {
        self.fallback_limits.push(limits.into());
        self
    }

    /// How clients are told apart (default: [`PeerIp`]).
    #[must_use]
    pub fn key(mut self, key: impl KeyExtractor<R>) -> Self {
        self.key = Some(BoxedKey(Box::new(key)));
        self
    }

    /// A leading identifier in every storage key except meta limits'
    /// (`RATELIMIT_KEY_PREFIX`), to run independent limiters on one storage.
    #[must_use]
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Limits for every route without limits of its own (`default_limits`,
    /// `RATELIMIT_DEFAULT`). Call again to add another group of defaults.
    #[must_use]
    pub fn default_limits(mut self, limits: impl Into<Limit<R>>) -> Self {
        self.defaults.push(limits.into());
        self
    }

    /// Limits shared by all routes together: one bucket per client
    /// (`application_limits`, `RATELIMIT_APPLICATION`).
    #[must_use]
    pub fn application_limits(mut self, limits: impl Into<Limit<R>>) -> Self {
        self.application.push(limits.into());
        self
    }

    /// Limits on how often a client may breach other limits
    /// (`meta_limits`, `RATELIMIT_META`).
    #[must_use]
    pub fn meta_limits(mut self, limits: impl Into<Limit<R>>) -> Self {
        self.meta.push(limits.into());
        self
    }

    /// A route's limits or exemption.
    #[must_use]
    pub fn route(mut self, route: Route<R>) -> Self {
        self.routes.push(route);
        self
    }

    /// A group of routes' limits or exemption.
    #[must_use]
    pub fn group(mut self, group: Group<R>) -> Self {
        self.groups.push(group);
        self
    }

    /// Skips every limit except global meta limits for requests where
    /// `filter` returns true (`@limiter.request_filter`).
    #[must_use]
    pub fn request_filter(mut self, filter: impl Fn(&R) -> bool + Send + Sync + 'static) -> Self {
        self.filters.push(Arc::new(filter));
        self
    }

    /// Sends `X-RateLimit-*` and `Retry-After` (`RATELIMIT_HEADERS_ENABLED`).
    #[must_use]
    pub fn headers_enabled(mut self, enabled: bool) -> Self {
        self.headers.enabled = enabled;
        self
    }

    /// The header settings: names, `Retry-After` format, IETF fields.
    #[must_use]
    pub fn headers(mut self, headers: HeaderSettings) -> Self {
        self.headers = headers;
        self
    }

    /// Stops at the first breached limit (default, as Flask-Limiter) or
    /// counts every limit anyway (`RATELIMIT_FAIL_ON_FIRST_BREACH`).
    #[must_use]
    pub fn fail_on_first_breach(mut self, stop: bool) -> Self {
        self.fail_on_first_breach = stop;
        self
    }

    /// Called for every breached limit; a returned [`Rejection`] replaces the
    /// 429 response (`on_breach`).
    #[must_use]
    pub fn on_breach(mut self, hook: impl Fn(&Breach) -> Option<Rejection> + Send + Sync + 'static) -> Self {
        self.on_breach = Some(Arc::new(hook));
        self
    }

    /// Called when a meta limit is breached (`on_meta_breach`).
    #[must_use]
    pub fn on_meta_breach(mut self, hook: impl Fn(&Breach) -> Option<Rejection> + Send + Sync + 'static) -> Self {
        self.on_meta_breach = Some(Arc::new(hook));
        self
    }

    /// The clock (a [`ManualClock`](crate::ManualClock) in tests).
    #[must_use]
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Bounds every storage call: one that takes longer fails as a timeout,
    /// and the failure policy decides. `sleep` is the runtime's timer.
    #[must_use]
    pub fn storage_timeout(mut self, timeout: Duration, sleep: Sleeper) -> Self {
        self.timeout = Some((timeout, sleep));
        self
    }

    /// Checks the configuration and builds the limiter.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the first bad value and its fix: a malformed
    /// limit string (with where it was), an unknown strategy, a strategy the
    /// storage cannot run, a route without a path, a path given twice.
    pub fn build(self) -> Result<Limiter<R>, ConfigError> {
        let strategy = self.strategy?;
        let storage = self.storage.unwrap_or_else(|| AnyStorage::new(MemoryStorage::new()));
        storage.ensure_supports(strategy)?;
        check_limits("default limits", &self.defaults)?;
        check_limits("application limits", &self.application)?;
        check_limits("meta limits", &self.meta)?;
        check_limits("in-memory fallback limits", &self.fallback_limits)?;
        for route in &self.routes {
            check_limits(&format!("route {:?}", route.name), &route.limits)?;
        }
        for group in &self.groups {
            check_limits(&format!("group {:?}", group.name), &group.limits)?;
        }
        let plans = Plans::build(self.routes, self.groups)?;
        Ok(Limiter {
            inner: Arc::new(Shared {
                enabled: self.enabled,
                strategy,
                storage,
                health: Health::new(),
                policy: self.policy,
                fallback_storage: AnyStorage::new(MemoryStorage::new()),
                fallback_limits: self.fallback_limits,
                key: self.key.unwrap_or_else(|| BoxedKey(Box::new(PeerIp::new()))),
                key_prefix: (!self.key_prefix.is_empty()).then(|| Arc::from(self.key_prefix)),
                application: self.application,
                defaults: self.defaults,
                meta: self.meta,
                plans,
                filters: self.filters,
                headers: self.headers,
                fail_on_first_breach: self.fail_on_first_breach,
                on_breach: self.on_breach,
                on_meta_breach: self.on_meta_breach,
                clock: self.clock,
                timeout: self.timeout,
                key_error_logged: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }
}

fn check_limits<R>(place: &str, limits: &[Limit<R>]) -> Result<(), ConfigError> {
    match limits.iter().find_map(Limit::parse_error) {
        Some(e) => Err(ConfigError::InvalidLimitIn { place: place.to_owned(), source: e.clone() }),
        None => Ok(()),
    }
}

/// One limit to evaluate for this request, before storage keys exist.
struct Pending<'l, R> {
    limit: RateLimit,
    decl: &'l Limit<R>,
    kind: Kind,
    scope: Cow<'l, str>,
    cost: u64,
}

impl<R: RequestInfo + Send + Sync + 'static> Limiter<R> {
    /// Whether limiting is on.
    pub fn enabled(&self) -> bool {
        self.inner.enabled
    }

    /// The strategy in use.
    pub fn strategy(&self) -> StrategyKind {
        self.inner.strategy
    }

    /// The storage in use.
    pub fn storage(&self) -> &AnyStorage {
        &self.inner.storage
    }

    /// What the limiter does when its storage fails.
    pub fn failure_policy(&self) -> FailurePolicy {
        self.inner.policy
    }

    /// The header settings, for adapters to prepare header names once.
    pub fn header_settings(&self) -> &HeaderSettings {
        &self.inner.headers
    }

    /// Forgets every counter in the storage (Flask-Limiter's `reset()`).
    ///
    /// # Errors
    ///
    /// [`StorageError`] if the storage fails.
    pub async fn reset(&self) -> Result<(), StorageError> {
        self.inner.storage.reset().await
    }

    /// Limits for any code path, not a route: Flask-Limiter's
    /// `with limiter.limit(...)`. The limits are parsed here, once; each
    /// [`InlineLimit::hit`] counts one attempt for a key under `scope`.
    ///
    /// ```
    /// use limiter_core::engine::Limiter;
    /// # use limiter_core::engine::RequestInfo;
    /// # struct Req;
    /// # impl RequestInfo for Req {
    /// #     fn method(&self) -> &str { "GET" }
    /// #     fn route(&self) -> Option<&str> { None }
    /// #     fn header(&self, _: &str) -> Option<&str> { None }
    /// #     fn header_values(&self, _: &str) -> Vec<&str> { Vec::new() }
    /// #     fn peer_addr(&self) -> Option<std::net::IpAddr> { None }
    /// # }
    /// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     let mut f = std::pin::pin!(f);
    /// #     match f.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
    /// #         std::task::Poll::Ready(v) => v,
    /// #         std::task::Poll::Pending => unreachable!(),
    /// #     }
    /// # }
    /// # block_on(async {
    /// let limiter = Limiter::<Req>::builder().build()?;
    /// let logins = limiter.inline("login", "3 per minute; 10 per hour")?;
    /// for _ in 0..3 {
    ///     assert!(logins.hit("alice").await?.allowed());
    /// }
    /// assert!(!logins.hit("alice").await?.allowed());
    /// assert!(logins.hit("bob").await?.allowed());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError`] if `limits` does not parse.
    pub fn inline(&self, scope: &str, limits: &str) -> Result<InlineLimit<R>, ConfigError> {
        let parsed = crate::notation::parse_many(limits)
            .map_err(|source| ConfigError::InvalidLimitIn { place: format!("inline limit {scope:?}"), source })?;
        Ok(InlineLimit { limiter: self.clone(), scope: Arc::from(scope), limits: parsed.into() })
    }

    /// Decides `request`: which limits apply, whether it may proceed, and
    /// the headers or the rejection to answer. One storage call, plus one
    /// more only when a breach must be counted against meta limits.
    pub async fn check(&self, request: &R) -> Decision {
        let shared = &*self.inner;
        if !shared.enabled {
            return Decision::exempt();
        }
        let matched = request.route();
        let filtered = shared.filters.iter().any(|f| f(request));
        let plan = matched.map(|path| (path, shared.plans.for_path(path)));
        let fallback = shared.health.use_fallback(&shared.policy) && !shared.fallback_limits.is_empty();
        let pending = self.resolve(request, plan, filtered, fallback);
        if pending.is_empty() {
            return Decision::exempt();
        }
        let key = match shared.key.0.extract(request) {
            Ok(key) => key,
            Err(e) => return self.key_failure(&e, request),
        };
        self.decide(request, &key, pending).await
    }

    /// Collects the limits that apply, Flask-Limiter's way: meta limits
    /// first (tested only), then application, route and group, and default
    /// limits, each sorted by window length.
    fn resolve<'l>(
        &'l self,
        request: &R,
        plan: Option<(&'l str, &'l Arc<Plan<R>>)>,
        filtered: bool,
        fallback: bool,
    ) -> SmallVec<[Pending<'l, R>; 4]> {
        let shared = &*self.inner;
        let method = request.method();
        let check_meta = plan.is_none_or(|(_, p)| p.meta);
        let mut regular = SmallVec::new();
        if let Some((path, plan)) = plan
            && !filtered
        {
            let endpoint: &'l str = plan.name.as_deref().unwrap_or(path);
            if fallback {
                self.push(&mut regular, request, &shared.fallback_limits, Kind::Fallback, endpoint);
            } else {
                if plan.application {
                    self.push(&mut regular, request, &shared.application, Kind::Application, "global");
                }
                self.push(&mut regular, request, &plan.own, Kind::Route, endpoint);
                // Only a method mismatch brings the defaults back, not exempt_when.
                let own_apply = plan.own.iter().any(|l| l.applies_to_method(method));
                if plan.defaults == Defaults::Always || (plan.defaults == Defaults::IfOwnInapplicable && !own_apply) {
                    self.push(&mut regular, request, &shared.defaults, Kind::Default, endpoint);
                }
            }
            // Flask-Limiter orders by window unit only (multiples ignored), stably.
            regular.sort_by_key(|p| p.limit.granularity().seconds());
        }
        // Meta limits go first, tested only: a client over them is refused
        // before anything else is counted.
        let mut pending = SmallVec::new();
        if check_meta {
            self.push(&mut pending, request, &shared.meta, Kind::Meta, "meta");
            self.push_attached_meta(&mut pending, request, regular.iter().map(|p| p.decl));
        }
        pending.extend(regular);
        pending
    }

    /// The meta limits attached to `decls` (each declaration once).
    fn push_attached_meta<'l>(
        &self,
        pending: &mut SmallVec<[Pending<'l, R>; 4]>,
        request: &R,
        decls: impl Iterator<Item = &'l Limit<R>>,
    ) {
        let mut seen: SmallVec<[*const Limit<R>; 4]> = SmallVec::new();
        for decl in decls {
            if decl.meta.is_empty() || seen.contains(&std::ptr::from_ref(decl)) {
                continue;
            }
            seen.push(std::ptr::from_ref(decl));
            self.push(pending, request, &decl.meta, Kind::Meta, "meta");
        }
    }

    fn push<'l>(
        &self,
        pending: &mut SmallVec<[Pending<'l, R>; 4]>,
        request: &R,
        decls: &'l [Limit<R>],
        kind: Kind,
        endpoint: &'l str,
    ) {
        let method = request.method();
        for decl in decls {
            if !decl.applies_to_method(method) || exempt(decl, request) {
                continue;
            }
            let limits: Cow<'l, [RateLimit]> = match &decl.source {
                Source::Static(Ok(limits)) => Cow::Borrowed(&**limits),
                Source::Static(Err(_)) => continue,
                Source::Dynamic(f) => Cow::Owned(f(request)),
            };
            let cost = match &decl.cost {
                Cost::Fixed(n) => *n,
                Cost::Computed(f) => f(request),
            };
            let scope = scope_of(decl, kind, endpoint, method);
            for limit in limits.iter() {
                pending.push(Pending { limit: *limit, decl, kind, scope: scope.clone(), cost });
            }
        }
    }

    async fn decide(&self, request: &R, key: &str, pending: SmallVec<[Pending<'_, R>; 4]>) -> Decision {
        let shared = &*self.inner;
        // Keys: [prefix] + [client, scope]; meta limits skip the prefix.
        let mut owned_keys: SmallVec<[Option<String>; 4]> = SmallVec::with_capacity(pending.len());
        for p in &pending {
            owned_keys.push(match &p.decl.key {
                Some(k) => match k.0.extract(request) {
                    Ok(own) => Some(own),
                    Err(e) => return self.key_failure(&e, request),
                },
                None => None,
            });
        }
        let ids: SmallVec<[SmallVec<[&str; 3]>; 4]> = pending
            .iter()
            .zip(&owned_keys)
            .map(|(p, own)| {
                let mut ids = SmallVec::new();
                if p.kind != Kind::Meta
                    && let Some(prefix) = &shared.key_prefix
                {
                    ids.push(&**prefix);
                }
                ids.push(own.as_deref().unwrap_or(key));
                ids.push(&*p.scope);
                ids
            })
            .collect();
        let items: SmallVec<[Item<'_>; 4]> = pending
            .iter()
            .zip(&ids)
            .map(|(p, ids)| {
                let item = Item::new(p.limit, Key::new(ids)).with_cost(p.cost);
                if p.kind == Kind::Meta || p.decl.deduct_when.is_some() { item.peek() } else { item }
            })
            .collect();
        let mode = Mode::Sequential { stop_at_first_breach: shared.fail_on_first_breach };
        let now = shared.clock.now();
        let outcome = match self.run(&items, mode, now).await {
            Ok(outcome) => outcome,
            Err(e) => return self.storage_failure(&e, request),
        };
        let deferred = pending
            .iter()
            .zip(&ids)
            .filter_map(|(p, ids)| {
                p.decl.deduct_when.as_ref().map(|when| Deferred {
                    limit: p.limit,
                    identifiers: ids.iter().map(|s| (*s).to_owned()).collect(),
                    cost: p.cost,
                    when: Arc::clone(when),
                })
            })
            .collect();
        self.conclude(request, key, &pending, &ids, &outcome, deferred, now).await
    }

    /// Runs a batch on the storage, or on the memory fallback while the
    /// storage is down, switching over on failure if so configured.
    async fn run(&self, items: &[Item<'_>], mode: Mode, now: Timestamp) -> Result<Outcome, StorageError> {
        let shared = &*self.inner;
        let batch = Batch { items, mode, now };
        if shared.health.use_fallback(&shared.policy) {
            if shared.health.probe_due(now) {
                let check = with_timeout(shared.storage.check(), shared.timeout.as_ref()).await;
                shared.health.probed(check.is_ok(), now);
            }
            if shared.health.use_fallback(&shared.policy) {
                return shared.fallback_storage.decide(shared.strategy, &batch).await;
            }
        }
        match with_timeout(shared.storage.decide(shared.strategy, &batch), shared.timeout.as_ref()).await {
            Ok(outcome) => Ok(outcome),
            Err(e) if shared.policy == FailurePolicy::InMemoryFallback => {
                tracing::warn!(storage = shared.storage.name(), error = %e,
                    "rate limit storage unreachable - falling back to in-memory storage");
                shared.health.failed(now);
                shared.fallback_storage.decide(shared.strategy, &batch).await
            }
            Err(e) => Err(e),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn conclude(
        &self,
        request: &R,
        key: &str,
        pending: &[Pending<'_, R>],
        ids: &[SmallVec<[&str; 3]>],
        outcome: &Outcome,
        deferred: Vec<Deferred>,
        now: Timestamp,
    ) -> Decision {
        let shared = &*self.inner;
        let evaluated: SmallVec<[(usize, &Pending<'_, R>, crate::storage::LimitState); 4]> =
            pending.iter().enumerate().filter_map(|(i, p)| outcome.get(i).map(|s| (i, p, *s))).collect();
        let breaches: SmallVec<[&(usize, &Pending<'_, R>, crate::storage::LimitState); 4]> =
            evaluated.iter().filter(|(_, _, s)| !s.allowed).collect();
        // Handlers see every limit's identifiers; the strings are shared, one
        // allocation per distinct string rather than per limit.
        let mut interned: SmallVec<[Arc<str>; 4]> = SmallVec::new();
        let mut intern = |s: &str| -> Arc<str> {
            if let Some(found) = interned.iter().find(|a| &***a == s) {
                return Arc::clone(found);
            }
            let made: Arc<str> = Arc::from(s);
            interned.push(Arc::clone(&made));
            made
        };
        let limits: Vec<RequestLimit> = evaluated
            .iter()
            .filter(|(_, p, _)| p.kind != Kind::Meta)
            .map(|(i, p, s)| {
                let item_ids = ids.get(*i).map_or(&[][..], |v| &v[..]);
                let arcs = item_ids.iter().map(|id| intern(id)).collect();
                RequestLimit::new(p.limit, arcs, s, p.decl.shared)
            })
            .collect();
        let meta_breach = breaches.iter().find(|(_, p, _)| p.kind == Kind::Meta);
        let shown = meta_breach
            .copied()
            .or_else(|| if shared.fail_on_first_breach { breaches.first() } else { breaches.last() }.copied())
            .or_else(|| evaluated.iter().find(|(_, p, _)| p.kind != Kind::Meta && !p.decl.shared))
            .or_else(|| evaluated.iter().find(|(_, p, _)| p.kind != Kind::Meta));
        let policies: SmallVec<[RateLimit; 4]> =
            evaluated.iter().filter(|(_, p, _)| p.kind != Kind::Meta).map(|(_, p, _)| p.limit).collect();
        let headers = |limited: bool| {
            shown
                .map(|(_, p, s)| {
                    let values = HeaderValues {
                        limit: p.limit,
                        remaining: s.remaining,
                        reset_at: s.reset_at,
                        retry_at: s.retry_at,
                    };
                    render_headers(&shared.headers, &values, &policies, limited, now)
                })
                .unwrap_or_default()
        };
        if breaches.is_empty() {
            tracing::debug!(key, limits = limits.len(), "rate limit passed");
            return Decision::new(Verdict::Allowed, limits, headers(false), None, deferred);
        }
        let mut rejection = None;
        for (i, p, s) in &breaches {
            let breach = Breach {
                limit: p.limit,
                key: key.to_owned(),
                scope: p.scope.to_string(),
                storage_key: p.limit.key_for(ids.get(*i).map_or(&[][..], |v| &v[..])),
                description: p.decl.error_message.as_deref().map_or_else(|| p.limit.to_string(), str::to_owned),
                remaining: s.remaining,
                reset_at: s.reset_at,
                retry_at: s.retry_at,
            };
            tracing::info!(key, limit = %p.limit, scope = %p.scope, "rate limit exceeded");
            let hooks = if p.kind == Kind::Meta {
                [shared.on_meta_breach.as_ref(), p.decl.on_breach.as_ref()]
            } else {
                [shared.on_breach.as_ref(), p.decl.on_breach.as_ref()]
            };
            for hook in hooks.into_iter().flatten() {
                if let Some(r) = hook(&breach) {
                    rejection = Some(r);
                }
            }
        }
        if meta_breach.is_none() {
            let breached = breaches.iter().filter(|(_, p, _)| p.kind != Kind::Meta).map(|(_, p, _)| p.decl);
            self.count_meta_breach(request, key, breached, now).await;
        }
        let rejection = rejection.unwrap_or_else(|| {
            // The limit named in the body: the breached one with the shortest window.
            let named = meta_breach
                .copied()
                .or_else(|| breaches.iter().copied().min_by_key(|(_, p, _)| p.limit.granularity().seconds()));
            let (description, violated) = match named {
                Some((_, p, _)) => {
                    (p.decl.error_message.as_deref().map_or_else(|| p.limit.to_string(), str::to_owned), vec![p.limit])
                }
                None => (String::from("rate limit"), Vec::new()),
            };
            too_many_requests(&description, &violated, wants_json(request.header("accept")))
        });
        let mut rejection = rejection;
        rejection.headers.extend(headers(true));
        Decision::new(Verdict::Limited, limits, Vec::new(), Some(rejection), deferred)
    }

    /// Counts a breach against the meta limits (cost 1 each).
    async fn count_meta_breach<'l>(
        &'l self,
        request: &R,
        key: &str,
        breached: impl Iterator<Item = &'l Limit<R>>,
        now: Timestamp,
    ) {
        let shared = &*self.inner;
        let mut meta = SmallVec::new();
        self.push(&mut meta, request, &shared.meta, Kind::Meta, "meta");
        self.push_attached_meta(&mut meta, request, breached);
        if meta.is_empty() {
            return;
        }
        let mut own_keys: SmallVec<[Option<String>; 4]> = SmallVec::new();
        for p in &meta {
            own_keys.push(p.decl.key.as_ref().and_then(|k| k.0.extract(request).ok()));
        }
        let ids: SmallVec<[[&str; 2]; 4]> =
            meta.iter().zip(&own_keys).map(|(p, own)| [own.as_deref().unwrap_or(key), &*p.scope]).collect();
        let items: SmallVec<[Item<'_>; 4]> =
            meta.iter().zip(&ids).map(|(p, ids)| Item::new(p.limit, Key::new(ids))).collect();
        if let Err(e) = self.run(&items, Mode::Sequential { stop_at_first_breach: false }, now).await {
            tracing::warn!(error = %e, "could not count a breach against the meta limits");
        }
    }

    /// Deducts the limits marked `deduct_when` whose predicate accepts the
    /// response. Call it once the response is known; the adapters do.
    pub async fn after_response(&self, decision: &Decision, response: ResponseInfo) {
        let due: Vec<&Deferred> = decision.deferred.iter().filter(|d| (d.when)(&response)).collect();
        if due.is_empty() {
            return;
        }
        let ids: Vec<Vec<&str>> = due.iter().map(|d| d.identifiers.iter().map(String::as_str).collect()).collect();
        let items: Vec<Item<'_>> =
            due.iter().zip(&ids).map(|(d, ids)| Item::new(d.limit, Key::new(ids)).with_cost(d.cost)).collect();
        let now = self.inner.clock.now();
        if let Err(e) = self.run(&items, Mode::Sequential { stop_at_first_breach: false }, now).await {
            tracing::warn!(error = %e, "could not deduct limits after the response");
        }
    }

    fn storage_failure(&self, error: &StorageError, request: &R) -> Decision {
        let shared = &*self.inner;
        match shared.policy {
            FailurePolicy::FailOpen => {
                tracing::warn!(storage = shared.storage.name(), %error, "rate limit storage failed: letting the request through");
                Decision::failed_open()
            }
            FailurePolicy::FailClosed { retry_after } => {
                tracing::error!(storage = shared.storage.name(), %error, "rate limit storage failed: refusing the request");
                let wants = wants_json(request.header("accept"));
                Decision::unavailable(unavailable(Undecided::Storage, retry_after, wants, &shared.headers.retry_after))
            }
            FailurePolicy::InMemoryFallback => {
                // Even the memory fallback failed, which it cannot: let it through.
                tracing::error!(%error, "in-memory fallback failed: letting the request through");
                Decision::failed_open()
            }
        }
    }

    fn key_failure(&self, error: &KeyError, request: &R) -> Decision {
        let shared = &*self.inner;
        // A missing key is usually a server set-up mistake that hits every
        // request: say it loudly once, then quietly.
        if shared.key_error_logged.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::debug!(%error, "no rate limit key for the request");
        } else {
            tracing::error!(%error, "no rate limit key for the request (logged once)");
        }
        let retry_after = match shared.policy {
            FailurePolicy::FailOpen => return Decision::failed_open(),
            FailurePolicy::FailClosed { retry_after } => retry_after,
            FailurePolicy::InMemoryFallback => Duration::from_secs(1),
        };
        let wants = wants_json(request.header("accept"));
        Decision::unavailable(unavailable(Undecided::NoKey, retry_after, wants, &shared.headers.retry_after))
    }
}

/// Limits on a code path that is not a route; see [`Limiter::inline`].
pub struct InlineLimit<R> {
    limiter: Limiter<R>,
    scope: Arc<str>,
    limits: Arc<[RateLimit]>,
}

impl<R> fmt::Debug for InlineLimit<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InlineLimit").field("scope", &self.scope).field("limits", &self.limits).finish()
    }
}

impl<R> Clone for InlineLimit<R> {
    fn clone(&self) -> Self {
        InlineLimit { limiter: self.limiter.clone(), scope: Arc::clone(&self.scope), limits: Arc::clone(&self.limits) }
    }
}

impl<R: RequestInfo + Send + Sync + 'static> InlineLimit<R> {
    /// Counts one attempt for `key`; refused if any limit is used up (and
    /// then, with all-or-nothing semantics, nothing is counted).
    ///
    /// # Errors
    ///
    /// [`StorageError`] if the storage fails: the caller decides, since there
    /// is no HTTP response to fail open or closed.
    pub async fn hit(&self, key: &str) -> Result<Outcome, StorageError> {
        self.run(key, Mode::AllOrNothing).await
    }

    /// Whether an attempt for `key` would pass, counting nothing.
    ///
    /// # Errors
    ///
    /// [`StorageError`] if the storage fails.
    pub async fn test(&self, key: &str) -> Result<Outcome, StorageError> {
        self.run(key, Mode::Peek).await
    }

    /// Forgets `key`'s counters for these limits (after a successful login, say).
    ///
    /// # Errors
    ///
    /// [`StorageError`] if the storage fails.
    pub async fn clear(&self, key: &str) -> Result<(), StorageError> {
        let shared = &*self.limiter.inner;
        let ids = self.identifiers(key);
        for limit in self.limits.iter() {
            shared.storage.clear(shared.strategy, limit, Key::new(&ids)).await?;
        }
        Ok(())
    }

    fn identifiers<'a>(&'a self, key: &'a str) -> Vec<&'a str> {
        let mut ids = Vec::with_capacity(3);
        if let Some(prefix) = &self.limiter.inner.key_prefix {
            ids.push(&**prefix);
        }
        ids.push(key);
        ids.push(&*self.scope);
        ids
    }

    async fn run(&self, key: &str, mode: Mode) -> Result<Outcome, StorageError> {
        let ids = self.identifiers(key);
        let items: Vec<Item<'_>> = self.limits.iter().map(|l| Item::new(*l, Key::new(&ids))).collect();
        let now = self.limiter.inner.clock.now();
        self.limiter.run(&items, mode, now).await
    }
}

fn exempt<R>(decl: &Limit<R>, request: &R) -> bool {
    decl.exempt_when.as_ref().is_some_and(|f| f(request))
}

/// Flask-Limiter's `scope_for`: the endpoint, `endpoint:scope`, or the
/// shared scope; `:METHOD` appended per method.
fn scope_of<'l, R>(decl: &'l Limit<R>, kind: Kind, endpoint: &'l str, method: &str) -> Cow<'l, str> {
    let base: Cow<'l, str> = match (kind, &decl.scope) {
        (Kind::Meta, _) => Cow::Borrowed("meta"),
        (Kind::Application, _) => Cow::Borrowed("global"),
        (_, None) => Cow::Borrowed(endpoint),
        (_, Some(Scope::Fixed(s))) if decl.shared => Cow::Borrowed(&**s),
        (_, Some(Scope::Fixed(s))) => Cow::Owned(format!("{endpoint}:{s}")),
        (_, Some(Scope::Computed(f))) if decl.shared => Cow::Owned(f(endpoint)),
        (_, Some(Scope::Computed(f))) => Cow::Owned(format!("{endpoint}:{}", f(endpoint))),
    };
    if decl.per_method { Cow::Owned(format!("{base}:{}", method.to_ascii_uppercase())) } else { base }
}

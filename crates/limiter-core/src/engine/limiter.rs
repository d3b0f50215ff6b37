//! [`Limiter`]: Flask-Limiter's extension without Flask. It resolves which
//! limits apply to a request, decides them in one storage call, and says
//! what to answer.

use std::borrow::Cow;

use smallvec::SmallVec;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::decision::{Decision, Deferred, Identifiers, RequestLimit, Verdict};
use super::declare::{BreachHook, Cost, Limit, ResponseInfo, Scope, Source};
use super::failure::{FailurePolicy, Health, with_timeout};
use super::key::{BoxedKey, KeyError, KeyExtractor, PeerIp};
use super::metrics;
use super::plan::{Defaults, Plan, Plans};
use super::request::RequestInfo;
use super::resolved::{Resolved, request_independent};
use super::response::{
    Breach, HEADER_NAME_RULE, HeaderSettings, HeaderState, HeaderValues, Rejection, Undecided, is_header_name,
    too_many_requests, unavailable, wants_json,
};
use super::route::{Group, Route};
use crate::clock::{Clock, SystemClock, Timestamp};
use crate::error::{ConfigError, StorageError};
use crate::limit::RateLimit;
use crate::storage::memory::MemoryStorage;
use crate::storage::{
    AnyStorage, Batch, BoxFuture, DynStorage, Item, Key, LimitState, Mode, Outcome, Storage, Supports, not_immediate,
    poll_once,
};
use crate::strategy::StrategyKind;

type Predicate<R> = Arc<dyn Fn(&R) -> bool + Send + Sync>;

/// Sleeps for a duration on the caller's runtime; the core has none of its
/// own, so the web adapters pass tokio's.
pub type Sleeper = Arc<dyn Fn(Duration) -> BoxFuture<'static, ()> + Send + Sync>;

/// What kind of limit an entry is; decides its scope and key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
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
    pub(crate) inner: Arc<Shared<R>>,
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
            .field("shadow", &i.shadow)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Shared<R> {
    enabled: bool,
    pub(crate) strategy: StrategyKind,
    pub(crate) storage: AnyStorage,
    policy: FailurePolicy,
    health: Health,
    fallback_storage: AnyStorage,
    pub(crate) fallback_limits: Vec<Limit<R>>,
    key: BoxedKey<R>,
    pub(crate) key_prefix: Option<Arc<str>>,
    pub(crate) application: Vec<Limit<R>>,
    pub(crate) defaults: Vec<Limit<R>>,
    pub(crate) meta: Vec<Limit<R>>,
    pub(crate) plans: Plans<R>,
    filters: Vec<Predicate<R>>,
    headers: HeaderSettings,
    pub(crate) fail_on_first_breach: bool,
    on_breach: Option<BreachHook>,
    on_meta_breach: Option<BreachHook>,
    pub(crate) clock: Arc<dyn Clock>,
    timeout: Option<(Duration, Sleeper)>,
    key_error_logged: std::sync::atomic::AtomicBool,
    pub(crate) shadow: bool,
    /// The declared routes and groups, as tools show them.
    pub(crate) declared: Declared<R>,
}

/// The routes and groups as declared, kept for [`Limiter::limit_table`].
pub(crate) struct Declared<R> {
    /// Each route's name, paths and exemption.
    pub(crate) routes: Vec<(String, Vec<String>, Option<super::route::Exemption>)>,
    pub(crate) groups: Vec<Group<R>>,
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
    shadow: bool,
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
            shadow: false,
        }
    }
}

impl<R: RequestInfo + Send + Sync + 'static> LimiterBuilder<R> {
    /// Shadow mode for every limit (`RATELIMIT_SHADOW`): limits are
    /// evaluated and counted, breaches are logged and counted, and no
    /// request is ever refused: not for a limit, and, since no limit is
    /// enforced, not for a failing storage or a missing client key either
    /// (the request passes whatever the failure policy; the failure is
    /// logged and counted). See [`Limit::shadow`] for one limit, and what
    /// shadow mode records.
    #[must_use]
    pub fn shadow(mut self, shadow: bool) -> Self {
        self.shadow = shadow;
        self
    }

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
    ///
    /// Either way, as in Flask-Limiter, a breached meta limit refuses
    /// before anything is counted, and on a route with limits of its own a
    /// breached application limit refuses before the route's limits are
    /// counted. Counting every limit, those are separate storage calls: one
    /// more per request when meta limits apply (to test them first), and
    /// one more on such a route when application limits apply.
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
        check_header_names(&self.headers)?;
        for route in &self.routes {
            check_limits(&format!("route {:?}", route.name), &route.limits)?;
        }
        for group in &self.groups {
            check_limits(&format!("group {:?}", group.name), &group.limits)?;
        }
        let declared = Declared {
            routes: self.routes.iter().map(|r| (r.name.clone(), r.paths.clone(), r.exempt)).collect(),
            groups: self
                .groups
                .iter()
                .map(|g| Group {
                    name: g.name.clone(),
                    prefix: g.prefix.clone(),
                    limits: g.limits.clone(),
                    exempt: g.exempt,
                })
                .collect(),
        };
        let plans = Plans::build(self.routes, self.groups)?;
        if self.policy == FailurePolicy::InMemoryFallback {
            metrics::fallback_active(storage.name(), false);
        }
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
                shadow: self.shadow,
                declared,
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

/// The route label of requests that matched no route, in logs and metrics.
pub(crate) const UNMATCHED: &str = "<unmatched>";
/// The route label of a request path the limiter was not told about, when
/// the adapter's routes are the paths themselves.
pub(crate) const UNDECLARED: &str = "<undeclared>";

/// What [`Limiter::conclude`] knows of the request.
struct Context<'a, R> {
    request: &'a R,
    key: &'a str,
    route: Option<&'a str>,
    now: Timestamp,
}

/// A request's route, found before its limits are resolved.
struct Found<'l, R> {
    /// The matched path and its plan.
    plan: Option<(&'l str, &'l Arc<Plan<R>>)>,
    /// The route as metrics and logs name it.
    route: Option<&'l str>,
    /// A request filter exempts the request from everything but the meta
    /// limits.
    filtered: bool,
    /// The storage is down and the in-memory fallback limits apply.
    fallback: bool,
    /// The client key, if already extracted.
    key: Option<String>,
}

/// Why a request needs no storage call.
enum Early<'l> {
    /// No limit applies.
    Exempt,
    /// The client key is missing (with the route, for metrics, and
    /// whether every limit that applies is in shadow mode).
    NoKey(KeyError, Option<&'l str>, bool),
}

/// Breaches to count against the meta limits, after the decision.
struct MetaCount<'l, R> {
    breached: SmallVec<[&'l Limit<R>; 4]>,
    /// Only against meta limits in shadow mode.
    only_shadow: bool,
}

/// The batch items of a request's limits: meta limits and limits deducted
/// after the response are only tested.
fn items_of<'a, 'b: 'a, R>(pending: &[Pending<'_, R>], ids: &'a [Ids<'b>]) -> SmallVec<[Item<'a>; 4]> {
    pending.iter().zip(ids).map(|(p, ids)| item_of(p, ids)).collect()
}

fn item_of<'a, R>(p: &Pending<'_, R>, ids: &'a [&'a str]) -> Item<'a> {
    let item = Item::new(p.limit, Key::new(ids)).with_cost(p.cost);
    if p.kind == Kind::Meta || p.decl.deduct_when.is_some() { item.peek() } else { item }
}

/// Whether two limits' identifiers are equal: by address first, as the
/// limits of one request point at the very same client key and scope.
fn same(a: &[&str], b: &[&str]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| std::ptr::eq(*x, *y) || x == y)
}

/// The stages of a request decided in several storage calls (see
/// [`Limiter::staged`]), in order: meta limits (only tested), then the
/// application limits of a route with limits of its own, then the rest.
const STAGES: [Stage; 3] = [Stage::Meta, Stage::Application, Stage::Rest];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Meta,
    Application,
    Rest,
}

impl Stage {
    fn of<R>(p: &Pending<'_, R>) -> Stage {
        if p.kind == Kind::Meta {
            Stage::Meta
        } else if p.first_pass {
            Stage::Application
        } else {
            Stage::Rest
        }
    }
}

/// A limit evaluated by the storage: its place in the batch, what it was,
/// and its state.
type Evaluated<'p, 'l, R> = (usize, &'p Pending<'l, R>, LimitState);

/// The breach the headers describe: a meta limit's, else the first (or,
/// counting every limit, the last) breach.
fn pick<'e, 'p, 'l, R>(breaches: &[&'e Evaluated<'p, 'l, R>], first: bool) -> Option<&'e Evaluated<'p, 'l, R>> {
    breaches
        .iter()
        .find(|(_, p, _)| p.kind == Kind::Meta)
        .or_else(|| if first { breaches.first() } else { breaches.last() })
        .copied()
}

/// The limit the headers of a request no limit refused describe: the first
/// not shared, else the first, of Flask-Limiter's last pass (the route's
/// own, on a route with limits of its own), else the first of all.
fn shown_unbreached<'p, 'l, R>(
    evaluated: impl Iterator<Item = Evaluated<'p, 'l, R>> + Clone,
) -> Option<Evaluated<'p, 'l, R>> {
    let find = |last_pass: bool, unshared: bool| {
        evaluated
            .clone()
            .find(move |(_, p, _)| p.kind != Kind::Meta && (!last_pass || !p.first_pass) && (!unshared || !p.shared()))
    };
    find(true, true).or_else(|| find(true, false)).or_else(|| find(false, false))
}

/// Whether a limit's scope is the same for every request of its route: a
/// meta or application limit's, or one declared; else it is the endpoint,
/// which on a route without a name is each request's matched path (decided
/// by the declaration: a path may be spelled like another scope, `global`
/// or `meta`).
fn fixed_scope<R>(p: &Pending<'_, R>) -> bool {
    matches!(p.kind, Kind::Meta | Kind::Application) || p.decl.scope.is_some()
}

/// The limits deducted after the response (`deduct_when`), meta limits
/// aside.
fn deferred_of<'p, 'l: 'p, R: 'l>(
    evaluated: impl Iterator<Item = Evaluated<'p, 'l, R>>,
    ids: &[Ids<'_>],
) -> Vec<Deferred> {
    evaluated
        .filter(|(_, p, _)| p.kind != Kind::Meta)
        .filter_map(|(i, p, _)| {
            let when = p.decl.deduct_when.as_ref()?;
            Some(Deferred {
                limit: p.limit,
                identifiers: ids.get(i)?.iter().map(|s| (*s).to_owned()).collect(),
                cost: p.cost,
                when: Arc::clone(when),
            })
        })
        .collect()
}

/// The limits handlers see (meta limits aside), each with its identifiers.
fn request_limits<'p, 'l: 'p, R: 'l>(
    evaluated: impl Iterator<Item = Evaluated<'p, 'l, R>>,
    ids: &[Ids<'_>],
) -> Arc<[RequestLimit]> {
    // One allocation: the list's length is known up front (an `Arc<[_]>`
    // collected from a filter would be built in a `Vec` and copied).
    let listed: SmallVec<[Evaluated<'p, 'l, R>; 4]> = evaluated.filter(|(_, p, _)| p.kind != Kind::Meta).collect();
    limit_list(listed.iter().map(|(i, p, s)| {
        let ids = ids.get(*i).map_or(&[][..], |v| &v[..]);
        (ids, p.limit, *s, p.shared(), p.shadow)
    }))
}

/// The list of limits handlers see, from each limit's identifiers, limit,
/// state and shared and shadow flags. Collected from an iterator of known
/// length: an `Arc<[_]>` then takes one allocation.
fn limit_list<'a>(
    limits: impl Iterator<Item = (&'a [&'a str], RateLimit, LimitState, bool, bool)>,
) -> Arc<[RequestLimit]> {
    // Most limits of a request share their identifiers: copied, not built
    // again.
    let mut last: Option<(&[&str], Identifiers)> = None;
    limits
        .map(|(ids, limit, state, shared, shadow)| {
            let identifiers = match &last {
                Some((last_ids, made)) if same(last_ids, ids) => made.clone(),
                _ => {
                    let made = Identifiers::new(ids);
                    last = Some((ids, made.clone()));
                    made
                }
            };
            RequestLimit::new(limit, identifiers, &state, shared, shadow)
        })
        .collect()
}

/// One limit to evaluate for this request, before storage keys exist.
struct Pending<'l, R> {
    limit: RateLimit,
    decl: &'l Limit<R>,
    kind: Kind,
    scope: Cow<'l, str>,
    cost: u64,
    /// Breaches are recorded, not enforced.
    shadow: bool,
    /// Its key extractor, if not the limiter's: its own, or for a meta
    /// limit attached to another limit, that limit's (Flask-Limiter's
    /// `MetaLimit.limit_by`).
    key: Option<&'l BoxedKey<R>>,
    /// An application limit of a route with limits of its own: Flask-Limiter
    /// decides those in `before_request`, before the route's limits (its
    /// decorator), so they are ordered, and counted, apart.
    first_pass: bool,
}

impl<R> Pending<'_, R> {
    /// Flask-Limiter's `RuntimeLimit.shared`: application and meta limits
    /// are always shared.
    fn shared(&self) -> bool {
        self.decl.shared || matches!(self.kind, Kind::Application | Kind::Meta)
    }
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

    /// Whether every limit is in shadow mode ([`LimiterBuilder::shadow`]).
    pub fn shadow(&self) -> bool {
        self.inner.shadow
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
    /// more only when a breach must be counted against meta limits (and,
    /// with [`fail_on_first_breach(false)`](LimiterBuilder::fail_on_first_breach),
    /// one per stage Flask-Limiter decides apart).
    pub async fn check(&self, request: &R) -> Decision {
        if let Some(decision) = self.check_now(request) {
            return decision;
        }
        let Some(found) = self.find(request) else {
            return Decision::exempt();
        };
        let mut pending = SmallVec::new();
        let (route, key) = match self.begin(request, found, &mut pending) {
            Ok(begun) => begun,
            Err(early) => return self.early(early, request),
        };
        let owned_keys = match self.own_keys(request, &mut pending, &key) {
            Ok(owned) => owned,
            Err(e) => return self.key_failure(&e, request, route, false),
        };
        if pending.is_empty() {
            return Decision::exempt();
        }
        let ids = self.identifiers_of(&pending, &owned_keys, &key);
        let now = self.inner.clock.now();
        let decided = if self.staged(&pending) {
            self.decide_staged(&pending, &ids, now).await
        } else {
            self.run(&items_of(&pending, &ids), self.mode(), now).await
        };
        let outcome = match decided {
            Ok(outcome) => outcome,
            Err(e) => return self.storage_failure(&e, request, route, only_shadow(&pending)),
        };
        let context = Context { request, key: &key, route, now };
        let (decision, meta) = self.conclude(&context, &pending, &ids, &outcome);
        if let Some(meta) = meta {
            self.count_meta_breach(request, &key, meta.breached.into_iter(), now, meta.only_shadow).await;
        }
        decision
    }

    /// Decides `request` at once, without a future, when the storage answers
    /// at once ([`AnyStorage::immediate`]: the memory storage); `None` for a
    /// storage that waits, which [`check`](Self::check) decides. The same
    /// decision as `check`, for adapters that want the allow path to run on
    /// the stack.
    pub fn check_now(&self, request: &R) -> Option<Decision> {
        if !self.inner.storage.immediate() {
            return None;
        }
        let Some(found) = self.find(request) else {
            return Some(Decision::exempt());
        };
        // A key `check_direct` extracted but could not use, so that the key
        // extractor runs once per request.
        let mut extracted = None;
        if let Some(decision) = self.check_direct(request, &found, &mut extracted) {
            return Some(decision);
        }
        let mut pending = SmallVec::new();
        let found = Found { key: extracted, ..found };
        let (route, key) = match self.begin(request, found, &mut pending) {
            Ok(begun) => begun,
            Err(early) => return Some(self.early(early, request)),
        };
        let owned_keys = match self.own_keys(request, &mut pending, &key) {
            Ok(owned) => owned,
            Err(e) => return Some(self.key_failure(&e, request, route, false)),
        };
        if pending.is_empty() {
            return Some(Decision::exempt());
        }
        let ids = self.identifiers_of(&pending, &owned_keys, &key);
        let now = self.inner.clock.now();
        let decided = if self.staged(&pending) {
            // Off the hot path (only without fail_on_first_breach); the
            // storage answers at once.
            poll_once(self.decide_staged(&pending, &ids, now))
                .unwrap_or_else(|| Err(not_immediate(self.inner.storage.name())))
        } else {
            self.run_now(&items_of(&pending, &ids), self.mode(), now)
        };
        let outcome = match decided {
            Ok(outcome) => outcome,
            Err(e) => return Some(self.storage_failure(&e, request, route, only_shadow(&pending))),
        };
        let context = Context { request, key: &key, route, now };
        Some(self.conclude_now(&context, &pending, &ids, &outcome))
    }

    /// What deciding `pending`, a recorded resolution, directly takes (see
    /// [`Direct`](super::resolved::Direct)); `None` when a limit needs the
    /// general path: a meta limit (only tested), a key of its own, a
    /// `deduct_when`, shadow mode, an empty scope, or a pass of its own
    /// (application limits decided apart when counting every limit).
    fn direct_of(&self, pending: &[Pending<'_, R>]) -> Option<super::resolved::Direct> {
        let shared = &*self.inner;
        let plain = |p: &Pending<'_, R>| {
            p.kind != Kind::Meta
                && p.key.is_none()
                && p.decl.deduct_when.is_none()
                && !p.shadow
                // The endpoint is each request's, checked per request.
                && !(fixed_scope(p) && p.scope.is_empty())
                && (shared.fail_on_first_breach || !p.first_pass)
        };
        if pending.is_empty() || !pending.iter().all(plain) {
            return None;
        }
        // The choice reads only the limits, not their states.
        let any_state = LimitState::allowed(0, Timestamp::from_secs(0));
        let shown = shown_unbreached(pending.iter().enumerate().map(|(i, p)| (i, p, any_state)))?.0;
        let policies = shared.headers.ietf.then(|| pending.iter().map(|p| p.limit).collect());
        Some(super::resolved::Direct { shown, policies })
    }

    /// A request of a route whose recorded resolution allows it (see
    /// [`Direct`](super::resolved::Direct)): the storage decides the
    /// recorded limits, and an allowed request is answered without the
    /// general resolution and conclusion (a refused one is concluded from
    /// the replayed resolution, as usual). `None` when that does not apply:
    /// the caller then decides as usual.
    fn check_direct(&self, request: &R, found: &Found<'_, R>, extracted: &mut Option<String>) -> Option<Decision> {
        let shared = &*self.inner;
        let (Some((path, plan)), Some(route), false, false) = (found.plan, found.route, found.filtered, found.fallback)
        else {
            return None;
        };
        let (Some(Some(direct)), Some(Some(resolved))) = (plan.direct.get(), plan.resolved.get()) else {
            return None;
        };
        let endpoint = plan.endpoint(path);
        // An empty scope or key: the usual path skips the limits, and says so.
        if endpoint.is_empty() {
            return None;
        }
        let key = match shared.key.0.extract(request) {
            Ok(key) if key.is_empty() => {
                *extracted = Some(key);
                return None;
            }
            Ok(key) => key,
            // No limit here is in shadow mode.
            Err(e) => return Some(self.key_failure(&e, request, Some(route), false)),
        };
        let prefix = shared.key_prefix.as_deref();
        let ids: SmallVec<[Ids<'_>; 4]> = resolved
            .iter()
            .map(|r| identifiers(prefix, r.kind, &key, r.scope.as_deref().unwrap_or(endpoint)))
            .collect();
        let items: SmallVec<[Item<'_>; 4]> =
            resolved.iter().zip(&ids).map(|(r, ids)| Item::new(r.limit, Key::new(ids)).with_cost(r.cost)).collect();
        let now = shared.clock.now();
        let outcome = match self.run_now(&items, self.mode(), now) {
            Ok(outcome) => outcome,
            Err(e) => return Some(self.storage_failure(&e, request, Some(route), false)),
        };
        if !outcome.allows_all(resolved.len()) {
            let mut pending = SmallVec::new();
            self.replay(plan, resolved, endpoint, &mut pending);
            let context = Context { request, key: &key, route: Some(route), now };
            return Some(self.conclude_now(&context, &pending, &ids, &outcome));
        }
        // Every state is there (checked above); the fallback is never taken,
        // and keeps the list's length known, so that it takes one allocation.
        let states = outcome.states();
        let state_of =
            |r: &Resolved, s: &Option<LimitState>| s.unwrap_or_else(|| LimitState::allowed(r.limit.amount(), now));
        let listed = resolved.iter().zip(&ids).zip(states);
        let limits = limit_list(listed.map(|((r, ids), s)| (&ids[..], r.limit, state_of(r, s), r.shared, false)));
        let shown = resolved.get(direct.shown).zip(states.get(direct.shown)).map(|(r, s)| (r, state_of(r, s)));
        let headers = shown
            .filter(|_| shared.headers.sends_any())
            .map(|(r, s)| HeaderState::new(HeaderValues::of(r.limit, &s), false, now, direct.policies.clone()));
        Some(self.allowed(&key, Some(route), limits, shown.map(|(r, _)| &r.limit), headers, Vec::new()))
    }

    /// An allowed request's decision, logged and counted. Inlined: out of
    /// line it cost a call and moves on the hot path (callgrind).
    #[inline(always)]
    fn allowed(
        &self,
        key: &str,
        route: Option<&str>,
        limits: Arc<[RequestLimit]>,
        shown: Option<&RateLimit>,
        headers: Option<HeaderState>,
        deferred: Vec<Deferred>,
    ) -> Decision {
        tracing::debug!(key, limits = limits.len(), "rate limit passed");
        metrics::decision(route, shown, metrics::ALLOWED);
        Decision::new(Verdict::Allowed, limits, headers, None, deferred)
    }

    /// [`conclude`](Self::conclude) for a storage that answers at once:
    /// a breach is counted against the meta limits right away.
    fn conclude_now(
        &self,
        cx: &Context<'_, R>,
        pending: &[Pending<'_, R>],
        ids: &[Ids<'_>],
        outcome: &Outcome,
    ) -> Decision {
        let (decision, meta) = self.conclude(cx, pending, ids, outcome);
        if let Some(meta) = meta {
            // A breach, so off the hot path; the storage answers at once.
            let count = self.count_meta_breach(cx.request, cx.key, meta.breached.into_iter(), cx.now, meta.only_shadow);
            if poll_once(count).is_none() {
                tracing::warn!("could not count a breach against the meta limits: the storage did not answer at once");
            }
        }
        decision
    }

    /// Everything before the storage: the limits that apply and the client
    /// key, or why no storage call is needed.
    #[allow(clippy::type_complexity)]
    fn begin<'l>(
        &'l self,
        request: &'l R,
        found: Found<'l, R>,
        pending: &mut SmallVec<[Pending<'l, R>; 4]>,
    ) -> Result<(Option<&'l str>, String), Early<'l>> {
        self.resolve(request, found.plan, found.filtered, found.fallback, pending);
        if pending.is_empty() {
            return Err(Early::Exempt);
        }
        match found.key.map_or_else(|| self.inner.key.0.extract(request), Ok) {
            Ok(key) => Ok((found.route, key)),
            Err(e) => Err(Early::NoKey(e, found.route, only_shadow(pending))),
        }
    }

    /// The request's route and how its limits are resolved; `None` when
    /// limiting is off.
    #[inline]
    fn find<'l>(&'l self, request: &'l R) -> Option<Found<'l, R>> {
        let shared = &*self.inner;
        if !shared.enabled {
            return None;
        }
        let plan = request.route().map(|path| (path, shared.plans.for_path(path)));
        // The route as metrics and logs name it: from the configuration or
        // a route template, never a path the client chose.
        let route = plan.map(|(path, plan)| match plan.name.as_deref() {
            Some(name) => name,
            None if request.route_is_template() => path,
            None => UNDECLARED,
        });
        Some(Found {
            plan,
            route,
            key: None,
            filtered: shared.filters.iter().any(|f| f(request)),
            fallback: shared.health.use_fallback(&shared.policy) && !shared.fallback_limits.is_empty(),
        })
    }

    /// The decision on a request decided before the storage.
    fn early(&self, early: Early<'_>, request: &R) -> Decision {
        match early {
            Early::Exempt => Decision::exempt(),
            Early::NoKey(e, route, shadow_only) => self.key_failure(&e, request, route, shadow_only),
        }
    }

    /// How a request's batch runs.
    fn mode(&self) -> Mode {
        Mode::Sequential { stop_at_first_breach: self.inner.fail_on_first_breach }
    }

    /// Whether the request is decided in stages, one storage call each.
    /// Flask-Limiter refuses at the first breached meta limit, and at the
    /// end of its `before_request` pass (the application limits of a route
    /// with limits of its own) if it breached anything, before counting
    /// anything further. Stopping at the first breach, one sequential batch
    /// in that order does the same; counting every limit
    /// (`fail_on_first_breach(false)`) it would count the later stages too,
    /// so each stage is its own call, and the next runs only if no enforced
    /// limit of this one refused.
    fn staged(&self, pending: &[Pending<'_, R>]) -> bool {
        !self.inner.fail_on_first_breach && pending.iter().any(|p| Stage::of(p) != Stage::Rest)
    }

    /// Decides `pending` stage by stage (see [`staged`](Self::staged)): the
    /// outcome has an entry per limit, `None` for stages not reached.
    async fn decide_staged(
        &self,
        pending: &[Pending<'_, R>],
        ids: &[Ids<'_>],
        now: Timestamp,
    ) -> Result<Outcome, StorageError> {
        let mut states: SmallVec<[Option<LimitState>; 4]> = pending.iter().map(|_| None).collect();
        for stage in STAGES {
            let picked: SmallVec<[usize; 4]> =
                pending.iter().enumerate().filter(|(_, p)| Stage::of(p) == stage).map(|(i, _)| i).collect();
            let items: SmallVec<[Item<'_>; 4]> =
                picked.iter().filter_map(|&i| Some(item_of(pending.get(i)?, ids.get(i)?))).collect();
            if items.is_empty() {
                continue;
            }
            // Meta limits are only tested, Flask-Limiter's `test`.
            let mode = if stage == Stage::Meta { Mode::Peek } else { self.mode() };
            let outcome = self.run(&items, mode, now).await?;
            let mut refused = false;
            for (j, &i) in picked.iter().enumerate() {
                let state = outcome.get(j).copied();
                refused |= state.is_some_and(|s| !s.allowed) && pending.get(i).is_some_and(|p| !p.shadow);
                if let Some(slot) = states.get_mut(i) {
                    *slot = state;
                }
            }
            if refused {
                break;
            }
        }
        let mut outcome = Outcome::with_capacity(states.len());
        for state in states {
            outcome.push(state);
        }
        Ok(outcome)
    }

    /// Collects the limits that apply, Flask-Limiter's way: meta limits
    /// first (tested only), then application, route and group, and default
    /// limits sorted by window length; on a route with limits of its own the
    /// application limits come first, sorted apart (Flask-Limiter decides
    /// them in `before_request`, and the route's in its decorator).
    fn resolve<'l>(
        &'l self,
        request: &R,
        plan: Option<(&'l str, &'l Arc<Plan<R>>)>,
        filtered: bool,
        fallback: bool,
        pending: &mut SmallVec<[Pending<'l, R>; 4]>,
    ) {
        // A route's resolution is recorded from its first request and then
        // copied, when nothing of it depends on the request (see
        // `resolved`); filtered requests and the fallback resolve apart.
        let recordable = match plan {
            Some((path, plan)) if !filtered && !fallback => Some((plan.endpoint(path), plan)),
            _ => None,
        };
        if let Some((endpoint, plan)) = recordable
            && let Some(Some(resolved)) = plan.resolved.get()
        {
            self.replay(plan, resolved, endpoint, pending);
            return;
        }
        self.resolve_declared(request, plan, filtered, fallback, pending);
        if let Some((_, plan)) = recordable
            && plan.resolved.get().is_none()
        {
            // Another thread may have recorded the same list meanwhile.
            let recorded = self.record(plan, pending);
            let direct = recorded.as_ref().and_then(|_| self.direct_of(pending));
            let _ = plan.direct.set(direct);
            let _ = plan.resolved.set(recorded);
        }
    }

    /// The resolution of a request's limits by their declarations.
    fn resolve_declared<'l>(
        &'l self,
        request: &R,
        plan: Option<(&'l str, &'l Arc<Plan<R>>)>,
        filtered: bool,
        fallback: bool,
        pending: &mut SmallVec<[Pending<'l, R>; 4]>,
    ) {
        let shared = &*self.inner;
        let check_meta = plan.is_none_or(|(_, p)| p.meta);
        // The regular limits go straight into `pending` (a list of four is
        // some 300 bytes to move); meta limits, rare, are put in front after.
        let regular = pending;
        if let Some((path, plan)) = plan
            && !filtered
        {
            let endpoint: &'l str = plan.endpoint(path);
            // Flask-Limiter orders by window unit only (multiples ignored), stably.
            let by_window = |p: &Pending<'l, R>| p.limit.granularity().seconds();
            if fallback {
                self.push(regular, request, &shared.fallback_limits, Kind::Fallback, endpoint, false);
                regular.sort_by_key(by_window);
            } else {
                if plan.application {
                    self.push(regular, request, &shared.application, Kind::Application, "global", false);
                }
                // A route with limits of its own (a decorated view) is
                // decided in two passes: the application limits in
                // `before_request`, then the route's and the defaults.
                if plan.decorated {
                    for p in regular.iter_mut() {
                        p.first_pass = true;
                    }
                }
                // Only what applies to the method, and yields limits, keeps
                // the defaults away: a method mismatch or a dynamic limit
                // returning none brings them back, exempt_when does not.
                let own_apply = self.push(regular, request, &plan.own, Kind::Route, endpoint, false);
                if plan.defaults == Defaults::Always || (plan.defaults == Defaults::IfOwnInapplicable && !own_apply) {
                    self.push(regular, request, &shared.defaults, Kind::Default, endpoint, false);
                }
                // Stable; the first pass ahead, sorted on its own. Usually
                // sorted already (the defaults, shortest window first).
                let order = |p: &Pending<'l, R>| (!p.first_pass, by_window(p));
                if !regular.is_sorted_by_key(order) {
                    regular.sort_by_key(order);
                }
            }
        }
        // Meta limits go first, tested only: a client over them is refused
        // before anything else is counted.
        if check_meta {
            let mut meta = SmallVec::new();
            self.push(&mut meta, request, &shared.meta, Kind::Meta, "meta", false);
            self.push_attached_meta(&mut meta, request, regular.iter().map(|p| p.decl));
            if !meta.is_empty() {
                regular.insert_many(0, meta);
            }
        }
        let pending = regular;
        // Shadow limits go after the enforced ones (stably), so that a
        // shadow breach never stops the storage before an enforced limit
        // is counted: the enforced limits count as if the shadow ones were
        // not there.
        if pending.iter().any(|p| p.shadow) && !pending.iter().all(|p| p.shadow) {
            pending.sort_by_key(|p| p.shadow);
        }
    }

    /// The declarations of `kind` that apply on `plan`'s route.
    fn declarations<'l>(&'l self, kind: Kind, plan: &'l Plan<R>) -> &'l [Limit<R>] {
        let shared = &*self.inner;
        match kind {
            Kind::Meta => &shared.meta,
            Kind::Application => &shared.application,
            Kind::Default => &shared.defaults,
            Kind::Route => &plan.own,
            Kind::Fallback => &shared.fallback_limits,
        }
    }

    /// `pending` as resolved on `plan`'s route, to reuse on later requests;
    /// `None` if another request could resolve otherwise.
    fn record(&self, plan: &Plan<R>, pending: &[Pending<'_, R>]) -> Option<Box<[Resolved]>> {
        let shared = &*self.inner;
        let lists = [
            plan.application.then_some(&shared.application),
            Some(&plan.own),
            Some(&shared.defaults),
            plan.meta.then_some(&shared.meta),
        ];
        if !lists.into_iter().flatten().flatten().all(request_independent) {
            return None;
        }
        pending
            .iter()
            .map(|p| {
                let index = self.declarations(p.kind, plan).iter().position(|d| std::ptr::eq(d, p.decl))?;
                // Otherwise the endpoint, each request's own.
                let scope = if fixed_scope(p) { Some(Box::from(&*p.scope)) } else { None };
                Some(Resolved {
                    kind: p.kind,
                    index,
                    limit: p.limit,
                    scope,
                    cost: p.cost,
                    shadow: p.shadow,
                    shared: p.shared(),
                    first_pass: p.first_pass,
                })
            })
            .collect()
    }

    /// Fills `pending` from a recorded resolution.
    fn replay<'l>(
        &'l self,
        plan: &'l Plan<R>,
        resolved: &'l [Resolved],
        endpoint: &'l str,
        pending: &mut SmallVec<[Pending<'l, R>; 4]>,
    ) {
        for r in resolved {
            let Some(decl) = self.declarations(r.kind, plan).get(r.index) else {
                continue;
            };
            pending.push(Pending {
                limit: r.limit,
                decl,
                kind: r.kind,
                scope: Cow::Borrowed(r.scope.as_deref().unwrap_or(endpoint)),
                cost: r.cost,
                shadow: r.shadow,
                key: decl.key.as_deref(),
                first_pass: r.first_pass,
            });
        }
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
            let start = pending.len();
            self.push(pending, request, &decl.meta, Kind::Meta, "meta", decl.shadow);
            // Without a key of its own, a meta limit counts by its parent's.
            for p in pending.iter_mut().skip(start) {
                p.key = p.key.or(decl.key.as_deref());
            }
        }
    }

    /// Adds the limits of `decls` that apply to the request; returns whether
    /// any declaration applies to its method and yields limits, exempt or
    /// not (Flask-Limiter's "decorated limits" that keep defaults away).
    fn push<'l>(
        &self,
        pending: &mut SmallVec<[Pending<'l, R>; 4]>,
        request: &R,
        decls: &'l [Limit<R>],
        kind: Kind,
        endpoint: &'l str,
        shadow_parent: bool,
    ) -> bool {
        let method = request.method();
        let shadow_all = self.inner.shadow || shadow_parent;
        let mut found = false;
        for decl in decls {
            if !decl.applies_to_method(method) {
                continue;
            }
            // As Flask-Limiter, compute dynamic limits before exempt_when.
            let limits: Cow<'l, [RateLimit]> = match &decl.source {
                Source::Static(Ok(limits)) => Cow::Borrowed(&**limits),
                Source::Static(Err(_)) => continue,
                Source::Dynamic(f) => Cow::Owned(f(request)),
            };
            found |= !limits.is_empty();
            if limits.is_empty() || exempt(decl, request) {
                continue;
            }
            let cost = match &decl.cost {
                Cost::Fixed(n) => *n,
                Cost::Computed(f) => f(request),
            };
            let scope = scope_of(decl, kind, endpoint, method);
            for limit in limits.iter() {
                pending.push(Pending {
                    limit: *limit,
                    decl,
                    kind,
                    scope: scope.clone(),
                    cost,
                    shadow: shadow_all || decl.shadow,
                    key: decl.key.as_deref(),
                    first_pass: false,
                });
            }
        }
        found
    }

    /// The keys of limits counted by their own key extractor (or, for an
    /// attached meta limit, its parent's). A limit in shadow mode whose key
    /// is missing is dropped, uncounted: shadow limits never refuse, not
    /// even for want of a key. A limit other than a meta limit whose key
    /// (`key`, the limiter's, when it has none of its own) or scope is
    /// empty is dropped too, with an error, as Flask-Limiter skips it.
    fn own_keys(
        &self,
        request: &R,
        pending: &mut SmallVec<[Pending<'_, R>; 4]>,
        key: &str,
    ) -> Result<SmallVec<[Option<String>; 4]>, KeyError> {
        let mut owned_keys: SmallVec<[Option<String>; 4]> = SmallVec::new();
        // Usually every limit counts by the limiter's key: nothing to extract.
        if pending.iter().all(|p| p.key.is_none()) {
            if !key.is_empty() && pending.iter().all(|p| !p.scope.is_empty()) {
                return Ok(owned_keys);
            }
            pending.retain(|p| !skipped(p, key));
            return Ok(owned_keys);
        }
        let mut error = None;
        pending.retain(|p| match p.key {
            None if skipped(p, key) => false,
            None => {
                owned_keys.push(None);
                true
            }
            Some(k) => match k.0.extract(request) {
                Ok(own) if skipped(p, &own) => false,
                Ok(own) => {
                    owned_keys.push(Some(own));
                    true
                }
                Err(e) if p.shadow => {
                    tracing::debug!(error = %e, limit = %p.limit, "no key for a limit in shadow mode: not counted");
                    false
                }
                Err(e) => {
                    error.get_or_insert(e);
                    owned_keys.push(None);
                    true
                }
            },
        });
        match error {
            Some(e) => Err(e),
            None => Ok(owned_keys),
        }
    }

    /// Each limit's storage identifiers: `[prefix] + [client, scope]`; meta
    /// limits skip the prefix. `owned_keys` is empty when no limit has a
    /// key of its own.
    fn identifiers_of<'a>(
        &'a self,
        pending: &'a [Pending<'_, R>],
        owned_keys: &'a [Option<String>],
        key: &'a str,
    ) -> SmallVec<[Ids<'a>; 4]> {
        let prefix = self.inner.key_prefix.as_deref();
        pending
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let own = owned_keys.get(i).and_then(Option::as_deref);
                identifiers(prefix, p.kind, own.unwrap_or(key), &p.scope)
            })
            .collect()
    }

    /// Runs a batch on the storage, or on the memory fallback while the
    /// storage is down, switching over on failure if so configured.
    async fn run(&self, items: &[Item<'_>], mode: Mode, now: Timestamp) -> Result<Outcome, StorageError> {
        let shared = &*self.inner;
        let batch = Batch { items, mode, now };
        let name = shared.storage.name();
        if shared.health.use_fallback(&shared.policy) {
            if shared.health.probe_due(now) {
                let timer = metrics::Timer::start();
                let check = with_timeout(shared.storage.check(), shared.timeout.as_ref()).await;
                timer.finish(name, "check", &check);
                shared.health.probed(check.is_ok(), now);
                if check.is_ok() {
                    metrics::fallback_active(name, false);
                }
            }
            if shared.health.use_fallback(&shared.policy) {
                return shared.fallback_storage.decide(shared.strategy, &batch).await;
            }
        }
        let timer = metrics::Timer::start();
        let result = with_timeout(shared.storage.decide(shared.strategy, &batch), shared.timeout.as_ref()).await;
        timer.finish(name, "decide", &result);
        match result {
            Ok(outcome) => Ok(outcome),
            Err(e) if shared.policy == FailurePolicy::InMemoryFallback => {
                tracing::warn!(storage = name, error = %e,
                    "rate limit storage unreachable - falling back to in-memory storage");
                shared.health.failed(now);
                metrics::fallback_active(name, true);
                shared.fallback_storage.decide(shared.strategy, &batch).await
            }
            Err(e) => Err(e),
        }
    }

    /// [`run`](Self::run) for a storage that answers at once: no future
    /// is kept. Only the fallback's rare probes go through `run`.
    fn run_now(&self, items: &[Item<'_>], mode: Mode, now: Timestamp) -> Result<Outcome, StorageError> {
        let shared = &*self.inner;
        let name = shared.storage.name();
        if shared.health.use_fallback(&shared.policy) {
            return poll_once(self.run(items, mode, now)).unwrap_or_else(|| Err(not_immediate(name)));
        }
        let batch = Batch { items, mode, now };
        let timer = metrics::Timer::start();
        let result = shared.storage.decide_now(shared.strategy, &batch).unwrap_or_else(|| Err(not_immediate(name)));
        timer.finish(name, "decide", &result);
        match result {
            Err(e) if shared.policy == FailurePolicy::InMemoryFallback => {
                tracing::warn!(storage = name, error = %e,
                    "rate limit storage unreachable - falling back to in-memory storage");
                shared.health.failed(now);
                metrics::fallback_active(name, true);
                let fallback = shared.fallback_storage.decide_now(shared.strategy, &batch);
                fallback.unwrap_or_else(|| Err(not_immediate(shared.fallback_storage.name())))
            }
            other => other,
        }
    }

    /// What the storage's answer means: the decision, and the breaches to
    /// count against the meta limits, if any (the caller makes that second
    /// storage call, awaiting it or not).
    fn conclude<'p, 'l>(
        &self,
        cx: &Context<'_, R>,
        pending: &'p [Pending<'l, R>],
        ids: &[Ids<'_>],
        outcome: &Outcome,
    ) -> (Decision, Option<MetaCount<'l, R>>) {
        let shared = &*self.inner;
        let (request, key, route, now) = (cx.request, cx.key, cx.route, cx.now);
        if let Some(decision) = self.all_allowed(cx, pending, ids, outcome) {
            return (decision, None);
        }
        let evaluated: SmallVec<[Evaluated<'p, 'l, R>; 4]> =
            pending.iter().enumerate().filter_map(|(i, p)| outcome.get(i).map(|s| (i, p, *s))).collect();
        let breached = |shadow: bool| -> SmallVec<[&Evaluated<'p, 'l, R>; 4]> {
            evaluated.iter().filter(|(_, p, s)| !s.allowed && p.shadow == shadow).collect()
        };
        let mut breaches = breached(false);
        let shadow_breaches = breached(true);
        // A breached meta limit refuses at once, as Flask-Limiter raises at
        // its first: only that breach is answered.
        let meta_breach = breaches.iter().copied().find(|(_, p, _)| p.kind == Kind::Meta);
        if let Some(meta) = meta_breach {
            breaches = SmallVec::from_iter([meta]);
        }
        // Flask-Limiter defers the limits its loop reached (it stops at the
        // first breach), and none when a meta limit refused before the loop.
        let deferred = if meta_breach.is_none() { deferred_of(evaluated.iter().copied(), ids) } else { Vec::new() };
        let limits = request_limits(evaluated.iter().copied(), ids);
        // The limit the headers describe, picked as enforcement picks it:
        // among the enforced breaches, else among the shadow ones (so that
        // shadow mode shows what enforcing would show); else as on an
        // allowed request.
        let first = shared.fail_on_first_breach;
        let shown = pick(&breaches, first)
            .or_else(|| pick(&shadow_breaches, first))
            .copied()
            .or_else(|| shown_unbreached(evaluated.iter().copied()));
        let header_state = |limited: bool| self.header_state(shown, limited, now, evaluated.iter().copied());
        let shown_limit = shown.map(|(_, p, _)| &p.limit);
        for (_, p, _) in &shadow_breaches {
            tracing::warn!(key, limit = %p.limit, route = route.unwrap_or(UNMATCHED), scope = %p.scope,
                "rate limit exceeded in shadow mode: the request passes");
            metrics::breach(route, &p.limit, true);
        }
        if breaches.is_empty() {
            if shadow_breaches.is_empty() {
                return (self.allowed(key, route, limits, shown_limit, header_state(false), deferred), None);
            }
            // As enforcing would, count the breach against the meta limits,
            // but only those in shadow mode: counting it against enforced
            // meta limits would refuse real requests.
            let meta = (!shadow_breaches.iter().any(|(_, p, _)| p.kind == Kind::Meta)).then(|| MetaCount {
                breached: shadow_breaches
                    .iter()
                    .filter(|(_, p, _)| p.kind != Kind::Meta)
                    .map(|(_, p, _)| p.decl)
                    .collect(),
                only_shadow: true,
            });
            metrics::decision(route, shown_limit, metrics::SHADOW_LIMITED);
            let decision =
                Decision::new(Verdict::Allowed, limits, header_state(false), None, deferred).mark_shadow_limited();
            return (decision, meta);
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
            tracing::info!(key, limit = %p.limit, route = route.unwrap_or(UNMATCHED), scope = %p.scope,
                "rate limit exceeded");
            metrics::breach(route, &p.limit, false);
            // A meta limit's own hook replaces `on_meta_breach` (Flask-Limiter's
            // `lim.on_breach or on_meta_breach`); other limits call both.
            let hooks = if p.kind == Kind::Meta {
                [p.decl.on_breach.as_ref().or(shared.on_meta_breach.as_ref()), None]
            } else {
                [shared.on_breach.as_ref(), p.decl.on_breach.as_ref()]
            };
            for hook in hooks.into_iter().flatten() {
                if let Some(r) = hook(&breach) {
                    rejection = Some(r);
                }
            }
        }
        let meta = meta_breach.is_none().then(|| MetaCount {
            breached: breaches.iter().filter(|(_, p, _)| p.kind != Kind::Meta).map(|(_, p, _)| p.decl).collect(),
            only_shadow: false,
        });
        let rejection = rejection.unwrap_or_else(|| {
            // The limit named in the body: the breached one with the shortest window.
            let named = meta_breach
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
        if let Some(state) = header_state(true) {
            rejection.append_limiter_headers(state.render(&shared.headers), &shared.headers.retry_after, now);
        }
        metrics::decision(route, shown_limit, metrics::LIMITED);
        let decision = Decision::new(Verdict::Limited, limits, None, Some(rejection), deferred);
        let decision = if shadow_breaches.is_empty() { decision } else { decision.mark_shadow_limited() };
        (decision, meta)
    }

    /// The decision when every limit allowed the request, none in shadow
    /// mode breached, and every limit was evaluated: the common case, without
    /// the breach lists; `None` otherwise.
    fn all_allowed(
        &self,
        cx: &Context<'_, R>,
        pending: &[Pending<'_, R>],
        ids: &[Ids<'_>],
        outcome: &Outcome,
    ) -> Option<Decision> {
        if !outcome.allows_all(pending.len()) {
            return None;
        }
        let states = outcome.states();
        let evaluated = || pending.iter().zip(states).enumerate().filter_map(|(i, (p, s))| Some((i, p, (*s)?)));
        let limits = request_limits(evaluated(), ids);
        let shown = shown_unbreached(evaluated());
        let headers = self.header_state(shown, false, cx.now, evaluated());
        let deferred = deferred_of(evaluated(), ids);
        Some(self.allowed(cx.key, cx.route, limits, shown.map(|(_, p, _)| &p.limit), headers, deferred))
    }

    /// The headers' state for the limit `shown`; `None` when the limiter
    /// sends no headers at all.
    fn header_state<'p, 'l: 'p>(
        &self,
        shown: Option<Evaluated<'p, 'l, R>>,
        limited: bool,
        now: Timestamp,
        evaluated: impl Iterator<Item = Evaluated<'p, 'l, R>>,
    ) -> Option<HeaderState> {
        let settings = &self.inner.headers;
        if !settings.sends_any() {
            return None;
        }
        let (_, p, s) = shown?;
        let values = HeaderValues::of(p.limit, &s);
        let policies = settings
            .ietf
            .then(|| evaluated.filter(|(_, p, _)| p.kind != Kind::Meta).map(|(_, p, _)| p.limit).collect());
        Some(HeaderState::new(values, limited, now, policies))
    }

    /// Counts a breach against the meta limits (cost 1 each); with
    /// `only_shadow`, only against those in shadow mode.
    async fn count_meta_breach<'l>(
        &'l self,
        request: &R,
        key: &str,
        breached: impl Iterator<Item = &'l Limit<R>>,
        now: Timestamp,
        only_shadow: bool,
    ) {
        let shared = &*self.inner;
        let mut meta = SmallVec::new();
        self.push(&mut meta, request, &shared.meta, Kind::Meta, "meta", false);
        self.push_attached_meta(&mut meta, request, breached);
        if only_shadow {
            meta.retain(|p| p.shadow);
        }
        if meta.is_empty() {
            return;
        }
        let mut own_keys: SmallVec<[Option<String>; 4]> = SmallVec::new();
        for p in &meta {
            own_keys.push(p.key.and_then(|k| k.0.extract(request).ok()));
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

    /// The decision when the storage failed; `shadow_only`: every limit
    /// that applied is in shadow mode, so the request passes whatever the
    /// failure policy.
    fn storage_failure(&self, error: &StorageError, request: &R, route: Option<&str>, shadow_only: bool) -> Decision {
        let decision = if shadow_only {
            tracing::warn!(storage = self.inner.storage.name(), %error,
                "rate limit storage failed: only limits in shadow mode apply, letting the request through");
            Decision::failed_open()
        } else {
            self.storage_failure_decision(error, request)
        };
        let outcome = if decision.is_allowed() { metrics::FAILED_OPEN } else { metrics::UNAVAILABLE };
        metrics::decision(route, None, outcome);
        decision
    }

    fn storage_failure_decision(&self, error: &StorageError, request: &R) -> Decision {
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

    /// The decision when the client key is missing; `shadow_only` as for
    /// [`storage_failure`](Self::storage_failure).
    fn key_failure(&self, error: &KeyError, request: &R, route: Option<&str>, shadow_only: bool) -> Decision {
        let decision = self.key_failure_decision(error, request, shadow_only);
        let outcome = if decision.is_allowed() { metrics::FAILED_OPEN } else { metrics::UNAVAILABLE };
        metrics::decision(route, None, outcome);
        decision
    }

    fn key_failure_decision(&self, error: &KeyError, request: &R, shadow_only: bool) -> Decision {
        let shared = &*self.inner;
        // A missing key is usually a server set-up mistake that hits every
        // request: say it loudly once, then quietly.
        if shared.key_error_logged.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::debug!(%error, "no rate limit key for the request");
        } else {
            tracing::error!(%error, "no rate limit key for the request (logged once)");
        }
        if shadow_only {
            return Decision::failed_open();
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

/// The header names the limiter sends must be header names: one that is
/// not would be dropped from every response without a word.
fn check_header_names(settings: &HeaderSettings) -> Result<(), ConfigError> {
    let sent = match (settings.enabled, settings.ietf) {
        (false, false) => return Ok(()),
        (true, false) => &settings.names()[..4],
        (false, true) => &settings.names()[4..],
        (true, true) => &settings.names()[..],
    };
    match sent.iter().find(|name| !is_header_name(name)) {
        Some(name) => Err(ConfigError::InvalidOption {
            option: "header names (LimiterBuilder::headers)",
            value: name.to_string(),
            fix: format!("use {HEADER_NAME_RULE}"),
        }),
        None => Ok(()),
    }
}

/// Flask-Limiter's "Skipping limit: ... Empty value found in parameters":
/// a limit other than a meta limit with an empty key or scope is not
/// counted (meta limits are, even so).
fn skipped<R>(p: &Pending<'_, R>, key: &str) -> bool {
    let skip = p.kind != Kind::Meta && (key.is_empty() || p.scope.is_empty());
    if skip {
        tracing::error!(limit = %p.limit, scope = %p.scope, "skipping a rate limit: its key or scope is empty");
    }
    skip
}

/// Whether every limit that applies is in shadow mode (and none is
/// enforced): then no failure may refuse the request.
fn only_shadow<R>(pending: &[Pending<'_, R>]) -> bool {
    !pending.is_empty() && pending.iter().all(|p| p.shadow)
}

fn exempt<R>(decl: &Limit<R>, request: &R) -> bool {
    decl.exempt_when.as_ref().is_some_and(|f| f(request))
}

/// Flask-Limiter's `scope_for`: the endpoint, `endpoint:scope`, or the
/// shared scope; `:METHOD` appended per method.
fn scope_of<'l, R>(decl: &'l Limit<R>, kind: Kind, endpoint: &'l str, method: &str) -> Cow<'l, str> {
    method_scope(base_scope(decl, kind, endpoint), decl.per_method, method)
}

/// `base:METHOD` for limits counted per method.
pub(crate) fn method_scope<'l>(base: Cow<'l, str>, per_method: bool, method: &str) -> Cow<'l, str> {
    if per_method { Cow::Owned(format!("{base}:{}", method.to_ascii_uppercase())) } else { base }
}

/// The scope of `decl` on `endpoint`, before any method.
pub(crate) fn base_scope<'l, R>(decl: &'l Limit<R>, kind: Kind, endpoint: &'l str) -> Cow<'l, str> {
    match (kind, &decl.scope) {
        (Kind::Meta, _) => Cow::Borrowed("meta"),
        (Kind::Application, _) => Cow::Borrowed("global"),
        (_, None) => Cow::Borrowed(endpoint),
        (_, Some(Scope::Fixed(s))) if decl.shared => Cow::Borrowed(&**s),
        (_, Some(Scope::Fixed(s))) => Cow::Owned(format!("{endpoint}:{s}")),
        (_, Some(Scope::Computed(f))) if decl.shared => Cow::Owned(f(endpoint)),
        (_, Some(Scope::Computed(f))) => Cow::Owned(format!("{endpoint}:{}", f(endpoint))),
    }
}

/// A limit's storage identifiers: `[prefix,] client, scope`; meta limits
/// skip the prefix.
pub(crate) fn identifiers<'a>(prefix: Option<&'a str>, kind: Kind, key: &'a str, scope: &'a str) -> Ids<'a> {
    match prefix {
        Some(prefix) if kind != Kind::Meta => Ids { ids: [prefix, key, scope], len: 3 },
        _ => Ids { ids: [key, scope, ""], len: 2 },
    }
}

/// A limit's storage identifiers, `[prefix,] client, scope`: a plain array,
/// built and read on every request without a collection's bookkeeping.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ids<'a> {
    ids: [&'a str; 3],
    len: u8,
}

impl<'a> std::ops::Deref for Ids<'a> {
    type Target = [&'a str];

    fn deref(&self) -> &[&'a str] {
        self.ids.get(..usize::from(self.len)).unwrap_or_default()
    }
}

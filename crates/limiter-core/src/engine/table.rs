//! A limiter's limits as data, for tools (the `limiter` CLI): which limits
//! apply to which route, and the storage keys the limiter builds for a
//! client, so that a tool reads and clears exactly the counters the limiter
//! uses.

use std::sync::Arc;

use super::declare::{Cost, Limit, Source};
use super::limiter::{Kind, Limiter, base_scope, identifiers, method_scope};
use super::plan::{Defaults, Plan};
use super::request::RequestInfo;
use super::route::Exemption;
use crate::error::StorageError;
use crate::limit::RateLimit;
use crate::storage::{Batch, Item, Key, LimitState, Mode, Supports};

/// Where a limit was declared.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// [`LimiterBuilder::application_limits`](super::LimiterBuilder::application_limits).
    Application,
    /// [`LimiterBuilder::default_limits`](super::LimiterBuilder::default_limits).
    Default,
    /// [`LimiterBuilder::meta_limits`](super::LimiterBuilder::meta_limits), or
    /// [`Limit::meta_limits`] of another limit.
    Meta,
    /// The route's own [`Route::limit`](super::Route::limit).
    Route,
    /// The limits of the [`Group`](super::Group) with this name.
    Group(String),
    /// [`LimiterBuilder::in_memory_fallback_limits`](super::LimiterBuilder::in_memory_fallback_limits).
    Fallback,
}

/// One [`Limit`] declaration as data, placed on a route (its scope is known).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LimitInfo {
    /// Where it was declared.
    pub origin: Origin,
    /// The limits, or `None` when computed per request ([`Limit::dynamic`]).
    pub limits: Option<Vec<RateLimit>>,
    /// The methods it applies to (upper case); `None`: all.
    pub methods: Option<Vec<String>>,
    /// A bucket per HTTP method.
    pub per_method: bool,
    /// A bucket shared across routes ([`Limit::shared`]).
    pub shared: bool,
    /// What a request consumes, or `None` when computed per request.
    pub cost: Option<u64>,
    /// Some requests are exempt ([`Limit::exempt_when`]).
    pub exempt_when: bool,
    /// Consumed only after the response ([`Limit::deduct_when`]).
    pub deduct_when: bool,
    /// In shadow mode, by itself or for the whole limiter.
    pub shadow: bool,
    /// Counted by its own key rather than the limiter's ([`Limit::key`]);
    /// tools count it by the key they are given.
    pub own_key: bool,
    /// The meta limits attached to it ([`Limit::meta_limits`]).
    pub meta: Vec<LimitInfo>,
    kind: Kind,
    scope: String,
}

impl LimitInfo {
    fn new<R>(decl: &Limit<R>, origin: Origin, kind: Kind, endpoint: &str, shadow: bool) -> Self {
        let shadow = shadow || decl.shadow;
        LimitInfo {
            limits: match &decl.source {
                Source::Static(Ok(limits)) => Some(limits.to_vec()),
                Source::Static(Err(_)) | Source::Dynamic(_) => None,
            },
            methods: decl.methods.as_ref().map(|m| m.to_vec()),
            per_method: decl.per_method,
            // Application limits are shared across routes (Flask-Limiter's
            // `ApplicationLimit`).
            shared: decl.shared || kind == Kind::Application,
            cost: match decl.cost {
                Cost::Fixed(n) => Some(n),
                Cost::Computed(_) => None,
            },
            exempt_when: decl.exempt_when.is_some(),
            deduct_when: decl.deduct_when.is_some(),
            shadow,
            own_key: decl.key.is_some(),
            // An attached meta limit counts by its parent's key when it has
            // none of its own, as Flask-Limiter's `MetaLimit` does.
            meta: decl
                .meta
                .iter()
                .map(|m| {
                    let mut info = LimitInfo::new(m, Origin::Meta, Kind::Meta, "meta", shadow);
                    info.own_key |= decl.key.is_some();
                    info
                })
                .collect(),
            kind,
            scope: base_scope(decl, kind, endpoint).into_owned(),
            origin,
        }
    }

    /// Whether it applies to requests with `method`.
    pub fn applies_to_method(&self, method: &str) -> bool {
        self.methods.as_ref().is_none_or(|ms| ms.iter().any(|m| m.eq_ignore_ascii_case(method)))
    }

    /// The storage scope for a request with `method` (`"login"`,
    /// `"login:POST"`, `"global"`, `"meta"`, a shared scope).
    pub fn scope(&self, method: &str) -> String {
        method_scope(self.scope.as_str().into(), self.per_method, method).into_owned()
    }

    /// Its counters for client `key` on a request with `method`: the
    /// identifiers the limiter builds, key prefix included (meta limits
    /// have none, as in Flask-Limiter). Empty for computed limits.
    pub fn keyed(&self, prefix: Option<&str>, key: &str, method: &str) -> Vec<KeyedLimit> {
        let scope = self.scope(method);
        let ids: Vec<String> = identifiers(prefix, self.kind, key, &scope).iter().map(|s| (*s).to_owned()).collect();
        self.limits.iter().flatten().map(|limit| KeyedLimit { limit: *limit, identifiers: ids.clone() }).collect()
    }
}

/// One limit with the identifiers of one client's counter.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyedLimit {
    /// The limit.
    pub limit: RateLimit,
    /// `[prefix,] client, scope`.
    pub identifiers: Vec<String>,
}

impl KeyedLimit {
    /// The storage key, as `limits` writes it (`LIMITER/127.0.0.1/login/5/1/minute`).
    pub fn storage_key(&self) -> String {
        let ids: Vec<&str> = self.identifiers.iter().map(String::as_str).collect();
        self.limit.key_for(&ids)
    }
}

/// When a route's default limits apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DefaultsRule {
    /// Always, on top of the route's own limits, if any.
    Always,
    /// Only to methods none of the route's own limits applies to.
    UnlessOwnApply,
    /// Never (replaced by the route's or its group's limits, or exempt).
    Never,
}

/// The limits of one route (a path pattern), as the limiter applies them.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RouteInfo {
    /// The route's name, `None` for a path no route was declared for.
    pub name: Option<String>,
    /// The path pattern.
    pub path: String,
    /// The route's own exemption, if any.
    pub exempt: Option<Exemption>,
    /// The groups containing the path, innermost first.
    pub groups: Vec<String>,
    /// The route's own and its groups' limits (see [`LimitInfo::origin`]).
    pub own: Vec<LimitInfo>,
    /// The application limits, unless the route is exempt from them.
    pub application: Vec<LimitInfo>,
    /// The default limits, counted on this route.
    pub defaults: Vec<LimitInfo>,
    /// When [`defaults`](Self::defaults) apply.
    pub defaults_rule: DefaultsRule,
    /// The meta limits, unless the route is exempt from them.
    pub meta: Vec<LimitInfo>,
}

impl RouteInfo {
    /// The name storage scopes use: the route's name, else its path.
    pub fn endpoint(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.path)
    }

    /// Whether the route is exempt from everything.
    pub fn is_exempt(&self) -> bool {
        self.own.is_empty()
            && self.application.is_empty()
            && self.meta.is_empty()
            && self.defaults_rule == DefaultsRule::Never
    }

    /// The limits a request with `method` meets, in the order the limiter
    /// evaluates them: meta limits (the global ones, then those attached to
    /// the others), then application, own and group, and default limits.
    /// Limits with `exempt_when` are included: whether a request is exempt
    /// depends on the request.
    pub fn applicable(&self, method: &str) -> Vec<&LimitInfo> {
        let own_apply = self.own.iter().any(|l| l.applies_to_method(method));
        let defaults = match self.defaults_rule {
            DefaultsRule::Always => true,
            DefaultsRule::UnlessOwnApply => !own_apply,
            DefaultsRule::Never => false,
        };
        let regular: Vec<&LimitInfo> = self
            .application
            .iter()
            .chain(&self.own)
            .chain(self.defaults.iter().filter(|_| defaults))
            .filter(|l| l.applies_to_method(method))
            .collect();
        let attached = regular.iter().flat_map(|l| &l.meta);
        self.meta
            .iter()
            .chain(attached)
            .filter(|l| l.applies_to_method(method))
            .chain(regular.iter().copied())
            .collect()
    }
}

/// A group of routes as data.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupInfo {
    /// Its name.
    pub name: String,
    /// The path prefix of its routes.
    pub prefix: String,
    /// Its exemption, if any.
    pub exempt: Option<Exemption>,
    /// Its limits, for its routes without limits of their own (their scope
    /// is the route's, `<route>` here).
    pub limits: Vec<LimitInfo>,
}

/// A limiter's configuration and limits as data: [`Limiter::limit_table`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LimitTable {
    /// The key prefix (`RATELIMIT_KEY_PREFIX`).
    pub key_prefix: Option<String>,
    /// Every limit in shadow mode.
    pub shadow: bool,
    /// The application limits (scope `global`).
    pub application: Vec<LimitInfo>,
    /// The default limits, as declared (each route counts them under its own scope).
    pub defaults: Vec<LimitInfo>,
    /// The meta limits (scope `meta`).
    pub meta: Vec<LimitInfo>,
    /// The limits that replace all others while the storage is down.
    pub fallback: Vec<LimitInfo>,
    /// The groups, in declaration order.
    pub groups: Vec<GroupInfo>,
    /// Every declared route path, in declaration order.
    pub routes: Vec<RouteInfo>,
}

impl<R: RequestInfo + Send + Sync + 'static> Limiter<R> {
    /// The limiter's limits as data, for tools: every declared route with the
    /// limits that apply to it. See [`route_info`](Self::route_info) for
    /// paths no route was declared for.
    pub fn limit_table(&self) -> LimitTable {
        let shared = &*self.inner;
        let shadow = shared.shadow;
        let info = |decls: &[Limit<R>], origin: Origin, kind: Kind, endpoint: &str| -> Vec<LimitInfo> {
            decls.iter().map(|d| LimitInfo::new(d, origin.clone(), kind, endpoint, shadow)).collect()
        };
        let mut routes = Vec::new();
        for (name, paths, _) in &shared.declared.routes {
            for path in paths {
                if let Some(plan) = shared.plans.registered(path) {
                    routes.push(self.describe(path, Some(name), plan));
                }
            }
        }
        LimitTable {
            key_prefix: shared.key_prefix.as_deref().map(str::to_owned),
            shadow,
            application: info(&shared.application, Origin::Application, Kind::Application, "global"),
            defaults: info(&shared.defaults, Origin::Default, Kind::Default, "<route>"),
            meta: info(&shared.meta, Origin::Meta, Kind::Meta, "meta"),
            fallback: info(&shared.fallback_limits, Origin::Fallback, Kind::Fallback, "<route>"),
            groups: shared
                .declared
                .groups
                .iter()
                .map(|g| GroupInfo {
                    name: g.name.clone(),
                    prefix: g.prefix.clone(),
                    exempt: g.exempt,
                    limits: info(&g.limits, Origin::Group(g.name.clone()), Kind::Route, "<route>"),
                })
                .collect(),
            routes,
        }
    }

    /// The limits of one route: `route` is a declared route's name or path
    /// pattern, or any other path pattern (a route the limiter was not told
    /// about, counted under its pattern, within the groups containing it).
    pub fn route_info(&self, route: &str) -> RouteInfo {
        let shared = &*self.inner;
        let by_name = shared.declared.routes.iter().find(|(name, paths, _)| name == route && !paths.is_empty());
        if let Some((name, paths, _)) = by_name
            && let Some(path) = paths.first()
            && let Some(plan) = shared.plans.registered(path)
        {
            return self.describe(path, Some(name), plan);
        }
        let plan = shared.plans.for_path(route);
        let name = shared.declared.routes.iter().find(|(_, paths, _)| paths.iter().any(|p| p == route));
        self.describe(route, name.map(|(n, _, _)| n), plan)
    }

    fn describe(&self, path: &str, name: Option<&String>, plan: &Arc<Plan<R>>) -> RouteInfo {
        let shared = &*self.inner;
        let shadow = shared.shadow;
        let endpoint = plan.endpoint(path);
        let info = |decls: &[Limit<R>], origin: Origin, kind: Kind| -> Vec<LimitInfo> {
            decls.iter().map(|d| LimitInfo::new(d, origin.clone(), kind, endpoint, shadow)).collect()
        };
        let own = plan
            .own
            .iter()
            .zip(&plan.origins)
            .map(|(decl, origin)| {
                let origin = origin.as_deref().map_or(Origin::Route, |g| Origin::Group(g.to_owned()));
                LimitInfo::new(decl, origin, Kind::Route, endpoint, shadow)
            })
            .collect();
        let exempt = name.and_then(|n| shared.declared.routes.iter().find(|(r, _, _)| r == n)).and_then(|(_, _, e)| *e);
        let mut groups: Vec<&super::route::Group<R>> =
            shared.declared.groups.iter().filter(|g| g.contains(path)).collect();
        groups.sort_by_key(|g| std::cmp::Reverse(g.prefix.trim_end_matches('/').len()));
        RouteInfo {
            name: name.cloned(),
            path: path.to_owned(),
            exempt,
            groups: groups.iter().map(|g| g.name.clone()).collect(),
            own,
            application: if plan.application {
                info(&shared.application, Origin::Application, Kind::Application)
            } else {
                Vec::new()
            },
            defaults: info(&shared.defaults, Origin::Default, Kind::Default),
            defaults_rule: match plan.defaults {
                Defaults::Always => DefaultsRule::Always,
                Defaults::IfOwnInapplicable => DefaultsRule::UnlessOwnApply,
                Defaults::Never => DefaultsRule::Never,
            },
            meta: if plan.meta { info(&shared.meta, Origin::Meta, Kind::Meta) } else { Vec::new() },
        }
    }

    /// The current state of each counter, consuming nothing (`limits`'
    /// `test` and window statistics): what a request of cost 1 would meet.
    ///
    /// # Errors
    ///
    /// [`StorageError`] if the storage fails.
    pub async fn peek(&self, limits: &[KeyedLimit]) -> Result<Vec<LimitState>, StorageError> {
        let shared = &*self.inner;
        let ids: Vec<Vec<&str>> = limits.iter().map(|l| l.identifiers.iter().map(String::as_str).collect()).collect();
        let items: Vec<Item<'_>> = limits.iter().zip(&ids).map(|(l, ids)| Item::new(l.limit, Key::new(ids))).collect();
        let batch = Batch { items: &items, mode: Mode::Peek, now: shared.clock.now() };
        let outcome = shared.storage.decide(shared.strategy, &batch).await?;
        Ok(outcome.states().iter().zip(limits).map(|(state, l)| state.unwrap_or_else(|| fresh(l.limit))).collect())
    }

    /// Forgets these counters (a client's, say).
    ///
    /// # Errors
    ///
    /// [`StorageError`] if the storage fails; the counters before the failing
    /// one are cleared.
    pub async fn clear(&self, limits: &[KeyedLimit]) -> Result<(), StorageError> {
        let shared = &*self.inner;
        for l in limits {
            let ids: Vec<&str> = l.identifiers.iter().map(String::as_str).collect();
            shared.storage.clear(shared.strategy, &l.limit, Key::new(&ids)).await?;
        }
        Ok(())
    }

    /// The key prefix (`RATELIMIT_KEY_PREFIX`), if any.
    pub fn key_prefix(&self) -> Option<&str> {
        self.inner.key_prefix.as_deref()
    }

    /// Whether the limiter stops at the first breached limit.
    pub fn fails_on_first_breach(&self) -> bool {
        self.inner.fail_on_first_breach
    }
}

/// The state of a counter the storage did not report: untouched.
fn fresh(limit: RateLimit) -> LimitState {
    LimitState::allowed(limit.amount(), crate::clock::Timestamp::from_secs(0))
}

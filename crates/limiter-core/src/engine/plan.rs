//! Which declared limits apply to a route, worked out once when the limiter
//! is built (Flask-Limiter works it out on every request).

use std::collections::HashMap;

/// Paths are looked up on every request: a fast hasher, randomly seeded per
/// map, since with `RouteSource::UriPath` the path comes from the client.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
use std::sync::{Arc, OnceLock};

use super::declare::Limit;
use super::resolved::Resolved;
use super::route::{Exemption, Group, Route};
use crate::error::ConfigError;

/// Whether the default limits apply to a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Defaults {
    Always,
    /// Only when none of the route's own limits applies to the request's
    /// method (Flask-Limiter: "every decorated limit is method-exempt").
    IfOwnInapplicable,
    Never,
}

/// The limits of one route, or of every unregistered route under a group.
pub(crate) struct Plan<R> {
    /// The route name for storage scopes; `None`: the matched path is used.
    pub(crate) name: Option<Arc<str>>,
    pub(crate) application: bool,
    pub(crate) meta: bool,
    /// The route's own limits, then its groups' (inner first).
    pub(crate) own: Vec<Limit<R>>,
    /// Where each of `own` was declared: `None` on the route, else the
    /// group's name (for tools; see [`super::table`]).
    pub(crate) origins: Vec<Option<Arc<str>>>,
    /// The route has limits of its own (Flask-Limiter's decorated view):
    /// its application limits are decided in a pass of their own, first.
    pub(crate) decorated: bool,
    pub(crate) defaults: Defaults,
    /// The route's limits as the engine resolved them once, reused by later
    /// requests; `None` inside when their resolution depends on the request
    /// (see [`super::resolved`]).
    pub(crate) resolved: OnceLock<Option<Box<[Resolved]>>>,
    /// Set before `resolved`, so that a recorded resolution always has it:
    /// what deciding the route's requests from the recording takes; `None`
    /// inside when they need the general path.
    pub(crate) direct: OnceLock<Option<super::resolved::Direct>>,
}

impl<R> Plan<R> {
    /// Flask-Limiter's endpoint on this route: its name, else the matched
    /// `path` (the scope of its limits, in storage keys).
    pub(crate) fn endpoint<'a>(&'a self, path: &'a str) -> &'a str {
        self.name.as_deref().unwrap_or(path)
    }
}

/// Every plan of a limiter.
pub(crate) struct Plans<R> {
    by_path: FastMap<String, Arc<Plan<R>>>,
    /// For unregistered routes: the plan of the innermost group containing
    /// the path, longest prefix first.
    by_group: Vec<(Group<R>, Arc<Plan<R>>)>,
    root: Arc<Plan<R>>,
}

impl<R> Plans<R> {
    pub(crate) fn build(routes: Vec<Route<R>>, groups: Vec<Group<R>>) -> Result<Self, ConfigError> {
        let mut groups = groups;
        // Longest prefix first: the first group containing a path is its innermost.
        groups.sort_by_key(|g| std::cmp::Reverse(g.prefix.trim_end_matches('/').len()));
        let mut names = HashMap::new();
        for g in &groups {
            if names.insert(g.prefix.trim_end_matches('/').to_owned(), g.name.clone()).is_some() {
                return Err(ConfigError::Invalid(format!(
                    "two groups have the prefix {:?}: merge them into one group",
                    g.prefix
                )));
            }
        }
        let mut by_path = FastMap::default();
        for route in routes {
            if route.paths.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "route {:?} has no path: add .path(\"/{}\") so requests can find it",
                    route.name, route.name
                )));
            }
            for path in &route.paths {
                let chain = chain(&groups, path);
                let plan = Arc::new(plan_for(Some(&route), &chain));
                if by_path.insert(path.clone(), plan).is_some() {
                    return Err(ConfigError::Invalid(format!(
                        "the path {path:?} belongs to two routes: give each path to one route"
                    )));
                }
            }
        }
        let by_group = groups
            .iter()
            .map(|g| {
                let chain = chain(&groups, &g.prefix);
                (shallow(g), Arc::new(plan_for(None, &chain)))
            })
            .collect();
        let root = Arc::new(plan_for(None, &[]));
        Ok(Plans { by_path, by_group, root })
    }

    /// The plan of a registered path, if any.
    pub(crate) fn registered(&self, path: &str) -> Option<&Arc<Plan<R>>> {
        self.by_path.get(path)
    }

    pub(crate) fn for_path(&self, path: &str) -> &Arc<Plan<R>> {
        self.by_path
            .get(path)
            .or_else(|| self.by_group.iter().find(|(g, _)| g.contains(path)).map(|(_, plan)| plan))
            .unwrap_or(&self.root)
    }
}

/// A group without its limits, to match prefixes with.
fn shallow<R>(g: &Group<R>) -> Group<R> {
    Group { name: g.name.clone(), prefix: g.prefix.clone(), limits: Vec::new(), exempt: g.exempt }
}

/// The groups containing `path`, innermost first.
fn chain<'g, R>(groups: &'g [Group<R>], path: &str) -> Vec<&'g Group<R>> {
    groups.iter().filter(|g| g.contains(path)).collect()
}

/// Flask-Limiter's resolution rules (reference §1.6; `LimitManager.resolve_limits`),
/// for one route (or for unregistered routes when `route` is `None`) inside
/// `chain`.
fn plan_for<R>(route: Option<&Route<R>>, chain: &[&Group<R>]) -> Plan<R> {
    // Exemptions (`exemption_scope`): the route's own, its innermost
    // group's, and any outer group's that reaches its descendants.
    let mut exempt = route.and_then(|r| r.exempt).unwrap_or(Exemption::NONE);
    for (depth, g) in chain.iter().enumerate() {
        if let Some(flags) = g.exempt
            && (depth == 0 || flags.contains(Exemption::DESCENDANTS))
        {
            exempt = exempt | flags;
        }
    }
    // Any exemption of the route itself drops its own limits too (an empty
    // flag set is no exemption: `decorated_limits`).
    let own: Vec<Limit<R>> = match route {
        Some(r) if r.exempt.is_none_or(Exemption::is_empty) => r.limits.clone(),
        _ => Vec::new(),
    };
    let mut origins: Vec<Option<Arc<str>>> = own.iter().map(|_| None).collect();
    let mut limits = own;
    // Group limits join only when the route's own all keep the defaults.
    if limits.iter().all(|l| !l.override_defaults) {
        for g in inherited(chain) {
            let name: Arc<str> = Arc::from(g.name.as_str());
            for l in &g.limits {
                // `blueprint_limits` rebuilds each limit without its meta
                // limits: a group's limits never carry any.
                let mut l = l.clone();
                l.meta = Vec::new();
                limits.push(l);
                origins.push(Some(Arc::clone(&name)));
            }
        }
    }
    // Route and group limits alike decide on the defaults: kept when none
    // overrides, else only when none applies to the request's method
    // (`explicit_limits_exempt`).
    let defaults = if exempt.contains(Exemption::DEFAULT) {
        Defaults::Never
    } else if limits.iter().all(|l| !l.override_defaults) {
        Defaults::Always
    } else {
        Defaults::IfOwnInapplicable
    };
    Plan {
        name: route.map(|r| Arc::from(r.name.as_str())),
        application: !exempt.contains(Exemption::APPLICATION),
        meta: !exempt.contains(Exemption::META),
        decorated: origins.iter().any(Option::is_none),
        own: limits,
        origins,
        defaults,
        resolved: OnceLock::new(),
        direct: OnceLock::new(),
    }
}

/// The groups whose limits a route in `chain` (innermost first) gets:
/// Flask-Limiter's `LimitManager.blueprint_limits`, which looks only at the
/// innermost group's own limits and flags.
fn inherited<'g, R>(chain: &[&'g Group<R>]) -> Vec<&'g Group<R>> {
    let Some(inner) = chain.first() else {
        return Vec::new();
    };
    let flags = inner.exempt.unwrap_or(Exemption::NONE);
    // An exemption from anything but application and default limits (META,
    // DESCENDANTS) drops the group's limits and every inherited one.
    if !(Exemption::APPLICATION | Exemption::DEFAULT | Exemption::ANCESTORS).contains(flags) {
        return Vec::new();
    }
    let overrides = !inner.limits.is_empty() && inner.limits.iter().all(|l| l.override_defaults);
    if overrides || flags.contains(Exemption::ANCESTORS) {
        return vec![inner];
    }
    // Every enclosing group, except those exempting their descendants.
    chain.iter().copied().filter(|g| !g.exempt.is_some_and(|f| f.contains(Exemption::DESCENDANTS))).collect()
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::clock::{ManualClock, Timestamp};
    use crate::engine::declare::Source;
    use crate::engine::{Limiter, RequestInfo};

    type L = Limit<()>;

    struct Req {
        method: &'static str,
        route: &'static str,
    }

    impl RequestInfo for Req {
        fn method(&self) -> &str {
            self.method
        }
        fn route(&self) -> Option<&str> {
            Some(self.route)
        }
        fn header(&self, _: &str) -> Option<&str> {
            None
        }
        fn header_values(&self, _: &str) -> Vec<&str> {
            Vec::new()
        }
        fn peer_addr(&self) -> Option<IpAddr> {
            Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)))
        }
    }

    fn plans(routes: Vec<Route<()>>, groups: Vec<Group<()>>) -> Plans<()> {
        Plans::build(routes, groups).unwrap()
    }

    #[test]
    fn route_limits_override_defaults_unless_told_not_to() {
        let p = plans(
            vec![
                Route::new("slow").path("/slow").limit("1 per day"),
                Route::new("medium").path("/medium").limit(L::new("1/second").override_defaults(false)),
                Route::new("fast").path("/fast"),
                Route::new("ping").path("/ping").exempt(),
            ],
            vec![],
        );
        assert_eq!(p.for_path("/slow").defaults, Defaults::IfOwnInapplicable);
        assert_eq!(p.for_path("/medium").defaults, Defaults::Always);
        assert_eq!(p.for_path("/fast").defaults, Defaults::Always);
        let ping = p.for_path("/ping");
        assert_eq!(ping.defaults, Defaults::Never);
        assert!(!ping.application && !ping.meta);
        assert_eq!(p.for_path("/slow").name.as_deref(), Some("slow"));
        assert_eq!(p.for_path("/elsewhere").name, None);
        assert_eq!(p.for_path("/elsewhere").defaults, Defaults::Always);
    }

    #[test]
    fn exempt_routes_drop_their_own_limits() {
        let p = plans(vec![Route::new("/x").limit("1/second").exempt_from(Exemption::APPLICATION)], vec![]);
        let x = p.for_path("/x");
        assert!(x.own.is_empty());
        assert!(!x.application);
        assert!(x.meta);
        assert_eq!(x.defaults, Defaults::Always);
    }

    #[test]
    fn groups_replace_defaults_and_nest() {
        let p = plans(
            vec![Route::new("/api/own").limit("5/second")],
            vec![
                Group::new("api", "/api").limit("100/hour"),
                Group::new("admin", "/api/admin").limit(L::new("10/hour").override_defaults(false)),
                Group::new("alone", "/api/alone").limit("3/hour").exempt_from(Exemption::ANCESTORS),
                Group::new("open", "/open").exempt_from(Exemption::DEFAULT | Exemption::DESCENDANTS),
                Group::new("inner", "/open/inner"),
            ],
        );
        let api = p.for_path("/api/users");
        assert_eq!(api.own.len(), 1);
        assert_eq!(api.defaults, Defaults::IfOwnInapplicable);
        // admin's limit keeps defaults, so the outer group's limits are inherited too.
        let admin = p.for_path("/api/admin/x");
        assert_eq!(admin.own.len(), 2);
        assert_eq!(admin.defaults, Defaults::IfOwnInapplicable, "the outer group's limit overrides the defaults");
        let alone = p.for_path("/api/alone/x");
        assert_eq!(alone.own.len(), 1);
        // A route's own overriding limits replace the group's.
        let own = p.for_path("/api/own");
        assert_eq!(own.own.len(), 1);
        assert_eq!(own.defaults, Defaults::IfOwnInapplicable);
        // DESCENDANTS carries the exemption into nested groups.
        assert_eq!(p.for_path("/open/inner/x").defaults, Defaults::Never);
        assert_eq!(p.for_path("/open/x").defaults, Defaults::Never);
    }

    /// The limits of a plan, as notation, with the group each came from.
    fn described(plan: &Plan<()>) -> Vec<String> {
        plan.own
            .iter()
            .zip(&plan.origins)
            .map(|(l, origin)| {
                let text = match &l.source {
                    Source::Static(Ok(limits)) => limits.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
                    _ => "?".to_owned(),
                };
                format!("{text}@{}", origin.as_deref().unwrap_or("route"))
            })
            .collect()
    }

    #[test]
    fn method_restricted_group_limits_bring_the_defaults_back_for_other_methods() {
        let p = plans(vec![], vec![Group::new("api", "/api").limit(L::new("10/minute").methods(["POST"]))]);
        let api = p.for_path("/api/x");
        assert_eq!(described(api), ["10 per 1 minute@api"]);
        assert_eq!(api.defaults, Defaults::IfOwnInapplicable);

        // End to end: a GET counts the default limit, a POST the group's.
        let limiter = Limiter::<Req>::builder()
            .clock(ManualClock::new(Timestamp::from_secs(1_700_000_000)))
            .default_limits("100/hour")
            .group(Group::new("api", "/api").limit(Limit::new("10/minute").methods(["POST"])))
            .build()
            .unwrap();
        let counted = |method| {
            let decision =
                limiter.check_now(&Req { method, route: "/api/x" }).expect("the memory storage decides at once");
            decision.limits().iter().map(|l| l.storage_key()).collect::<Vec<_>>()
        };
        assert_eq!(counted("GET"), ["LIMITER/10.0.0.1//api/x/100/1/hour"]);
        assert_eq!(counted("POST"), ["LIMITER/10.0.0.1//api/x/10/1/minute"]);
    }

    #[test]
    fn exempting_a_group_from_meta_or_descendants_drops_its_limits() {
        let p = plans(
            vec![Route::new("/api/route").limit(L::new("1/second").override_defaults(false))],
            vec![
                Group::new("api", "/api").limit("10/minute").exempt(),
                Group::new("quiet", "/quiet")
                    .limit("10/minute")
                    .exempt_from(Exemption::DEFAULT | Exemption::APPLICATION),
                Group::new("tree", "/tree").limit("1/day").exempt_from(Exemption::DEFAULT | Exemption::DESCENDANTS),
                Group::new("branch", "/tree/branch").limit(L::new("2/day").override_defaults(false)),
                Group::new("twig", "/tree/branch/twig").limit(L::new("3/day").override_defaults(false)),
            ],
        );
        let api = p.for_path("/api/x");
        assert_eq!(described(api), Vec::<String>::new(), "exempt() lifts META, which drops the group's limits");
        assert_eq!(api.defaults, Defaults::Never);
        assert!(!api.application && !api.meta);
        // A route's own limits stay; only the group's go.
        assert_eq!(described(p.for_path("/api/route")), ["1 per 1 second@route"]);
        // Exempting from default and application limits only keeps the group's limits.
        let quiet = p.for_path("/quiet/x");
        assert_eq!(described(quiet), ["10 per 1 minute@quiet"]);
        assert_eq!(quiet.defaults, Defaults::Never);
        assert!(!quiet.application);
        // DESCENDANTS drops the group's own limits, and nested groups do not inherit them.
        assert_eq!(described(p.for_path("/tree/x")), Vec::<String>::new());
        assert_eq!(described(p.for_path("/tree/branch/x")), ["2 per 1 day@branch"]);
        assert_eq!(described(p.for_path("/tree/branch/twig/x")), ["3 per 1 day@twig", "2 per 1 day@branch"]);
        assert_eq!(p.for_path("/tree/branch/twig/x").defaults, Defaults::Never, "DEFAULT reaches descendants");
    }

    #[test]
    fn nested_groups_inherit_every_ancestor_unless_the_innermost_overrides() {
        let p = plans(
            vec![],
            vec![
                Group::new("a", "/a").limit("1/day"),
                Group::new("b", "/a/b").limit("2/day"),
                Group::new("c", "/a/b/c").limit(L::new("3/day").override_defaults(false)),
                Group::new("d", "/a/b/c/d"),
            ],
        );
        assert_eq!(described(p.for_path("/a/b/c/x")), ["3 per 1 day@c", "2 per 1 day@b", "1 per 1 day@a"]);
        // A group without limits of its own inherits everything too.
        assert_eq!(described(p.for_path("/a/b/c/d/x")), ["3 per 1 day@c", "2 per 1 day@b", "1 per 1 day@a"]);
        // An innermost group whose limits all override stops there.
        assert_eq!(described(p.for_path("/a/b/x")), ["2 per 1 day@b"]);
        assert_eq!(p.for_path("/a/b/c/x").defaults, Defaults::IfOwnInapplicable);
    }

    #[test]
    fn group_limits_lose_their_meta_limits_route_limits_keep_them() {
        let p = plans(
            vec![Route::new("/api/own").limit(L::new("5/second").meta_limits("1/hour"))],
            vec![Group::new("api", "/api").limit(L::new("10/minute").meta_limits("2/hour"))],
        );
        let api = p.for_path("/api/x");
        assert_eq!(described(api), ["10 per 1 minute@api"]);
        assert!(api.own[0].meta.is_empty(), "Flask-Limiter's blueprint_limits drops meta_limits");
        assert_eq!(p.for_path("/api/own").own[0].meta.len(), 1);
    }

    #[test]
    fn an_empty_route_exemption_keeps_the_route_limits() {
        let p = plans(vec![Route::new("/x").limit("1/second").exempt_from(Exemption::NONE)], vec![]);
        assert_eq!(described(p.for_path("/x")), ["1 per 1 second@route"]);
    }

    #[test]
    fn configuration_mistakes_are_errors() {
        let no_path = Plans::build(vec![Route::<()>::new("slow")], vec![]).err().unwrap();
        assert!(no_path.to_string().contains("route \"slow\" has no path"), "{no_path}");
        let twice = Plans::build(vec![Route::<()>::new("/a"), Route::new("b").path("/a")], vec![]).err().unwrap();
        assert!(twice.to_string().contains("\"/a\" belongs to two routes"), "{twice}");
    }
}

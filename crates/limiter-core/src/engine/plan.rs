//! Which declared limits apply to a route, worked out once when the limiter
//! is built (Flask-Limiter works it out on every request).

use std::collections::HashMap;

/// Paths are looked up on every request: a fast hasher, randomly seeded per
/// map, since with `RouteSource::UriPath` the path comes from the client.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
use std::sync::Arc;

use super::declare::Limit;
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
    pub(crate) defaults: Defaults,
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

/// Flask-Limiter's resolution rules (reference §1.6), for one route (or
/// for unregistered routes when `route` is `None`) inside `chain`.
fn plan_for<R>(route: Option<&Route<R>>, chain: &[&Group<R>]) -> Plan<R> {
    // Exemptions: the route's own, its innermost group's, and any outer
    // group's that reaches its descendants.
    let mut exempt = route.and_then(|r| r.exempt).unwrap_or(Exemption::NONE);
    for (depth, g) in chain.iter().enumerate() {
        if let Some(flags) = g.exempt
            && (depth == 0 || flags.contains(Exemption::DESCENDANTS))
        {
            exempt = exempt | flags;
        }
    }
    // Any exemption of the route itself drops its own limits too.
    let own: Vec<Limit<R>> = match route {
        Some(r) if r.exempt.is_none() => r.limits.clone(),
        _ => Vec::new(),
    };
    let own_keeps_defaults = own.iter().all(|l| !l.override_defaults);

    let mut group_limits = Vec::new();
    let mut origins: Vec<Option<Arc<str>>> = own.iter().map(|_| None).collect();
    if own_keeps_defaults {
        for g in chain {
            group_limits.extend(g.limits.iter().cloned());
            let name: Arc<str> = Arc::from(g.name.as_str());
            origins.extend(g.limits.iter().map(|_| Some(Arc::clone(&name))));
            let overrides = !g.limits.is_empty() && g.limits.iter().all(|l| l.override_defaults);
            if overrides || g.exempt.is_some_and(|f| f.contains(Exemption::ANCESTORS)) {
                break;
            }
        }
    }
    let groups_override = group_limits.iter().any(|l| l.override_defaults);

    let defaults = if exempt.contains(Exemption::DEFAULT) || groups_override {
        Defaults::Never
    } else if own.is_empty() || own_keeps_defaults {
        Defaults::Always
    } else {
        Defaults::IfOwnInapplicable
    };
    let mut limits = own;
    limits.extend(group_limits);
    Plan {
        name: route.map(|r| Arc::from(r.name.as_str())),
        application: !exempt.contains(Exemption::APPLICATION),
        meta: !exempt.contains(Exemption::META),
        own: limits,
        origins,
        defaults,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type L = Limit<()>;

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
        assert_eq!(api.defaults, Defaults::Never);
        // admin's limit keeps defaults, so the outer group's limits are inherited too.
        let admin = p.for_path("/api/admin/x");
        assert_eq!(admin.own.len(), 2);
        assert_eq!(admin.defaults, Defaults::Never, "the outer group's limit overrides the defaults");
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

    #[test]
    fn configuration_mistakes_are_errors() {
        let no_path = Plans::build(vec![Route::<()>::new("slow")], vec![]).err().unwrap();
        assert!(no_path.to_string().contains("route \"slow\" has no path"), "{no_path}");
        let twice = Plans::build(vec![Route::<()>::new("/a"), Route::new("b").path("/a")], vec![]).err().unwrap();
        assert!(twice.to_string().contains("\"/a\" belongs to two routes"), "{twice}");
    }
}

//! Routes and groups of routes (Flask's endpoints and blueprints), and
//! exemptions.

use std::fmt;
use std::ops::BitOr;

use super::declare::Limit;

/// Which limits an exemption lifts: Flask-Limiter's `ExemptionScope`.
///
/// [`Route::exempt`] and [`Group::exempt`] lift application, default and
/// meta limits ([`Exemption::ALL`]), as `@limiter.exempt` does. Combine
/// flags with `|`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Exemption(u8);

impl Exemption {
    /// Nothing lifted.
    pub const NONE: Exemption = Exemption(0);
    /// Application limits (one bucket across all routes).
    pub const APPLICATION: Exemption = Exemption(1);
    /// Meta limits (limits on breaches).
    pub const META: Exemption = Exemption(1 << 1);
    /// Default limits.
    pub const DEFAULT: Exemption = Exemption(1 << 2);
    /// For a group: the exemption also applies to nested groups.
    pub const DESCENDANTS: Exemption = Exemption(1 << 3);
    /// For a group: limits of enclosing groups are not inherited.
    pub const ANCESTORS: Exemption = Exemption(1 << 4);
    /// Application, default and meta limits: what `@limiter.exempt` lifts.
    pub const ALL: Exemption = Exemption(1 | 1 << 1 | 1 << 2);

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: Exemption) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether no flag is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl BitOr for Exemption {
    type Output = Exemption;

    fn bitor(self, rhs: Exemption) -> Exemption {
        Exemption(self.0 | rhs.0)
    }
}

impl fmt::Debug for Exemption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (Exemption::APPLICATION, "APPLICATION"),
            (Exemption::META, "META"),
            (Exemption::DEFAULT, "DEFAULT"),
            (Exemption::DESCENDANTS, "DESCENDANTS"),
            (Exemption::ANCESTORS, "ANCESTORS"),
        ];
        let set: Vec<&str> = names.iter().filter(|(flag, _)| self.contains(*flag)).map(|(_, n)| *n).collect();
        if set.is_empty() { f.write_str("NONE") } else { f.write_str(&set.join(" | ")) }
    }
}

/// A route's limits: Flask's `@limiter.limit(...)` on a view.
///
/// The name is Flask's endpoint: it goes into storage keys
/// (`LIMITER/<client>/<name>/...`), so give the Flask view's name to share
/// counters with a Flask service. The paths are the route patterns the web
/// framework reports for matched requests (`"/users/{id}"`).
pub struct Route<R> {
    pub(crate) name: String,
    pub(crate) paths: Vec<String>,
    pub(crate) limits: Vec<Limit<R>>,
    pub(crate) exempt: Option<Exemption>,
}

impl<R> fmt::Debug for Route<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Route")
            .field("name", &self.name)
            .field("paths", &self.paths)
            .field("limits", &self.limits)
            .field("exempt", &self.exempt)
            .finish()
    }
}

impl<R> Route<R> {
    /// A route named `name`. A name starting with `/` is also its path.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        let paths = if name.starts_with('/') { vec![name.clone()] } else { Vec::new() };
        Route { name, paths, limits: Vec::new(), exempt: None }
    }

    /// A path pattern this route answers (several are allowed).
    #[must_use]
    pub fn path(mut self, pattern: impl Into<String>) -> Self {
        let pattern = pattern.into();
        if !self.paths.contains(&pattern) {
            self.paths.push(pattern);
        }
        self
    }

    /// Adds limits to the route; by default they replace the default limits
    /// (see [`Limit::override_defaults`]).
    #[must_use]
    pub fn limit(mut self, limit: impl Into<Limit<R>>) -> Self {
        self.limits.push(limit.into());
        self
    }

    /// Exempts the route from application, default and meta limits, and
    /// ignores its own (`@limiter.exempt`).
    #[must_use]
    pub fn exempt(self) -> Self {
        self.exempt_from(Exemption::ALL)
    }

    /// Exempts the route from the limits `flags` names. Any exemption (but
    /// [`Exemption::NONE`]) also ignores the route's own limits, as in
    /// Flask-Limiter.
    #[must_use]
    pub fn exempt_from(mut self, flags: Exemption) -> Self {
        self.exempt = Some(flags);
        self
    }
}

/// Limits for every route under a path prefix: Flask's blueprint limits, for
/// nested routers.
///
/// A group's limits apply to its routes that have no limits of their own
/// (or only limits that keep the defaults), and replace the default limits
/// unless they say otherwise: as a route's own limits do, the defaults still
/// count a request that none of them applies to (by
/// [`Limit::methods`](super::Limit::methods)).
///
/// Groups nest by prefix (`/api/admin` is inside `/api`). A route's
/// innermost group decides, as in Flask-Limiter: if its own limits all
/// override the defaults (the default) or it is exempt from
/// [`Exemption::ANCESTORS`], only its limits apply; otherwise the limits of
/// every enclosing group apply too, except those of groups exempt with
/// [`Exemption::DESCENDANTS`].
pub struct Group<R> {
    pub(crate) name: String,
    pub(crate) prefix: String,
    pub(crate) limits: Vec<Limit<R>>,
    pub(crate) exempt: Option<Exemption>,
}

impl<R> fmt::Debug for Group<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group")
            .field("name", &self.name)
            .field("prefix", &self.prefix)
            .field("limits", &self.limits)
            .field("exempt", &self.exempt)
            .finish()
    }
}

impl<R> Group<R> {
    /// A group named `name` holding every route under `prefix` (`"/api"`).
    pub fn new(name: impl Into<String>, prefix: impl Into<String>) -> Self {
        Group { name: name.into(), prefix: prefix.into(), limits: Vec::new(), exempt: None }
    }

    /// Adds limits to every route of the group.
    ///
    /// Meta limits attached to them ([`Limit::meta_limits`](super::Limit::meta_limits))
    /// are ignored, as Flask-Limiter ignores a blueprint limit's
    /// `meta_limits`: attach them to route limits or to the limiter.
    #[must_use]
    pub fn limit(mut self, limit: impl Into<Limit<R>>) -> Self {
        self.limits.push(limit.into());
        self
    }

    /// Exempts the group's routes from application, default and meta limits,
    /// and ignores the group's own limits and those it would inherit
    /// (`limiter.exempt(blueprint)`).
    #[must_use]
    pub fn exempt(self) -> Self {
        self.exempt_from(Exemption::ALL)
    }

    /// Exempts the group's routes from the limits `flags` names; with
    /// [`Exemption::DESCENDANTS`], nested groups' routes too.
    ///
    /// As in Flask-Limiter, any flag but [`Exemption::APPLICATION`],
    /// [`Exemption::DEFAULT`] and [`Exemption::ANCESTORS`] (that is,
    /// [`Exemption::META`] or [`Exemption::DESCENDANTS`]) also ignores the
    /// group's own limits and those it would inherit; nested groups never
    /// inherit the limits of a group exempt with [`Exemption::DESCENDANTS`].
    #[must_use]
    pub fn exempt_from(mut self, flags: Exemption) -> Self {
        self.exempt = Some(flags);
        self
    }

    /// Whether `path` lies under this group's prefix.
    pub(crate) fn contains(&self, path: &str) -> bool {
        let prefix = self.prefix.trim_end_matches('/');
        match path.strip_prefix(prefix) {
            Some(rest) => prefix.is_empty() || rest.is_empty() || rest.starts_with('/'),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exemption_flags() {
        assert!(Exemption::ALL.contains(Exemption::META));
        assert!(!Exemption::ALL.contains(Exemption::DESCENDANTS));
        assert!((Exemption::DEFAULT | Exemption::ANCESTORS).contains(Exemption::ANCESTORS));
        assert_eq!(format!("{:?}", Exemption::APPLICATION | Exemption::META), "APPLICATION | META");
        assert_eq!(format!("{:?}", Exemption::NONE), "NONE");
    }

    #[test]
    fn group_prefixes_match_whole_segments() {
        let g: Group<()> = Group::new("api", "/api");
        assert!(g.contains("/api"));
        assert!(g.contains("/api/users"));
        assert!(!g.contains("/apiary"));
        let slash: Group<()> = Group::new("api", "/api/");
        assert!(slash.contains("/api/users"));
    }
}

//! What the engine needs to know about a request, whatever the framework.

use std::net::IpAddr;

/// A request as the engine sees it; the web adapters implement it for their
/// framework's request type.
///
/// Limit callbacks (`exempt_when`, dynamic limits, costs, key functions)
/// receive the adapter's own request type `R`, so they can read anything the
/// framework offers (extensions, cookies, ...).
pub trait RequestInfo {
    /// The HTTP method, upper case (`"GET"`).
    fn method(&self) -> &str;

    /// The pattern of the route that matched (`"/users/{id}"`), or `None`
    /// when no route matched (a 404).
    fn route(&self) -> Option<&str>;

    /// Whether [`route`](Self::route) names a route template that many
    /// requests share (axum's `MatchedPath`, actix's match pattern), as by
    /// default, rather than each request's own path. When it is the path,
    /// routes the limiter was not told about are reported to metrics and
    /// logs as `<undeclared>`, so that clients cannot invent label values.
    fn route_is_template(&self) -> bool {
        true
    }

    /// The first value of a header, if present and valid text.
    fn header(&self, name: &str) -> Option<&str>;

    /// Every value of a header, in order (a header may be sent on several
    /// lines; proxies append to `X-Forwarded-For` that way).
    fn header_values(&self, name: &str) -> Vec<&str>;

    /// The address of the peer that opened the connection, if the server
    /// was set up to provide it.
    fn peer_addr(&self) -> Option<IpAddr>;

    /// A value an earlier layer put in the request's extensions (an
    /// authenticated user, a tenant), if the adapter can reach it.
    fn extension<T: Send + Sync + 'static>(&self) -> Option<&T> {
        None
    }

    /// What to do so that [`extension`](Self::extension) finds a value, for
    /// error messages.
    const EXTENSION_HINT: &'static str = "set it in a layer that runs before the limiter";
}

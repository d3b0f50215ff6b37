//! The request as limit callbacks see it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::request::Parts;
use limiter_core::engine::RequestInfo;

/// The matched route pattern, for servers that route without axum: insert it
/// into the request's extensions before the limiter layer runs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MatchedRoute(pub Arc<str>);

/// Where the layer finds the matched route of a request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum RouteSource {
    /// axum's `MatchedPath` (with the `axum` feature), else a
    /// [`MatchedRoute`] extension; without either the request matched no
    /// route, and only meta limits apply to it, as to Flask's 404s.
    #[default]
    Matched,
    /// The URI path itself: every path is a route (tonic, where the path
    /// names the gRPC method, or plain hyper services). Since clients
    /// choose paths, metrics and logs name the paths of routes the limiter
    /// was not told about `<undeclared>`.
    ///
    /// tonic clients are refused the gRPC way (HTTP 200 with `grpc-status`
    /// 8, `RESOURCE_EXHAUSTED`, or 14, `UNAVAILABLE`, when a failing
    /// storage fails closed, and the message in `grpc-message`), whatever
    /// the route source: see the [crate docs](crate#grpc).
    UriPath,
}

/// A request's head (method, URI, headers, extensions), as limit callbacks
/// (`exempt_when`, dynamic limits, costs, key functions) receive it.
#[derive(Debug)]
pub struct HttpRequest {
    parts: Parts,
    source: RouteSource,
}

impl HttpRequest {
    pub(crate) fn new(parts: Parts, source: RouteSource) -> Self {
        HttpRequest { parts, source }
    }

    pub(crate) fn into_parts(self) -> Parts {
        self.parts
    }

    /// The request head.
    pub fn parts(&self) -> &Parts {
        &self.parts
    }

    /// The headers.
    pub fn headers(&self) -> &http::HeaderMap {
        &self.parts.headers
    }

    /// The URI.
    pub fn uri(&self) -> &http::Uri {
        &self.parts.uri
    }

    /// The extensions (authentication results, connection info, ...).
    pub fn extensions(&self) -> &http::Extensions {
        &self.parts.extensions
    }

    /// A request head for tests and for code that drives the limiter
    /// without the layer.
    pub fn from_parts(parts: Parts, source: RouteSource) -> Self {
        HttpRequest::new(parts, source)
    }
}

/// Without the `axum` feature, an axum app's requests carry no route the
/// layer can read: every one would silently get only the meta limits. Says
/// so once per process; after that, a relaxed load is all a request pays.
#[cfg(not(feature = "axum"))]
fn warn_once_without_axum() {
    use std::sync::atomic::{AtomicBool, Ordering};
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.load(Ordering::Relaxed) && !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            "limiter-tower: a request reached the limiter layer without a matched route; only meta limits apply \
             to requests without a route. For axum, enable the `axum` feature of limiter-tower (or `limiter`); \
             for tonic or hyper, use `RouteSource::UriPath` or insert a `MatchedRoute` extension before the layer"
        );
    }
}

impl RequestInfo for HttpRequest {
    fn method(&self) -> &str {
        self.parts.method.as_str()
    }

    fn route(&self) -> Option<&str> {
        match self.source {
            RouteSource::UriPath => Some(self.parts.uri.path()),
            RouteSource::Matched => {
                #[cfg(feature = "axum")]
                if let Some(path) = self.parts.extensions.get::<axum::extract::MatchedPath>() {
                    return Some(path.as_str());
                }
                let route = self.parts.extensions.get::<MatchedRoute>().map(|r| &*r.0);
                #[cfg(not(feature = "axum"))]
                if route.is_none() {
                    warn_once_without_axum();
                }
                route
            }
        }
    }

    fn route_is_template(&self) -> bool {
        self.source == RouteSource::Matched
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.parts.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn header_values(&self, name: &str) -> Vec<&str> {
        // A line that is not text stays in place as a non-address, so that
        // proxy-appended entries keep their positions from the right.
        self.parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| std::str::from_utf8(v.as_bytes()).unwrap_or("\u{fffd}"))
            .collect()
    }

    fn peer_addr(&self) -> Option<IpAddr> {
        #[cfg(feature = "axum")]
        if let Some(info) = self.parts.extensions.get::<axum::extract::ConnectInfo<SocketAddr>>() {
            return Some(info.0.ip());
        }
        self.parts.extensions.get::<SocketAddr>().map(SocketAddr::ip)
    }

    fn extension<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.parts.extensions.get::<T>()
    }

    const EXTENSION_HINT: &'static str = "add the layer that sets it outside the limiter layer, so that it runs first";
}

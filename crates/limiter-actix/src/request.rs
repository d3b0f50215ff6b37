//! The request as limit callbacks see it.

use std::any::Any;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use actix_web::dev::ServiceRequest;
use actix_web::http::header::HeaderMap;
use actix_web::http::{Method, Uri};
use actix_web::{HttpMessage, HttpRequest};
use limiter_core::engine::RequestInfo;

/// Values copied from the request's extensions, by type.
type Copied = Vec<Box<dyn Any + Send + Sync>>;

/// Copies one extension type from an actix request into the view.
pub(crate) type Copier = fn(&HttpRequest, &mut Copied);

/// The [`Copier`] of extensions of type `T`.
pub(crate) fn copier<T: Clone + Send + Sync + 'static>() -> Copier {
    fn copy<T: Clone + Send + Sync + 'static>(request: &HttpRequest, into: &mut Copied) {
        if let Some(value) = request.extensions().get::<T>() {
            into.push(Box::new(value.clone()));
        }
    }
    copy::<T>
}

/// A request as limit callbacks (`exempt_when`, dynamic limits, costs, key
/// functions, request filters) receive it: the method, URI, headers, matched
/// route pattern and peer address of an actix-web request.
///
/// The engine keeps one limiter for all of the server's worker threads, so
/// its request type must be `Send + Sync`, and actix's `HttpRequest` (an
/// `Rc`) is neither. This view therefore holds its own copy of what the
/// limiter and callbacks read: the method and URI (cheap clones), the header
/// map (one small map per request), the match pattern and the peer address.
/// actix's extensions hold values that need not be `Send`, so they are not
/// copied wholesale: name the types callbacks need with
/// [`LimiterMiddleware::copy_extension`](crate::LimiterMiddleware::copy_extension)
/// (say, the user an authentication middleware inserted) and read them with
/// [`extension`](Self::extension). Nothing else is copied, so an unused
/// extension costs nothing.
///
/// The [`RequestInfo`] methods give the method as text, the route, single
/// headers and the peer's IP address.
pub struct ActixRequest {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    pattern: Option<String>,
    peer: Option<SocketAddr>,
    copied: Copied,
}

impl fmt::Debug for ActixRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActixRequest")
            .field("method", &self.method)
            .field("uri", &self.uri)
            .field("headers", &self.headers)
            .field("pattern", &self.pattern)
            .field("peer", &self.peer)
            .field("extensions", &self.copied.len())
            .finish()
    }
}

impl ActixRequest {
    /// The view of `request`, without any extension. The middleware builds
    /// it for each request; this is for tests and for code that drives the
    /// limiter itself.
    pub fn new(request: &HttpRequest) -> Self {
        ActixRequest::capture(request, &[])
    }

    /// The view of a request as middleware receives it, without any extension.
    pub fn from_service_request(request: &ServiceRequest) -> Self {
        ActixRequest::new(request.request())
    }

    pub(crate) fn capture(request: &HttpRequest, copiers: &[Copier]) -> Self {
        let mut copied = Vec::new();
        for copy in copiers {
            copy(request, &mut copied);
        }
        ActixRequest {
            method: request.method().clone(),
            uri: request.uri().clone(),
            headers: request.headers().clone(),
            pattern: request.match_pattern(),
            peer: request.peer_addr(),
            copied,
        }
    }

    /// The URI.
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// The URI's path.
    pub fn path(&self) -> &str {
        self.uri.path()
    }

    /// The URI's query string, without the `?` (empty when there is none).
    pub fn query_string(&self) -> &str {
        self.uri.query().unwrap_or_default()
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The HTTP method ([`RequestInfo::method`] gives it as text).
    pub fn http_method(&self) -> &Method {
        &self.method
    }

    /// The pattern of the resource that matched (`"/users/{id}"`), as
    /// `HttpRequest::match_pattern` reports it: `None` when no resource
    /// matched (the default service answers).
    pub fn match_pattern(&self) -> Option<&str> {
        self.pattern.as_deref()
    }

    /// The peer's socket address ([`RequestInfo::peer_addr`] gives its IP):
    /// `None` on Unix sockets, and in tests without `TestRequest::peer_addr`.
    pub fn peer_socket_addr(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// An extension copied from the request, if the middleware was told to
    /// copy values of type `T` and the request had one.
    pub fn extension<T: 'static>(&self) -> Option<&T> {
        self.copied.iter().find_map(|value| value.downcast_ref::<T>())
    }
}

impl RequestInfo for ActixRequest {
    fn method(&self) -> &str {
        self.method.as_str()
    }

    fn route(&self) -> Option<&str> {
        self.pattern.as_deref()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn header_values(&self, name: &str) -> Vec<&str> {
        // A line that is not text stays in place as a non-address, so that
        // proxy-appended entries keep their positions from the right.
        self.headers.get_all(name).map(|v| std::str::from_utf8(v.as_bytes()).unwrap_or("\u{fffd}")).collect()
    }

    fn peer_addr(&self) -> Option<IpAddr> {
        self.peer.map(|addr| addr.ip())
    }

    fn extension<T: Send + Sync + 'static>(&self) -> Option<&T> {
        ActixRequest::extension(self)
    }

    const EXTENSION_HINT: &'static str = "add the middleware that sets it so that it runs before the limiter \
         (`wrap` it after `LimiterMiddleware`), and copy it with `LimiterMiddleware::copy_extension::<{T}>()`";
}

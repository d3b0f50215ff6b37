//! The tower `Layer` and `Service`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Full};
use limiter_core::engine::{Rejection, RequestLimit, ResponseInfo};
use tower_layer::Layer;
use tower_service::Service;

use crate::Limiter;
use crate::request::{HttpRequest, RouteSource};

/// The limits evaluated for the request, in the request's extensions for
/// handlers to read (Flask-Limiter's `current_limits`).
#[derive(Clone, Debug)]
pub struct CurrentLimits(pub Arc<[RequestLimit]>);

impl CurrentLimits {
    /// The limit the headers describe: the breached one, else the first
    /// not shared (`current_limit`).
    pub fn current(&self) -> Option<&RequestLimit> {
        limiter_core::engine::current_limit(&self.0)
    }
}

/// Applies a [`Limiter`] to every request of the wrapped service.
///
/// Limited requests are answered here (429, or 503 when a failing storage
/// fails closed) and never reach the service; the others get the
/// rate-limit headers on their response. The layer adds no error type of
/// its own.
#[derive(Clone, Debug)]
pub struct LimiterLayer {
    limiter: Limiter,
    source: RouteSource,
}

impl LimiterLayer {
    /// A layer applying `limiter`, finding routes with [`RouteSource::Matched`].
    pub fn new(limiter: Limiter) -> Self {
        LimiterLayer { limiter, source: RouteSource::Matched }
    }

    /// Finds the matched route another way.
    #[must_use]
    pub fn route_source(mut self, source: RouteSource) -> Self {
        self.source = source;
        self
    }
}

impl<S> Layer<S> for LimiterLayer {
    type Service = LimiterService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LimiterService { inner, limiter: self.limiter.clone(), source: self.source }
    }
}

/// The service [`LimiterLayer`] makes.
#[derive(Clone, Debug)]
pub struct LimiterService<S> {
    inner: S,
    limiter: Limiter,
    source: RouteSource,
}

/// The response body: the service's own, or the limiter's rejection.
pub type LimitedBody<B> = Either<B, Full<Bytes>>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for LimiterService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<LimitedBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The ready service handles this request; a fresh clone waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let limiter = self.limiter.clone();
        let source = self.source;
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let head = HttpRequest::new(parts, source);
            let mut decision = limiter.check(&head).await;
            if let Some(rejection) = decision.take_rejection() {
                let response = rejection_response(rejection);
                limiter.after_response(&decision, ResponseInfo::new(response.status().as_u16())).await;
                return Ok(response.map(Either::Right));
            }
            let mut parts = head.into_parts();
            if !decision.limits().is_empty() {
                parts.extensions.insert(CurrentLimits(decision.shared_limits()));
            }
            let mut response = inner.call(Request::from_parts(parts, body)).await?;
            add_headers(response.headers_mut(), decision.headers());
            limiter.after_response(&decision, ResponseInfo::new(response.status().as_u16())).await;
            Ok(response.map(Either::Left))
        })
    }
}

fn add_headers(map: &mut http::HeaderMap, headers: &[(Arc<str>, String)]) {
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(&**name), HeaderValue::try_from(value.as_str())) {
            map.insert(name, value);
        }
    }
}

/// Renders the limiter's rejection as an HTTP response.
pub fn rejection_response(rejection: Rejection) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(rejection.body)));
    *response.status_mut() = StatusCode::from_u16(rejection.status).unwrap_or(StatusCode::TOO_MANY_REQUESTS);
    if let Ok(value) = HeaderValue::try_from(rejection.content_type) {
        response.headers_mut().insert(CONTENT_TYPE, value);
    }
    add_headers(response.headers_mut(), &rejection.headers);
    response
}

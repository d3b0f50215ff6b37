//! The tower `Layer` and `Service`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Full};
use limiter_core::engine::{Decision, Rejection, RequestLimit, ResponseInfo, later_retry_after};
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
    names: HeaderNames,
}

/// The configured header names, parsed once: a response's headers are then
/// found by pointer, without parsing or allocating a name per request.
#[derive(Clone, Debug)]
struct HeaderNames {
    known: Arc<[(Arc<str>, HeaderName)]>,
    retry_after: Option<HeaderName>,
}

impl HeaderNames {
    fn new(limiter: &Limiter) -> Self {
        let settings = limiter.header_settings();
        HeaderNames {
            known: settings
                .names()
                .into_iter()
                .filter_map(|name| HeaderName::try_from(&**name).ok().map(|parsed| (Arc::clone(name), parsed)))
                .collect(),
            retry_after: HeaderName::try_from(&*settings.retry_after).ok(),
        }
    }

    fn get(&self, name: &Arc<str>) -> Option<HeaderName> {
        match self.known.iter().find(|(known, _)| Arc::ptr_eq(known, name)) {
            Some((_, parsed)) => Some(parsed.clone()),
            None => HeaderName::try_from(&**name).ok(),
        }
    }

    fn add(&self, map: &mut http::HeaderMap, headers: Vec<(Arc<str>, String)>) {
        for (name, value) in headers {
            let Some(name) = self.get(&name) else { continue };
            // A Retry-After the handler set stays if it names a later time.
            if Some(&name) == self.retry_after.as_ref()
                && let Some(existing) = map.get(&name).and_then(|v| v.to_str().ok())
                && later_retry_after(existing, &value, std::time::SystemTime::now()) == existing
            {
                continue;
            }
            if let Ok(value) = HeaderValue::try_from(value) {
                map.insert(name, value);
            }
        }
    }
}

impl LimiterLayer {
    /// A layer applying `limiter`, finding routes with [`RouteSource::Matched`].
    pub fn new(limiter: Limiter) -> Self {
        let names = HeaderNames::new(&limiter);
        LimiterLayer { limiter, source: RouteSource::Matched, names }
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
        LimiterService { inner, limiter: self.limiter.clone(), source: self.source, names: self.names.clone() }
    }
}

/// The service [`LimiterLayer`] makes.
#[derive(Clone, Debug)]
pub struct LimiterService<S> {
    inner: S,
    limiter: Limiter,
    source: RouteSource,
    names: HeaderNames,
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
        let (parts, body) = request.into_parts();
        let limiter = self.limiter.clone();
        let source = self.source;
        let mut check = Box::pin(async move {
            let head = HttpRequest::new(parts, source);
            let decision = limiter.check(&head).await;
            (decision, head, limiter)
        });
        // The memory storage decides without waiting: then the ready inner
        // service is called right here, with no clone of it and no extra
        // task state. A remote storage's answer is awaited instead.
        if let Poll::Ready((decision, head, limiter)) = check.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            return match admit(decision, head, &self.names) {
                Admitted::Refused(response, decision) => Box::pin(async move {
                    limiter.after_response(&decision, ResponseInfo::new(response.status().as_u16())).await;
                    Ok(response.map(Either::Right))
                }),
                Admitted::Proceed(parts, decision) => {
                    let call = self.inner.call(Request::from_parts(parts, body));
                    let names = self.names.clone();
                    Box::pin(finish(call, decision, limiter, names))
                }
            };
        }
        // The ready service handles this request; a fresh clone waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let names = self.names.clone();
        Box::pin(async move {
            let (decision, head, limiter) = check.await;
            match admit(decision, head, &names) {
                Admitted::Refused(response, decision) => {
                    limiter.after_response(&decision, ResponseInfo::new(response.status().as_u16())).await;
                    Ok(response.map(Either::Right))
                }
                Admitted::Proceed(parts, decision) => {
                    finish(inner.call(Request::from_parts(parts, body)), decision, limiter, names).await
                }
            }
        })
    }
}

/// What to do with a decided request.
enum Admitted {
    Refused(Response<Full<Bytes>>, Decision),
    Proceed(http::request::Parts, Decision),
}

fn admit(mut decision: Decision, head: HttpRequest, names: &HeaderNames) -> Admitted {
    match decision.take_rejection() {
        Some(rejection) => Admitted::Refused(render(rejection, names), decision),
        None => {
            let mut parts = head.into_parts();
            if !decision.limits().is_empty() {
                parts.extensions.insert(CurrentLimits(decision.shared_limits()));
            }
            Admitted::Proceed(parts, decision)
        }
    }
}

/// Awaits the handler, adds the rate-limit headers, deducts what waits for
/// the response.
async fn finish<F, B, E>(
    call: F,
    mut decision: Decision,
    limiter: Limiter,
    names: HeaderNames,
) -> Result<Response<LimitedBody<B>>, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    let mut response = call.await?;
    names.add(response.headers_mut(), decision.take_headers());
    limiter.after_response(&decision, ResponseInfo::new(response.status().as_u16())).await;
    Ok(response.map(Either::Left))
}

/// Renders the limiter's rejection as an HTTP response.
pub fn rejection_response(rejection: Rejection) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(rejection.body)));
    *response.status_mut() = StatusCode::from_u16(rejection.status).unwrap_or(StatusCode::TOO_MANY_REQUESTS);
    if let Ok(value) = HeaderValue::try_from(rejection.content_type) {
        response.headers_mut().insert(CONTENT_TYPE, value);
    }
    for (name, value) in rejection.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(&*name), HeaderValue::try_from(value)) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

fn render(mut rejection: Rejection, names: &HeaderNames) -> Response<Full<Bytes>> {
    let headers = std::mem::take(&mut rejection.headers);
    let mut response = rejection_response(rejection);
    names.add(response.headers_mut(), headers);
    response
}

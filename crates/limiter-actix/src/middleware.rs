//! The actix-web `Transform` and `Service`.

use std::fmt;
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use actix_web::{HttpMessage, HttpResponse};
use limiter_core::engine::{Rejection, RequestLimit, ResponseInfo};

use crate::Limiter;
use crate::request::{ActixRequest, Copier, copier};

/// The limits evaluated for the request, in the request's extensions for
/// handlers to read (Flask-Limiter's `current_limits`): extract it with
/// `web::ReqData<CurrentLimits>`, or `Option<web::ReqData<CurrentLimits>>`
/// on routes that may be exempt.
#[derive(Clone, Debug)]
pub struct CurrentLimits(pub Arc<[RequestLimit]>);

impl CurrentLimits {
    /// The limit the headers describe: the breached one, else the first
    /// not shared (`current_limit`).
    pub fn current(&self) -> Option<&RequestLimit> {
        limiter_core::engine::current_limit(&self.0)
    }
}

/// Applies a [`Limiter`] to every request of an app, scope or resource:
/// `App::new().wrap(LimiterMiddleware::new(limiter))`.
///
/// Limited requests are answered here (429, or 503 when the client cannot
/// be keyed or a failing storage fails closed) and never reach the service;
/// the others get the rate-limit headers on their response, and handlers
/// find the evaluated limits as [`CurrentLimits`]. The middleware adds no
/// error type of its own.
///
/// Routes are the patterns of actix resources (`"/users/{id}"`, as
/// `HttpRequest::match_pattern` reports them, scope prefixes included); a
/// request that matched no resource gets only the meta limits, as
/// Flask-Limiter treats 404s.
#[derive(Clone)]
pub struct LimiterMiddleware {
    limiter: Limiter,
    copiers: Arc<[Copier]>,
}

impl fmt::Debug for LimiterMiddleware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimiterMiddleware")
            .field("limiter", &self.limiter)
            .field("copied_extensions", &self.copiers.len())
            .finish()
    }
}

impl LimiterMiddleware {
    /// A middleware applying `limiter`.
    pub fn new(limiter: Limiter) -> Self {
        LimiterMiddleware { limiter, copiers: Arc::from([]) }
    }

    /// Copies the request's extension of type `T`, when it has one, into the
    /// [`ActixRequest`] that limit callbacks receive, where
    /// [`ActixRequest::extension`] reads it. `T` is cloned for each request,
    /// so put large values behind an `Arc`.
    #[must_use]
    pub fn copy_extension<T: Clone + Send + Sync + 'static>(mut self) -> Self {
        let mut copiers = self.copiers.to_vec();
        copiers.push(copier::<T>());
        self.copiers = copiers.into();
        self
    }
}

impl<S, B> Transform<S, ServiceRequest> for LimiterMiddleware
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = LimiterService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(LimiterService {
            service: Rc::new(service),
            limiter: self.limiter.clone(),
            copiers: Arc::clone(&self.copiers),
        }))
    }
}

/// The service [`LimiterMiddleware`] wraps around the app's.
pub struct LimiterService<S> {
    service: Rc<S>,
    limiter: Limiter,
    copiers: Arc<[Copier]>,
}

impl<S> fmt::Debug for LimiterService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimiterService").field("limiter", &self.limiter).finish_non_exhaustive()
    }
}

/// The future of [`LimiterService`]: local to the worker thread, as actix's
/// own futures are.
pub type LimiterFuture<B> = Pin<Box<dyn Future<Output = Result<ServiceResponse<EitherBody<B>>, actix_web::Error>>>>;

impl<S, B> Service<ServiceRequest> for LimiterService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = LimiterFuture<B>;

    forward_ready!(service);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        let service = Rc::clone(&self.service);
        let limiter = self.limiter.clone();
        let view = ActixRequest::capture(request.request(), &self.copiers);
        Box::pin(async move {
            let mut decision = limiter.check(&view).await;
            drop(view);
            if let Some(rejection) = decision.take_rejection() {
                let response = rejection_response(rejection);
                limiter.after_response(&decision, ResponseInfo::new(response.status().as_u16())).await;
                return Ok(request.into_response(response).map_into_right_body());
            }
            if !decision.limits().is_empty() {
                request.extensions_mut().insert(CurrentLimits(decision.shared_limits()));
            }
            match service.call(request).await {
                Ok(mut response) => {
                    if let Some(state) = decision.header_state() {
                        let settings = limiter.header_settings();
                        let headers = response.headers_mut();
                        state.for_each(settings, |_, name, value| {
                            add_header(headers, name, &value.into_string(), &settings.retry_after);
                        });
                    }
                    limiter.after_response(&decision, ResponseInfo::new(response.status().as_u16())).await;
                    Ok(response.map_into_left_body())
                }
                Err(error) => {
                    // An error from an inner middleware: actix renders it
                    // later, with this status; `deduct_when` sees it too.
                    let status = error.as_response_error().status_code();
                    limiter.after_response(&decision, ResponseInfo::new(status.as_u16())).await;
                    Err(error)
                }
            }
        })
    }
}

/// Adds one of the limiter's headers to the handler's response; a
/// `Retry-After` the handler set stays if it names a later time.
fn add_header(map: &mut HeaderMap, name: &Arc<str>, value: &str, retry_after: &str) {
    let Ok(header) = HeaderName::try_from(&**name) else { return };
    if name.eq_ignore_ascii_case(retry_after)
        && let Some(existing) = map.get(&header).and_then(|v| v.to_str().ok())
        && limiter_core::engine::later_retry_after(existing, value, std::time::SystemTime::now()) == existing
    {
        return;
    }
    if let Ok(value) = HeaderValue::try_from(value) {
        map.insert(header, value);
    }
}

/// Renders the limiter's rejection (a 429, a 503, or what a breach hook
/// chose) as an actix response. A breach hook's own headers come first and
/// the limiter's after them, replacing any of the same name (the limiter
/// already left out its `Retry-After` where the hook's names a later time).
pub fn rejection_response(rejection: Rejection) -> HttpResponse<BoxBody> {
    let status = StatusCode::from_u16(rejection.status).unwrap_or(StatusCode::TOO_MANY_REQUESTS);
    let mut response = HttpResponse::with_body(status, rejection.body).map_into_boxed_body();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::try_from(rejection.content_type) {
        headers.insert(CONTENT_TYPE, value);
    }
    for (name, value) in rejection.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(&*name), HeaderValue::try_from(value)) {
            headers.insert(name, value);
        }
    }
    response
}

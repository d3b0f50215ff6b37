//! The tower `Layer` and `Service`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Full};
use limiter_core::engine::{
    Decision, HeaderSettings, HeaderState, HeaderText, Rejection, RequestLimit, ResponseInfo, later_retry_after,
};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::Limiter;
use crate::grpc;
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
/// rate-limit headers on their response. gRPC calls (a `content-type`
/// starting with `application/grpc`) are refused as gRPC refuses them: see
/// the [crate docs](crate#grpc). The layer adds no error type of its own.
#[derive(Clone, Debug)]
pub struct LimiterLayer {
    limiter: Limiter,
    source: RouteSource,
    names: HeaderNames,
}

/// The limiter's header settings with their names parsed, once per
/// distinct configuration in the process: a response's headers are then
/// found by pointer, without parsing or allocating a name per request, and
/// a response future holds them by a plain reference, with no reference
/// count shared between threads to touch per request.
#[derive(Clone, Copy, Debug)]
struct HeaderNames(&'static ParsedNames);

#[derive(Debug)]
struct ParsedNames {
    settings: HeaderSettings,
    /// Each of `settings.names()`, parsed, by index.
    parsed: [Option<HeaderName>; 6],
}

thread_local! {
    /// The header values of the numbers this thread rendered last, by the
    /// header's index in [`HeaderSettings::names`]: the limit, the reset
    /// time and `Retry-After` stay the same from one response to the next
    /// (for a second at least), so most responses share these values
    /// instead of allocating new ones.
    static RECENT: std::cell::RefCell<[Option<(u64, HeaderValue)>; 4]> =
        const { std::cell::RefCell::new([const { None }; 4]) };
}

/// A header value for a number: the one this thread made last for the
/// header at `index` if it is the same number, else a new one, kept for
/// next time.
fn number_value(index: usize, n: u64) -> Option<HeaderValue> {
    RECENT
        .try_with(|recent| {
            let mut recent = recent.try_borrow_mut().ok()?;
            let slot = recent.get_mut(index)?;
            match slot {
                Some((last, value)) if *last == n => Some(value.clone()),
                _ => {
                    let value = fresh_number(n)?;
                    *slot = Some((n, value.clone()));
                    Some(value)
                }
            }
        })
        .ok()
        .flatten()
        .or_else(|| fresh_number(n))
}

/// From a string of the exact length, the header value takes its buffer as
/// is (`HeaderValue::from(u64)` would allocate and then share a buffer of
/// its own).
fn fresh_number(n: u64) -> Option<HeaderValue> {
    HeaderValue::try_from(HeaderText::number(n).into_string()).ok()
}

impl HeaderNames {
    /// The limiter's names, parsed, interned: kept for the life of the
    /// process, once per distinct header configuration (a handful at most;
    /// an app builds its limiters once).
    fn new(limiter: &Limiter) -> Self {
        static INTERNED: std::sync::Mutex<Vec<&'static ParsedNames>> = std::sync::Mutex::new(Vec::new());
        let settings = limiter.header_settings();
        let mut interned = INTERNED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(names) = interned.iter().find(|names| names.settings == *settings) {
            return HeaderNames(names);
        }
        // A name parsed from text shares its bytes through a reference count
        // that every worker thread would touch per response; the same name
        // made from a `'static` text (leaked with the rest of these) has none.
        let parse = |name: &Arc<str>| {
            let parsed = HeaderName::try_from(&**name).ok()?;
            let text: &'static str = Box::leak(parsed.as_str().to_owned().into_boxed_str());
            Some(HeaderName::from_static(text))
        };
        let names: &'static ParsedNames =
            Box::leak(Box::new(ParsedNames { settings: settings.clone(), parsed: settings.names().map(parse) }));
        interned.push(names);
        HeaderNames(names)
    }

    /// A name the settings hold, found by address (or, for another limiter
    /// with equal settings sharing these, by value); any other, parsed.
    fn get(&self, name: &Arc<str>) -> Option<HeaderName> {
        let names = &self.0;
        let known = names.settings.names();
        let by_address = known.iter().position(|known| Arc::ptr_eq(known, name));
        match by_address.or_else(|| known.iter().position(|known| ***known == **name)) {
            Some(i) => names.parsed.get(i).cloned().flatten(),
            None => HeaderName::try_from(&**name).ok(),
        }
    }

    /// Writes the rate-limit headers of `state` into `map` (those that do
    /// not parse are dropped).
    fn write(&self, map: &mut http::HeaderMap, state: &HeaderState) {
        let names = self.0;
        state.for_each(&names.settings, |index, _, value| {
            let value = match value.as_number() {
                // The remaining count changes on every response: no cache.
                Some(n) if index == HeaderSettings::REMAINING => fresh_number(n),
                Some(n) => number_value(index, n),
                // Text (a date, the IETF fields): its buffer is taken as is.
                None => HeaderValue::try_from(value.into_string()).ok(),
            };
            // The index is the name's in the settings: no lookup.
            if let (Some(Some(name)), Some(value)) = (names.parsed.get(index), value) {
                self.insert(map, name.clone(), value);
            }
        });
    }

    /// Writes a rejection's headers, which are text: each header value
    /// takes its string's buffer as is.
    fn write_owned(&self, map: &mut http::HeaderMap, headers: Vec<(Arc<str>, String)>) {
        for (name, value) in headers {
            if let (Some(name), Ok(value)) = (self.get(&name), HeaderValue::try_from(value)) {
                self.insert(map, name, value);
            }
        }
    }

    /// Inserts one header, replacing the values the name had; a
    /// `Retry-After` the handler set stays if it names a later time.
    fn insert(&self, map: &mut http::HeaderMap, name: HeaderName, value: HeaderValue) {
        use http::header::Entry;
        // Through the entry, the name is hashed and looked up once, also
        // for a `Retry-After` compared with the handler's.
        match map.entry(name) {
            Entry::Vacant(entry) => {
                entry.insert(value);
            }
            Entry::Occupied(mut entry) => {
                if self.0.parsed.get(HeaderSettings::RETRY_AFTER).is_some_and(|name| name.as_ref() == Some(entry.key()))
                    && let Ok(existing) = entry.get().to_str()
                    && let Ok(ours) = value.to_str()
                    && later_retry_after(existing, ours, std::time::SystemTime::now()) == existing
                {
                    return;
                }
                // Replaces every value the name had, as `HeaderMap::insert` does.
                entry.insert(value);
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
        LimiterService {
            inner,
            immediate: self.limiter.storage().immediate(),
            limiter: self.limiter.clone(),
            source: self.source,
            names: self.names,
        }
    }
}

/// The service [`LimiterLayer`] makes.
#[derive(Clone, Debug)]
pub struct LimiterService<S> {
    inner: S,
    limiter: Limiter,
    /// The storage answers at once (the memory storage): requests are
    /// decided right in `call`, with nothing boxed.
    immediate: bool,
    source: RouteSource,
    names: HeaderNames,
}

/// The response body: the service's own, or the limiter's rejection.
pub type LimitedBody<B> = Either<B, Full<Bytes>>;

type BoxedResponse<B, E> = Pin<Box<dyn Future<Output = Result<Response<LimitedBody<B>>, E>> + Send>>;

pin_project! {
    /// The future of [`LimiterService`]: the wrapped service's response
    /// with the rate-limit headers added, or the limiter's rejection.
    pub struct ResponseFuture<F, B, E> {
        #[pin]
        state: State<F, B, E>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B, E> {
        // Decided at once and allowed: the handler runs, then the headers.
        Call { #[pin] call: F, headers: Option<HeaderState>, names: HeaderNames },
        // Refused at once.
        Refused { response: Option<Response<Full<Bytes>>> },
        // A storage that waits, or limits deducted after the response.
        Boxed { future: BoxedResponse<B, E> },
    }
}

impl<F, B, E> std::fmt::Debug for ResponseFuture<F, B, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<LimitedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Call { call, headers, names } => match call.poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Ready(Ok(mut response)) => {
                    if let Some(headers) = headers.take() {
                        names.write(response.headers_mut(), &headers);
                    }
                    Poll::Ready(Ok(response.map(Either::Left)))
                }
            },
            StateProj::Refused { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response.map(Either::Right))),
                None => Poll::Pending,
            },
            StateProj::Boxed { future } => future.as_mut().poll(cx),
        }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for LimiterService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    // Held while the deductions of a failed call are made (every tower
    // stack's errors are: hyper, axum and tonic require `Send` errors).
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<LimitedBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let (parts, body) = request.into_parts();
        let head = HttpRequest::new(parts, self.source);
        // An immediate storage (the memory storage) decides at once: the
        // check runs here, on the stack, with no future, and an allowed request
        // goes on to the ready inner service with nothing boxed and no clone
        // of the limiter or of the inner service.
        if self.immediate
            && let Some(decision) = self.limiter.check_now(&head)
        {
            return self.decided(decision, head, body);
        }
        // A storage that waits.
        let limiter = self.limiter.clone();
        let mut check = Box::pin(async move {
            let decision = limiter.check(&head).await;
            (decision, head, limiter)
        });
        // A remote storage may still answer at once (a cached answer): then
        // the ready inner service is called right here, with no clone of it.
        if let Poll::Ready((decision, head, _)) = check.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            return self.decided(decision, head, body);
        }
        // The ready service handles this request; a fresh clone waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let names = self.names;
        let future = Box::pin(async move {
            let (decision, head, limiter) = check.await;
            match admit(decision, head, &names) {
                Admitted::Refused { response, status, decision } => {
                    limiter.after_response(&decision, ResponseInfo::new(status)).await;
                    Ok(response.map(Either::Right))
                }
                Admitted::Proceed(parts, decision) => {
                    finish(inner.call(Request::from_parts(parts, body)), decision, limiter, names).await
                }
            }
        });
        ResponseFuture { state: State::Boxed { future } }
    }
}

impl<S> LimiterService<S> {
    /// Answers a decided request: the rejection, or the ready inner
    /// service's response with the headers. Only limits deducted after the
    /// response (`deduct_when`) need a boxed future. Inlined: the request
    /// head and the decision are then not copied into its arguments.
    #[inline(always)]
    fn decided<ReqBody, ResBody>(
        &mut self,
        mut decision: Decision,
        head: HttpRequest,
        body: ReqBody,
    ) -> ResponseFuture<S::Future, ResBody, S::Error>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>> + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Send + 'static,
        ReqBody: 'static,
        ResBody: Send + 'static,
    {
        let deferred = decision.has_deferred();
        // The common case, allowed with nothing deducted later, straight
        // through: the request head and the decision are moved no further.
        if !deferred && decision.is_allowed() {
            let mut parts = head.into_parts();
            let headers = decision.take_header_state();
            let limits = decision.into_shared_limits();
            if !limits.is_empty() {
                parts.extensions.insert(CurrentLimits(limits));
            }
            let call = self.inner.call(Request::from_parts(parts, body));
            return ResponseFuture { state: State::Call { call, headers, names: self.names } };
        }
        let state = match admit(decision, head, &self.names) {
            Admitted::Refused { response, .. } if !deferred => State::Refused { response: Some(response) },
            Admitted::Refused { response, status, decision } => {
                let limiter = self.limiter.clone();
                State::Boxed {
                    future: Box::pin(async move {
                        limiter.after_response(&decision, ResponseInfo::new(status)).await;
                        Ok(response.map(Either::Right))
                    }),
                }
            }
            Admitted::Proceed(parts, mut decision) if !deferred => {
                let headers = decision.take_header_state();
                drop(decision);
                State::Call { call: self.inner.call(Request::from_parts(parts, body)), headers, names: self.names }
            }
            Admitted::Proceed(parts, decision) => {
                let call = self.inner.call(Request::from_parts(parts, body));
                State::Boxed { future: Box::pin(finish(call, decision, self.limiter.clone(), self.names)) }
            }
        };
        ResponseFuture { state }
    }
}

/// What to do with a decided request.
enum Admitted {
    /// The rejection's `status` is what `deduct_when` sees, also when the
    /// response carries it in `grpc-status` under an HTTP 200.
    Refused {
        response: Response<Full<Bytes>>,
        status: u16,
        decision: Decision,
    },
    Proceed(http::request::Parts, Decision),
}

fn admit(mut decision: Decision, head: HttpRequest, names: &HeaderNames) -> Admitted {
    match decision.take_rejection() {
        Some(rejection) => {
            let status = rejection.status;
            let response = render(rejection, names, grpc::is_grpc(head.headers()));
            Admitted::Refused { response, status, decision }
        }
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
/// the response. A service error counts as a 500 (as in the actix adapter):
/// no response reaches the client, and `deduct_when` must still see the
/// request, or failing calls would never be limited.
async fn finish<F, B, E>(
    call: F,
    decision: Decision,
    limiter: Limiter,
    names: HeaderNames,
) -> Result<Response<LimitedBody<B>>, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    let mut response = match call.await {
        Ok(response) => response,
        Err(error) => {
            limiter.after_response(&decision, ResponseInfo::new(500)).await;
            return Err(error);
        }
    };
    if let Some(headers) = decision.header_state() {
        names.write(response.headers_mut(), headers);
    }
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

/// The rejection as the client's protocol answers it: an HTTP response, or
/// for a gRPC call (`grpc`) its gRPC form with the same headers.
fn render(mut rejection: Rejection, names: &HeaderNames, grpc: bool) -> Response<Full<Bytes>> {
    let headers = std::mem::take(&mut rejection.headers);
    let body = if grpc { std::mem::take(&mut rejection.body) } else { String::new() };
    let mut response = rejection_response(rejection);
    names.write_owned(response.headers_mut(), headers);
    if grpc { grpc::into_grpc(response, &body) } else { response }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter() -> Limiter {
        Limiter::builder().headers_enabled(true).build().unwrap()
    }

    fn value<'m>(map: &'m http::HeaderMap, name: &str) -> Option<&'m str> {
        map.get(name).and_then(|v| v.to_str().ok())
    }

    #[test]
    fn the_decisions_headers_replace_stale_ones() {
        let mut settings = HeaderSettings::default();
        settings.enabled = true;
        settings.retry_after_format = limiter_core::engine::RetryAfterFormat::HttpDate;
        let limiter = Limiter::builder()
            .headers(settings)
            .key(limiter_core::engine::GlobalKey::default())
            .clock(limiter_core::ManualClock::new(limiter_core::Timestamp::from_secs(12)))
            .default_limits("10/minute")
            .build()
            .unwrap();
        let (parts, ()) = Request::get("/").body(()).unwrap().into_parts();
        let decision = limiter.check_now(&HttpRequest::new(parts, RouteSource::UriPath)).unwrap();
        let mut map = http::HeaderMap::new();
        map.append("x-ratelimit-limit", HeaderValue::from_static("stale"));
        map.append("x-ratelimit-limit", HeaderValue::from_static("staler"));
        HeaderNames::new(&limiter).write(&mut map, decision.header_state().unwrap());
        assert_eq!(value(&map, "x-ratelimit-limit"), Some("10"));
        assert_eq!(map.get_all("x-ratelimit-limit").iter().count(), 1, "ours replaces every stale value");
        assert_eq!(value(&map, "x-ratelimit-remaining"), Some("9"));
        assert_eq!(value(&map, "x-ratelimit-reset"), Some("73"), "the window opened at the first hit, 12 s");
        assert_eq!(value(&map, "retry-after"), Some("Thu, 01 Jan 1970 00:01:13 GMT"));
    }

    #[test]
    fn a_rejection_keeps_its_headers() {
        let rejection = Rejection::text(429, "slow down")
            .with_header("X-RateLimit-Remaining", "0")
            .with_header("Retry-After", "30")
            .with_header("Bad Name", "dropped");
        let response = render(rejection, &HeaderNames::new(&limiter()), false);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(value(response.headers(), "x-ratelimit-remaining"), Some("0"));
        assert_eq!(value(response.headers(), "retry-after"), Some("30"));
        assert_eq!(response.headers().len(), 3, "content type and the two valid headers");
    }
}

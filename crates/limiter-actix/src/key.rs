//! Keys read from the request's extensions.

use std::fmt;
use std::marker::PhantomData;

use limiter_core::engine::{KeyError, KeyExtractor};

use crate::request::ActixRequest;

/// Keys requests by a value an earlier middleware put in the request's
/// extensions (an authenticated user id, an API client, a tenant).
///
/// The limiter sees only the extensions the middleware copies (see
/// [`ActixRequest`]), so copy `T` with
/// [`LimiterMiddleware::copy_extension`](crate::LimiterMiddleware::copy_extension):
///
/// ```
/// use limiter_actix::{ExtensionKey, Limiter, LimiterMiddleware};
///
/// #[derive(Clone)]
/// struct UserId(u64);
/// impl std::fmt::Display for UserId {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { write!(f, "user-{}", self.0) }
/// }
///
/// let limiter = Limiter::builder().key(ExtensionKey::<UserId>::new()).default_limits("100/minute").build()?;
/// let middleware = LimiterMiddleware::new(limiter).copy_extension::<UserId>();
/// # let _ = middleware;
/// # Ok::<(), limiter_core::ConfigError>(())
/// ```
pub struct ExtensionKey<T>(PhantomData<fn() -> T>);

impl<T> ExtensionKey<T> {
    /// Keys by the `T` in the extensions; requests without one have no key.
    pub fn new() -> Self {
        ExtensionKey(PhantomData)
    }
}

impl<T> Default for ExtensionKey<T> {
    fn default() -> Self {
        ExtensionKey::new()
    }
}

impl<T> fmt::Debug for ExtensionKey<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ExtensionKey<{}>", std::any::type_name::<T>())
    }
}

impl<T: fmt::Display + Clone + Send + Sync + 'static> KeyExtractor<ActixRequest> for ExtensionKey<T> {
    fn extract(&self, request: &ActixRequest) -> Result<String, KeyError> {
        request.extension::<T>().map(ToString::to_string).ok_or_else(|| {
            let name = std::any::type_name::<T>();
            KeyError::new(format!(
                "the request has no {name} extension: add the middleware that sets it so that it runs before \
                 the limiter (`wrap` it after `LimiterMiddleware`), and copy it with \
                 `LimiterMiddleware::copy_extension::<{name}>()`"
            ))
        })
    }
}

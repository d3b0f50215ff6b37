//! Keys read from the request's extensions.

use std::fmt;
use std::marker::PhantomData;

use limiter_core::engine::{KeyError, KeyExtractor};

use crate::request::HttpRequest;

/// Keys requests by a value an earlier layer put in the request's
/// extensions (an authenticated user id, an API client, a tenant).
///
/// ```
/// use limiter_tower::{ExtensionKey, Limiter};
///
/// #[derive(Clone)]
/// struct UserId(u64);
/// impl std::fmt::Display for UserId {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { write!(f, "user-{}", self.0) }
/// }
///
/// let limiter = Limiter::builder().key(ExtensionKey::<UserId>::new()).default_limits("100/minute").build()?;
/// # let _ = limiter;
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

impl<T: fmt::Display + Clone + Send + Sync + 'static> KeyExtractor<HttpRequest> for ExtensionKey<T> {
    fn extract(&self, request: &HttpRequest) -> Result<String, KeyError> {
        request.extensions().get::<T>().map(ToString::to_string).ok_or_else(|| {
            KeyError::new(format!(
                "the request has no {} extension: add the layer that sets it before the limiter layer",
                std::any::type_name::<T>()
            ))
        })
    }
}

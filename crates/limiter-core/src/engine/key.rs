//! Who a request is counted for: the client key.

use std::fmt;
use std::net::IpAddr;

use super::request::RequestInfo;

/// Why no key could be found for a request. The message says what is
/// missing and how to fix the setup.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct KeyError {
    message: String,
}

impl KeyError {
    /// An error with a message naming what is missing and the fix.
    pub fn new(message: impl Into<String>) -> Self {
        KeyError { message: message.into() }
    }
}

/// Finds the client key of a request: an IP address, a user id, an API key.
///
/// Implemented by closures `Fn(&R) -> Result<String, KeyError>`.
pub trait KeyExtractor<R: ?Sized>: Send + Sync + 'static {
    /// The key of `request`.
    ///
    /// # Errors
    ///
    /// [`KeyError`] when the request carries no key. The limiter then applies
    /// its failure policy: a request without a key is never counted in a
    /// bucket shared with other unknown clients.
    fn extract(&self, request: &R) -> Result<String, KeyError>;
}

impl<R: ?Sized, F> KeyExtractor<R> for F
where
    F: Fn(&R) -> Result<String, KeyError> + Send + Sync + 'static,
{
    fn extract(&self, request: &R) -> Result<String, KeyError> {
        self(request)
    }
}

/// Renders a client address as a key: IPv4 as is, IPv6 reduced to its
/// network prefix (`2001:db8:1:2::/64`), since one client typically holds a
/// whole /64 and could otherwise rotate through addresses to escape limits.
/// A prefix of 128 keeps the full address (`2001:db8::1`), as Flask-Limiter does.
pub fn ip_key(ip: IpAddr, ipv6_prefix: u8) -> String {
    match ip {
        IpAddr::V4(v4) => ipv4_key(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => ipv4_key(v4),
            None if ipv6_prefix >= 128 => v6.to_string(),
            None => {
                let mask = u128::MAX.checked_shl(128 - u32::from(ipv6_prefix)).unwrap_or(0);
                let network = std::net::Ipv6Addr::from(u128::from(v6) & mask);
                format!("{network}/{ipv6_prefix}")
            }
        },
    }
}

/// Dotted decimal, written directly: the address of every request is
/// formatted, and `Display` goes through the formatting machinery.
fn ipv4_key(ip: std::net::Ipv4Addr) -> String {
    let mut key = String::with_capacity(15);
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            key.push('.');
        }
        // Digit by digit: no copy of a formatted buffer per octet.
        if octet >= 100 {
            key.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            key.push(char::from(b'0' + octet / 10 % 10));
        }
        key.push(char::from(b'0' + octet % 10));
    }
    key
}

/// The peer's address: Flask-Limiter's `get_remote_address`, without its
/// silent `127.0.0.1` fallback. IPv6 peers are keyed by their /64 unless
/// told otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerIp {
    ipv6_prefix: u8,
}

impl Default for PeerIp {
    fn default() -> Self {
        PeerIp { ipv6_prefix: 64 }
    }
}

impl PeerIp {
    /// Keys IPv4 peers by address and IPv6 peers by their /64.
    pub fn new() -> Self {
        PeerIp::default()
    }

    /// Keys IPv6 peers by their first `bits` bits (128: the whole address).
    #[must_use]
    pub fn ipv6_prefix(mut self, bits: u8) -> Self {
        self.ipv6_prefix = bits.min(128);
        self
    }
}

impl<R: RequestInfo + ?Sized> KeyExtractor<R> for PeerIp {
    fn extract(&self, request: &R) -> Result<String, KeyError> {
        request.peer_addr().map(|ip| ip_key(ip, self.ipv6_prefix)).ok_or_else(|| {
            KeyError::new(
                "the server did not provide the peer address: with axum, serve \
                 `app.into_make_service_with_connect_info::<SocketAddr>()`; actix-web provides it except \
                 over Unix sockets; or key clients another way",
            )
        })
    }
}

/// The value of a header (an API key, a user id set by an authenticating
/// proxy). A request without the header has no key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderKey {
    name: String,
}

impl HeaderKey {
    /// Keys requests by the header `name`.
    pub fn new(name: impl Into<String>) -> Self {
        HeaderKey { name: name.into() }
    }
}

impl<R: RequestInfo + ?Sized> KeyExtractor<R> for HeaderKey {
    fn extract(&self, request: &R) -> Result<String, KeyError> {
        match request.header(&self.name) {
            Some(value) if !value.is_empty() => Ok(value.to_owned()),
            _ => Err(KeyError::new(format!("the request has no {} header to key it by", self.name))),
        }
    }
}

/// One key for every request: a limit on the whole service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobalKey(String);

impl Default for GlobalKey {
    fn default() -> Self {
        GlobalKey("global".to_owned())
    }
}

impl<R: ?Sized> KeyExtractor<R> for GlobalKey {
    fn extract(&self, _: &R) -> Result<String, KeyError> {
        Ok(self.0.clone())
    }
}

/// Keys requests by a value an earlier layer put in the request's
/// extensions (an authenticated user id, an API client, a tenant); requests
/// without one have no key.
pub struct ExtensionKey<T>(std::marker::PhantomData<fn() -> T>);

impl<T> ExtensionKey<T> {
    /// Keys by the `T` in the request's extensions.
    pub fn new() -> Self {
        ExtensionKey(std::marker::PhantomData)
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

impl<R: RequestInfo + ?Sized, T: fmt::Display + Send + Sync + 'static> KeyExtractor<R> for ExtensionKey<T> {
    fn extract(&self, request: &R) -> Result<String, KeyError> {
        request.extension::<T>().map(ToString::to_string).ok_or_else(|| {
            let name = std::any::type_name::<T>();
            KeyError::new(format!("the request has no {name} extension: {}", R::EXTENSION_HINT.replace("{T}", name)))
        })
    }
}

/// A key extractor behind a pointer, as the limiter stores it.
pub(crate) struct BoxedKey<R: ?Sized>(pub(crate) Box<dyn KeyExtractor<R>>);

impl<R: ?Sized> fmt::Debug for BoxedKey<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyExtractor")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_keys() {
        assert_eq!(ip_key("203.0.113.7".parse().unwrap(), 64), "203.0.113.7");
        assert_eq!(ip_key("0.10.100.255".parse().unwrap(), 64), "0.10.100.255");
        assert_eq!(ip_key("2001:db8:1:2:3:4:5:6".parse().unwrap(), 64), "2001:db8:1:2::/64");
        assert_eq!(ip_key("2001:db8:1:2:3:4:5:6".parse().unwrap(), 56), "2001:db8:1::/56");
        assert_eq!(ip_key("2001:db8::1".parse().unwrap(), 128), "2001:db8::1");
        assert_eq!(ip_key("2001:db8::1".parse().unwrap(), 0), "::/0");
        assert_eq!(ip_key("::ffff:198.51.100.1".parse().unwrap(), 64), "198.51.100.1");
    }
}

//! The client's address when the app sits behind reverse proxies.
//!
//! # Choosing a key
//!
//! Every limit counts requests per *key*, and a [`KeyExtractor`] finds it.
//! Pick the one that matches how requests reach the app:
//!
//! | Requests reach the app | Key with |
//! |---|---|
//! | straight from clients | [`PeerIp`], the default |
//! | through a fixed chain of `n` proxies that append to `X-Forwarded-For` (nginx, HAProxy, a cloud load balancer) | [`ForwardedFor::trusting_hops`]`(n)` |
//! | through proxies with known addresses, however many | [`ForwardedFor::trusting_networks`] |
//! | through a CDN or proxy that writes the client's address into a header of its own (`CF-Connecting-IP`, `X-Real-IP`) | [`TrustedHeader`] |
//! | from authenticated users or API clients | [`HeaderKey`], or a closure |
//! | as one budget for the whole service | [`GlobalKey`] |
//!
//! These rules hold whichever you pick:
//!
//! - **Whoever sends a request writes its forwarding headers.** A client can
//!   send `X-Forwarded-For: 1.2.3.4` itself. Proxies *append* to the header,
//!   so only the right-most entries, the ones your own proxies added, can be
//!   believed. An extractor that takes the left-most entry lets any client
//!   choose its key and change it on every request (tower_governor's
//!   `SmartIpKeyExtractor` and actix-web's `realip_remote_addr` do this).
//!   This module reads from the right only.
//! - **Trusting proxies is opt-in.** Nothing here reads a header until told
//!   how many proxies, or which networks, to trust. Behind no proxy, keep
//!   `PeerIp`: a forwarding header only adds risk there.
//! - **Read the header your proxy writes, and no other.** A proxy that
//!   maintains `X-Forwarded-For` passes on a `Forwarded` header sent by the
//!   client untouched, and the other way round. An extractor that reads
//!   whichever header is present lets the client choose (a spoofed header
//!   bypassed rack-attack this way until Rack's `forwarded_priority` was
//!   pinned). So [`ForwardingHeader`] names one header, never a fallback
//!   chain.
//! - **Hop counts need a closed back door.** With [`Trust::Hops`], only the
//!   count separates a proxied request from a client that connects to the
//!   app directly and forges the header. Make sure the app can be reached
//!   only through the proxy (bind it to an internal address, or firewall
//!   it), or use [`Trust::Networks`], which checks the peer first: a client
//!   that is not a trusted proxy is keyed by its own address and its
//!   headers are ignored.
//! - **IPv6 clients are keyed by their /64** (see [`ip_key`]):
//!   a single host usually holds a whole /64 and could rotate through it.
//!   IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`) count as IPv4, both as
//!   keys and when matched against trusted networks.
//! - **No key never means a shared key.** When no address can be found (the
//!   server does not pass the peer address, or the entry where the client
//!   should be is not an IP address), extraction fails with a
//!   [`KeyError`] that names the fix, and the limiter applies its
//!   [`FailurePolicy`]: by default a 503, with
//!   `FailOpen` the request goes through unlimited. It is never counted in
//!   one bucket with every other unknown client, as Flask-Limiter's
//!   `127.0.0.1` fallback does. In the setups above, only hosts inside
//!   trusted networks can cause such an error.
//!
//! ## Hop count or trusted networks?
//!
//! [`Trust::Hops`]`(n)` is werkzeug's `ProxyFix(x_for=n)`, the setup
//! Flask-Limiter's documentation recommends. It needs nothing but the
//! count, and is right only when every request crosses exactly `n` proxies
//! that append to the header. [`Trust::Networks`] needs the proxies'
//! addresses, but tolerates a varying number of proxies and keys a client
//! that reaches the app directly by its own address. Prefer networks when
//! the proxies' addresses are known.
//!
//! ## Example: one nginx in front of the app
//!
//! nginx, on `10.0.0.2`, appends the address of whoever connected to it:
//!
//! ```text
//! proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
//! ```
//!
//! The app trusts that address:
//!
//! ```
//! use limiter_core::engine::{ForwardedFor, Limiter};
//! # use limiter_core::engine::RequestInfo;
//! # use std::net::IpAddr;
//! # struct MyRequest;
//! # impl RequestInfo for MyRequest {
//! #     fn method(&self) -> &str { "GET" }
//! #     fn route(&self) -> Option<&str> { None }
//! #     fn header(&self, _: &str) -> Option<&str> { None }
//! #     fn header_values(&self, _: &str) -> Vec<&str> { Vec::new() }
//! #     fn peer_addr(&self) -> Option<IpAddr> { None }
//! # }
//!
//! let limiter = Limiter::<MyRequest>::builder()
//!     .key(ForwardedFor::trusting_networks(["10.0.0.2"])?)
//!     .default_limits("100 per minute")
//!     .build()?;
//! # let _ = limiter;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`KeyExtractor`]: crate::engine::KeyExtractor
//! [`KeyError`]: crate::engine::KeyError
//! [`PeerIp`]: crate::engine::PeerIp
//! [`HeaderKey`]: crate::engine::HeaderKey
//! [`GlobalKey`]: crate::engine::GlobalKey
//! [`ip_key`]: crate::engine::ip_key
//! [`FailurePolicy`]: crate::engine::FailurePolicy
//! [`ForwardedFor::trusting_hops`]: crate::engine::ForwardedFor::trusting_hops
//! [`ForwardedFor::trusting_networks`]: crate::engine::ForwardedFor::trusting_networks
//! [`TrustedHeader`]: crate::engine::TrustedHeader
//! [`ForwardingHeader`]: crate::engine::ForwardingHeader
//! [`Trust::Hops`]: crate::engine::Trust::Hops
//! [`Trust::Networks`]: crate::engine::Trust::Networks

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use super::key::{KeyError, KeyExtractor, ip_key};
use super::request::RequestInfo;
use super::response::{HEADER_NAME_RULE, is_header_name};

/// IPv6 clients are keyed by their /64 unless told otherwise.
const DEFAULT_IPV6_PREFIX: u8 = 64;

/// How much of a bad header entry an error message quotes.
const QUOTED_CHARS: usize = 64;

/// The forwarding header a [`ForwardedFor`] reads: the one the trusted
/// proxies write. Exactly one, never a fallback from one to the other: a
/// proxy that writes one of them passes the other on from the client
/// untouched, so reading whichever is present would let clients pick their
/// own address.
///
/// # Example
///
/// Behind one proxy that writes RFC 7239 `Forwarded` (for instance nginx
/// with `proxy_set_header Forwarded "$http_forwarded, for=\"$remote_addr\""`):
///
/// ```
/// use limiter_core::engine::{ForwardedFor, ForwardingHeader, KeyExtractor};
/// # use limiter_core::engine::RequestInfo;
/// # use std::net::IpAddr;
/// # struct Request { peer: IpAddr, headers: Vec<(&'static str, &'static str)> }
/// # impl RequestInfo for Request {
/// #     fn method(&self) -> &str { "GET" }
/// #     fn route(&self) -> Option<&str> { None }
/// #     fn header(&self, name: &str) -> Option<&str> { self.header_values(name).first().copied() }
/// #     fn header_values(&self, name: &str) -> Vec<&str> {
/// #         self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v).collect()
/// #     }
/// #     fn peer_addr(&self) -> Option<IpAddr> { Some(self.peer) }
/// # }
///
/// let key = ForwardedFor::trusting_hops(1).header(ForwardingHeader::Forwarded);
/// let request = Request {
///     peer: "10.0.0.2".parse()?,
///     headers: vec![
///         // Sent by the client, and ignored: the proxy writes `Forwarded`.
///         ("X-Forwarded-For", "198.51.100.1"),
///         // The client's own `for=` first, then the one the proxy added.
///         ("Forwarded", r#"for=198.51.100.1, for="[2001:db8:cafe::17]:4711";proto=https"#),
///     ],
/// };
/// assert_eq!(key.extract(&request)?, "2001:db8:cafe::/64");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ForwardingHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2`, the de facto standard
    /// (nginx `$proxy_add_x_forwarded_for`, HAProxy `option forwardfor`,
    /// cloud load balancers). The default.
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client;proto=https, for="[2001:db8::1]:4711"`.
    Forwarded,
}

impl ForwardingHeader {
    /// The header's name, as sent.
    ///
    /// # Example
    ///
    /// ```
    /// use limiter_core::engine::ForwardingHeader;
    ///
    /// assert_eq!(ForwardingHeader::XForwardedFor.name(), "X-Forwarded-For");
    /// assert_eq!(ForwardingHeader::Forwarded.name(), "Forwarded");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            ForwardingHeader::XForwardedFor => "X-Forwarded-For",
            ForwardingHeader::Forwarded => "Forwarded",
        }
    }
}

/// Which proxies a [`ForwardedFor`] believes.
///
/// # Example
///
/// One reverse proxy, trusted by its address, or by counting it:
///
/// ```
/// use limiter_core::engine::{ForwardedFor, Trust};
///
/// let by_address = ForwardedFor::new(Trust::networks(["10.0.0.2"])?);
/// let by_count = ForwardedFor::new(Trust::Hops(1));
/// # let _ = (by_address, by_count);
/// # Ok::<(), limiter_core::engine::TrustedNetworkError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Trust {
    /// The app sits behind exactly this many proxies, each appending the
    /// address it received the request from; the peer is the nearest one.
    /// The client is the n-th entry counting from the right, as with
    /// werkzeug's `ProxyFix(x_for=n)`. `Hops(0)` reads no header: the peer
    /// is the client.
    ///
    /// A header with fewer than n entries means the request did not cross
    /// every proxy: a health check sent by the load balancer itself, a
    /// sidecar on the inner network. Its peer, the nearest host that did
    /// connect, is then the only address nobody could forge, and the client
    /// is keyed by it (werkzeug does the same). Outside clients cannot
    /// shorten the list, since proxies append and never remove. If every
    /// request ends up keyed by a proxy's address, n is larger than the
    /// number of proxies that append.
    Hops(usize),
    /// The proxies are the hosts in these networks. When the peer is not in
    /// one, the peer is the client and the headers are ignored entirely, so
    /// a client that reaches the app directly cannot choose its key. When it
    /// is, the entries are walked from the right, skipping trusted
    /// addresses: the first untrusted address is the client; if every entry
    /// is trusted, the left-most one (or the peer, when the header is
    /// missing). An entry that is not an IP address where the client should
    /// be fails with a [`KeyError`].
    ///
    /// Build it from text with [`Trust::networks`]; the networks are
    /// [`ipnet::IpNet`] values.
    Networks(Vec<IpNet>),
}

impl Trust {
    /// Trusts the hosts in `networks`: CIDR blocks (`"10.0.0.0/8"`,
    /// `"2001:db8::/32"`) or single addresses (`"10.0.0.2"`).
    ///
    /// # Errors
    ///
    /// [`TrustedNetworkError`] naming the first value that is not an
    /// address or a CIDR block, or a block with bits set after its prefix
    /// (`"10.0.0.1/8"`, probably a typo for `10.0.0.1` or `10.0.0.0/8`).
    ///
    /// # Example
    ///
    /// ```
    /// use limiter_core::engine::Trust;
    ///
    /// let proxy = Trust::networks(["10.0.0.2"])?;
    /// let err = Trust::networks(["10.0.0.0/8", "bad"]).unwrap_err();
    /// assert_eq!(err.value(), "bad");
    /// # let _ = proxy;
    /// # Ok::<(), limiter_core::engine::TrustedNetworkError>(())
    /// ```
    pub fn networks<I, S>(networks: I) -> Result<Trust, TrustedNetworkError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        networks.into_iter().map(|n| parse_network(n.as_ref())).collect::<Result<_, _>>().map(Trust::Networks)
    }
}

/// A trusted network that does not parse, or a trusted proxy's header
/// name that is not one: the value and what was expected.
///
/// # Example
///
/// ```
/// use limiter_core::engine::ForwardedFor;
///
/// let err = ForwardedFor::trusting_networks(["10.0.0.0/8", "bad"]).unwrap_err();
/// assert_eq!(err.value(), "bad");
/// assert!(err.to_string().contains("\"10.0.0.0/8\""), "{err}");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {value:?}: {reason}")]
pub struct TrustedNetworkError {
    /// What the value was meant to be: a trusted network, or the header a
    /// trusted proxy writes.
    what: &'static str,
    value: String,
    reason: String,
}

impl TrustedNetworkError {
    /// The value that does not parse.
    ///
    /// # Example
    ///
    /// ```
    /// use limiter_core::engine::ForwardedFor;
    ///
    /// let err = ForwardedFor::trusting_networks(["10.0.0.1/8"]).unwrap_err();
    /// assert_eq!(err.value(), "10.0.0.1/8");
    /// assert!(err.to_string().contains("10.0.0.0/8"), "{err}");
    /// ```
    pub fn value(&self) -> &str {
        &self.value
    }
}

fn parse_network(value: &str) -> Result<IpNet, TrustedNetworkError> {
    let text = value.trim();
    let error = |reason: String| TrustedNetworkError { what: "trusted network", value: value.to_owned(), reason };
    let parsed =
        if text.contains('/') { text.parse::<IpNet>().ok() } else { text.parse::<IpAddr>().ok().map(IpNet::from) };
    let net = parsed.ok_or_else(|| {
        error(
            "expected an address (\"10.0.0.2\", \"2001:db8::2\") or a CIDR block (\"10.0.0.0/8\", \"2001:db8::/32\")"
                .to_owned(),
        )
    })?;
    if net.addr() != net.network() {
        return Err(error(format!(
            "bits are set after the /{} prefix: write \"{}\" for the network, or the address alone for one host",
            net.prefix_len(),
            net.trunc()
        )));
    }
    Ok(net)
}

/// Whether `ip` (canonical: IPv4-mapped addresses as IPv4) is in one of
/// `networks`, which may be written as IPv4 or as IPv4-mapped IPv6.
fn is_trusted(networks: &[IpNet], ip: IpAddr) -> bool {
    let mapped = match ip {
        IpAddr::V4(v4) => Some(IpAddr::V6(v4.to_ipv6_mapped())),
        IpAddr::V6(_) => None,
    };
    networks.iter().any(|net| net.contains(&ip) || mapped.is_some_and(|m| net.contains(&m)))
}

/// Keys clients by the address their trusted proxies forwarded, read from
/// the right of `X-Forwarded-For` (or RFC 7239 `Forwarded`), never from the
/// left, which the client writes.
///
/// See [`Trust`] for how the client's entry is found.
///
/// - `X-Forwarded-For`: every header line, in order, split at commas,
///   entries trimmed; empty entries are skipped, as RFC 9110 §5.6.1 asks.
///   Entries are addresses, optionally with a port (`192.0.2.60:8080`,
///   `[2001:db8::1]:4711`), as some load balancers write them.
/// - `Forwarded`: the `for=` parameter of each element (parameter names in
///   any case, values plain or quoted): an address, `"192.0.2.60:8080"` or
///   `"[2001:db8:cafe::17]:4711"`. `for=unknown` and obfuscated identifiers
///   (`for=_hidden`) are not addresses. Each header line is split on its
///   own, from the right, so a client's unbalanced quote cannot swallow the
///   elements its proxies append.
///
/// # Example
///
/// One nginx in front of the app, on `10.0.0.2`, with
/// `proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;`:
///
/// ```
/// use limiter_core::engine::{ForwardedFor, KeyExtractor};
/// # use limiter_core::engine::RequestInfo;
/// # use std::net::IpAddr;
/// # struct Request { peer: IpAddr, headers: Vec<(&'static str, &'static str)> }
/// # impl RequestInfo for Request {
/// #     fn method(&self) -> &str { "GET" }
/// #     fn route(&self) -> Option<&str> { None }
/// #     fn header(&self, name: &str) -> Option<&str> { self.header_values(name).first().copied() }
/// #     fn header_values(&self, name: &str) -> Vec<&str> {
/// #         self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v).collect()
/// #     }
/// #     fn peer_addr(&self) -> Option<IpAddr> { Some(self.peer) }
/// # }
///
/// let key = ForwardedFor::trusting_networks(["10.0.0.2"])?;
///
/// // A client at 203.0.113.7 sent `X-Forwarded-For: 1.2.3.4` to nginx,
/// // which appended the address it saw.
/// let proxied = Request { peer: "10.0.0.2".parse()?, headers: vec![("X-Forwarded-For", "1.2.3.4, 203.0.113.7")] };
/// assert_eq!(key.extract(&proxied)?, "203.0.113.7");
///
/// // The same client, connecting to the app directly: its header is ignored.
/// let direct = Request { peer: "203.0.113.7".parse()?, headers: vec![("X-Forwarded-For", "1.2.3.4")] };
/// assert_eq!(key.extract(&direct)?, "203.0.113.7");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ForwardedFor {
    trust: Trust,
    header: ForwardingHeader,
    ipv6_prefix: u8,
}

impl ForwardedFor {
    /// Believes the proxies `trust` describes, reading `X-Forwarded-For`
    /// and keying IPv6 clients by their /64.
    ///
    /// # Example
    ///
    /// ```
    /// use limiter_core::engine::{ForwardedFor, Trust};
    ///
    /// // One reverse proxy on 10.0.0.2.
    /// let key = ForwardedFor::new(Trust::networks(["10.0.0.2"])?);
    /// # let _ = key;
    /// # Ok::<(), limiter_core::engine::TrustedNetworkError>(())
    /// ```
    pub fn new(trust: Trust) -> Self {
        ForwardedFor { trust, header: ForwardingHeader::default(), ipv6_prefix: DEFAULT_IPV6_PREFIX }
    }

    /// Believes exactly `hops` proxies in front of the app: [`Trust::Hops`].
    ///
    /// # Example
    ///
    /// ```
    /// use limiter_core::engine::{ForwardedFor, KeyExtractor};
    /// # use limiter_core::engine::RequestInfo;
    /// # use std::net::IpAddr;
    /// # struct Request { peer: IpAddr, headers: Vec<(&'static str, &'static str)> }
    /// # impl RequestInfo for Request {
    /// #     fn method(&self) -> &str { "GET" }
    /// #     fn route(&self) -> Option<&str> { None }
    /// #     fn header(&self, name: &str) -> Option<&str> { self.header_values(name).first().copied() }
    /// #     fn header_values(&self, name: &str) -> Vec<&str> {
    /// #         self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v).collect()
    /// #     }
    /// #     fn peer_addr(&self) -> Option<IpAddr> { Some(self.peer) }
    /// # }
    ///
    /// // One reverse proxy, and the app reachable only through it.
    /// let key = ForwardedFor::trusting_hops(1);
    /// let request = Request {
    ///     peer: "10.0.0.2".parse()?,
    ///     // The client prepended a fake entry; the proxy appended the real one.
    ///     headers: vec![("X-Forwarded-For", "1.2.3.4, 203.0.113.7")],
    /// };
    /// assert_eq!(key.extract(&request)?, "203.0.113.7");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn trusting_hops(hops: usize) -> Self {
        ForwardedFor::new(Trust::Hops(hops))
    }

    /// Believes the proxies in `networks`: [`Trust::networks`].
    ///
    /// # Errors
    ///
    /// [`TrustedNetworkError`] naming the first value that is not an
    /// address or a CIDR block.
    ///
    /// # Example
    ///
    /// ```
    /// use limiter_core::engine::ForwardedFor;
    ///
    /// // One reverse proxy on 10.0.0.2; or any host of the private network.
    /// let key = ForwardedFor::trusting_networks(["10.0.0.2"])?;
    /// let wider = ForwardedFor::trusting_networks(["10.0.0.0/8", "fd00::/8"])?;
    ///
    /// let err = ForwardedFor::trusting_networks(["10.0.0.0/8", "bad"]).unwrap_err();
    /// assert_eq!(err.value(), "bad");
    /// # let _ = (key, wider);
    /// # Ok::<(), limiter_core::engine::TrustedNetworkError>(())
    /// ```
    pub fn trusting_networks<I, S>(networks: I) -> Result<Self, TrustedNetworkError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Trust::networks(networks).map(ForwardedFor::new)
    }

    /// Reads `header` instead of `X-Forwarded-For`.
    ///
    /// # Example
    ///
    /// ```
    /// use limiter_core::engine::{ForwardedFor, ForwardingHeader};
    ///
    /// // One reverse proxy on 10.0.0.2 that writes RFC 7239 `Forwarded`.
    /// let key = ForwardedFor::trusting_networks(["10.0.0.2"])?.header(ForwardingHeader::Forwarded);
    /// # let _ = key;
    /// # Ok::<(), limiter_core::engine::TrustedNetworkError>(())
    /// ```
    #[must_use]
    pub fn header(mut self, header: ForwardingHeader) -> Self {
        self.header = header;
        self
    }

    /// Keys IPv6 clients by their first `bits` bits (128: the whole
    /// address; the default is 64).
    ///
    /// # Example
    ///
    /// ```
    /// use limiter_core::engine::{ForwardedFor, KeyExtractor};
    /// # use limiter_core::engine::RequestInfo;
    /// # use std::net::IpAddr;
    /// # struct Request { peer: IpAddr, headers: Vec<(&'static str, &'static str)> }
    /// # impl RequestInfo for Request {
    /// #     fn method(&self) -> &str { "GET" }
    /// #     fn route(&self) -> Option<&str> { None }
    /// #     fn header(&self, name: &str) -> Option<&str> { self.header_values(name).first().copied() }
    /// #     fn header_values(&self, name: &str) -> Vec<&str> {
    /// #         self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v).collect()
    /// #     }
    /// #     fn peer_addr(&self) -> Option<IpAddr> { Some(self.peer) }
    /// # }
    ///
    /// // One reverse proxy on 10.0.0.2; clients keyed by their /56.
    /// let key = ForwardedFor::trusting_networks(["10.0.0.2"])?.ipv6_prefix(56);
    /// let request = Request { peer: "10.0.0.2".parse()?, headers: vec![("X-Forwarded-For", "2001:db8:1:2::7")] };
    /// assert_eq!(key.extract(&request)?, "2001:db8:1::/56");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn ipv6_prefix(mut self, bits: u8) -> Self {
        self.ipv6_prefix = bits.min(128);
        self
    }

    /// The client's address, IPv4-mapped IPv6 addresses as IPv4; the key
    /// is this address through [`ip_key`].
    ///
    /// # Errors
    ///
    /// [`KeyError`] when the peer address is needed but the server does not
    /// provide it, or when the entry where the client should be is not an
    /// IP address.
    ///
    /// # Example
    ///
    /// ```
    /// use limiter_core::engine::ForwardedFor;
    /// # use limiter_core::engine::RequestInfo;
    /// # use std::net::IpAddr;
    /// # struct Request { peer: IpAddr, headers: Vec<(&'static str, &'static str)> }
    /// # impl RequestInfo for Request {
    /// #     fn method(&self) -> &str { "GET" }
    /// #     fn route(&self) -> Option<&str> { None }
    /// #     fn header(&self, name: &str) -> Option<&str> { self.header_values(name).first().copied() }
    /// #     fn header_values(&self, name: &str) -> Vec<&str> {
    /// #         self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v).collect()
    /// #     }
    /// #     fn peer_addr(&self) -> Option<IpAddr> { Some(self.peer) }
    /// # }
    /// use std::net::Ipv4Addr;
    ///
    /// // One reverse proxy on 10.0.0.2.
    /// let key = ForwardedFor::trusting_networks(["10.0.0.2"])?;
    /// let request = Request { peer: "10.0.0.2".parse()?, headers: vec![("X-Forwarded-For", "203.0.113.7")] };
    /// assert_eq!(key.client_ip(&request)?, Ipv4Addr::new(203, 0, 113, 7));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn client_ip<R: RequestInfo + ?Sized>(&self, request: &R) -> Result<IpAddr, KeyError> {
        match &self.trust {
            Trust::Hops(0) => peer(request),
            Trust::Hops(hops) => {
                let lines = request.header_values(self.header.name());
                match entries_from_right(&lines, self.header).nth(hops.saturating_sub(1)) {
                    Some(entry) => self.entry_ip(entry),
                    None => peer(request),
                }
            }
            Trust::Networks(networks) => {
                let peer = peer(request)?;
                if !is_trusted(networks, peer) {
                    return Ok(peer);
                }
                let lines = request.header_values(self.header.name());
                let mut nearest = peer;
                for entry in entries_from_right(&lines, self.header) {
                    let ip = self.entry_ip(entry)?;
                    if !is_trusted(networks, ip) {
                        return Ok(ip);
                    }
                    nearest = ip;
                }
                Ok(nearest)
            }
        }
    }

    fn entry_ip(&self, entry: &str) -> Result<IpAddr, KeyError> {
        let ip = match self.header {
            ForwardingHeader::XForwardedFor => parse_node(entry),
            ForwardingHeader::Forwarded => forwarded_for(entry),
        };
        ip.map(|ip| ip.to_canonical()).ok_or_else(|| {
            KeyError::new(format!(
                "the {} entry {} where the client's address should be is not an IP address \
                 (`unknown` and obfuscated `_names` cannot be keyed by address): check what the trusted \
                 proxies write, or key clients another way",
                self.header.name(),
                quoted(entry)
            ))
        })
    }
}

impl<R: RequestInfo + ?Sized> KeyExtractor<R> for ForwardedFor {
    fn extract(&self, request: &R) -> Result<String, KeyError> {
        self.client_ip(request).map(|ip| ip_key(ip, self.ipv6_prefix))
    }
}

/// Keys clients by a header that a trusted proxy or CDN sets to the
/// client's address (`X-Real-IP`, `CF-Connecting-IP`, `Fly-Client-IP`,
/// `True-Client-IP`), believed only when the peer is in a trusted network.
///
/// When the peer is not trusted, the peer is the client and the header is
/// ignored: anyone can send `X-Real-IP`. When it is, the header's last
/// entry is the client (a proxy that appends rather than replaces puts its
/// value last); a trusted peer that sent no such header is keyed by its own
/// address; an entry that is not an IP address fails with a [`KeyError`].
/// Entries may carry a port, as with [`ForwardedFor`].
///
/// # Example
///
/// One nginx in front of the app, on `10.0.0.2`, with
/// `proxy_set_header X-Real-IP $remote_addr;`:
///
/// ```
/// use limiter_core::engine::{KeyExtractor, TrustedHeader};
/// # use limiter_core::engine::RequestInfo;
/// # use std::net::IpAddr;
/// # struct Request { peer: IpAddr, headers: Vec<(&'static str, &'static str)> }
/// # impl RequestInfo for Request {
/// #     fn method(&self) -> &str { "GET" }
/// #     fn route(&self) -> Option<&str> { None }
/// #     fn header(&self, name: &str) -> Option<&str> { self.header_values(name).first().copied() }
/// #     fn header_values(&self, name: &str) -> Vec<&str> {
/// #         self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v).collect()
/// #     }
/// #     fn peer_addr(&self) -> Option<IpAddr> { Some(self.peer) }
/// # }
///
/// let key = TrustedHeader::new("X-Real-IP", ["10.0.0.2"])?;
///
/// let proxied = Request { peer: "10.0.0.2".parse()?, headers: vec![("X-Real-IP", "203.0.113.7")] };
/// assert_eq!(key.extract(&proxied)?, "203.0.113.7");
///
/// // Sent straight to the app, the header is ignored.
/// let direct = Request { peer: "203.0.113.7".parse()?, headers: vec![("X-Real-IP", "1.2.3.4")] };
/// assert_eq!(key.extract(&direct)?, "203.0.113.7");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TrustedHeader {
    name: String,
    networks: Vec<IpNet>,
    ipv6_prefix: u8,
}

impl TrustedHeader {
    /// Reads the header `name` from peers in `networks` (CIDR blocks or
    /// single addresses), keying IPv6 clients by their /64.
    ///
    /// # Errors
    ///
    /// [`TrustedNetworkError`] naming the first value that is not an
    /// address or a CIDR block, or `name` if it is not a header name.
    ///
    /// # Example
    ///
    /// ```
    /// use limiter_core::engine::TrustedHeader;
    ///
    /// // One nginx on 10.0.0.2 with `proxy_set_header X-Real-IP $remote_addr;`.
    /// let key = TrustedHeader::new("X-Real-IP", ["10.0.0.2"])?;
    /// # let _ = key;
    /// # Ok::<(), limiter_core::engine::TrustedNetworkError>(())
    /// ```
    pub fn new<I, S>(name: impl Into<String>, networks: I) -> Result<Self, TrustedNetworkError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let name = name.into();
        // A name no request can carry would never be found, and every
        // client behind the proxy would share the proxy's bucket.
        if !is_header_name(&name) {
            return Err(TrustedNetworkError {
                what: "header name",
                value: name,
                reason: format!("use {HEADER_NAME_RULE}, as the proxy writes it"),
            });
        }
        let networks = networks.into_iter().map(|n| parse_network(n.as_ref())).collect::<Result<_, _>>()?;
        Ok(TrustedHeader { name, networks, ipv6_prefix: DEFAULT_IPV6_PREFIX })
    }

    /// Keys IPv6 clients by their first `bits` bits (128: the whole
    /// address; the default is 64).
    ///
    /// # Example
    ///
    /// ```
    /// use limiter_core::engine::TrustedHeader;
    ///
    /// // One nginx on 10.0.0.2; IPv6 clients keyed by their /56.
    /// let key = TrustedHeader::new("X-Real-IP", ["10.0.0.2"])?.ipv6_prefix(56);
    /// # let _ = key;
    /// # Ok::<(), limiter_core::engine::TrustedNetworkError>(())
    /// ```
    #[must_use]
    pub fn ipv6_prefix(mut self, bits: u8) -> Self {
        self.ipv6_prefix = bits.min(128);
        self
    }

    /// The client's address, IPv4-mapped IPv6 addresses as IPv4.
    ///
    /// # Errors
    ///
    /// [`KeyError`] when the server does not provide the peer address, or
    /// when a trusted peer sent a value that is not an IP address.
    ///
    /// # Example
    ///
    /// ```
    /// use limiter_core::engine::TrustedHeader;
    /// # use limiter_core::engine::RequestInfo;
    /// # use std::net::IpAddr;
    /// # struct Request { peer: IpAddr, headers: Vec<(&'static str, &'static str)> }
    /// # impl RequestInfo for Request {
    /// #     fn method(&self) -> &str { "GET" }
    /// #     fn route(&self) -> Option<&str> { None }
    /// #     fn header(&self, name: &str) -> Option<&str> { self.header_values(name).first().copied() }
    /// #     fn header_values(&self, name: &str) -> Vec<&str> {
    /// #         self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v).collect()
    /// #     }
    /// #     fn peer_addr(&self) -> Option<IpAddr> { Some(self.peer) }
    /// # }
    /// use std::net::Ipv4Addr;
    ///
    /// // One nginx on 10.0.0.2 with `proxy_set_header X-Real-IP $remote_addr;`.
    /// let key = TrustedHeader::new("X-Real-IP", ["10.0.0.2"])?;
    /// let request = Request { peer: "10.0.0.2".parse()?, headers: vec![("X-Real-IP", "203.0.113.7")] };
    /// assert_eq!(key.client_ip(&request)?, Ipv4Addr::new(203, 0, 113, 7));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn client_ip<R: RequestInfo + ?Sized>(&self, request: &R) -> Result<IpAddr, KeyError> {
        let peer = peer(request)?;
        if !is_trusted(&self.networks, peer) {
            return Ok(peer);
        }
        let lines = request.header_values(&self.name);
        match entries_from_right(&lines, ForwardingHeader::XForwardedFor).next() {
            None => Ok(peer),
            Some(entry) => parse_node(entry).map(|ip| ip.to_canonical()).ok_or_else(|| {
                KeyError::new(format!(
                    "the {} header {} sent by the trusted proxy {peer} is not an IP address: \
                     check what the proxy writes, or key clients another way",
                    self.name,
                    quoted(entry)
                ))
            }),
        }
    }
}

impl<R: RequestInfo + ?Sized> KeyExtractor<R> for TrustedHeader {
    fn extract(&self, request: &R) -> Result<String, KeyError> {
        self.client_ip(request).map(|ip| ip_key(ip, self.ipv6_prefix))
    }
}

/// The peer address, IPv4-mapped IPv6 as IPv4.
fn peer<R: RequestInfo + ?Sized>(request: &R) -> Result<IpAddr, KeyError> {
    request.peer_addr().map(|ip| ip.to_canonical()).ok_or_else(|| {
        KeyError::new(
            "the server did not provide the peer address: with axum, serve \
             `app.into_make_service_with_connect_info::<SocketAddr>()`; actix-web provides it except \
             over Unix sockets; or key clients another way",
        )
    })
}

/// A header entry for an error message: quoted, escaped, and cut short.
fn quoted(entry: &str) -> String {
    let mut chars = entry.chars();
    let head: String = chars.by_ref().take(QUOTED_CHARS).collect();
    if chars.next().is_some() { format!("{head:?}…") } else { format!("{head:?}") }
}

/// The entries of a header, nearest hop first: the last line's last entry
/// first. Empty entries are skipped (RFC 9110 §5.6.1). `Forwarded` lines are
/// split outside quoted strings.
fn entries_from_right<'a>(lines: &'a [&'a str], header: ForwardingHeader) -> impl Iterator<Item = &'a str> + 'a {
    let quoted = header == ForwardingHeader::Forwarded;
    lines
        .iter()
        .rev()
        .flat_map(move |line| SplitFromRight { rest: Some(line), separator: ',', quoted })
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
}

/// Splits at `separator` from the right. With `quoted`, separators inside
/// quoted strings (with `\` escapes) do not count. Scanning from the right
/// keeps the elements that trusted proxies append intact whatever the client
/// wrote to their left, unbalanced quotes included.
#[derive(Debug)]
struct SplitFromRight<'a> {
    rest: Option<&'a str>,
    separator: char,
    quoted: bool,
}

impl<'a> Iterator for SplitFromRight<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let rest = self.rest?;
        match last_separator(rest, self.separator, self.quoted) {
            Some(at) => {
                let (left, right) = rest.split_at_checked(at)?;
                self.rest = Some(left);
                right.get(self.separator.len_utf8()..)
            }
            None => {
                self.rest = None;
                Some(rest)
            }
        }
    }
}

fn last_separator(text: &str, separator: char, quoted: bool) -> Option<usize> {
    if !quoted {
        return text.rfind(separator);
    }
    let mut in_quotes = false;
    for (at, c) in text.char_indices().rev() {
        if c == '"' {
            // Going backwards, a quote opens a quoted string; inside one, a
            // quote preceded by an odd number of backslashes is escaped.
            if !in_quotes {
                in_quotes = true;
            } else if !escaped(text, at) {
                in_quotes = false;
            }
        } else if c == separator && !in_quotes {
            return Some(at);
        }
    }
    None
}

fn escaped(text: &str, at: usize) -> bool {
    text.get(..at).is_some_and(|before| before.bytes().rev().take_while(|&b| b == b'\\').count() % 2 == 1)
}

/// The address in the `for=` parameter of a `Forwarded` element, if it has
/// exactly one and it is an address.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    let mut value = None;
    for pair in (SplitFromRight { rest: Some(element), separator: ';', quoted: true }) {
        let pair = pair.trim();
        if pair.is_empty() {
            continue;
        }
        let (name, v) = pair.split_once('=')?;
        if name.trim().eq_ignore_ascii_case("for") {
            if value.is_some() {
                // RFC 7239 §4: a parameter occurs at most once per element.
                return None;
            }
            value = Some(v.trim());
        }
    }
    parse_node(&unquote(value?)?)
}

/// A parameter value, plain or a quoted string with `\` escapes.
fn unquote(value: &str) -> Option<Cow<'_, str>> {
    let Some(inner) = value.strip_prefix('"') else {
        return (!value.contains('"')).then_some(Cow::Borrowed(value));
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return chars.next().is_none().then_some(Cow::Owned(out)),
            c => out.push(c),
        }
    }
    None
}

/// An address, optionally with a port: `192.0.2.60`, `192.0.2.60:8080`,
/// `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:4711` (RFC 7239 §6 nodes;
/// obfuscated ports allowed). `unknown` and `_obfuscated` are not addresses.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = node.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        let ip = v6.parse::<Ipv6Addr>().ok()?;
        (after.is_empty() || after.strip_prefix(':').is_some_and(valid_port)).then_some(IpAddr::V6(ip))
    } else {
        let (v4, port) = node.split_once(':')?;
        let ip = v4.parse::<Ipv4Addr>().ok()?;
        valid_port(port).then_some(IpAddr::V4(ip))
    }
}

/// RFC 7239 §6: `node-port = port / obfport`, `port = 1*5DIGIT`,
/// `obfport = "_" 1*(ALPHA / DIGIT / "." / "_" / "-")`.
fn valid_port(port: &str) -> bool {
    match port.strip_prefix('_') {
        Some(obfuscated) => {
            !obfuscated.is_empty() && obfuscated.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        }
        None => (1..=5).contains(&port.len()) && port.bytes().all(|b| b.is_ascii_digit()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A request with header lines and a peer; the testkit's `TestRequest`
    /// is out of reach from the core's unit tests.
    #[derive(Debug, Default)]
    struct Req {
        headers: Vec<(String, String)>,
        peer: Option<IpAddr>,
    }

    impl Req {
        fn from_peer(peer: &str) -> Self {
            Req { headers: Vec::new(), peer: Some(peer.parse().unwrap()) }
        }

        fn no_peer() -> Self {
            Req::default()
        }

        fn with(mut self, name: &str, value: &str) -> Self {
            self.headers.push((name.to_owned(), value.to_owned()));
            self
        }

        fn xff(self, value: &str) -> Self {
            self.with("X-Forwarded-For", value)
        }

        fn fwd(self, value: &str) -> Self {
            self.with("Forwarded", value)
        }
    }

    impl RequestInfo for Req {
        fn method(&self) -> &str {
            "GET"
        }

        fn route(&self) -> Option<&str> {
            None
        }

        fn header(&self, name: &str) -> Option<&str> {
            self.header_values(name).first().copied()
        }

        fn header_values(&self, name: &str) -> Vec<&str> {
            self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
        }

        fn peer_addr(&self) -> Option<IpAddr> {
            self.peer
        }
    }

    const PROXY: &str = "10.0.0.2";

    fn networks(nets: &[&str]) -> ForwardedFor {
        ForwardedFor::trusting_networks(nets).unwrap()
    }

    fn key(extractor: &impl KeyExtractor<Req>, request: &Req) -> String {
        extractor.extract(request).unwrap()
    }

    fn key_error(extractor: &impl KeyExtractor<Req>, request: &Req) -> String {
        extractor.extract(request).unwrap_err().to_string()
    }

    // Spoofing.

    #[test]
    fn a_client_behind_no_trusted_proxy_cannot_choose_its_key() {
        let request = Req::from_peer("203.0.113.7").xff("1.2.3.4").fwd("for=1.2.3.4");
        assert_eq!(key(&networks(&[PROXY]), &request), "203.0.113.7");
        assert_eq!(key(&networks(&[PROXY]).header(ForwardingHeader::Forwarded), &request), "203.0.113.7");
        assert_eq!(key(&networks(&[]), &request), "203.0.113.7");
        assert_eq!(key(&ForwardedFor::trusting_hops(0), &request), "203.0.113.7");
        // Garbage from an untrusted peer is ignored too, not an error.
        let garbage = Req::from_peer("203.0.113.7").xff("garbage").fwd("for=\"");
        assert_eq!(key(&networks(&[PROXY]), &garbage), "203.0.113.7");
        assert_eq!(key(&networks(&[PROXY]).header(ForwardingHeader::Forwarded), &garbage), "203.0.113.7");
    }

    #[test]
    fn entries_prepended_by_the_client_are_never_used() {
        let request = Req::from_peer(PROXY).xff("1.2.3.4, 5.6.7.8, 203.0.113.7");
        assert_eq!(key(&networks(&[PROXY]), &request), "203.0.113.7");
        assert_eq!(key(&ForwardedFor::trusting_hops(1), &request), "203.0.113.7");
        // The client even claims to be a trusted proxy: still the appended entry.
        let request = Req::from_peer(PROXY).xff("1.2.3.4, 10.0.0.9, 203.0.113.7");
        assert_eq!(key(&networks(&["10.0.0.0/8"]), &request), "203.0.113.7");
    }

    #[test]
    fn forwarded_entries_prepended_by_the_client_are_never_used() {
        let request = Req::from_peer(PROXY).fwd(r#"for=1.2.3.4;proto=https, for="[2001:db8::1]", for=203.0.113.7"#);
        let fwd = |e: ForwardedFor| e.header(ForwardingHeader::Forwarded);
        assert_eq!(key(&fwd(networks(&[PROXY])), &request), "203.0.113.7");
        assert_eq!(key(&fwd(ForwardedFor::trusting_hops(1)), &request), "203.0.113.7");
    }

    #[test]
    fn the_header_the_proxy_does_not_write_is_ignored() {
        // The proxy writes X-Forwarded-For; the client adds a Forwarded header.
        let request = Req::from_peer(PROXY).fwd("for=1.2.3.4").xff("203.0.113.7");
        assert_eq!(key(&ForwardedFor::trusting_hops(1), &request), "203.0.113.7");
        assert_eq!(key(&networks(&[PROXY]), &request), "203.0.113.7");
        // The proxy writes Forwarded; the client adds X-Forwarded-For.
        let request = Req::from_peer(PROXY).xff("1.2.3.4").fwd("for=203.0.113.7");
        let fwd = ForwardedFor::trusting_hops(1).header(ForwardingHeader::Forwarded);
        assert_eq!(key(&fwd, &request), "203.0.113.7");
    }

    #[test]
    fn an_unbalanced_quote_from_the_client_cannot_swallow_the_proxy_element() {
        let fwd = |e: ForwardedFor| e.header(ForwardingHeader::Forwarded);
        for client_part in [r#"for=""#, r#"for="1.2.3.4"#, r#"x="\"#, r#"""#, r#"for="a\", b""#] {
            let same_line = Req::from_peer(PROXY).fwd(&format!("{client_part}, for=203.0.113.7"));
            let next_line = Req::from_peer(PROXY).fwd(client_part).fwd("for=203.0.113.7");
            let quoted = Req::from_peer(PROXY).fwd(&format!(r#"{client_part}, for="203.0.113.7:1234";proto=https"#));
            for request in [&same_line, &next_line, &quoted] {
                assert_eq!(key(&fwd(ForwardedFor::trusting_hops(1)), request), "203.0.113.7", "{client_part}");
                assert_eq!(key(&fwd(networks(&[PROXY])), request), "203.0.113.7", "{client_part}");
            }
        }
    }

    // Hop counts.

    #[test]
    fn hops_count_from_the_right() {
        let request = Req::from_peer(PROXY).xff("1.2.3.4, 203.0.113.7, 10.0.0.3, 10.0.0.4");
        assert_eq!(key(&ForwardedFor::trusting_hops(1), &request), "10.0.0.4");
        assert_eq!(key(&ForwardedFor::trusting_hops(3), &request), "203.0.113.7");
        assert_eq!(key(&ForwardedFor::trusting_hops(4), &request), "1.2.3.4");
    }

    #[test]
    fn hop_counts_larger_than_the_list_fall_back_to_the_peer() {
        let request = Req::from_peer(PROXY).xff("203.0.113.7, 10.0.0.3");
        assert_eq!(key(&ForwardedFor::trusting_hops(3), &request), PROXY);
        assert_eq!(key(&ForwardedFor::trusting_hops(usize::MAX), &request), PROXY);
        // No header at all: a health check from the proxy itself.
        assert_eq!(key(&ForwardedFor::trusting_hops(1), &Req::from_peer(PROXY)), PROXY);
        assert_eq!(key(&ForwardedFor::trusting_hops(1), &Req::from_peer(PROXY).xff(" , ")), PROXY);
    }

    #[test]
    fn hops_need_the_peer_only_to_fall_back() {
        let with_header = Req::no_peer().xff("203.0.113.7");
        assert_eq!(key(&ForwardedFor::trusting_hops(1), &with_header), "203.0.113.7");
        let error = key_error(&ForwardedFor::trusting_hops(2), &with_header);
        assert!(error.contains("into_make_service_with_connect_info"), "{error}");
        let error = key_error(&ForwardedFor::trusting_hops(0), &with_header);
        assert!(error.contains("did not provide the peer address"), "{error}");
    }

    // Trusted networks.

    #[test]
    fn trusted_networks_are_skipped_from_the_right() {
        let trust = networks(&["10.0.0.0/8", "fd00::/8"]);
        let request = Req::from_peer(PROXY).xff("1.2.3.4, 203.0.113.7, fd00::3, 10.0.0.3");
        assert_eq!(key(&trust, &request), "203.0.113.7");
        // Trusting only the peer: the next proxy's entry is the client.
        assert_eq!(key(&networks(&[PROXY]), &request), "10.0.0.3");
    }

    #[test]
    fn when_every_entry_is_trusted_the_leftmost_is_the_client() {
        let trust = networks(&["10.0.0.0/8"]);
        assert_eq!(key(&trust, &Req::from_peer(PROXY).xff("10.0.0.5, 10.0.0.4, 10.0.0.3")), "10.0.0.5");
        // No header from a trusted peer: the peer itself.
        assert_eq!(key(&trust, &Req::from_peer(PROXY)), PROXY);
        assert_eq!(key(&trust, &Req::from_peer(PROXY).xff("")), PROXY);
    }

    #[test]
    fn trusted_networks_need_the_peer() {
        let error = key_error(&networks(&[PROXY]), &Req::no_peer().xff("203.0.113.7"));
        assert!(error.contains("into_make_service_with_connect_info"), "{error}");
    }

    // Garbage.

    #[test]
    fn garbage_left_of_the_client_is_ignored() {
        let request = Req::from_peer(PROXY).xff("garbage, , not-an-ip, 203.0.113.7");
        assert_eq!(key(&networks(&[PROXY]), &request), "203.0.113.7");
        assert_eq!(key(&ForwardedFor::trusting_hops(1), &request), "203.0.113.7");
    }

    #[test]
    fn garbage_where_the_client_should_be_is_an_error_not_a_shared_bucket() {
        let request = Req::from_peer(PROXY).xff("203.0.113.7, garbage");
        let error = key_error(&networks(&[PROXY]), &request);
        assert!(error.contains("X-Forwarded-For entry \"garbage\""), "{error}");
        let error = key_error(&ForwardedFor::trusting_hops(1), &request);
        assert!(error.contains("\"garbage\""), "{error}");
        // Behind trusted hosts, garbage stops the walk.
        let request = Req::from_peer(PROXY).xff("203.0.113.7, garbage, 10.0.0.3");
        assert!(networks(&["10.0.0.0/8"]).extract(&request).is_err());
        for bad in [
            "unknown",
            "_hidden",
            "203.0.113.7:",
            "203.0.113.7:123456",
            "203.0.113.7:x",
            "[2001:db8::1",
            "[2001:db8::1]x",
            "[203.0.113.7]",
            "fe80::1%eth0",
            "\"203.0.113.7\"",
        ] {
            assert!(ForwardedFor::trusting_hops(1).extract(&Req::from_peer(PROXY).xff(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn long_garbage_is_cut_short_in_the_message() {
        let long = "x".repeat(10_000);
        let error = key_error(&ForwardedFor::trusting_hops(1), &Req::from_peer(PROXY).xff(&long));
        assert!(error.len() < 400, "{error}");
        assert!(error.contains('…'), "{error}");
    }

    // Lines, whitespace, ports.

    #[test]
    fn header_lines_are_joined_in_order() {
        let request = Req::from_peer(PROXY).xff("1.2.3.4").xff("203.0.113.7, 10.0.0.3").xff("10.0.0.4");
        assert_eq!(key(&networks(&["10.0.0.0/8"]), &request), "203.0.113.7");
        assert_eq!(key(&ForwardedFor::trusting_hops(1), &request), "10.0.0.4");
        assert_eq!(key(&ForwardedFor::trusting_hops(2), &request), "10.0.0.3");
        assert_eq!(key(&ForwardedFor::trusting_hops(4), &request), "1.2.3.4");
        assert_eq!(key(&ForwardedFor::trusting_hops(5), &request), PROXY);
        // Header names in any case.
        let request = Req::from_peer(PROXY).with("x-forwarded-for", "203.0.113.7");
        assert_eq!(key(&ForwardedFor::trusting_hops(1), &request), "203.0.113.7");
    }

    #[test]
    fn whitespace_and_empty_entries() {
        let request = Req::from_peer(PROXY).xff(" \t1.2.3.4 ,,  203.0.113.7\t, ").xff("").xff("  ");
        assert_eq!(key(&ForwardedFor::trusting_hops(1), &request), "203.0.113.7");
        assert_eq!(key(&ForwardedFor::trusting_hops(2), &request), "1.2.3.4");
        assert_eq!(key(&networks(&[PROXY]), &request), "203.0.113.7");
    }

    #[test]
    fn x_forwarded_for_entries_may_carry_ports() {
        let hop = ForwardedFor::trusting_hops(1);
        assert_eq!(key(&hop, &Req::from_peer(PROXY).xff("203.0.113.7:51234")), "203.0.113.7");
        assert_eq!(key(&hop.clone().ipv6_prefix(128), &Req::from_peer(PROXY).xff("[2001:db8::1]:443")), "2001:db8::1");
        assert_eq!(key(&hop.ipv6_prefix(128), &Req::from_peer(PROXY).xff("[2001:db8::1]")), "2001:db8::1");
    }

    // IPv6.

    #[test]
    fn ipv6_clients_are_keyed_by_their_prefix() {
        let request = Req::from_peer(PROXY).xff("2001:db8:1:2:3:4:5:6");
        assert_eq!(key(&networks(&[PROXY]), &request), "2001:db8:1:2::/64");
        assert_eq!(key(&networks(&[PROXY]).ipv6_prefix(56), &request), "2001:db8:1::/56");
        assert_eq!(key(&networks(&[PROXY]).ipv6_prefix(128), &request), "2001:db8:1:2:3:4:5:6");
        assert_eq!(key(&networks(&[PROXY]).ipv6_prefix(200), &request), "2001:db8:1:2:3:4:5:6");
        // An untrusted IPv6 peer is masked the same way.
        assert_eq!(key(&networks(&[PROXY]), &Req::from_peer("2001:db8:9:9::1").xff("1.2.3.4")), "2001:db8:9:9::/64");
        // IPv6 proxies.
        let request = Req::from_peer("fd00::2").xff("2001:db8:1:2::7, fd00::3");
        assert_eq!(key(&networks(&["fd00::/8"]), &request), "2001:db8:1:2::/64");
    }

    #[test]
    fn ipv4_mapped_addresses_are_ipv4() {
        // A dual-stack listener reports IPv4 peers as mapped addresses.
        let request = Req::from_peer("::ffff:10.0.0.2").xff("::ffff:203.0.113.7");
        assert_eq!(key(&networks(&["10.0.0.0/8"]), &request), "203.0.113.7");
        assert_eq!(networks(&["10.0.0.0/8"]).client_ip(&request).unwrap(), IpAddr::from([203, 0, 113, 7]));
        assert_eq!(key(&networks(&[PROXY]), &Req::from_peer("::ffff:203.0.113.7").xff("1.2.3.4")), "203.0.113.7");
        // A mapped client address is matched against IPv4 networks.
        let request = Req::from_peer(PROXY).xff("203.0.113.7, ::ffff:10.0.0.3");
        assert_eq!(key(&networks(&["10.0.0.0/8"]), &request), "203.0.113.7");
        // And a network written mapped matches plain IPv4 peers.
        assert_eq!(key(&networks(&["::ffff:10.0.0.0/104"]), &Req::from_peer(PROXY).xff("203.0.113.7")), "203.0.113.7");
    }

    // Forwarded.

    #[test]
    fn forwarded_values() {
        let hop = ForwardedFor::trusting_hops(1).header(ForwardingHeader::Forwarded).ipv6_prefix(128);
        let cases = [
            ("for=192.0.2.60;proto=http;by=203.0.113.43", "192.0.2.60"),
            ("For=\"[2001:db8:cafe::17]:4711\"", "2001:db8:cafe::17"),
            ("for=\"[2001:db8:cafe::17]\"", "2001:db8:cafe::17"),
            ("for=\"192.0.2.60:8080\"", "192.0.2.60"),
            ("for=\"192.0.2.60:_port\"", "192.0.2.60"),
            ("proto=https ; FOR = 192.0.2.60 ; by=_proxy", "192.0.2.60"),
            ("for=\"19\\2.0.2.60\"", "192.0.2.60"),
            ("for=2001:db8::1", "2001:db8::1"),
            ("for=192.0.2.60;;", "192.0.2.60"),
            ("for=192.0.2.60;ext=\"a,b;c=d\"", "192.0.2.60"),
            ("for=\"::ffff:192.0.2.60\"", "192.0.2.60"),
        ];
        for (value, expected) in cases {
            assert_eq!(key(&hop, &Req::from_peer(PROXY).fwd(value)), expected, "{value}");
        }
    }

    #[test]
    fn forwarded_values_that_are_not_addresses() {
        let hop = ForwardedFor::trusting_hops(1).header(ForwardingHeader::Forwarded);
        let cases = [
            "for=unknown",
            "for=\"unknown\"",
            "for=_hidden",
            "for=\"_gazonk\"",
            "for=\"unknown:4711\"",
            "by=203.0.113.43;proto=https",
            "for=192.0.2.60;for=192.0.2.61",
            "for=\"192.0.2.60",
            "for=192.0.2.60\"",
            "for=\"192.0.2.60\"x",
            "for=\"192.0.2.60:80:80\"",
            "for=192.0.2.60;junk",
            "for=",
            "192.0.2.60",
        ];
        for value in cases {
            let error = key_error(&hop, &Req::from_peer(PROXY).fwd(value));
            assert!(error.contains("Forwarded entry"), "{value}: {error}");
        }
        // Elsewhere than where the client should be, they do not matter.
        let request = Req::from_peer(PROXY).fwd("for=unknown, for=_hidden, for=203.0.113.7");
        assert_eq!(key(&hop, &request), "203.0.113.7");
        // Behind trusted proxies, `unknown` stops the walk.
        let walk = networks(&["10.0.0.0/8"]).header(ForwardingHeader::Forwarded);
        assert!(walk.extract(&Req::from_peer(PROXY).fwd("for=203.0.113.7, for=unknown, for=10.0.0.3")).is_err());
        assert_eq!(key(&walk, &Req::from_peer(PROXY).fwd("for=unknown, for=203.0.113.7, for=10.0.0.3")), "203.0.113.7");
    }

    #[test]
    fn forwarded_elements_across_lines() {
        let fwd = |e: ForwardedFor| e.header(ForwardingHeader::Forwarded);
        let request = Req::from_peer(PROXY).fwd("for=1.2.3.4").fwd("for=203.0.113.7;proto=https, for=\"10.0.0.3:80\"");
        assert_eq!(key(&fwd(networks(&["10.0.0.0/8"])), &request), "203.0.113.7");
        assert_eq!(key(&fwd(ForwardedFor::trusting_hops(2)), &request), "203.0.113.7");
        assert_eq!(key(&fwd(ForwardedFor::trusting_hops(3)), &request), "1.2.3.4");
        assert_eq!(key(&fwd(ForwardedFor::trusting_hops(4)), &request), PROXY);
    }

    // Trusted networks, parsed.

    #[test]
    fn trusted_networks_parse_at_build_time() {
        let error = ForwardedFor::trusting_networks(["10.0.0.0/8", "bad"]).unwrap_err();
        assert_eq!(error.value(), "bad");
        let message = error.to_string();
        assert!(message.starts_with("invalid trusted network \"bad\": expected an address"), "{message}");
        assert!(message.contains("\"10.0.0.0/8\""), "{message}");
        for bad in ["", "10.0.0.0/33", "10.0.0.0/", "/8", "10.0.0", "2001:db8::/129", "10.0.0.0/8/8", "localhost"] {
            assert_eq!(Trust::networks([bad]).unwrap_err().value(), bad);
        }
        let error = ForwardedFor::trusting_networks(["10.0.0.1/8"]).unwrap_err();
        assert!(error.to_string().contains("write \"10.0.0.0/8\""), "{error}");
        let trust = Trust::networks([" 10.0.0.2 ", "2001:db8::/32", "192.168.0.0/16"]).unwrap();
        let expected: Vec<IpNet> =
            ["10.0.0.2/32", "2001:db8::/32", "192.168.0.0/16"].iter().map(|n| n.parse().unwrap()).collect();
        assert_eq!(trust, Trust::Networks(expected));
        assert_eq!(Trust::networks(Vec::<String>::new()).unwrap(), Trust::Networks(Vec::new()));
    }

    // TrustedHeader.

    #[test]
    fn trusted_header_is_read_only_from_trusted_peers() {
        let real_ip = TrustedHeader::new("X-Real-IP", [PROXY]).unwrap();
        assert_eq!(key(&real_ip, &Req::from_peer(PROXY).with("X-Real-IP", "203.0.113.7")), "203.0.113.7");
        assert_eq!(key(&real_ip, &Req::from_peer("203.0.113.7").with("X-Real-IP", "1.2.3.4")), "203.0.113.7");
        assert_eq!(key(&real_ip, &Req::from_peer("203.0.113.7").with("X-Real-IP", "garbage")), "203.0.113.7");
        // A proxy that appends rather than replaces: its value is last.
        let appended = Req::from_peer(PROXY).with("X-Real-IP", "1.2.3.4").with("X-Real-IP", "203.0.113.7");
        assert_eq!(key(&real_ip, &appended), "203.0.113.7");
        assert_eq!(key(&real_ip, &Req::from_peer(PROXY).with("X-Real-IP", "1.2.3.4, 203.0.113.7")), "203.0.113.7");
        assert_eq!(key(&real_ip, &Req::from_peer(PROXY)), PROXY);
        let error = key_error(&real_ip, &Req::from_peer(PROXY).with("X-Real-IP", "garbage"));
        assert!(error.contains("X-Real-IP header \"garbage\" sent by the trusted proxy 10.0.0.2"), "{error}");
        assert!(key_error(&real_ip, &Req::no_peer().with("X-Real-IP", "203.0.113.7")).contains("peer address"));
        let v6 = Req::from_peer(PROXY).with("x-real-ip", "[2001:db8:1:2::7]:443");
        assert_eq!(key(&real_ip, &v6), "2001:db8:1:2::/64");
        assert_eq!(key(&real_ip.clone().ipv6_prefix(128), &v6), "2001:db8:1:2::7");
        assert_eq!(TrustedHeader::new("X-Real-IP", ["bad"]).unwrap_err().value(), "bad");
        for name in ["X Real IP", "", "X-Real-IP:"] {
            let err = TrustedHeader::new(name, [PROXY]).unwrap_err();
            assert_eq!(err.value(), name);
            assert!(err.to_string().starts_with("invalid header name"), "{err}");
        }
    }

    // Parsing helpers.

    #[test]
    fn splitting_from_the_right() {
        let split =
            |s: &'static str, quoted| SplitFromRight { rest: Some(s), separator: ',', quoted }.collect::<Vec<_>>();
        assert_eq!(split("a,b,,c", false), ["c", "", "b", "a"]);
        assert_eq!(split("", false), [""]);
        assert_eq!(split(r#"a="x,y",b"#, true), ["b", r#"a="x,y""#]);
        assert_eq!(split(r#"a="x\",y",b"#, true), ["b", r#"a="x\",y""#]);
        assert_eq!(split(r#"a="x\\",y"#, true), ["y", r#"a="x\\""#]);
        assert_eq!(split(r#"a="x,b"#, true), ["b", r#"a="x"#]);
        assert_eq!(split(r#"a=x",b"#, true), ["b", r#"a=x""#]);
        assert_eq!(split(r#"a,b"c"#, true), [r#"a,b"c"#]);
    }

    #[test]
    fn unquoting() {
        assert_eq!(unquote("abc").as_deref(), Some("abc"));
        assert_eq!(unquote(r#""abc""#).as_deref(), Some("abc"));
        assert_eq!(unquote(r#""a\"b\\c""#).as_deref(), Some(r#"a"b\c"#));
        assert_eq!(unquote(r#""""#).as_deref(), Some(""));
        for bad in [r#"""#, r#""abc"#, r#""abc\""#, r#""a"b""#, r#"a"b"#, r#"abc""#] {
            assert_eq!(unquote(bad), None, "{bad}");
        }
    }

    #[test]
    fn ports() {
        for good in ["1", "80", "65535", "99999", "_a", "_a.b-c_d"] {
            assert!(valid_port(good), "{good}");
        }
        for bad in ["", "123456", "8o", "_", "_a b", "-1", "+1"] {
            assert!(!valid_port(bad), "{bad}");
        }
    }

    proptest! {
        /// Whatever a client writes into the header before one trusted
        /// proxy appends its address, the key is the client's address.
        #[test]
        fn a_client_behind_one_proxy_never_chooses_its_key(
            sent in proptest::collection::vec("[ -~]{0,40}", 0..3),
            client in any::<IpAddr>(),
            port in proptest::option::of(1u16..),
            same_line in any::<bool>(),
        ) {
            let client = client.to_canonical();
            prop_assume!(client != IpAddr::from([10, 0, 0, 2]));
            let (appended_xff, appended_fwd) = match (client, port) {
                (IpAddr::V4(v4), Some(port)) => (format!("{v4}:{port}"), format!("for=\"{v4}:{port}\";proto=https")),
                (IpAddr::V6(v6), Some(port)) => (format!("[{v6}]:{port}"), format!("for=\"[{v6}]:{port}\"")),
                (IpAddr::V4(v4), None) => (v4.to_string(), format!("for={v4}")),
                (IpAddr::V6(v6), None) => (v6.to_string(), format!("proto=http;for=\"[{v6}]\"")),
            };
            for (header, appended) in [
                (ForwardingHeader::XForwardedFor, appended_xff),
                (ForwardingHeader::Forwarded, appended_fwd),
            ] {
                let mut request = Req::from_peer(PROXY);
                let mut lines = sent.clone();
                match lines.last_mut() {
                    Some(last) if same_line => *last = format!("{last}, {appended}"),
                    _ => lines.push(appended.clone()),
                }
                for line in &lines {
                    request = request.with(header.name(), line);
                }
                let by_hops = ForwardedFor::trusting_hops(1).header(header);
                let by_network = networks(&[PROXY]).header(header);
                prop_assert_eq!(by_hops.client_ip(&request).unwrap(), client);
                prop_assert_eq!(by_network.client_ip(&request).unwrap(), client);
                // A client connecting directly with the same header is keyed by its own address.
                let mut direct = Req::from_peer("198.51.100.1");
                for line in &sent {
                    direct = direct.with(header.name(), line);
                }
                prop_assert_eq!(by_network.client_ip(&direct).unwrap(), IpAddr::from([198, 51, 100, 1]));
            }
        }
    }
}

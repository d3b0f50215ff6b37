//! A request for driving the engine directly, without a web framework.

use std::net::IpAddr;

use limiter_core::engine::RequestInfo;

/// A request with a method, a matched route (or none: a 404), headers and
/// a peer address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestRequest {
    method: String,
    route: Option<String>,
    headers: Vec<(String, String)>,
    peer: Option<IpAddr>,
}

impl TestRequest {
    /// A `GET` of `route` from 127.0.0.1.
    pub fn get(route: &str) -> Self {
        TestRequest::new("GET", Some(route))
    }

    /// A request with `method` matching `route` (`None`: no route matched).
    pub fn new(method: &str, route: Option<&str>) -> Self {
        TestRequest {
            method: method.to_ascii_uppercase(),
            route: route.map(str::to_owned),
            headers: Vec::new(),
            peer: Some(IpAddr::from([127, 0, 0, 1])),
        }
    }

    /// The same request from `peer` (`None`: the server gave no address).
    #[must_use]
    pub fn from_peer(mut self, peer: Option<IpAddr>) -> Self {
        self.peer = peer;
        self
    }

    /// The same request with one more header line.
    #[must_use]
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

impl RequestInfo for TestRequest {
    fn method(&self) -> &str {
        &self.method
    }

    fn route(&self) -> Option<&str> {
        self.route.as_deref()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }

    fn peer_addr(&self) -> Option<IpAddr> {
        self.peer
    }
}

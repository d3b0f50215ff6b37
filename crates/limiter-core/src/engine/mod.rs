//! The framework-free engine: which limits apply to a request (application,
//! route, group, default and meta limits, exemptions, filters), decided in
//! one storage call, with the headers and the 429 to answer. The web
//! adapters (tower, actix-web) are thin layers over [`Limiter`].
//!
//! # Rolling out a new limit: shadow mode
//!
//! A limit marked [`Limit::shadow`] (or every limit, with
//! [`LimiterBuilder::shadow`] or `RATELIMIT_SHADOW=true`) is evaluated and
//! counted like any other, but never refuses a request: each would-be
//! breach is a `WARN` event ("rate limit exceeded in shadow mode", with the
//! limit, key, route and scope), a `shadow_limited` decision in the
//! [`metrics`], and [`Decision::shadow_limited`]; the rate-limit headers
//! still describe the limit. Deploy a new limit in shadow mode, watch who it
//! would refuse, then enforce it.
//!
//! # Metrics and tools
//!
//! With the `metrics` feature the limiter reports decisions, breaches,
//! storage latency and errors, and the fallback state through the `metrics`
//! facade ([`metrics`]). [`Limiter::limit_table`], [`Limiter::route_info`],
//! [`Limiter::peek`] and [`Limiter::clear`] describe the limits and reach a
//! client's counters by the keys the limiter builds, for tools such as the
//! `limiter` command line (crate `limiter-cli`).

pub mod client_ip;
mod config;
mod decision;
mod declare;
mod failure;
mod key;
mod limiter;
pub mod metrics;
mod plan;
mod request;
mod resolved;
mod response;
mod route;
mod table;

pub use client_ip::{ForwardedFor, ForwardingHeader, Trust, TrustedHeader, TrustedNetworkError};
pub use config::{Settings, is_secret_mechanism_property, redact_uri};
pub use decision::{Decision, RequestLimit, Verdict, current_limit};
pub use declare::{Limit, ResponseInfo};
pub use failure::FailurePolicy;
pub use key::{ExtensionKey, GlobalKey, HeaderKey, KeyError, KeyExtractor, PeerIp, ip_key};
pub use limiter::{InlineLimit, Limiter, LimiterBuilder, Sleeper};
pub use request::RequestInfo;
pub use response::{
    Breach, HeaderSettings, HeaderState, HeaderText, Headers, HeadersIntoIter, Rejection, RetryAfterFormat,
    later_retry_after,
};
pub use route::{Exemption, Group, Route};
pub use table::{DefaultsRule, GroupInfo, KeyedLimit, LimitInfo, LimitTable, Origin, RouteInfo};
#[cfg(test)]
mod tests;

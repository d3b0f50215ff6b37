//! The framework-free engine: which limits apply to a request (application,
//! route, group, default and meta limits, exemptions, filters), decided in
//! one storage call, with the headers and the 429 to answer. The web
//! adapters (tower, actix-web) are thin layers over [`Limiter`].

pub mod client_ip;
mod config;
mod decision;
mod declare;
mod failure;
mod key;
mod limiter;
mod plan;
mod request;
mod response;
mod route;

pub use client_ip::{ForwardedFor, ForwardingHeader, Trust, TrustedHeader, TrustedNetworkError};
pub use config::{Settings, redact_uri};
pub use decision::{Decision, RequestLimit, Verdict, current_limit};
pub use declare::{Limit, ResponseInfo};
pub use failure::FailurePolicy;
pub use key::{ExtensionKey, GlobalKey, HeaderKey, KeyError, KeyExtractor, PeerIp, ip_key};
pub use limiter::{InlineLimit, Limiter, LimiterBuilder, Sleeper};
pub use request::RequestInfo;
pub use response::{Breach, HeaderSettings, Rejection, RetryAfterFormat, later_retry_after};
pub use route::{Exemption, Group, Route};

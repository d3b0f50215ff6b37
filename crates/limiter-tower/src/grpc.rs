//! Rejections answered to gRPC clients as gRPC answers them.
//!
//! A gRPC client reads a call's outcome from `grpc-status`, not from the
//! HTTP status: tonic turns an HTTP 429 or 503 into `UNAVAILABLE`, which
//! retry policies retry at once, and drops the body naming the limit. So a
//! gRPC request is refused with a "trailers-only" answer instead: HTTP 200,
//! no body, the outcome in `grpc-status` and `grpc-message`.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, Response};
use http_body_util::Full;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

/// What the gRPC spec has `grpc-message` percent-encode: bytes outside
/// 0x20–0x7E (`CONTROLS` and every non-ASCII byte) and `%` itself.
const MESSAGE: &AsciiSet = &CONTROLS.add(b'%');

/// Whether the request is a gRPC call (`application/grpc`, `+proto`, ...).
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers.get(CONTENT_TYPE).is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"))
}

/// The gRPC status code for a rejection's HTTP status: the gRPC project's
/// HTTP-to-gRPC mapping, except that a 429 is `RESOURCE_EXHAUSTED` (8), the
/// code for rate limits, which clients do not retry blindly.
pub(crate) fn grpc_status(http: u16) -> u8 {
    match http {
        429 => 8,
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        502..=504 => 14,
        _ => 2,
    }
}

/// `grpc-message`: the text percent-encoded as the gRPC spec requires.
pub(crate) fn message(text: &str) -> Option<HeaderValue> {
    HeaderValue::try_from(utf8_percent_encode(text, MESSAGE).to_string()).ok()
}

/// Turns an HTTP rejection (status, rate-limit headers, body) into its gRPC
/// form: HTTP 200, `content-type: application/grpc`, `grpc-status`,
/// `grpc-message` from the body, an empty body, the other headers kept.
pub(crate) fn into_grpc(response: Response<Full<Bytes>>, body: &str) -> Response<Full<Bytes>> {
    let (mut parts, _) = response.into_parts();
    let code = grpc_status(parts.status.as_u16());
    parts.status = http::StatusCode::OK;
    parts.headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    parts.headers.insert(GRPC_STATUS, HeaderValue::from(u16::from(code)));
    if !body.is_empty()
        && let Some(value) = message(body)
    {
        parts.headers.insert(GRPC_MESSAGE, value);
    }
    Response::from_parts(parts, Full::new(Bytes::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_percent_encoded_as_the_spec_says() {
        let value = message("Rate limit exceeded: 1 per 1 minute, 100% used\n\u{e9}").unwrap();
        assert_eq!(value.to_str().unwrap(), "Rate limit exceeded: 1 per 1 minute, 100%25 used%0A%C3%A9");
        assert_eq!(message(" ~").unwrap().to_str().unwrap(), " ~", "0x20 and 0x7E stay");
        assert_eq!(message("\u{7f}").unwrap().to_str().unwrap(), "%7F");
    }

    #[test]
    fn http_statuses_map_to_grpc_codes() {
        let codes: Vec<u8> = [429, 503, 400, 401, 403, 404, 502, 504, 418, 500].map(grpc_status).to_vec();
        assert_eq!(codes, [8, 14, 13, 16, 7, 12, 14, 14, 2, 2]);
    }

    #[test]
    fn grpc_content_types() {
        let mut headers = HeaderMap::new();
        assert!(!is_grpc(&headers));
        for (value, grpc) in [("application/grpc", true), ("application/grpc+proto", true), ("application/json", false)]
        {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(value));
            assert_eq!(is_grpc(&headers), grpc, "{value}");
        }
    }
}

//! Error answers: every error is the documented envelope
//! `{"error":{"code":"…","message":"…"}}` with `Content-Type: application/json`.

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Response, StatusCode};

/// The body type of every answer: one buffer, built once where possible.
pub type Body = Full<Bytes>;

/// The documented message of `unauthorized` (r4-api.md §4.2).
pub const UNAUTHORIZED_MESSAGE: &str =
    "Invalid or missing API key. Please provide your API key in the X-API-Key header.";

/// The documented message of `rate_limit_exceeded` (r4-api.md §4.2).
pub const RATE_LIMIT_MESSAGE: &str =
    "Rate limit exceeded. Please wait before making additional requests.";

/// `{"error":{"code":CODE,"message":MESSAGE}}`, properly JSON-escaped.
pub fn envelope(code: &str, message: &str) -> Bytes {
    let value = serde_json::json!({ "error": { "code": code, "message": message } });
    Bytes::from(value.to_string())
}

/// A JSON answer with the given status and body.
pub fn json(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Error envelopes that never change, serialized once at start.
pub struct Canned {
    pub unauthorized: Bytes,
    pub not_found: Bytes,
    pub method_not_allowed: Bytes,
    pub rate_limited: Bytes,
}

impl Canned {
    pub fn new() -> Self {
        Canned {
            unauthorized: envelope("unauthorized", UNAUTHORIZED_MESSAGE),
            not_found: envelope("not_found", "The requested resource was not found."),
            method_not_allowed: envelope(
                "method_not_allowed",
                "This endpoint only accepts GET requests.",
            ),
            rate_limited: envelope("rate_limit_exceeded", RATE_LIMIT_MESSAGE),
        }
    }

    pub fn unauthorized(&self) -> Response<Body> {
        json(StatusCode::UNAUTHORIZED, self.unauthorized.clone())
    }

    pub fn not_found(&self) -> Response<Body> {
        json(StatusCode::NOT_FOUND, self.not_found.clone())
    }

    pub fn method_not_allowed(&self) -> Response<Body> {
        let mut response = json(
            StatusCode::METHOD_NOT_ALLOWED,
            self.method_not_allowed.clone(),
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET"));
        response
    }

    /// 429 with `Retry-After: SECONDS` (an extension: the real API documents no header).
    pub fn rate_limited(&self, retry_after_secs: u64) -> Response<Body> {
        let mut response = json(StatusCode::TOO_MANY_REQUESTS, self.rate_limited.clone());
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(retry_after_secs));
        response
    }
}

/// 404 `project_not_found` with the documented message, the id JSON-escaped.
pub fn project_not_found(id: &str) -> Response<Body> {
    let message =
        format!("The project with ID \"{id}\" was not found or you do not have access to it.");
    json(
        StatusCode::NOT_FOUND,
        envelope("project_not_found", &message),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_escapes() {
        let body = envelope("project_not_found", "ID \"a\\b\"\n");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "project_not_found");
        assert_eq!(v["error"]["message"], "ID \"a\\b\"\n");
    }

    #[test]
    fn rate_limited_has_retry_after() {
        let r = Canned::new().rate_limited(7);
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[RETRY_AFTER], "7");
        assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
    }
}

//! The one shape every listener answers an error in — `{"error":{"code","message"}}`, with optional structured
//! fields — and the JSON responses built from it. Proxy, egress, vault API, admin and the HTTP/1 guard all use it.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;
use serde::{Deserialize, Serialize};

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong: a fixed snake_case `code`, a human sentence that never holds a value, and — where the error
/// is about one item of a batch — which item and of what class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorDetail {
    pub code: String,
    #[serde(default)]
    pub message: String,
    /// The data class the error is about (a class name, never a value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// The index of the batch item the error is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
}

impl ErrorBody {
    pub fn new(code: &str, message: impl Into<String>) -> ErrorBody {
        ErrorBody { error: ErrorDetail { code: code.to_owned(), message: message.into(), class: None, index: None } }
    }
}

/// A JSON response that is never cached.
pub fn json_response(status: StatusCode, body: &impl Serialize) -> Response<Full<Bytes>> {
    // Serialising our own plain structs cannot fail; an empty object is still JSON if it ever did.
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = Response::new(Full::new(Bytes::from(bytes)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// An error answer: `status` with `{"error":{"code","message"}}`.
pub fn error_response(status: StatusCode, code: &str, message: impl Into<String>) -> Response<Full<Bytes>> {
    json_response(status, &ErrorBody::new(code, message))
}

/// An error answer after which the connection closes (refused heads, connections over the limit).
pub fn closing_error(status: StatusCode, code: &str, message: impl Into<String>) -> Response<Full<Bytes>> {
    let mut resp = error_response(status, code, message);
    resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_shape_is_fixed() {
        let resp = error_response(StatusCode::BAD_REQUEST, "bad_request", "no");
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(resp.headers()[header::CACHE_CONTROL], "no-store");
        let body = serde_json::to_string(&ErrorBody::new("bad_request", "no")).unwrap();
        assert_eq!(body, r#"{"error":{"code":"bad_request","message":"no"}}"#);
        let mut with_item = ErrorBody::new("invalid_value", "item 1 is not valid");
        with_item.error.class = Some("pan".into());
        with_item.error.index = Some(1);
        let json = serde_json::to_string(&with_item).unwrap();
        assert_eq!(
            json,
            r#"{"error":{"code":"invalid_value","message":"item 1 is not valid","class":"pan","index":1}}"#
        );
        assert_eq!(serde_json::from_str::<ErrorBody>(&json).unwrap(), with_item);
    }

    #[test]
    fn closing_errors_close() {
        let resp = closing_error(StatusCode::SERVICE_UNAVAILABLE, "overloaded", "try again");
        assert_eq!(resp.headers()[header::CONNECTION], "close");
    }
}

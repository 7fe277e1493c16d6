//! The one mapping from control-plane errors to the AWS REST-JSON error wire format.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;

/// An error as AWS Lambda reports it: status, `x-amzn-ErrorType`, and a JSON body.
#[derive(Debug, Clone)]
pub struct AwsError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// `Reason` member, for throttling errors.
    pub reason: Option<&'static str>,
}

impl AwsError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        AwsError { status, code, message: message.into(), reason: None }
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "ResourceNotFoundException", message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "ResourceConflictException", message)
    }
    pub fn invalid_param(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidParameterValueException", message)
    }
    pub fn invalid_content(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidRequestContentException", message)
    }
    pub fn request_too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "RequestTooLargeException", message)
    }
    pub fn entity_too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLargeException", message)
    }
    pub fn precondition(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PRECONDITION_FAILED, "PreconditionFailedException", message)
    }
    pub fn too_many_requests(message: impl Into<String>, reason: &'static str) -> Self {
        AwsError {
            reason: Some(reason),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "TooManyRequestsException", message)
        }
    }
    pub fn service(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "ServiceException", message)
    }
    pub fn unknown_operation(method: &http::Method, path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "UnknownOperationException",
            format!("No Lambda operation matches {method} {path}"),
        )
    }

    /// The message key follows the botocore model: `Message` for a few shapes, `message` for the rest.
    fn message_key(&self) -> &'static str {
        match self.code {
            "ResourceNotFoundException"
            | "ServiceException"
            | "InvalidZipFileException"
            | "CodeSigningConfigNotFoundException" => "Message",
            _ => "message",
        }
    }

    pub fn to_response(&self, request_id: &str) -> Response<Full<Bytes>> {
        let mut body = serde_json::Map::new();
        let kind = if self.status.is_server_error() { "Service" } else { "User" };
        body.insert("Type".into(), kind.into());
        body.insert(self.message_key().into(), self.message.clone().into());
        if let Some(reason) = self.reason {
            body.insert("Reason".into(), reason.into());
        }
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut resp = Response::new(Full::new(Bytes::from(bytes)));
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        h.insert("content-type", HeaderValue::from_static("application/json"));
        h.insert("x-amzn-errortype", HeaderValue::from_static(self.code));
        if let Ok(v) = HeaderValue::from_str(request_id) {
            h.insert("x-amzn-requestid", v);
        }
        resp
    }
}

impl std::fmt::Display for AwsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for AwsError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_has_header_and_capital_message() {
        let r = AwsError::not_found("Function not found: x").to_response("rid");
        assert_eq!(r.status(), 404);
        assert_eq!(r.headers()["x-amzn-errortype"], "ResourceNotFoundException");
        assert_eq!(r.headers()["x-amzn-requestid"], "rid");
    }
}

//! AWS errors on the wire: one renderer per protocol (REST-JSON for Lambda and the server's
//! own endpoints, JSON 1.0/1.1 for Logs, S3's XML), and `AwsError`, the Lambda service's error.
//! Every error response RustStack sends is built here.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;
use serde_json::{Map, Value};

/// REST-JSON (Lambda, function URLs, `/_ruststack/*`): `status`, `x-amzn-ErrorType: code`,
/// `x-amzn-RequestId` when there is one, and the JSON object `body` (its members depend on
/// the operation's model, so the caller supplies them).
pub fn rest_json(
    status: StatusCode,
    code: &str,
    body: Map<String, Value>,
    request_id: Option<&str>,
) -> Response<Full<Bytes>> {
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::from(bytes)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    insert_text(h, "x-amzn-errortype", code);
    if let Some(id) = request_id {
        insert_text(h, "x-amzn-requestid", id);
    }
    resp
}

/// Which AWS JSON protocol a service speaks; only the content type differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonVersion {
    V1_0,
    V1_1,
}

impl JsonVersion {
    pub fn content_type(self) -> &'static str {
        match self {
            JsonVersion::V1_0 => "application/x-amz-json-1.0",
            JsonVersion::V1_1 => "application/x-amz-json-1.1",
        }
    }
}

/// AWS JSON 1.0/1.1 (`X-Amz-Target` services such as Logs): `{"__type": code, "message": ...}`
/// with `x-amzn-ErrorType` and `x-amzn-RequestId`.
pub fn aws_json(
    version: JsonVersion,
    status: StatusCode,
    code: &str,
    message: &str,
    request_id: &str,
) -> Response<Full<Bytes>> {
    let body = serde_json::json!({"__type": code, "message": message});
    let mut resp = Response::new(Full::new(Bytes::from(serde_json::to_vec(&body).unwrap_or_default())));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static(version.content_type()));
    insert_text(h, "x-amzn-errortype", code);
    insert_text(h, "x-amzn-requestid", request_id);
    resp
}

/// One S3 error, as S3 renders it.
pub struct S3XmlError<'a> {
    pub status: StatusCode,
    pub code: &'a str,
    pub message: &'a str,
    /// Extra elements of the document after `Message` (`Key`, `BucketName`, ...).
    pub extra: &'a [(&'a str, String)],
    /// Extra response headers (`x-amz-delete-marker`, `content-range`, ...).
    pub headers: &'a [(&'a str, String)],
}

/// S3's XML: `<Error><Code/><Message/>...<RequestId/></Error>` with `x-amz-request-id`; a
/// response to HEAD has the status and headers only.
pub fn s3_xml(err: &S3XmlError<'_>, request_id: &str, head: bool) -> Response<Bytes> {
    let body = if head {
        Bytes::new()
    } else {
        let mut doc = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>");
        let mut elem = |tag: &str, text: &str| {
            doc.push_str(&format!("<{tag}>{}</{tag}>", super::xml::escape(text)));
        };
        elem("Code", err.code);
        elem("Message", err.message);
        for (tag, value) in err.extra {
            elem(tag, value);
        }
        elem("RequestId", request_id);
        doc.push_str("</Error>");
        Bytes::from(doc)
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = err.status;
    let h = resp.headers_mut();
    if !head {
        h.insert("content-type", HeaderValue::from_static("application/xml"));
    }
    insert_text(h, "x-amz-request-id", request_id);
    for (name, value) in err.headers {
        if let Ok(name) = http::HeaderName::from_bytes(name.as_bytes()) {
            insert_text(h, name, value);
        }
    }
    resp
}

/// Sets a header whose value we produced; a value that is not a valid header (never the
/// case for codes, ids and the values S3 errors carry) is left out rather than failing.
fn insert_text(h: &mut http::HeaderMap, name: impl http::header::IntoHeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

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

    /// The REST-JSON response: `Type`, the message, and `Reason` for throttling.
    pub fn to_response(&self, request_id: &str) -> Response<Full<Bytes>> {
        let mut body = Map::new();
        let kind = if self.status.is_server_error() { "Service" } else { "User" };
        body.insert("Type".into(), kind.into());
        body.insert(self.message_key().into(), self.message.clone().into());
        if let Some(reason) = self.reason {
            body.insert("Reason".into(), reason.into());
        }
        rest_json(self.status, self.code, body, Some(request_id))
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
        assert_eq!(r.headers()["content-type"], "application/json");
    }

    fn body(r: Response<Full<Bytes>>) -> Value {
        use http_body_util::BodyExt as _;
        let bytes = futures_util::FutureExt::now_or_never(r.into_body().collect()).unwrap().unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn rest_json_members() {
        let e = AwsError::too_many_requests("Rate exceeded", "ConcurrentInvocationLimitExceeded");
        assert_eq!(
            body(e.to_response("r")),
            serde_json::json!({"Type": "User", "message": "Rate exceeded", "Reason": "ConcurrentInvocationLimitExceeded"})
        );
        assert_eq!(body(AwsError::service("boom").to_response("r"))["Type"], "Service");
        assert_eq!(body(AwsError::not_found("gone").to_response("r"))["Message"], "gone");
    }

    #[test]
    fn aws_json_shape() {
        let r = aws_json(JsonVersion::V1_1, StatusCode::BAD_REQUEST, "InvalidParameterException", "bad", "rid");
        assert_eq!(r.status(), 400);
        assert_eq!(r.headers()["content-type"], "application/x-amz-json-1.1");
        assert_eq!(r.headers()["x-amzn-errortype"], "InvalidParameterException");
        assert_eq!(r.headers()["x-amzn-requestid"], "rid");
        assert_eq!(body(r), serde_json::json!({"__type": "InvalidParameterException", "message": "bad"}));
        let r = aws_json(JsonVersion::V1_0, StatusCode::BAD_REQUEST, "X", "y", "rid");
        assert_eq!(r.headers()["content-type"], "application/x-amz-json-1.0");
    }

    #[test]
    fn s3_xml_document() {
        let extra = [("Key", "a&b".to_string())];
        let headers = [("x-amz-delete-marker", "true".to_string())];
        let e = S3XmlError {
            status: StatusCode::NOT_FOUND,
            code: "NoSuchKey",
            message: "The specified key does not exist.",
            extra: &extra,
            headers: &headers,
        };
        let r = s3_xml(&e, "REQ1", false);
        assert_eq!(r.status(), 404);
        assert_eq!(r.headers()["x-amz-request-id"], "REQ1");
        assert_eq!(r.headers()["x-amz-delete-marker"], "true");
        assert_eq!(
            std::str::from_utf8(r.body()).unwrap(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code>\
             <Message>The specified key does not exist.</Message><Key>a&amp;b</Key><RequestId>REQ1</RequestId></Error>"
        );
        let r = s3_xml(&e, "REQ1", true);
        assert!(r.body().is_empty());
        assert!(r.headers().get("content-type").is_none());
    }
}

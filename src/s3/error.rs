//! S3 errors: the public `S3Error` for in-process callers, and `ApiError`,
//! which `describe` maps to S3's vocabulary in one match and `error_response` renders
//! with the one S3 XML renderer (`aws::error::s3_xml`).

use std::fmt;

use bytes::Bytes;
use http::{Response, StatusCode};

use crate::aws::error::{S3XmlError, s3_xml};

/// Why `S3::get_object_bytes` could not return an object.
#[derive(Debug)]
pub enum S3Error {
    NoSuchBucket(String),
    NoSuchKey(String),
    NoSuchVersion(String),
    Io(std::io::Error),
}

impl fmt::Display for S3Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            S3Error::NoSuchBucket(b) => write!(f, "The specified bucket does not exist: {b}"),
            S3Error::NoSuchKey(k) => write!(f, "The specified key does not exist: {k}"),
            S3Error::NoSuchVersion(v) => write!(f, "The specified version does not exist: {v}"),
            S3Error::Io(e) => write!(f, "S3 storage error: {e}"),
        }
    }
}

impl std::error::Error for S3Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            S3Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<std::io::Error> for S3Error {
    fn from(e: std::io::Error) -> Self {
        S3Error::Io(e)
    }
}

/// Every way an S3 request can fail. Each variant knows its status and code.
#[derive(Debug)]
pub(crate) enum ApiError {
    NoSuchBucket(String),
    /// `delete_marker`: the version id of the delete marker that hides the key.
    NoSuchKey {
        key: String,
        delete_marker: Option<String>,
    },
    NoSuchVersion {
        key: String,
        version_id: String,
    },
    NoSuchUpload(String),
    BucketNotEmpty(String),
    InvalidBucketName(String),
    KeyTooLong,
    InvalidUri(String),
    MalformedXml,
    InvalidArgument(String),
    InvalidRequest(String),
    InvalidRange {
        size: u64,
    },
    InvalidPart(String),
    InvalidPartOrder,
    EntityTooSmall,
    /// The named digest header did not match the body.
    BadDigest(String),
    InvalidDigest,
    ContentSha256Mismatch,
    IncompleteBody(String),
    PreconditionFailed(&'static str),
    /// `delete_marker`: set when the addressed version is a delete marker.
    MethodNotAllowed {
        delete_marker: Option<String>,
    },
    NotImplemented(String),
    Internal(std::io::Error),
}

impl From<std::io::Error> for ApiError {
    fn from(e: std::io::Error) -> Self {
        ApiError::Internal(e)
    }
}

impl ApiError {
    /// For in-process callers, which only tell missing things from I/O failures.
    pub(crate) fn into_s3_error(self, bucket: &str, key: &str) -> S3Error {
        match self {
            ApiError::NoSuchBucket(b) => S3Error::NoSuchBucket(b),
            ApiError::NoSuchVersion { version_id, .. } => S3Error::NoSuchVersion(version_id),
            ApiError::MethodNotAllowed { delete_marker: Some(v) } => S3Error::NoSuchVersion(v),
            ApiError::Internal(e) => S3Error::Io(e),
            _ => S3Error::NoSuchKey(format!("{bucket}/{key}")),
        }
    }
}

/// How an error looks on the wire.
pub(crate) struct Described {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Extra elements of the error document (`Key`, `BucketName`, ...).
    pub extra: Vec<(&'static str, String)>,
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    /// Status, code and message: the one place errors map to S3's vocabulary.
    /// Internal failures are logged here and described without detail.
    pub(crate) fn describe(&self, request_id: &str) -> Described {
        use ApiError::*;
        let mut extra: Vec<(&'static str, String)> = Vec::new();
        let mut headers: Vec<(&'static str, String)> = Vec::new();
        let (status, code, message) = match self {
            NoSuchBucket(b) => {
                extra.push(("BucketName", b.clone()));
                (StatusCode::NOT_FOUND, "NoSuchBucket", "The specified bucket does not exist".to_string())
            }
            NoSuchKey { key, delete_marker } => {
                extra.push(("Key", key.clone()));
                if let Some(v) = delete_marker {
                    headers.push(("x-amz-delete-marker", "true".into()));
                    headers.push(("x-amz-version-id", v.clone()));
                }
                (StatusCode::NOT_FOUND, "NoSuchKey", "The specified key does not exist.".to_string())
            }
            NoSuchVersion { key, version_id } => {
                extra.push(("Key", key.clone()));
                extra.push(("VersionId", version_id.clone()));
                (StatusCode::NOT_FOUND, "NoSuchVersion", "The specified version does not exist.".to_string())
            }
            NoSuchUpload(id) => {
                extra.push(("UploadId", id.clone()));
                (
                StatusCode::NOT_FOUND,
                "NoSuchUpload",
                "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.".to_string(),
            )
            }
            BucketNotEmpty(b) => {
                extra.push(("BucketName", b.clone()));
                (StatusCode::CONFLICT, "BucketNotEmpty", "The bucket you tried to delete is not empty".to_string())
            }
            InvalidBucketName(b) => {
                extra.push(("BucketName", b.clone()));
                (StatusCode::BAD_REQUEST, "InvalidBucketName", "The specified bucket is not valid.".to_string())
            }
            KeyTooLong => (StatusCode::BAD_REQUEST, "KeyTooLongError", "Your key is too long".to_string()),
            InvalidUri(uri) => {
                extra.push(("URI", uri.clone()));
                (StatusCode::BAD_REQUEST, "InvalidURI", "Couldn't parse the specified URI.".to_string())
            }
            MalformedXml => (
                StatusCode::BAD_REQUEST,
                "MalformedXML",
                "The XML you provided was not well-formed or did not validate against our published schema".to_string(),
            ),
            InvalidArgument(m) => (StatusCode::BAD_REQUEST, "InvalidArgument", m.clone()),
            InvalidRequest(m) => (StatusCode::BAD_REQUEST, "InvalidRequest", m.clone()),
            InvalidRange { size } => {
                extra.push(("ActualObjectSize", size.to_string()));
                headers.push(("content-range", format!("bytes */{size}")));
                (
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "InvalidRange",
                    "The requested range is not satisfiable".to_string(),
                )
            }
            InvalidPart(m) => (StatusCode::BAD_REQUEST, "InvalidPart", m.clone()),
            InvalidPartOrder => (
                StatusCode::BAD_REQUEST,
                "InvalidPartOrder",
                "The list of parts was not in ascending order. Parts must be ordered by part number.".to_string(),
            ),
            EntityTooSmall => (
                StatusCode::BAD_REQUEST,
                "EntityTooSmall",
                "Your proposed upload is smaller than the minimum allowed object size.".to_string(),
            ),
            BadDigest(which) => (
                StatusCode::BAD_REQUEST,
                "BadDigest",
                format!("The {which} you specified did not match the calculated checksum."),
            ),
            InvalidDigest => {
                (StatusCode::BAD_REQUEST, "InvalidDigest", "The Content-MD5 you specified was invalid.".to_string())
            }
            ContentSha256Mismatch => (
                StatusCode::BAD_REQUEST,
                "XAmzContentSHA256Mismatch",
                "The provided 'x-amz-content-sha256' header does not match what was computed.".to_string(),
            ),
            IncompleteBody(m) => (StatusCode::BAD_REQUEST, "IncompleteBody", m.clone()),
            PreconditionFailed(condition) => {
                extra.push(("Condition", condition.to_string()));
                (
                    StatusCode::PRECONDITION_FAILED,
                    "PreconditionFailed",
                    "At least one of the pre-conditions you specified did not hold".to_string(),
                )
            }
            MethodNotAllowed { delete_marker } => {
                if let Some(v) = delete_marker {
                    headers.push(("x-amz-delete-marker", "true".into()));
                    headers.push(("x-amz-version-id", v.clone()));
                }
                (
                    StatusCode::METHOD_NOT_ALLOWED,
                    "MethodNotAllowed",
                    "The specified method is not allowed against this resource.".to_string(),
                )
            }
            NotImplemented(what) => {
                (StatusCode::NOT_IMPLEMENTED, "NotImplemented", format!("{what} is not implemented by RustStack S3"))
            }
            Internal(e) => {
                tracing::error!(error = %e, request_id, "s3 internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    "We encountered an internal error. Please try again.".to_string(),
                )
            }
        };
        Described { status, code, message, extra, headers }
    }
}

/// The S3 error document (or, for HEAD, just the status and headers) for `err`.
pub(crate) fn error_response(err: &ApiError, request_id: &str, head: bool) -> Response<Bytes> {
    let Described { status, code, message, extra, headers } = err.describe(request_id);
    let wire = S3XmlError { status, code, message: &message, extra: &extra, headers: &headers };
    s3_xml(&wire, request_id, head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_document() {
        let r = error_response(&ApiError::NoSuchKey { key: "a&b".into(), delete_marker: None }, "REQ1", false);
        assert_eq!(r.status(), 404);
        let body = std::str::from_utf8(r.body()).unwrap();
        assert!(body.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code>"));
        assert!(body.contains("<Key>a&amp;b</Key><RequestId>REQ1</RequestId></Error>"));
    }

    #[test]
    fn head_errors_have_no_body() {
        let r = error_response(&ApiError::NoSuchBucket("b".into()), "R", true);
        assert_eq!(r.status(), 404);
        assert!(r.body().is_empty());
    }
}

//! Minimal S3: the bucket and object API that Lambda needs (function code
//! from S3, S3 calls from handlers), persisted under `<data-dir>/s3`.
//!
//! Supported: ListBuckets, Create/Head/DeleteBucket, Get/PutBucketVersioning,
//! GetBucketLocation, ListObjects (v1 and v2), ListObjectVersions,
//! Put/Get/Head/Delete/CopyObject, DeleteObjects, multipart uploads
//! (Create, UploadPart, UploadPartCopy, Complete, Abort). Path-style and
//! virtual-host-style addressing. Object versions when versioning is enabled.
//! Requests are not authenticated; signatures are ignored, body digests
//! (Content-MD5, x-amz-content-sha256, x-amz-checksum-*) are checked.
//!
//! - `wire`: addressing, query strings, aws-chunked bodies, XML, dates
//! - `error`: `S3Error` (public) and `ApiError` → S3 XML errors, in one match
//! - `checksum`: MD5, SHA-256 and the CRCs behind `x-amz-checksum-*`
//! - `store`: the index and its files (temp file + rename, reloaded on open)
//! - `list`: listing pages over the index
//! - `ops`: the route table and one function per operation

pub(crate) mod checksum;
mod error;
mod list;
pub mod notify;
mod ops;
mod store;
mod wire;

use std::io::Read as _;
use std::path::PathBuf;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderValue, Method, Response};

pub use error::S3Error;
pub use wire::virtual_host_bucket;

use error::error_response;
use store::Store;
use wire::{Query, parse_target};

/// The S3 service: an index of buckets and objects behind one lock, with the
/// bytes in files under its directory.
pub struct S3 {
    store: Store,
    /// Bucket notifications to Lambda.
    pub notifications: notify::Notifications,
}

impl S3 {
    /// Opens (creating if needed) the S3 store under `dir` (the server passes
    /// `<data-dir>/s3`). Loads existing buckets and objects from disk and
    /// clears what an interrupted write left behind.
    pub fn open(dir: PathBuf) -> std::io::Result<S3> {
        let notifications = notify::Notifications::open(dir.join("notifications"))?;
        Ok(S3 { store: Store::open(dir)?, notifications })
    }

    /// Handles one S3 REST request. Synchronous (does file I/O); call it
    /// inside `spawn_blocking`. `parts.uri` is the request target (path and
    /// query); a `Host` such as `bucket.localhost:4566` selects
    /// virtual-host-style addressing. Never panics on bad input: every
    /// failure is an S3 error response. HEAD responses carry the object's
    /// `Content-Length` with an empty body; the server must keep that header.
    pub fn handle(&self, parts: &http::request::Parts, body: Bytes) -> Response<Bytes> {
        let request_id = request_id();
        let head = parts.method == Method::HEAD;
        let mut response = self.dispatch(parts, body).unwrap_or_else(|e| error_response(&e, &request_id, head));
        if response.status().is_success() {
            self.notify(parts, &response, &request_id);
        }
        let headers = response.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            headers.insert("x-amz-request-id", v);
        }
        if let Ok(v) = HeaderValue::from_str(&base64::engine::general_purpose::STANDARD.encode(request_id.as_bytes())) {
            headers.insert("x-amz-id-2", v);
        }
        tracing::debug!(
            method = %parts.method,
            uri = %parts.uri,
            status = response.status().as_u16(),
            request_id,
            "s3 request"
        );
        response
    }

    /// Put/GetBucketNotificationConfiguration.
    fn notification_op(&self, method: &Method, bucket: &str, body: &[u8]) -> Result<Response<Bytes>, error::ApiError> {
        self.store.read(bucket, |_| ())?;
        let xml = match *method {
            Method::PUT => {
                let text = std::str::from_utf8(body).map_err(|_| error::ApiError::MalformedXml)?;
                self.notifications.put(bucket, text)?;
                return Ok(Response::new(Bytes::new()));
            }
            Method::GET => self.notifications.get_xml(bucket),
            _ => return Err(error::ApiError::MethodNotAllowed { delete_marker: None }),
        };
        let mut r = Response::new(Bytes::from(xml));
        r.headers_mut().insert("content-type", HeaderValue::from_static("application/xml"));
        Ok(r)
    }

    /// After a successful request: the bucket notification it triggers, if any.
    fn notify(&self, parts: &http::request::Parts, response: &Response<Bytes>, request_id: &str) {
        let host = parts.headers.get(http::header::HOST).and_then(|h| h.to_str().ok());
        let Ok(target) = parse_target(host, parts.uri.path()) else { return };
        let Some(bucket) = target.bucket.as_deref() else { return };
        let Ok(query) = Query::parse(parts.uri.query()) else { return };
        if target.key.is_none() {
            if parts.method == Method::DELETE {
                self.notifications.forget(bucket);
            }
            return;
        }
        if !self.notifications.watches(bucket) {
            return;
        }
        let key = target.key.as_deref().unwrap_or_default();
        let event = match parts.method {
            Method::PUT if query.has("uploadId") => return,
            Method::PUT if parts.headers.contains_key("x-amz-copy-source") => "ObjectCreated:Copy",
            Method::PUT => "ObjectCreated:Put",
            Method::POST if query.has("uploadId") => "ObjectCreated:CompleteMultipartUpload",
            Method::DELETE if query.has("uploadId") => return,
            Method::DELETE if response.headers().get("x-amz-delete-marker").is_some_and(|v| v == "true") => {
                "ObjectRemoved:DeleteMarkerCreated"
            }
            Method::DELETE => "ObjectRemoved:Delete",
            _ => return,
        };
        let (size, etag, version_id) = if event.starts_with("ObjectCreated") {
            match self.store.open_object(bucket, key, None) {
                Ok((v, _, _)) => (v.size, v.etag.trim_matches('"').to_string(), Some(v.version_id)),
                Err(_) => return,
            }
        } else {
            let v = response.headers().get("x-amz-version-id").and_then(|v| v.to_str().ok()).map(str::to_string);
            (0, String::new(), v)
        };
        self.notifications.emit(&notify::Change { bucket, key, event, size, etag, version_id, request_id });
    }

    fn dispatch(&self, parts: &http::request::Parts, body: Bytes) -> Result<Response<Bytes>, error::ApiError> {
        let host = parts
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| parts.uri.authority().map(|a| a.as_str()));
        let target = parse_target(host, parts.uri.path())?;
        let query = Query::parse(parts.uri.query())?;
        if let (Some(bucket), None, true) = (target.bucket.as_deref(), target.key.as_deref(), query.has("notification"))
        {
            return self.notification_op(&parts.method, bucket, &body);
        }
        let request = ops::Request {
            method: &parts.method,
            headers: &parts.headers,
            host,
            query,
            bucket: target.bucket,
            key: target.key,
            body,
        };
        ops::route(&self.store, request)
    }

    /// The bytes of an object, for Lambda CreateFunction/UpdateFunctionCode
    /// with `Code.S3Bucket`/`S3Key`/`S3ObjectVersion`. `version_id` None is
    /// the current version.
    /// (object versions, their bytes) stored, for the storage report.
    pub fn stored_bytes(&self) -> (usize, u64) {
        self.store.stored_bytes()
    }

    pub fn get_object_bytes(&self, bucket: &str, key: &str, version_id: Option<&str>) -> Result<Bytes, S3Error> {
        let (version, _, file) =
            self.store.open_object(bucket, key, version_id).map_err(|e| e.into_s3_error(bucket, key))?;
        let mut buf = Vec::with_capacity(usize::try_from(version.size).unwrap_or(0));
        file.take(version.size).read_to_end(&mut buf)?;
        if buf.len() as u64 != version.size {
            return Err(S3Error::Io(std::io::Error::other(format!("object data for {bucket}/{key} is short"))));
        }
        Ok(Bytes::from(buf))
    }
}

/// A request id in S3's style: 16 uppercase hex digits.
fn request_id() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string().to_ascii_uppercase();
    id[..16].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_store() -> (S3, PathBuf) {
        let dir = std::env::temp_dir().join(format!("s3-mod-test-{}", uuid::Uuid::new_v4().simple()));
        (S3::open(dir.clone()).unwrap(), dir)
    }

    fn call(s3: &S3, method: &str, uri: &str, headers: &[(&str, &str)], body: &[u8]) -> Response<Bytes> {
        let mut b = http::Request::builder().method(method).uri(uri).header("host", "127.0.0.1:4566");
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        let (parts, ()) = b.body(()).unwrap().into_parts();
        s3.handle(&parts, Bytes::copy_from_slice(body))
    }

    fn text(r: &Response<Bytes>) -> &str {
        std::str::from_utf8(r.body()).unwrap()
    }

    #[test]
    fn object_round_trip_and_errors() {
        let (s3, dir) = temp_store();
        assert_eq!(call(&s3, "PUT", "/bkt", &[], b"").status(), 200);
        assert_eq!(call(&s3, "PUT", "/bkt", &[], b"").status(), 200, "re-create is OK in us-east-1");
        assert_eq!(call(&s3, "PUT", "/Bad_Name", &[], b"").status(), 400);
        let r = call(
            &s3,
            "PUT",
            "/bkt/a%20b/c.txt",
            &[("content-type", "text/plain"), ("x-amz-meta-color", "blue")],
            b"hello",
        );
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["etag"], "\"5d41402abc4b2a76b9719d911017c592\"");
        assert!(r.headers().contains_key("x-amz-request-id"));
        assert!(!r.headers().contains_key("x-amz-version-id"));

        let r = call(&s3, "GET", "/bkt/a%20b/c.txt", &[], b"");
        assert_eq!(r.body().as_ref(), b"hello");
        assert_eq!(r.headers()["content-type"], "text/plain");
        assert_eq!(r.headers()["x-amz-meta-color"], "blue");
        assert_eq!(r.headers()["content-length"], "5");
        let r = call(&s3, "GET", "/bkt/a%20b/c.txt", &[("range", "bytes=1-3")], b"");
        assert_eq!(r.status(), 206);
        assert_eq!(r.body().as_ref(), b"ell");
        assert_eq!(r.headers()["content-range"], "bytes 1-3/5");

        let r = call(&s3, "HEAD", "/bkt/a%20b/c.txt", &[], b"");
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-length"], "5");
        assert!(r.body().is_empty());

        let r = call(&s3, "GET", "/bkt/missing", &[], b"");
        assert_eq!(r.status(), 404);
        assert!(text(&r).contains("<Code>NoSuchKey</Code>"));
        assert!(text(&r).contains("<Key>missing</Key>"));
        let r = call(&s3, "HEAD", "/nope/x", &[], b"");
        assert_eq!(r.status(), 404);
        assert!(r.body().is_empty());
        let r = call(&s3, "GET", "/nope?list-type=2", &[], b"");
        assert!(text(&r).contains("<Code>NoSuchBucket</Code>"));
        assert_eq!(call(&s3, "DELETE", "/bkt", &[], b"").status(), 409);
        assert_eq!(call(&s3, "GET", "/bkt?policy", &[], b"").status(), 501);
        let r = call(&s3, "PUT", "/bkt?versioning", &[], b"<not xml");
        assert!(text(&r).contains("MalformedXML"));

        assert_eq!(call(&s3, "DELETE", "/bkt/a%20b/c.txt", &[], b"").status(), 204);
        assert_eq!(call(&s3, "DELETE", "/bkt/a%20b/c.txt", &[], b"").status(), 204);
        assert_eq!(call(&s3, "DELETE", "/bkt", &[], b"").status(), 204);
        assert_eq!(call(&s3, "HEAD", "/bkt", &[], b"").status(), 404);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn aws_chunked_put_and_in_process_get() {
        let (s3, dir) = temp_store();
        call(&s3, "PUT", "/code", &[], b"");
        let body = b"5\r\nhello\r\n6\r\n world\r\n0\r\nx-amz-checksum-crc32:DUoRhQ==\r\n\r\n";
        let r = call(
            &s3,
            "PUT",
            "/code/fn.zip",
            &[
                ("content-encoding", "aws-chunked"),
                ("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"),
                ("x-amz-decoded-content-length", "11"),
                ("x-amz-trailer", "x-amz-checksum-crc32"),
            ],
            body,
        );
        assert_eq!(r.status(), 200, "{}", text(&r));
        assert_eq!(r.headers()["x-amz-checksum-crc32"], "DUoRhQ==");
        assert_eq!(s3.get_object_bytes("code", "fn.zip", None).unwrap().as_ref(), b"hello world");
        let r = call(&s3, "HEAD", "/code/fn.zip", &[], b"");
        assert!(!r.headers().contains_key("content-encoding"));
        assert!(matches!(s3.get_object_bytes("code", "nope", None), Err(S3Error::NoSuchKey(_))));
        assert!(matches!(s3.get_object_bytes("nope", "x", None), Err(S3Error::NoSuchBucket(_))));
        assert!(matches!(s3.get_object_bytes("code", "fn.zip", Some("v")), Err(S3Error::NoSuchVersion(_))));
        let bad = call(
            &s3,
            "PUT",
            "/code/bad",
            &[("content-encoding", "aws-chunked"), ("x-amz-decoded-content-length", "99")],
            body,
        );
        assert_eq!(bad.status(), 400);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn virtual_host_requests() {
        let (s3, dir) = temp_store();
        let req = |method: &str, uri: &str, body: &[u8]| {
            let (parts, ()) = http::Request::builder()
                .method(method)
                .uri(uri)
                .header("host", "vbkt.localhost:4566")
                .body(())
                .unwrap()
                .into_parts();
            s3.handle(&parts, Bytes::copy_from_slice(body))
        };
        assert_eq!(req("PUT", "/", b"").status(), 200);
        assert_eq!(req("PUT", "/k", b"v").status(), 200);
        assert_eq!(req("GET", "/k", b"").body().as_ref(), b"v");
        assert!(std::str::from_utf8(req("GET", "/?list-type=2", b"").body()).unwrap().contains("<Key>k</Key>"));
        assert_eq!(s3.get_object_bytes("vbkt", "k", None).unwrap().as_ref(), b"v");
        std::fs::remove_dir_all(dir).unwrap();
    }
}

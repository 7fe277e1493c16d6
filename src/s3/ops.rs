//! S3 operations: the route table, and one function per API call that turns a
//! parsed request into a store call and the store's answer into a response.

use std::io::{Read as _, Seek as _, SeekFrom};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};

use super::checksum::{self, Checksum};
use super::error::ApiError;
use super::list::{list_current, list_versions};
use super::store::{ObjectAttrs, Store, Version, Versioning, valid_bucket_name};
use super::wire::{
    Element, MAX_KEY_LEN, Query, Xml, decode_aws_chunked, http_date, iso_date, parse_http_date, url_encode,
};
use crate::aws::checksum as digest;

type Reply = Result<Response<Bytes>, ApiError>;

/// One S3 request, addressed and decoded.
pub(super) struct Request<'a> {
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
    pub host: Option<&'a str>,
    pub query: Query,
    pub bucket: Option<String>,
    pub key: Option<String>,
    pub body: Bytes,
}

impl Request<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
    }

    /// A query parameter, treating an empty value as absent.
    fn param(&self, name: &str) -> Option<&str> {
        self.query.get(name).filter(|v| !v.is_empty())
    }
}

/// Subresources we do not implement. Asking for one is a clear 501, not a
/// silent fall-through to a different operation.
const UNSUPPORTED: &[&str] = &[
    "accelerate",
    "acl",
    "analytics",
    "attributes",
    "cors",
    "encryption",
    "intelligent-tiering",
    "inventory",
    "legal-hold",
    "lifecycle",
    "logging",
    "metadataTable",
    "metrics",
    "object-lock",
    "ownershipControls",
    "policy",
    "policyStatus",
    "publicAccessBlock",
    "replication",
    "requestPayment",
    "restore",
    "retention",
    "select",
    "tagging",
    "torrent",
    "website",
];

/// The route table.
pub(super) fn route(store: &Store, req: Request<'_>) -> Reply {
    if let Some(sub) = req.query.first_of(UNSUPPORTED) {
        return Err(ApiError::NotImplemented(format!("The ?{sub} subresource")));
    }
    let q = &req.query;
    match (req.bucket.as_deref(), req.key.as_deref()) {
        (None, _) => match *req.method {
            Method::GET => list_buckets(store, &req),
            _ => Err(ApiError::MethodNotAllowed { delete_marker: None }),
        },
        (Some(bucket), None) => match *req.method {
            Method::PUT if q.has("versioning") => put_bucket_versioning(store, &req, bucket),
            Method::PUT => create_bucket(store, bucket),
            Method::HEAD => head_bucket(store, bucket),
            Method::DELETE => delete_bucket(store, bucket),
            Method::GET if q.has("versioning") => get_bucket_versioning(store, bucket),
            Method::GET if q.has("location") => get_bucket_location(store, bucket),
            Method::GET if q.has("versions") => list_object_versions(store, &req, bucket),
            Method::GET if q.has("uploads") => Err(ApiError::NotImplemented("ListMultipartUploads".into())),
            Method::GET if q.get("list-type") == Some("2") => list_objects(store, &req, bucket, true),
            Method::GET => list_objects(store, &req, bucket, false),
            Method::POST if q.has("delete") => delete_objects(store, &req, bucket),
            _ => Err(ApiError::MethodNotAllowed { delete_marker: None }),
        },
        (Some(bucket), Some(key)) => match *req.method {
            Method::PUT if q.has("uploadId") => upload_part(store, &req, bucket, key),
            Method::PUT if req.headers.contains_key("x-amz-copy-source") => copy_object(store, &req, bucket, key),
            Method::PUT => put_object(store, &req, bucket, key),
            Method::GET if q.has("uploadId") => Err(ApiError::NotImplemented("ListParts".into())),
            Method::GET => get_object(store, &req, bucket, key, false),
            Method::HEAD => get_object(store, &req, bucket, key, true),
            Method::DELETE if q.has("uploadId") => abort_multipart_upload(store, &req, bucket, key),
            Method::DELETE => delete_object(store, &req, bucket, key),
            Method::POST if q.has("uploads") => create_multipart_upload(store, &req, bucket, key),
            Method::POST if q.has("uploadId") => complete_multipart_upload(store, &req, bucket, key),
            _ => Err(ApiError::MethodNotAllowed { delete_marker: None }),
        },
    }
}

// ---- responses ----

/// A response under construction. Header values that are not valid HTTP
/// (only possible for user-supplied text) are dropped rather than failing.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn new(status: StatusCode) -> Self {
        Answer { status, headers: HeaderMap::new(), body: Bytes::new() }
    }

    fn xml(doc: String) -> Self {
        Answer::new(StatusCode::OK).header("content-type", "application/xml").body(Bytes::from(doc))
    }

    fn header(mut self, name: &str, value: impl AsRef<str>) -> Self {
        if let (Ok(n), Ok(v)) = (HeaderName::try_from(name), HeaderValue::from_str(value.as_ref())) {
            self.headers.append(n, v);
        }
        self
    }

    fn body(mut self, body: Bytes) -> Self {
        self.body = body;
        self
    }

    /// `x-amz-version-id`, which S3 sends once a bucket has had versioning turned on.
    fn version(self, v: &Version, versioning: Versioning) -> Self {
        if versioning == Versioning::Unversioned { self } else { self.header("x-amz-version-id", &v.version_id) }
    }

    fn checksum(self, c: Option<&Checksum>) -> Self {
        match c {
            Some(c) => self.header(&c.header_name(), &c.value),
            None => self,
        }
    }

    fn done(self) -> Reply {
        let mut r = Response::new(self.body);
        *r.status_mut() = self.status;
        *r.headers_mut() = self.headers;
        Ok(r)
    }
}

// ---- request bodies ----

/// The payload with any aws-chunked framing removed, plus its trailers.
fn decode_body(req: &Request<'_>) -> Result<(Bytes, Vec<(String, String)>), ApiError> {
    let encoded = req
        .header("content-encoding")
        .is_some_and(|v| v.split(',').any(|e| e.trim().eq_ignore_ascii_case("aws-chunked")))
        || req.header("x-amz-content-sha256").is_some_and(|v| v.starts_with("STREAMING-"));
    if !encoded {
        return Ok((req.body.clone(), Vec::new()));
    }
    let unchunked = decode_aws_chunked(&req.body)
        .map_err(|m| ApiError::IncompleteBody(format!("The aws-chunked request body is malformed: {m}")))?;
    if let Some(expected) = req.header("x-amz-decoded-content-length")
        && expected.parse::<usize>().ok() != Some(unchunked.body.len())
    {
        return Err(ApiError::IncompleteBody(format!(
            "x-amz-decoded-content-length is {expected} but the body decodes to {} bytes",
            unchunked.body.len()
        )));
    }
    Ok((Bytes::from(unchunked.body), unchunked.trailers))
}

/// The decoded body, checked against every digest the request carries.
fn verified_body(req: &Request<'_>) -> Result<(Bytes, Option<Checksum>), ApiError> {
    let (body, trailers) = decode_body(req)?;
    let checksum = checksum::verify(req.headers, &trailers, &body)?;
    Ok((body, checksum))
}

fn body_text(body: &[u8]) -> Result<&str, ApiError> {
    std::str::from_utf8(body).map_err(|_| ApiError::MalformedXml)
}

/// A request body read as an XML document whose root element is `root`.
fn xml_body(body: &[u8], root: &str) -> Result<Element, ApiError> {
    let doc = Element::parse(body_text(body)?)?;
    if doc.name != root {
        return Err(ApiError::MalformedXml);
    }
    Ok(doc)
}

/// Headers we store with an object and send back on GET/HEAD.
const STORED_HEADERS: &[&str] = &[
    "cache-control",
    "content-disposition",
    "content-language",
    "content-type",
    "expires",
    "x-amz-website-redirect-location",
];

fn object_attrs(headers: &HeaderMap, checksum: Option<Checksum>) -> ObjectAttrs {
    let mut attrs = ObjectAttrs { checksum, ..Default::default() };
    for name in STORED_HEADERS {
        if let Some(v) = headers.get(*name) {
            attrs.headers.insert(name.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned());
        }
    }
    // aws-chunked is transfer framing, not part of the object's encoding.
    let encodings: Vec<String> = headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty() && !e.eq_ignore_ascii_case("aws-chunked"))
        .map(str::to_string)
        .collect();
    if !encodings.is_empty() {
        attrs.headers.insert("content-encoding".into(), encodings.join(","));
    }
    for (name, value) in headers {
        if let Some(meta) = name.as_str().strip_prefix("x-amz-meta-") {
            attrs.metadata.insert(meta.to_string(), String::from_utf8_lossy(value.as_bytes()).into_owned());
        }
    }
    attrs
}

fn quoted_md5(data: &[u8]) -> String {
    format!("\"{}\"", digest::hex(&digest::md5(data)))
}

fn etags_match(condition: &str, etag: &str) -> bool {
    let etag = etag.trim_matches('"');
    condition.split(',').map(|c| c.trim().trim_start_matches("W/").trim_matches('"')).any(|c| c == "*" || c == etag)
}

// ---- service ----

const OWNER_ID: &str = "75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a";
const OWNER_NAME: &str = "ruststack";

fn owner(x: &mut Xml) {
    x.open("Owner").elem("ID", OWNER_ID).elem("DisplayName", OWNER_NAME).close("Owner");
}

fn list_buckets(store: &Store, req: &Request<'_>) -> Reply {
    let prefix = req.param("prefix").unwrap_or("");
    let mut x = Xml::new("ListAllMyBucketsResult");
    owner(&mut x);
    x.open("Buckets");
    for (name, created_ms) in store.buckets().into_iter().filter(|(n, _)| n.starts_with(prefix)) {
        x.open("Bucket").elem("Name", &name).elem("CreationDate", iso_date(created_ms));
        x.elem("BucketRegion", "us-east-1").close("Bucket");
    }
    x.close("Buckets");
    if !prefix.is_empty() {
        x.elem("Prefix", prefix);
    }
    Answer::xml(x.finish("ListAllMyBucketsResult")).done()
}

// ---- buckets ----

fn create_bucket(store: &Store, bucket: &str) -> Reply {
    // The body (CreateBucketConfiguration) only names a region; we have one.
    if !valid_bucket_name(bucket) {
        return Err(ApiError::InvalidBucketName(bucket.to_string()));
    }
    store.create_bucket(bucket)?;
    Answer::new(StatusCode::OK).header("location", format!("/{bucket}")).done()
}

fn head_bucket(store: &Store, bucket: &str) -> Reply {
    store.read(bucket, |_| ())?;
    Answer::new(StatusCode::OK)
        .header("x-amz-bucket-region", "us-east-1")
        .header("x-amz-access-point-alias", "false")
        .done()
}

fn delete_bucket(store: &Store, bucket: &str) -> Reply {
    store.delete_bucket(bucket)?;
    Answer::new(StatusCode::NO_CONTENT).done()
}

fn get_bucket_location(store: &Store, bucket: &str) -> Reply {
    store.read(bucket, |_| ())?;
    // us-east-1 is the empty constraint.
    Answer::xml(Xml::new("LocationConstraint").finish("LocationConstraint")).done()
}

fn put_bucket_versioning(store: &Store, req: &Request<'_>, bucket: &str) -> Reply {
    let (body, _) = verified_body(req)?;
    let doc = xml_body(&body, "VersioningConfiguration")?;
    let versioning = match doc.child_text("Status").as_deref() {
        Some("Enabled") => Versioning::Enabled,
        Some("Suspended") => Versioning::Suspended,
        // No status (only MfaDelete): nothing to change.
        None => {
            store.read(bucket, |_| ())?;
            return Answer::new(StatusCode::OK).done();
        }
        Some(_) => return Err(ApiError::MalformedXml),
    };
    store.set_versioning(bucket, versioning)?;
    Answer::new(StatusCode::OK).done()
}

fn get_bucket_versioning(store: &Store, bucket: &str) -> Reply {
    let versioning = store.read(bucket, |b| b.versioning)?;
    let mut x = Xml::new("VersioningConfiguration");
    match versioning {
        Versioning::Unversioned => {}
        Versioning::Enabled => {
            x.elem("Status", "Enabled");
        }
        Versioning::Suspended => {
            x.elem("Status", "Suspended");
        }
    }
    Answer::xml(x.finish("VersioningConfiguration")).done()
}

// ---- listings ----

fn max_keys(req: &Request<'_>) -> Result<usize, ApiError> {
    match req.param("max-keys") {
        None => Ok(1000),
        Some(v) => v.parse::<i64>().ok().filter(|n| *n >= 0).map(|n| n.min(1000) as usize).ok_or_else(|| {
            ApiError::InvalidArgument("Provided max-keys not an integer or within integer range".into())
        }),
    }
}

/// Text for a listing: URL-encoded when the client asked for `encoding-type=url`.
struct Enc(bool);

impl Enc {
    fn of(req: &Request<'_>) -> Result<Enc, ApiError> {
        match req.param("encoding-type") {
            None => Ok(Enc(false)),
            Some(e) if e.eq_ignore_ascii_case("url") => Ok(Enc(true)),
            Some(_) => Err(ApiError::InvalidArgument("Invalid Encoding Method specified in Request".into())),
        }
    }

    fn s(&self, s: &str) -> String {
        if self.0 { url_encode(s) } else { s.to_string() }
    }
}

fn list_objects(store: &Store, req: &Request<'_>, bucket: &str, v2: bool) -> Reply {
    let prefix = req.param("prefix").unwrap_or("");
    let delimiter = req.param("delimiter").unwrap_or("");
    let max = max_keys(req)?;
    let enc = Enc::of(req)?;
    let token = req.param("continuation-token");
    let after = if v2 {
        match token {
            Some(t) => URL_SAFE_NO_PAD
                .decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| ApiError::InvalidArgument("The continuation token provided is incorrect".into()))?,
            None => req.param("start-after").unwrap_or("").to_string(),
        }
    } else {
        req.param("marker").unwrap_or("").to_string()
    };
    let page = store.read(bucket, |b| list_current(b, prefix, delimiter, &after, max))?;
    let fetch_owner = !v2 || req.param("fetch-owner") == Some("true");

    let mut x = Xml::new("ListBucketResult");
    x.elem("Name", bucket).elem("Prefix", enc.s(prefix));
    if v2 {
        if let Some(t) = token {
            x.elem("ContinuationToken", t);
        }
        if let Some(s) = req.param("start-after") {
            x.elem("StartAfter", enc.s(s));
        }
        x.elem("KeyCount", (page.contents.len() + page.prefixes.len()).to_string());
    } else {
        x.elem("Marker", enc.s(req.param("marker").unwrap_or("")));
    }
    x.elem("MaxKeys", max.to_string());
    if !delimiter.is_empty() {
        x.elem("Delimiter", enc.s(delimiter));
    }
    if enc.0 {
        x.elem("EncodingType", "url");
    }
    x.elem("IsTruncated", page.truncated.to_string());
    if page.truncated
        && let Some(last) = &page.last
    {
        if v2 {
            x.elem("NextContinuationToken", URL_SAFE_NO_PAD.encode(last));
        } else {
            x.elem("NextMarker", enc.s(last));
        }
    }
    for v in &page.contents {
        x.open("Contents")
            .elem("Key", enc.s(&v.key))
            .elem("LastModified", iso_date(v.last_modified_ms))
            .elem("ETag", &v.etag)
            .elem("Size", v.size.to_string());
        if let Some(c) = &v.attrs.checksum {
            x.elem("ChecksumAlgorithm", c.algorithm.to_ascii_uppercase()).elem("ChecksumType", "FULL_OBJECT");
        }
        if fetch_owner {
            owner(&mut x);
        }
        x.elem("StorageClass", "STANDARD").close("Contents");
    }
    for p in &page.prefixes {
        x.open("CommonPrefixes").elem("Prefix", enc.s(p)).close("CommonPrefixes");
    }
    Answer::xml(x.finish("ListBucketResult")).done()
}

fn list_object_versions(store: &Store, req: &Request<'_>, bucket: &str) -> Reply {
    let prefix = req.param("prefix").unwrap_or("");
    let delimiter = req.param("delimiter").unwrap_or("");
    let key_marker = req.param("key-marker").unwrap_or("");
    let version_id_marker = req.param("version-id-marker").unwrap_or("");
    let max = max_keys(req)?;
    let enc = Enc::of(req)?;
    let page = store.read(bucket, |b| list_versions(b, prefix, delimiter, key_marker, version_id_marker, max))?;

    let mut x = Xml::new("ListVersionsResult");
    x.elem("Name", bucket)
        .elem("Prefix", enc.s(prefix))
        .elem("KeyMarker", enc.s(key_marker))
        .elem("VersionIdMarker", version_id_marker)
        .elem("MaxKeys", max.to_string());
    if !delimiter.is_empty() {
        x.elem("Delimiter", enc.s(delimiter));
    }
    if enc.0 {
        x.elem("EncodingType", "url");
    }
    x.elem("IsTruncated", page.truncated.to_string());
    if let Some(k) = &page.next_key_marker {
        x.elem("NextKeyMarker", enc.s(k));
    }
    if let Some(v) = &page.next_version_id_marker {
        x.elem("NextVersionIdMarker", v);
    }
    for (v, latest) in &page.versions {
        let tag = if v.delete_marker { "DeleteMarker" } else { "Version" };
        x.open(tag)
            .elem("Key", enc.s(&v.key))
            .elem("VersionId", &v.version_id)
            .elem("IsLatest", latest.to_string())
            .elem("LastModified", iso_date(v.last_modified_ms));
        if !v.delete_marker {
            x.elem("ETag", &v.etag).elem("Size", v.size.to_string()).elem("StorageClass", "STANDARD");
        }
        owner(&mut x);
        x.close(tag);
    }
    for p in &page.prefixes {
        x.open("CommonPrefixes").elem("Prefix", enc.s(p)).close("CommonPrefixes");
    }
    Answer::xml(x.finish("ListVersionsResult")).done()
}

// ---- objects ----

fn put_object(store: &Store, req: &Request<'_>, bucket: &str, key: &str) -> Reply {
    store.read(bucket, |_| ())?;
    let (body, checksum) = verified_body(req)?;
    let attrs = object_attrs(req.headers, checksum);
    let if_none_match = req.header("if-none-match").map(str::to_string);
    let if_match = req.header("if-match").map(str::to_string);
    let staged = store.stage_bytes(&body)?;
    let (v, versioning) = store.put(bucket, key, staged, quoted_md5(&body), attrs, |current| {
        // Conditional writes, checked under the store lock.
        match (&if_none_match, &if_match, current) {
            (Some(c), _, Some(cur)) if etags_match(c, &cur.etag) => Err(ApiError::PreconditionFailed("If-None-Match")),
            (_, Some(_), None) => Err(ApiError::NoSuchKey { key: key.to_string(), delete_marker: None }),
            (_, Some(c), Some(cur)) if !etags_match(c, &cur.etag) => Err(ApiError::PreconditionFailed("If-Match")),
            _ => Ok(()),
        }
    })?;
    Answer::new(StatusCode::OK)
        .header("etag", &v.etag)
        .version(&v, versioning)
        .checksum(v.attrs.checksum.as_ref())
        .done()
}

/// An inclusive byte range `(first, last)` from a `Range` header. `None`
/// means "the whole object" (no header, another unit, several ranges, or
/// nonsense, all of which S3 ignores).
fn parse_range(header: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, ApiError> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((first, last)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (first, last) = (first.trim(), last.trim());
    let unsatisfiable = Err(ApiError::InvalidRange { size });
    if first.is_empty() {
        let Ok(n) = last.parse::<u64>() else {
            return Ok(None);
        };
        if n == 0 || size == 0 {
            return unsatisfiable;
        }
        return Ok(Some((size.saturating_sub(n), size - 1)));
    }
    let Ok(first) = first.parse::<u64>() else {
        return Ok(None);
    };
    let last = if last.is_empty() {
        u64::MAX
    } else {
        match last.parse::<u64>() {
            Ok(l) if l >= first => l,
            _ => return Ok(None),
        }
    };
    if first >= size {
        return unsatisfiable;
    }
    Ok(Some((first, last.min(size - 1))))
}

/// Applies If-Match / If-None-Match / If-(Un)Modified-Since. `Some` is a 304.
fn check_conditions(req: &Request<'_>, v: &Version) -> Result<Option<Response<Bytes>>, ApiError> {
    let modified_s = v.last_modified_ms.div_euclid(1000) * 1000;
    let if_match = req.header("if-match");
    if let Some(c) = if_match {
        if !etags_match(c, &v.etag) {
            return Err(ApiError::PreconditionFailed("If-Match"));
        }
    } else if let Some(t) = req.header("if-unmodified-since").and_then(parse_http_date)
        && modified_s > t
    {
        return Err(ApiError::PreconditionFailed("If-Unmodified-Since"));
    }
    let not_modified = match req.header("if-none-match") {
        Some(c) => etags_match(c, &v.etag),
        None => req.header("if-modified-since").and_then(parse_http_date).is_some_and(|t| modified_s <= t),
    };
    if not_modified {
        let r = Answer::new(StatusCode::NOT_MODIFIED)
            .header("etag", &v.etag)
            .header("last-modified", http_date(v.last_modified_ms))
            .done()?;
        return Ok(Some(r));
    }
    Ok(None)
}

fn get_object(store: &Store, req: &Request<'_>, bucket: &str, key: &str, head: bool) -> Reply {
    let version_id = req.param("versionId");
    let (v, versioning, mut file) = store.open_object(bucket, key, version_id)?;
    if let Some(not_modified) = check_conditions(req, &v)? {
        return Ok(not_modified);
    }
    let range = match req.param("partNumber") {
        // Objects are stored whole: part 1 is all of it.
        Some("1") => None,
        Some(_) => return Err(ApiError::InvalidRange { size: v.size }),
        None => parse_range(req.header("range"), v.size)?,
    };
    let (first, len) = match range {
        Some((first, last)) => (first, last - first + 1),
        None => (0, v.size),
    };
    let body = if head {
        Bytes::new()
    } else {
        let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        file.seek(SeekFrom::Start(first))?;
        file.take(len).read_to_end(&mut buf)?;
        if buf.len() as u64 != len {
            return Err(ApiError::Internal(std::io::Error::other(format!(
                "object data for {bucket}/{key} is {} bytes short",
                len - buf.len() as u64
            ))));
        }
        Bytes::from(buf)
    };
    let mut out = Answer::new(if range.is_some() { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK })
        .header("content-length", len.to_string())
        .header("accept-ranges", "bytes")
        .header("etag", &v.etag)
        .header("last-modified", http_date(v.last_modified_ms))
        .version(&v, versioning)
        .body(body);
    if let Some((first, last)) = range {
        out = out.header("content-range", format!("bytes {first}-{last}/{}", v.size));
    }
    if !v.attrs.headers.contains_key("content-type") {
        out = out.header("content-type", "binary/octet-stream");
    }
    for (name, value) in &v.attrs.headers {
        // `response-content-type` etc. (presigned URLs) override what was stored.
        if req.param(&format!("response-{name}")).is_none() {
            out = out.header(name, value);
        }
    }
    for name in
        ["cache-control", "content-disposition", "content-encoding", "content-language", "content-type", "expires"]
    {
        if let Some(value) = req.param(&format!("response-{name}")) {
            out = out.header(name, value);
        }
    }
    for (name, value) in &v.attrs.metadata {
        out = out.header(&format!("x-amz-meta-{name}"), value);
    }
    let wants_checksum = req.header("x-amz-checksum-mode").is_some_and(|m| m.eq_ignore_ascii_case("ENABLED"));
    if wants_checksum && range.is_none() {
        out = out.checksum(v.attrs.checksum.as_ref());
        if v.attrs.checksum.is_some() {
            out = out.header("x-amz-checksum-type", "FULL_OBJECT");
        }
    }
    out.done()
}

fn delete_object(store: &Store, req: &Request<'_>, bucket: &str, key: &str) -> Reply {
    let deleted = store.delete_object(bucket, key, req.param("versionId"))?;
    let mut out = Answer::new(StatusCode::NO_CONTENT);
    if let Some(id) = &deleted.version_id {
        out = out.header("x-amz-version-id", id);
    }
    if deleted.delete_marker {
        out = out.header("x-amz-delete-marker", "true");
    }
    out.done()
}

fn delete_objects(store: &Store, req: &Request<'_>, bucket: &str) -> Reply {
    store.read(bucket, |_| ())?;
    let (body, _) = verified_body(req)?;
    let doc = xml_body(&body, "Delete")?;
    let objects: Vec<&Element> = doc.children("Object").collect();
    if objects.is_empty() || objects.len() > 1000 {
        return Err(ApiError::MalformedXml);
    }
    let quiet = doc.child_text("Quiet").is_some_and(|q| q.eq_ignore_ascii_case("true"));
    let mut x = Xml::new("DeleteResult");
    for object in objects {
        let key = object.child_text("Key").ok_or(ApiError::MalformedXml)?;
        let version_id = object.child_text("VersionId").filter(|v| !v.is_empty());
        let result = if key.is_empty() {
            Err(ApiError::InvalidArgument("Key is empty".into()))
        } else if key.len() > MAX_KEY_LEN {
            Err(ApiError::KeyTooLong)
        } else {
            store.delete_object(bucket, &key, version_id.as_deref())
        };
        match result {
            Ok(d) => {
                if quiet {
                    continue;
                }
                x.open("Deleted").elem("Key", &key);
                if let Some(v) = &version_id {
                    x.elem("VersionId", v);
                }
                if d.delete_marker {
                    x.elem("DeleteMarker", "true");
                    if let Some(id) = &d.version_id {
                        x.elem("DeleteMarkerVersionId", id);
                    }
                }
                x.close("Deleted");
            }
            Err(e) => {
                let d = e.describe("");
                x.open("Error").elem("Key", &key);
                if let Some(v) = &version_id {
                    x.elem("VersionId", v);
                }
                x.elem("Code", d.code).elem("Message", &d.message).close("Error");
            }
        }
    }
    Answer::xml(x.finish("DeleteResult")).done()
}

/// `x-amz-copy-source`: `[/]bucket/key[?versionId=v]`, key percent-encoded.
fn parse_copy_source(raw: &str) -> Result<(String, String, Option<String>), ApiError> {
    let invalid = || {
        ApiError::InvalidArgument("Copy Source must mention the source bucket and key: sourcebucket/sourcekey".into())
    };
    let (path, query) = raw.split_once('?').unwrap_or((raw, ""));
    let path =
        percent_encoding::percent_decode_str(path.trim_start_matches('/')).decode_utf8().map_err(|_| invalid())?;
    let (bucket, key) = path.split_once('/').ok_or_else(invalid)?;
    if bucket.is_empty() || key.is_empty() {
        return Err(invalid());
    }
    let version = Query::parse(Some(query))?.get("versionId").filter(|v| !v.is_empty()).map(str::to_string);
    Ok((bucket.to_string(), key.to_string(), version))
}

fn copy_object(store: &Store, req: &Request<'_>, bucket: &str, key: &str) -> Reply {
    let (src_bucket, src_key, src_version) = parse_copy_source(req.header("x-amz-copy-source").unwrap_or(""))?;
    let (src, src_versioning, file) = store.open_object(&src_bucket, &src_key, src_version.as_deref())?;
    if let Some(c) = req.header("x-amz-copy-source-if-match")
        && !etags_match(c, &src.etag)
    {
        return Err(ApiError::PreconditionFailed("x-amz-copy-source-If-Match"));
    }
    if let Some(c) = req.header("x-amz-copy-source-if-none-match")
        && etags_match(c, &src.etag)
    {
        return Err(ApiError::PreconditionFailed("x-amz-copy-source-If-None-Match"));
    }
    let replace = match req.header("x-amz-metadata-directive") {
        None => false,
        Some(d) if d.eq_ignore_ascii_case("COPY") => false,
        Some(d) if d.eq_ignore_ascii_case("REPLACE") => true,
        Some(_) => {
            return Err(ApiError::InvalidArgument("Unknown metadata directive.".into()));
        }
    };
    let dest_versioning = store.read(bucket, |b| b.versioning)?;
    if !replace
        && src_bucket == bucket
        && src_key == key
        && src_version.is_none()
        && dest_versioning != Versioning::Enabled
    {
        return Err(ApiError::InvalidRequest(
            "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.".into(),
        ));
    }
    let attrs = if replace { object_attrs(req.headers, src.attrs.checksum.clone()) } else { src.attrs.clone() };
    let staged = store.stage_reader(file.take(src.size))?;
    if staged.size != src.size {
        return Err(ApiError::Internal(std::io::Error::other("copy source data is short")));
    }
    let (v, versioning) = store.put(bucket, key, staged, src.etag.clone(), attrs, |_| Ok(()))?;
    let mut x = Xml::new("CopyObjectResult");
    x.elem("ETag", &v.etag).elem("LastModified", iso_date(v.last_modified_ms));
    let mut out = Answer::xml(x.finish("CopyObjectResult")).version(&v, versioning);
    if src_versioning != Versioning::Unversioned {
        out = out.header("x-amz-copy-source-version-id", &src.version_id);
    }
    out.done()
}

// ---- multipart uploads ----

const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

fn create_multipart_upload(store: &Store, req: &Request<'_>, bucket: &str, key: &str) -> Reply {
    let upload_id = store.create_upload(bucket, key, object_attrs(req.headers, None))?;
    let mut x = Xml::new("InitiateMultipartUploadResult");
    x.elem("Bucket", bucket).elem("Key", key).elem("UploadId", &upload_id);
    Answer::xml(x.finish("InitiateMultipartUploadResult")).done()
}

fn upload_id<'r>(req: &'r Request<'_>) -> Result<&'r str, ApiError> {
    req.param("uploadId").ok_or_else(|| ApiError::NoSuchUpload(String::new()))
}

fn upload_part(store: &Store, req: &Request<'_>, bucket: &str, key: &str) -> Reply {
    let upload_id = upload_id(req)?.to_string();
    let number =
        req.param("partNumber").and_then(|n| n.parse::<u32>().ok()).filter(|n| (1..=10_000).contains(n)).ok_or_else(
            || ApiError::InvalidArgument("Part number must be an integer between 1 and 10000, inclusive".into()),
        )?;
    // Fail fast on a bad upload id before staging the body.
    store.upload(bucket, key, &upload_id)?;
    if let Some(source) = req.header("x-amz-copy-source") {
        // UploadPartCopy.
        let (src_bucket, src_key, src_version) = parse_copy_source(source)?;
        let (src, _, mut file) = store.open_object(&src_bucket, &src_key, src_version.as_deref())?;
        let (first, last) = match req.header("x-amz-copy-source-range") {
            Some(r) => parse_range(Some(r), src.size)?.ok_or_else(|| {
                ApiError::InvalidArgument(
                    "The x-amz-copy-source-range value must be of the form bytes=first-last".into(),
                )
            })?,
            None if src.size == 0 => (0, 0),
            None => (0, src.size - 1),
        };
        let len = if src.size == 0 { 0 } else { last - first + 1 };
        let mut data = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        file.seek(SeekFrom::Start(first))?;
        file.take(len).read_to_end(&mut data)?;
        let etag = quoted_md5(&data);
        let staged = store.stage_bytes(&data)?;
        let part = store.put_part(bucket, key, &upload_id, number, staged, etag)?;
        let mut x = Xml::new("CopyPartResult");
        x.elem("ETag", &part.etag).elem("LastModified", iso_date(part.last_modified_ms));
        return Answer::xml(x.finish("CopyPartResult")).done();
    }
    let (body, checksum) = verified_body(req)?;
    let staged = store.stage_bytes(&body)?;
    let part = store.put_part(bucket, key, &upload_id, number, staged, quoted_md5(&body))?;
    Answer::new(StatusCode::OK).header("etag", &part.etag).checksum(checksum.as_ref()).done()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

fn complete_multipart_upload(store: &Store, req: &Request<'_>, bucket: &str, key: &str) -> Reply {
    let upload_id = upload_id(req)?.to_string();
    let (body, _) = verified_body(req)?;
    let doc = xml_body(&body, "CompleteMultipartUpload")?;
    let mut requested: Vec<(u32, String)> = Vec::new();
    for part in doc.children("Part") {
        let number = part.child_text("PartNumber").and_then(|n| n.parse::<u32>().ok()).ok_or(ApiError::MalformedXml)?;
        let etag = part.child_text("ETag").ok_or(ApiError::MalformedXml)?;
        requested.push((number, etag.trim_matches('"').to_string()));
    }
    if requested.is_empty() {
        return Err(ApiError::MalformedXml);
    }
    if requested.windows(2).any(|w| w[0].0 >= w[1].0) {
        return Err(ApiError::InvalidPartOrder);
    }
    let upload = store.upload(bucket, key, &upload_id)?;
    let mut paths = Vec::with_capacity(requested.len());
    let mut digests = Vec::with_capacity(requested.len() * 16);
    for (i, (number, etag)) in requested.iter().enumerate() {
        let part = upload
            .parts
            .get(number)
            .filter(|p| p.etag.trim_matches('"') == etag)
            .ok_or_else(|| ApiError::InvalidPart(format!(
                "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag. (part {number})"
            )))?;
        if i + 1 < requested.len() && part.size < MIN_PART_SIZE {
            return Err(ApiError::EntityTooSmall);
        }
        digests
            .extend(unhex(etag).ok_or_else(|| ApiError::InvalidPart(format!("part {number} has a malformed ETag")))?);
        paths.push(store.part_path(&upload_id, *number));
    }
    let etag = format!("\"{}-{}\"", digest::hex(&digest::md5(&digests)), requested.len());
    let mut parts = Vec::with_capacity(paths.len());
    for p in &paths {
        parts.push(std::fs::File::open(p).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound { ApiError::NoSuchUpload(upload_id.clone()) } else { e.into() }
        })?);
    }
    let reader =
        parts.into_iter().fold(Box::new(std::io::empty()) as Box<dyn std::io::Read>, |acc, f| Box::new(acc.chain(f)));
    let staged = store.stage_reader(reader)?;
    let (v, versioning) = store.complete_upload(bucket, key, &upload_id, staged, etag)?;
    let location = format!("http://{}/{bucket}/{}", req.host.unwrap_or("localhost"), url_encode(key));
    let mut x = Xml::new("CompleteMultipartUploadResult");
    x.elem("Location", location).elem("Bucket", bucket).elem("Key", key).elem("ETag", &v.etag);
    Answer::xml(x.finish("CompleteMultipartUploadResult")).version(&v, versioning).done()
}

fn abort_multipart_upload(store: &Store, req: &Request<'_>, bucket: &str, key: &str) -> Reply {
    store.abort_upload(bucket, key, upload_id(req)?)?;
    Answer::new(StatusCode::NO_CONTENT).done()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10).unwrap(), None);
        assert_eq!(parse_range(Some("bytes=0-4"), 10).unwrap(), Some((0, 4)));
        assert_eq!(parse_range(Some("bytes=5-"), 10).unwrap(), Some((5, 9)));
        assert_eq!(parse_range(Some("bytes=-3"), 10).unwrap(), Some((7, 9)));
        assert_eq!(parse_range(Some("bytes=-30"), 10).unwrap(), Some((0, 9)));
        assert_eq!(parse_range(Some("bytes=8-100"), 10).unwrap(), Some((8, 9)));
        assert_eq!(parse_range(Some("bytes=0-1,4-5"), 10).unwrap(), None);
        assert_eq!(parse_range(Some("bytes=5-2"), 10).unwrap(), None);
        assert_eq!(parse_range(Some("items=0-1"), 10).unwrap(), None);
        assert!(matches!(parse_range(Some("bytes=10-"), 10), Err(ApiError::InvalidRange { size: 10 })));
        assert!(matches!(parse_range(Some("bytes=-0"), 10), Err(ApiError::InvalidRange { .. })));
        assert!(matches!(parse_range(Some("bytes=0-"), 0), Err(ApiError::InvalidRange { .. })));
    }

    #[test]
    fn copy_sources() {
        assert_eq!(parse_copy_source("b/k").unwrap(), ("b".into(), "k".into(), None));
        assert_eq!(
            parse_copy_source("/b/dir/a%20b%3Fc?versionId=v1").unwrap(),
            ("b".into(), "dir/a b?c".into(), Some("v1".into()))
        );
        assert!(parse_copy_source("b").is_err());
        assert!(parse_copy_source("/b/").is_err());
    }

    #[test]
    fn etag_conditions() {
        assert!(etags_match("\"abc\"", "\"abc\""));
        assert!(etags_match("abc", "\"abc\""));
        assert!(etags_match("\"x\", \"abc\"", "\"abc\""));
        assert!(etags_match("*", "\"abc\""));
        assert!(!etags_match("\"abd\"", "\"abc\""));
    }

    #[test]
    fn hex_round_trip() {
        assert_eq!(unhex("00ff10").unwrap(), vec![0, 255, 16]);
        assert!(unhex("0").is_none());
        assert!(unhex("zz").is_none());
    }
}

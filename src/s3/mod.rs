//! STUB (temporary until the real module lands).
pub struct S3 {}
#[derive(Debug)] pub enum S3Error { NoSuchBucket(String), NoSuchKey(String), NoSuchVersion(String), Io(std::io::Error) }
impl S3 {
    pub fn open(_dir: std::path::PathBuf) -> std::io::Result<S3> { Ok(S3 {}) }
    pub fn handle(&self, _parts: &http::request::Parts, _body: bytes::Bytes) -> http::Response<bytes::Bytes> { http::Response::new(bytes::Bytes::new()) }
    pub fn get_object_bytes(&self, bucket: &str, _key: &str, _v: Option<&str>) -> Result<bytes::Bytes, S3Error> { Err(S3Error::NoSuchBucket(bucket.into())) }
}

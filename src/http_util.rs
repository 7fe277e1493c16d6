//! Small HTTP helpers shared by the servers: body type, JSON responses, bounded body reads.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Frame, Incoming, SizeHint};
use tokio::sync::mpsc;

/// Header names the per-request paths look up, made once: a lookup by `&str` parses and
/// checks the name on every call.
pub mod names {
    use http::HeaderName;
    pub static X_AMZ_TARGET: HeaderName = HeaderName::from_static("x-amz-target");
    pub static X_AMZ_INVOCATION_TYPE: HeaderName = HeaderName::from_static("x-amz-invocation-type");
    pub static X_AMZ_LOG_TYPE: HeaderName = HeaderName::from_static("x-amz-log-type");
    pub static X_AMZ_CLIENT_CONTEXT: HeaderName = HeaderName::from_static("x-amz-client-context");
    pub static X_AMZ_TENANT_ID: HeaderName = HeaderName::from_static("x-amz-tenant-id");
    pub static LAMBDA_RUNTIME_FUNCTION_RESPONSE_MODE: HeaderName =
        HeaderName::from_static("lambda-runtime-function-response-mode");
    pub static LAMBDA_RUNTIME_FUNCTION_ERROR_TYPE: HeaderName =
        HeaderName::from_static("lambda-runtime-function-error-type");
    pub static X_AMZ_EXECUTED_VERSION: HeaderName = HeaderName::from_static("x-amz-executed-version");
    pub static X_AMZN_REQUESTID: HeaderName = HeaderName::from_static("x-amzn-requestid");
    pub static LAMBDA_RUNTIME_AWS_REQUEST_ID: HeaderName = HeaderName::from_static("lambda-runtime-aws-request-id");
    pub static LAMBDA_RUNTIME_DEADLINE_MS: HeaderName = HeaderName::from_static("lambda-runtime-deadline-ms");
    pub static LAMBDA_RUNTIME_INVOKED_FUNCTION_ARN: HeaderName =
        HeaderName::from_static("lambda-runtime-invoked-function-arn");
    pub static LAMBDA_RUNTIME_TRACE_ID: HeaderName = HeaderName::from_static("lambda-runtime-trace-id");
    pub static LAMBDA_RUNTIME_CLIENT_CONTEXT: HeaderName = HeaderName::from_static("lambda-runtime-client-context");
    pub static LAMBDA_RUNTIME_COGNITO_IDENTITY: HeaderName = HeaderName::from_static("lambda-runtime-cognito-identity");
    pub static LAMBDA_RUNTIME_AWS_TENANT_ID: HeaderName = HeaderName::from_static("lambda-runtime-aws-tenant-id");
}

/// A response body: whole (almost every answer), or streamed, each chunk sent as it is
/// received from a channel (response streaming); the stream ends when the sender is dropped.
pub struct Body(Kind);

enum Kind {
    Whole(Full<Bytes>),
    Stream(mpsc::Receiver<Bytes>),
}

impl Body {
    pub fn new(bytes: impl Into<Bytes>) -> Body {
        Body(Kind::Whole(Full::new(bytes.into())))
    }

    /// A body of the chunks sent on the returned channel's sender, in order.
    pub fn channel(capacity: usize) -> (mpsc::Sender<Bytes>, Body) {
        let (tx, rx) = mpsc::channel(capacity);
        (tx, Body(Kind::Stream(rx)))
    }
}

impl From<Full<Bytes>> for Body {
    fn from(f: Full<Bytes>) -> Body {
        Body(Kind::Whole(f))
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match &mut self.get_mut().0 {
            Kind::Whole(f) => Pin::new(f).poll_frame(cx),
            Kind::Stream(rx) => rx.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Kind::Whole(f) => f.is_end_stream(),
            Kind::Stream(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Kind::Whole(f) => f.size_hint(),
            Kind::Stream(_) => SizeHint::default(),
        }
    }
}

/// Serves one accepted HTTP/1 connection until it closes, with the settings every
/// RustStack listener uses: TCP_NODELAY, and each response written with one write
/// (`writev(false)` copies head and body together), so no answer waits on a delayed ACK.
pub async fn serve_http1<F, Fut, B>(stream: tokio::net::TcpStream, handle: F)
where
    F: Fn(http::Request<Incoming>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Response<B>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let _ = stream.set_nodelay(true);
    let svc = hyper::service::service_fn(move |req| {
        let fut = handle(req);
        async move { Ok::<_, std::convert::Infallible>(fut.await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .writev(false)
        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
        .await;
}

pub fn full(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Body::new(body));
    *r.status_mut() = status;
    r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    full(status, "application/json", serde_json::to_vec(value).unwrap_or_default())
}

pub fn empty(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(Body::new(Bytes::new()));
    *r.status_mut() = status;
    r
}

/// Why a body could not be read.
#[derive(Debug)]
pub enum BodyError {
    TooLarge,
    Io(String),
}

/// Reads a whole request body, refusing more than `limit` bytes.
pub async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, BodyError> {
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                Err(BodyError::TooLarge)
            } else {
                Err(BodyError::Io(e.to_string()))
            }
        }
    }
}

/// Query string into decoded (key, value) pairs, in order.
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    let Some(q) = query else { return Vec::new() };
    q.split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// Percent-decodes a path segment or query component (`+` stays `+` in paths; query decoding maps it to space).
pub fn decode(s: &str) -> String {
    let s = s.replace('+', "%20");
    percent_encoding::percent_decode_str(&s).decode_utf8_lossy().into_owned()
}

/// Percent-decodes one path segment (no `+` handling); borrowed when there is nothing to decode.
pub fn decode_segment(s: &str) -> std::borrow::Cow<'_, str> {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy()
}

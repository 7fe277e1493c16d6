//! Requests for AWS services RustStack does not implement: forwarded unchanged to `--upstream`
//! and streamed back, or, without one, answered in that service's own protocol with `InternalFailure` (501).

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use crate::aws::arn;
use crate::config::Config;
use crate::http_util;

/// A response that is either built here or streamed from the upstream.
pub type Served = Either<http_util::Body, reqwest::Body>;

/// Services RustStack answers itself (STS only in part: see [`crate::sts`]).
const OURS: &[&str] = &["lambda", "s3", "logs", "sts", "sqs"];
/// The X-Amz-Target prefixes RustStack serves.
const OUR_TARGETS: &[&str] = &["Logs_20140328.", "AmazonSQS."];

/// Who a request is for, when it is not a service RustStack serves in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Foreign {
    /// The SigV4 signing name (`dynamodb`, `sqs`, ...), or the X-Amz-Target prefix of an unsigned call.
    pub service: String,
    /// The operation, when the request names it in a header (X-Amz-Target).
    pub operation: Option<String>,
}

/// The service a request is for, when that is not Lambda, S3 or Logs. `sts` is returned too: its
/// caller decides per action (GetCallerIdentity is served, the rest is foreign).
pub fn classify(headers: &HeaderMap) -> Option<Foreign> {
    let scope = headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(arn::credential_scope);
    let target = headers.get(&http_util::names::X_AMZ_TARGET).and_then(|v| v.to_str().ok());
    let operation = target.map(|t| t.rsplit_once('.').map_or(t, |(_, op)| op).to_string());
    match scope {
        Some((_, service)) if service == "sts" || !OURS.contains(&service.as_str()) => {
            Some(Foreign { service, operation })
        }
        Some(_) => None,
        None => {
            let t = target.filter(|t| !OUR_TARGETS.iter().any(|p| t.starts_with(p)))?;
            let prefix = t.split_once('.').map_or(t, |(p, _)| p);
            Some(Foreign { service: prefix.to_string(), operation })
        }
    }
}

/// The wire protocol a request speaks, as far as its headers and signing name tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `awsJson1_0` / `awsJson1_1`: X-Amz-Target and `__type`.
    Json(&'static str),
    /// `awsQuery`: form-encoded Action, `<ErrorResponse>` XML.
    Query,
    /// EC2's query dialect: `<Response><Errors>` XML.
    Ec2,
    /// `smithyRpcv2Cbor`: CBOR bodies, `smithy-protocol: rpc-v2-cbor`.
    Cbor,
    RestJson,
    RestXml,
}

/// Signing names of the REST-XML services (botocore's models: CloudFront, Route 53, S3 Control).
const REST_XML: &[&str] = &["cloudfront", "route53", "s3control"];

pub fn protocol(headers: &HeaderMap, query: Option<&str>, service: &str) -> Protocol {
    let header = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("");
    let content_type = header("content-type").to_ascii_lowercase();
    if header("smithy-protocol") == "rpc-v2-cbor" {
        Protocol::Cbor
    } else if headers.contains_key("x-amz-target") {
        Protocol::Json(if content_type.contains("1.1") { "1.1" } else { "1.0" })
    } else if content_type.starts_with("application/x-www-form-urlencoded")
        || query.is_some_and(|q| q.split('&').any(|kv| kv.starts_with("Action=")))
    {
        if service == "ec2" { Protocol::Ec2 } else { Protocol::Query }
    } else if REST_XML.contains(&service) {
        Protocol::RestXml
    } else {
        Protocol::RestJson
    }
}

/// The error code RustStack answers with for a service it does not implement (HTTP 501).
pub const NOT_IMPLEMENTED: &str = "InternalFailure";

/// The message naming what is not implemented.
pub fn not_implemented_message(f: &Foreign) -> String {
    let what = match &f.operation {
        Some(op) => format!("the {} operation {op}", f.service),
        None => format!("the {} service", f.service),
    };
    format!("RustStack does not implement {what}; start RustStack with --upstream URL to forward it there")
}

/// An AWS error in the given protocol. `status` decides `Sender`/`Receiver` where the protocol has it.
pub fn error(
    protocol: Protocol,
    status: StatusCode,
    code: &str,
    message: &str,
    request_id: &str,
) -> Response<Full<Bytes>> {
    let xml_escaped = xml_escape(message);
    let (content_type, body): (&str, Vec<u8>) = match protocol {
        Protocol::Json(v) => (
            if v == "1.1" { "application/x-amz-json-1.1" } else { "application/x-amz-json-1.0" },
            serde_json::to_vec(&serde_json::json!({"__type": code, "message": message})).unwrap_or_default(),
        ),
        Protocol::RestJson => {
            ("application/json", serde_json::to_vec(&serde_json::json!({"message": message})).unwrap_or_default())
        }
        Protocol::Cbor => ("application/cbor", cbor_text_map(&[("__type", code), ("message", message)])),
        Protocol::Query | Protocol::RestXml => {
            let kind = if status.is_server_error() { "Receiver" } else { "Sender" };
            let xml = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ErrorResponse><Error><Type>{kind}</Type><Code>{code}</Code><Message>{xml_escaped}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
            );
            ("text/xml", xml.into_bytes())
        }
        Protocol::Ec2 => {
            let xml = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{xml_escaped}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>"
            );
            ("text/xml", xml.into_bytes())
        }
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert("content-type", HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v);
    }
    if matches!(protocol, Protocol::RestJson | Protocol::Json(_))
        && let Ok(v) = HeaderValue::from_str(code)
    {
        h.insert("x-amzn-errortype", v);
    }
    if protocol == Protocol::Cbor {
        h.insert("smithy-protocol", HeaderValue::from_static("rpc-v2-cbor"));
    }
    r
}

/// The answer for a foreign service when no upstream is set.
pub fn not_implemented(f: &Foreign, headers: &HeaderMap, query: Option<&str>) -> Response<Full<Bytes>> {
    let p = protocol(headers, query, &f.service);
    error(p, StatusCode::NOT_IMPLEMENTED, NOT_IMPLEMENTED, &not_implemented_message(f), &crate::aws::request_id())
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A CBOR map of text strings (RFC 8949: major type 5 of major type 3 items).
fn cbor_text_map(pairs: &[(&str, &str)]) -> Vec<u8> {
    fn head(out: &mut Vec<u8>, major: u8, n: usize) {
        let m = major << 5;
        match n {
            0..=23 => out.push(m | n as u8),
            24..=0xff => out.extend([m | 24, n as u8]),
            0x100..=0xffff => {
                out.push(m | 25);
                out.extend((n as u16).to_be_bytes());
            }
            _ => {
                out.push(m | 26);
                out.extend((n as u32).to_be_bytes());
            }
        }
    }
    let mut out = Vec::new();
    head(&mut out, 5, pairs.len());
    for (k, v) in pairs {
        for s in [k, v] {
            head(&mut out, 3, s.len());
            out.extend(s.as_bytes());
        }
    }
    out
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) are the connection's own and are not forwarded.
fn hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// The request body to forward: streamed from the client, or already read (STS, which reads
/// the body to find its action).
pub enum Outgoing {
    Stream(Incoming),
    Read(Bytes),
}

/// Forwards a request unchanged (method, path, query, end-to-end headers, body) to `upstream`
/// and streams the answer back. A failure to reach the upstream is a 503 in the service's protocol.
pub async fn forward(
    client: &reqwest::Client,
    upstream: &str,
    foreign: &Foreign,
    parts: http::request::Parts,
    body: Outgoing,
) -> Response<Served> {
    let pq = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let url = format!("{}{pq}", upstream.trim_end_matches('/'));
    let mut headers = HeaderMap::with_capacity(parts.headers.len());
    for (k, v) in &parts.headers {
        if !hop_by_hop(k.as_str()) {
            headers.append(k.clone(), v.clone());
        }
    }
    let body = match body {
        Outgoing::Stream(b) => reqwest::Body::wrap(b),
        Outgoing::Read(b) => reqwest::Body::from(b),
    };
    let sent = client.request(parts.method.clone(), &url).headers(headers).body(body).send().await;
    match sent {
        Ok(resp) => {
            let resp: Response<reqwest::Body> = resp.into();
            let (mut rp, rb) = resp.into_parts();
            let names: Vec<_> = rp.headers.keys().filter(|k| hop_by_hop(k.as_str())).cloned().collect();
            for k in names {
                rp.headers.remove(&k);
            }
            Response::from_parts(rp, Either::Right(rb))
        }
        Err(e) => {
            tracing::warn!(service = %foreign.service, upstream, error = %e, "upstream unreachable");
            let p = protocol(&parts.headers, parts.uri.query(), &foreign.service);
            let msg =
                format!("RustStack could not forward the {} request to the upstream {upstream}: {e}", foreign.service);
            error(p, StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", &msg, &crate::aws::request_id())
                .map(|b| Either::Left(b.into()))
        }
    }
}

/// STS bodies are small forms; AssumeRole with a session policy is the largest.
const MAX_STS_BODY: usize = 256 * 1024;

/// Serves a request for a foreign service: STS GetCallerIdentity here, everything else
/// forwarded to `--upstream` when set, or answered with a 501 `InternalFailure` in the service's protocol.
pub async fn serve(cfg: &Config, mut foreign: Foreign, req: Request<Incoming>) -> Response<Served> {
    let (parts, body) = req.into_parts();
    let body = if foreign.service == "sts" {
        let bytes = match http_util::read_body(body, MAX_STS_BODY).await {
            Ok(b) => b,
            Err(_) => {
                let p = protocol(&parts.headers, parts.uri.query(), "sts");
                let msg = "Request body too large";
                let r =
                    error(p, StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge", msg, &crate::aws::request_id());
                return r.map(|b| Either::Left(b.into()));
            }
        };
        let action = foreign.operation.clone().or_else(|| crate::sts::action(parts.uri.query(), &bytes));
        if action.as_deref() == Some("GetCallerIdentity") {
            let json = parts.headers.contains_key("x-amz-target");
            return crate::sts::get_caller_identity(&cfg.account_id, json, &crate::aws::request_id())
                .map(|b| Either::Left(b.into()));
        }
        foreign.operation = action;
        Outgoing::Read(bytes)
    } else {
        Outgoing::Stream(body)
    };
    match (&cfg.upstream, client()) {
        (Some(upstream), Some(client)) => forward(client, upstream, &foreign, parts, body).await,
        (Some(upstream), None) => {
            let p = protocol(&parts.headers, parts.uri.query(), &foreign.service);
            let msg = format!("RustStack could not create an HTTP client for the upstream {upstream}");
            error(p, StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", &msg, &crate::aws::request_id())
                .map(|b| Either::Left(b.into()))
        }
        (None, _) => not_implemented(&foreign, &parts.headers, parts.uri.query()).map(|b| Either::Left(b.into())),
    }
}

/// `--upstream` must be an http(s) URL.
pub fn check_upstream(cfg: &Config) -> Result<(), String> {
    match &cfg.upstream {
        Some(u) if !(u.starts_with("http://") || u.starts_with("https://")) => {
            Err(format!("--upstream expects an http:// or https:// URL, got '{u}'"))
        }
        _ => Ok(()),
    }
}

/// The HTTP client for the upstream, made once: no redirects followed, no proxy, bodies passed as they are.
fn client() -> Option<&'static reqwest::Client> {
    static CLIENT: std::sync::OnceLock<Option<reqwest::Client>> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .build()
                .map_err(|e| tracing::error!(error = %e, "cannot build the upstream client"))
                .ok()
        })
        .as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    const AUTH_DDB: &str =
        "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=x";

    #[test]
    fn classifies_by_scope_then_target() {
        let h = headers(&[("authorization", AUTH_DDB), ("x-amz-target", "DynamoDB_20120810.CreateTable")]);
        assert_eq!(classify(&h), Some(Foreign { service: "dynamodb".into(), operation: Some("CreateTable".into()) }));
        let lambda =
            "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/lambda/aws4_request, SignedHeaders=host, Signature=x";
        assert_eq!(classify(&headers(&[("authorization", lambda)])), None);
        assert_eq!(classify(&headers(&[("x-amz-target", "Logs_20140328.PutLogEvents")])), None);
        assert_eq!(classify(&headers(&[])), None);
        let unsigned = classify(&headers(&[("x-amz-target", "AWSCognitoIdentityService.GetId")])).unwrap();
        assert_eq!(unsigned.service, "AWSCognitoIdentityService");
    }

    #[test]
    fn protocols() {
        let json10 = headers(&[("x-amz-target", "a.b"), ("content-type", "application/x-amz-json-1.0")]);
        assert_eq!(protocol(&json10, None, "dynamodb"), Protocol::Json("1.0"));
        let form = headers(&[("content-type", "application/x-www-form-urlencoded; charset=utf-8")]);
        assert_eq!(protocol(&form, None, "sqs"), Protocol::Query);
        assert_eq!(protocol(&form, None, "ec2"), Protocol::Ec2);
        assert_eq!(protocol(&headers(&[]), Some("Action=GetCallerIdentity"), "sts"), Protocol::Query);
        assert_eq!(protocol(&headers(&[("smithy-protocol", "rpc-v2-cbor")]), None, "monitoring"), Protocol::Cbor);
        assert_eq!(protocol(&headers(&[]), None, "route53"), Protocol::RestXml);
        assert_eq!(protocol(&headers(&[]), None, "apigateway"), Protocol::RestJson);
    }

    #[test]
    fn cbor_map() {
        assert_eq!(cbor_text_map(&[("a", "bc")]), vec![0xa1, 0x61, b'a', 0x62, b'b', b'c']);
        let long = "x".repeat(30);
        let enc = cbor_text_map(&[("k", &long)]);
        assert_eq!(&enc[..5], &[0xa1, 0x61, b'k', 0x78, 30]);
    }
}

//! Function URLs: the HTTP endpoint in front of a function. A request to
//! `http://<url-id>.lambda-url.<region>.localhost:<port>/path` (or, for clients whose resolver
//! does not map `*.localhost` to the loopback address, `http://<host>:<port>/_ruststack/url/<url-id>/path`)
//! becomes an invocation with the payload format 2.0 event, and the function's answer becomes the
//! HTTP response, as on AWS.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::Lambda;
use super::invoke::{self, CallContext, MAX_SYNC_PAYLOAD};
use super::model::Scope;
use crate::http_util::{self, Body, BodyError};

/// The URL AWS would give, pointed at this server: `http://<id>.lambda-url.<region>.localhost:<port>/`.
pub fn function_url(endpoint_url: &str, url_id: &str, region: &str) -> String {
    let port = endpoint_url.rsplit_once(':').map(|(_, p)| p.trim_end_matches('/')).unwrap_or("4566");
    format!("http://{url_id}.lambda-url.{region}.localhost:{port}/")
}

/// Function URL timestamps, e.g. `2026-11-28T16:20:00.123456Z`.
pub fn timestamp() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// The URL id named by a `Host` header of the form `<id>.lambda-url.<region>.<anything>`.
pub fn url_id_from_host(host: &str) -> Option<&str> {
    let (id, rest) = host.split_once('.')?;
    let ok = id.len() == 32 && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    (ok && rest.starts_with("lambda-url.")).then_some(id)
}

/// The URL id and the rest of the path of `/_ruststack/url/<id>/<path>`.
pub fn url_id_from_path(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/_ruststack/url/")?;
    let (id, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    (!id.is_empty()).then_some((id, tail))
}

/// The client's address, put in each request's extensions by the listener: `sourceIp` and
/// `x-forwarded-for` of a function URL request.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub std::net::SocketAddr);

/// The headers AWS's front end adds to a function URL request (and overwrites when the client
/// sent them): `x-forwarded-proto`/`-port` of the URL the client used, `x-forwarded-for` with the
/// client's address appended, and `x-amzn-trace-id` (the client's, or a new root).
fn add_forwarding_headers(headers: &mut HeaderMap, peer: Option<std::net::IpAddr>, default_port: &str) {
    let port = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.rsplit_once(':'))
        .map(|(_, p)| p.to_string())
        .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        .unwrap_or_else(|| default_port.to_string());
    let xff = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()).filter(|v| !v.trim().is_empty()) {
        Some(prior) => peer.map_or_else(|| prior.to_string(), |ip| format!("{prior}, {ip}")),
        None => peer.map(|ip| ip.to_string()).unwrap_or_default(),
    };
    for (k, v) in [("x-forwarded-proto", "http".to_string()), ("x-forwarded-port", port), ("x-forwarded-for", xff)] {
        if let Ok(v) = HeaderValue::from_str(&v)
            && !v.is_empty()
        {
            headers.insert(k, v);
        }
    }
    if !headers.contains_key("x-amzn-trace-id")
        && let Ok(v) = HeaderValue::from_str(&crate::aws::trace_header(false))
    {
        headers.insert("x-amzn-trace-id", v);
    }
}

fn message(status: StatusCode, text: &str) -> Response<Body> {
    http_util::json(status, &json!({"Message": text}))
}

/// Serves one request to a function URL. `raw_path` is the path the function sees.
pub async fn handle(lambda: &Arc<Lambda>, req: Request<Incoming>, url_id: &str, raw_path: &str) -> Response<Body> {
    let Some((region, name, key, cfg)) = lambda.stores.find_url(url_id) else {
        return message(StatusCode::NOT_FOUND, "Not Found");
    };
    let origin = req.headers().get("origin").and_then(|v| v.to_str().ok()).map(str::to_string);
    if req.method() == Method::OPTIONS
        && let Some(cors) = &cfg.cors
        && req.headers().contains_key("access-control-request-method")
    {
        return preflight(cors, origin.as_deref());
    }
    if cfg.auth_type == "AWS_IAM"
        && !req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.starts_with("AWS4-HMAC-SHA256"))
    {
        return message(StatusCode::FORBIDDEN, "Forbidden");
    }
    let scope = Scope { region, account: lambda.cfg.account_id.clone() };
    let qualifier = (!key.is_empty()).then_some(key.as_str());
    let target = match invoke::resolve(lambda, &name, qualifier, &scope) {
        Ok(t) => t,
        Err(_) => return message(StatusCode::NOT_FOUND, "Not Found"),
    };
    let (mut parts, body) = req.into_parts();
    let peer = parts.extensions.get::<Peer>().map(|p| p.0.ip());
    let default_port =
        lambda.endpoint_url.rsplit_once(':').map_or("4566", |(_, p)| p.trim_end_matches('/')).to_string();
    add_forwarding_headers(&mut parts.headers, peer, &default_port);
    let source_ip = peer.map_or_else(|| "127.0.0.1".to_string(), |ip| ip.to_string());
    let body = match http_util::read_body(body, MAX_SYNC_PAYLOAD).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => return message(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large"),
        Err(BodyError::Io(_)) => return message(StatusCode::BAD_REQUEST, "Bad Request"),
    };
    let request_id = crate::aws::request_id();
    let mut event = event(&parts, raw_path, &body, url_id, &scope, &request_id);
    event["requestContext"]["http"]["sourceIp"] = json!(source_ip);
    let payload = Bytes::from(serde_json::to_vec(&event).unwrap_or_default());
    let call = CallContext { request_id: Some(request_id.clone()), ..CallContext::default() };
    let answer = if cfg.invoke_mode == "RESPONSE_STREAM" {
        invoke::invoke_streaming(lambda, &target, &scope, payload, call).await
    } else {
        invoke::invoke(lambda, &target, &scope, payload, call).await.map(invoke::Answer::Whole)
    };
    let mut resp = match answer {
        Ok(invoke::Answer::Stream(s)) => streamed(s).await,
        Ok(invoke::Answer::Whole(out)) if out.function_error => {
            message(StatusCode::BAD_GATEWAY, "Internal Server Error")
        }
        Ok(invoke::Answer::Whole(out)) => response(&out.body, out.content_type.as_deref()),
        Err(e) if e.status == StatusCode::TOO_MANY_REQUESTS => message(e.status, "Rate Exceeded."),
        Err(e) => {
            tracing::warn!(error = %e, function = %name, "function URL invocation failed");
            message(StatusCode::BAD_GATEWAY, "Internal Server Error")
        }
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert("x-amzn-requestid", v);
    }
    if let Some(cors) = &cfg.cors {
        add_cors(h, cors, origin.as_deref());
    }
    resp
}

/// The payload format 2.0 event of a function URL request (`parts`: its method, query and
/// headers).
fn event(
    parts: &http::request::Parts,
    raw_path: &str,
    body: &[u8],
    url_id: &str,
    scope: &Scope,
    request_id: &str,
) -> Value {
    let (method, query, headers) = (&parts.method, parts.uri.query(), &parts.headers);
    // Header names in lower case, repeated headers joined with commas; cookies on their own.
    let mut hdrs: BTreeMap<String, String> = BTreeMap::new();
    let mut cookies: Vec<String> = Vec::new();
    for (k, v) in headers {
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        if k == "cookie" {
            cookies.extend(v.split(';').map(|c| c.trim().to_string()).filter(|c| !c.is_empty()));
            continue;
        }
        hdrs.entry(k.as_str().to_string()).and_modify(|e| {
            e.push(',');
            e.push_str(&v);
        });
        hdrs.entry(k.as_str().to_string()).or_insert(v);
    }
    let mut params: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in http_util::query_pairs(query) {
        params.entry(k).and_modify(|e| e.push(',')).or_default().push_str(&v);
    }
    let now = chrono::Utc::now();
    let domain = hdrs.get("host").cloned().unwrap_or_else(|| format!("{url_id}.lambda-url.{}.localhost", scope.region));
    let mut ev = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": query.unwrap_or(""),
        "headers": hdrs,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": url_id,
            "domainName": domain,
            "domainPrefix": url_id,
            "http": {
                "method": method.as_str(),
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": headers.get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or(""),
            },
            "requestId": request_id,
            "routeKey": "$default",
            "stage": "$default",
            "time": now.format("%d/%b/%Y:%H:%M:%S +0000").to_string(),
            "timeEpoch": now.timestamp_millis(),
        },
        "isBase64Encoded": false,
    });
    if !cookies.is_empty() {
        ev["cookies"] = json!(cookies);
    }
    if !params.is_empty() {
        ev["queryStringParameters"] = json!(params);
    }
    if !body.is_empty() {
        match std::str::from_utf8(body) {
            Ok(text) if is_text(headers) => ev["body"] = json!(text),
            _ => {
                ev["body"] = json!(base64::engine::general_purpose::STANDARD.encode(body));
                ev["isBase64Encoded"] = json!(true);
            }
        }
    }
    ev
}

/// Bodies AWS passes as text: no content type, or a textual one. Others arrive base64-encoded.
fn is_text(headers: &HeaderMap) -> bool {
    let Some(ct) = headers.get("content-type").and_then(|v| v.to_str().ok()) else { return true };
    let ct = ct.to_ascii_lowercase();
    ct.starts_with("text/")
        || ["json", "xml", "javascript", "x-www-form-urlencoded", "graphql", "yaml"].iter().any(|t| ct.contains(t))
}

/// A streaming handler's HTTP answer (`awslambda.HttpResponseStream`): JSON metadata, eight
/// NUL bytes, then the body.
const HTTP_INTEGRATION: &str = "application/vnd.awslambda.http-integration-response";

/// The HTTP response for what the function returned. An object with `statusCode` is a
/// response description; anything else is a 200 with the returned JSON as the body. A
/// streaming handler's answer is its metadata and raw body, or just raw bytes.
fn response(body: &[u8], content_type: Option<&str>) -> Response<Body> {
    match content_type {
        Some(HTTP_INTEGRATION) => {
            let split = body.windows(8).position(|w| w == [0u8; 8]);
            let (meta, rest) = match split {
                Some(i) => (&body[..i], &body[i + 8..]),
                None => (&body[..0], body),
            };
            let meta: Value = serde_json::from_slice(meta).unwrap_or(Value::Null);
            described(meta.as_object(), Bytes::copy_from_slice(rest), "application/octet-stream")
        }
        Some(ct) if ct.starts_with("application/octet-stream") => {
            let mut r = http_util::full(StatusCode::OK, "application/octet-stream", Bytes::copy_from_slice(body));
            if let Ok(v) = HeaderValue::from_str(ct) {
                r.headers_mut().insert("content-type", v);
            }
            r
        }
        _ => {
            let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let Some(obj) = v.as_object().filter(|o| o.contains_key("statusCode")) else {
                return http_util::full(StatusCode::OK, "application/json", Bytes::copy_from_slice(body));
            };
            let text = match obj.get("body") {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            };
            let bytes = if obj.get("isBase64Encoded").and_then(Value::as_bool) == Some(true) {
                base64::engine::general_purpose::STANDARD.decode(text.as_bytes()).unwrap_or_default()
            } else {
                text.into_bytes()
            };
            described(Some(obj), Bytes::from(bytes), "application/json")
        }
    }
}

/// The HTTP response of a streamed answer, its body sent on as the function writes it. An
/// `HttpResponseStream` answer starts with its metadata (status, headers, cookies as JSON)
/// and eight NUL bytes: the head waits for those, the rest streams.
async fn streamed(mut s: invoke::StreamingOutput) -> Response<Body> {
    let mut head: Vec<u8> = Vec::new();
    let (meta, first) = if s.content_type.as_deref() == Some(HTTP_INTEGRATION) {
        loop {
            let Some(c) = s.chunks.recv().await else {
                // No delimiter: all of it is body.
                break (Value::Null, Bytes::from(std::mem::take(&mut head)));
            };
            let from = head.len().saturating_sub(7);
            head.extend_from_slice(&c);
            if let Some(i) = head[from..].windows(8).position(|w| w == [0u8; 8]).map(|i| i + from) {
                let meta = serde_json::from_slice(&head[..i]).unwrap_or(Value::Null);
                break (meta, Bytes::copy_from_slice(&head[i + 8..]));
            }
            if head.len() > MAX_PRELUDE {
                break (Value::Null, Bytes::from(std::mem::take(&mut head)));
            }
        }
    } else {
        (Value::Null, Bytes::new())
    };
    let (mut parts, _) = described(meta.as_object(), Bytes::new(), "application/octet-stream").into_parts();
    if meta.is_null()
        && let Some(ct) = s.content_type.as_deref().filter(|ct| *ct != HTTP_INTEGRATION)
        && let Ok(v) = HeaderValue::from_str(ct)
    {
        parts.headers.insert("content-type", v);
    }
    let (tx, body) = Body::channel(4);
    tokio::spawn(async move {
        if !first.is_empty() && tx.send(first).await.is_err() {
            return;
        }
        while let Some(c) = s.chunks.recv().await {
            if tx.send(c).await.is_err() {
                // The client hung up; the invocation runs to its end regardless.
                return;
            }
        }
    });
    Response::from_parts(parts, body)
}

/// The most metadata an `HttpResponseStream` prelude may have before its delimiter.
const MAX_PRELUDE: usize = 64 * 1024;

/// A response from a description's `statusCode`, `headers` and `cookies` and a body.
fn described(obj: Option<&serde_json::Map<String, Value>>, body: Bytes, default_type: &'static str) -> Response<Body> {
    let status = obj
        .and_then(|o| o.get("statusCode"))
        .and_then(|s| s.as_u64().or_else(|| s.as_str().and_then(|s| s.parse().ok())))
        .and_then(|s| StatusCode::from_u16(s as u16).ok())
        .unwrap_or(StatusCode::OK);
    let mut r = http_util::full(status, default_type, body);
    let h = r.headers_mut();
    if let Some(Value::Object(headers)) = obj.and_then(|o| o.get("headers")) {
        for (k, v) in headers {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if let (Ok(k), Ok(v)) = (http::HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(&v)) {
                h.insert(k, v);
            }
        }
    }
    if let Some(Value::Array(cookies)) = obj.and_then(|o| o.get("cookies")) {
        for c in cookies.iter().filter_map(Value::as_str) {
            if let Ok(v) = HeaderValue::from_str(c) {
                h.append("set-cookie", v);
            }
        }
    }
    r
}

fn cors_list(cors: &Value, key: &str) -> Vec<String> {
    cors.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

fn allowed_origin(cors: &Value, origin: Option<&str>) -> Option<String> {
    let origins = cors_list(cors, "AllowOrigins");
    if origins.iter().any(|o| o == "*") {
        return Some("*".into());
    }
    let origin = origin?;
    origins.iter().any(|o| o.eq_ignore_ascii_case(origin)).then(|| origin.to_string())
}

fn add_cors(h: &mut HeaderMap, cors: &Value, origin: Option<&str>) {
    let Some(allowed) = allowed_origin(cors, origin) else { return };
    let mut set = |k: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    };
    set("access-control-allow-origin", allowed);
    let expose = cors_list(cors, "ExposeHeaders");
    if !expose.is_empty() {
        set("access-control-expose-headers", expose.join(","));
    }
    if cors.get("AllowCredentials").and_then(Value::as_bool) == Some(true) {
        set("access-control-allow-credentials", "true".into());
    }
}

fn preflight(cors: &Value, origin: Option<&str>) -> Response<Body> {
    let mut r = http_util::empty(StatusCode::OK);
    let h = r.headers_mut();
    add_cors(h, cors, origin);
    let mut set = |k: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    };
    let methods = cors_list(cors, "AllowMethods");
    if !methods.is_empty() {
        set("access-control-allow-methods", methods.join(","));
    }
    let headers = cors_list(cors, "AllowHeaders");
    if !headers.is_empty() {
        set("access-control-allow-headers", headers.join(","));
    }
    if let Some(age) = cors.get("MaxAge").and_then(Value::as_u64) {
        set("access-control-max-age", age.to_string());
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_paths() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(url_id_from_host(&format!("{id}.lambda-url.us-east-1.localhost:4566")), Some(id));
        assert_eq!(url_id_from_host("mybucket.s3.localhost"), None);
        assert_eq!(url_id_from_host("short.lambda-url.us-east-1.localhost"), None);
        assert_eq!(url_id_from_path(&format!("/_ruststack/url/{id}/a/b")), Some((id, "/a/b")));
        assert_eq!(url_id_from_path(&format!("/_ruststack/url/{id}")), Some((id, "/")));
        assert_eq!(
            function_url("http://127.0.0.1:4566", id, "eu-west-1"),
            format!("http://{id}.lambda-url.eu-west-1.localhost:4566/")
        );
    }

    #[test]
    fn responses() {
        let r =
            response(br#"{"statusCode": 201, "headers": {"x-a": "1"}, "body": "hi", "cookies": ["a=1", "b=2"]}"#, None);
        assert_eq!(r.status(), 201);
        assert_eq!(r.headers()["x-a"], "1");
        assert_eq!(r.headers().get_all("set-cookie").iter().count(), 2);
        let r = response(br#"{"just": "json"}"#, Some("application/json"));
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/json");
        let mut streamed = br#"{"statusCode": 202, "headers": {"content-type": "text/html"}}"#.to_vec();
        streamed.extend([0u8; 8]);
        streamed.extend(b"<p>hi</p>");
        let r = response(&streamed, Some(HTTP_INTEGRATION));
        assert_eq!(r.status(), 202);
        assert_eq!(r.headers()["content-type"], "text/html");
        let r = response(b"raw", Some("application/octet-stream"));
        assert_eq!(r.headers()["content-type"], "application/octet-stream");
    }
}

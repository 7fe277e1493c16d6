//! Invoke, InvokeWithResponseStream and the legacy InvokeAsync over HTTP.

use super::*;

pub(super) fn header(req: &Request<Incoming>, name: impl http::header::AsHeaderName) -> Option<String> {
    req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// Invoke, and InvokeWithResponseStream when `streaming` (its answer is an event stream).
pub(super) async fn invoke_op(ctx: &Ctx<'_>, raw: &str, req: Request<Incoming>, streaming: bool) -> R {
    let (name, q) = function_target(ctx, raw)?;
    let itype =
        header(&req, &crate::http_util::names::X_AMZ_INVOCATION_TYPE).unwrap_or_else(|| "RequestResponse".into());
    if streaming && itype == "Event" {
        return Err(AwsError::invalid_param(
            "1 validation error detected: Value 'Event' at 'invocationType' failed to satisfy constraint: Member must satisfy enum value set: [RequestResponse, DryRun]",
        ));
    }
    let tail = match header(&req, &crate::http_util::names::X_AMZ_LOG_TYPE).as_deref() {
        None | Some("None") => false,
        Some("Tail") => true,
        Some(other) => return Err(AwsError::invalid_param(format!("Invalid LogType: {other}"))),
    };
    let client_context = match header(&req, &crate::http_util::names::X_AMZ_CLIENT_CONTEXT) {
        None => None,
        Some(c) => {
            if c.len() > 3583 {
                return Err(AwsError::invalid_param("Client context must be at most 3583 bytes"));
            }
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(c.trim())
                .ok()
                .filter(|d| serde_json::from_slice::<Value>(d).is_ok())
                .ok_or_else(|| {
                    AwsError::invalid_content("Client context must be a valid Base64-encoded JSON object.")
                })?;
            Some(String::from_utf8_lossy(&decoded).into_owned())
        }
    };
    let tenant_id = header(&req, &crate::http_util::names::X_AMZ_TENANT_ID);
    let limit = if itype == "Event" { MAX_EVENT_PAYLOAD } else { MAX_SYNC_PAYLOAD };
    let payload = read(req, limit, true).await?;
    crate::lambda::payload::check(&payload)?;
    // Waits (bounded) while the function is Pending or its update InProgress: see states.rs.
    let target = resolve_settled(ctx, &name, q.as_deref()).await?;
    if target.config.state == crate::lambda::model::State::Failed {
        return Err(errors::function_failed(target.config.state_reason.as_deref().unwrap_or_default()));
    }
    let executed = HeaderValue::from_str(&target.executed_version).unwrap_or(HeaderValue::from_static("$LATEST"));
    match itype.as_str() {
        "DryRun" => {
            let mut r = http_util::empty(StatusCode::NO_CONTENT);
            r.headers_mut().insert("x-amz-executed-version", executed);
            Ok(r)
        }
        "Event" => {
            let id = ctx
                .lambda
                .events
                .queue(&name, q.as_deref(), &ctx.scope.region, payload.clone(), Some(target.config.clone()))
                .await
                .map_err(|e| AwsError::service(format!("could not queue the event: {e}")))?;
            let mut r = http_util::empty(StatusCode::ACCEPTED);
            r.headers_mut().insert("x-amz-executed-version", executed);
            if let Ok(v) = HeaderValue::from_str(&id) {
                r.headers_mut().insert("x-amzn-requestid", v);
            }
            Ok(r)
        }
        "RequestResponse" => {
            let call = CallContext { request_id: None, client_context, cognito_identity: None, tenant_id, tail };
            let out = if streaming {
                match invoke::invoke_streaming(ctx.lambda, &target, &ctx.scope, payload, call).await? {
                    invoke::Answer::Stream(s) => return Ok(event_stream(s, tail, executed)),
                    invoke::Answer::Whole(out) => out,
                }
            } else {
                invoke::invoke(ctx.lambda, &target, &ctx.scope, payload, call).await?
            };
            let mut r = if streaming {
                http_util::full(StatusCode::OK, "application/vnd.amazon.eventstream", stream_body(&out, tail))
            } else {
                http_util::full(StatusCode::OK, "application/json", out.body.clone())
            };
            let h = r.headers_mut();
            h.insert(&crate::http_util::names::X_AMZ_EXECUTED_VERSION, executed);
            if let Ok(v) = HeaderValue::from_str(&out.request_id) {
                h.insert(&crate::http_util::names::X_AMZN_REQUESTID, v);
            }
            if out.function_error && !streaming {
                h.insert("x-amz-function-error", HeaderValue::from_static("Unhandled"));
            }
            if tail
                && !streaming
                && let Ok(v) = HeaderValue::from_str(&out.tail_b64())
            {
                h.insert("x-amz-log-result", v);
            }
            Ok(r)
        }
        other => Err(AwsError::invalid_param(format!(
            "1 validation error detected: Value '{other}' at 'invocationType' failed to satisfy constraint: Member must satisfy enum value set: [Event, RequestResponse, DryRun]"
        ))),
    }
}

/// InvokeWithResponseStream's event stream for a streamed answer: each chunk as a
/// PayloadChunk as it comes, then InvokeComplete (a mid-stream error as ErrorCode and
/// ErrorDetails, the log tail as LogResult).
fn event_stream(mut s: invoke::StreamingOutput, tail: bool, executed: HeaderValue) -> Response<Body> {
    use crate::aws::eventstream;
    let (tx, body) = Body::channel(4);
    let request_id = s.request_id.clone();
    tokio::spawn(async move {
        while let Some(c) = s.chunks.recv().await {
            let event = eventstream::event("PayloadChunk", "application/octet-stream", &c);
            if tx.send(Bytes::from(event)).await.is_err() {
                // The caller hung up; the invocation runs to its end regardless.
                return;
            }
        }
        let Ok(out) = s.end.await else { return };
        let _ = tx.send(Bytes::from(complete_event(&out, tail))).await;
    });
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/vnd.amazon.eventstream"));
    h.insert("x-amz-executed-version", executed);
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert("x-amzn-requestid", v);
    }
    r
}

/// The InvokeComplete event: a function error's type and body as ErrorCode and ErrorDetails,
/// the log tail as LogResult.
fn complete_event(out: &invoke::InvokeOutput, tail: bool) -> Vec<u8> {
    let mut complete = json!({});
    if out.function_error {
        let error_type = serde_json::from_slice::<Value>(&out.body)
            .ok()
            .and_then(|v| v.get("errorType").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| "Unhandled".into());
        complete["ErrorCode"] = json!(error_type);
        complete["ErrorDetails"] = json!(String::from_utf8_lossy(&out.body));
    }
    if tail {
        complete["LogResult"] = json!(out.tail_b64());
    }
    crate::aws::eventstream::event("InvokeComplete", "application/json", complete.to_string().as_bytes())
}

/// InvokeWithResponseStream's event stream for a buffered answer: the response as one
/// PayloadChunk, then InvokeComplete (a function error's type and body as ErrorCode and
/// ErrorDetails, as the platform reports a streamed error; the log tail as LogResult).
pub(super) fn stream_body(out: &invoke::InvokeOutput, tail: bool) -> Bytes {
    use crate::aws::eventstream;
    let mut body = Vec::new();
    if !out.function_error && !out.body.is_empty() {
        body.extend(eventstream::event("PayloadChunk", "application/octet-stream", &out.body));
    }
    body.extend(complete_event(out, tail));
    Bytes::from(body)
}

pub(super) async fn invoke_async_legacy(ctx: &Ctx<'_>, raw: &str, body: Bytes) -> R {
    let (name, q) = function_target(ctx, raw)?;
    let target = invoke::resolve(ctx.lambda, &name, q.as_deref(), &ctx.scope)?;
    ctx.lambda
        .events
        .queue(&name, q.as_deref(), &ctx.scope.region, body, Some(target.config))
        .await
        .map_err(|e| AwsError::service(format!("could not queue the event: {e}")))?;
    ok_json(StatusCode::ACCEPTED, json!({"Status": 202}))
}

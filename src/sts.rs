//! The one STS action RustStack serves itself: GetCallerIdentity (query protocol), answered
//! for the account of `--account-id` as the root identity of the caller's access key.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;

/// The STS action a query-protocol request names (form body first, then the query string).
pub fn action(query: Option<&str>, body: &[u8]) -> Option<String> {
    let form = std::str::from_utf8(body).ok().map(|b| crate::http_util::query_pairs(Some(b))).unwrap_or_default();
    let from_query = crate::http_util::query_pairs(query);
    form.into_iter().chain(from_query).find(|(k, _)| k == "Action").map(|(_, v)| v)
}

/// GetCallerIdentity as AWS answers it for root credentials: `Arn` is the account's root,
/// `UserId` the account id. Every access key RustStack sees belongs to that account's root.
/// `json`: the awsJson1_0 form (X-Amz-Target), for SDKs that send it.
pub fn get_caller_identity(account: &str, json: bool, request_id: &str) -> Response<Full<Bytes>> {
    let arn = format!("arn:aws:iam::{account}:root");
    let (content_type, body) = if json {
        let v = serde_json::json!({"Account": account, "Arn": arn, "UserId": account});
        ("application/x-amz-json-1.0", serde_json::to_vec(&v).unwrap_or_default())
    } else {
        ("text/xml", query_xml(account, &arn, request_id).into_bytes())
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::OK;
    r.headers_mut().insert("content-type", HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        r.headers_mut().insert("x-amzn-requestid", v);
    }
    r
}

fn query_xml(account: &str, arn: &str, request_id: &str) -> String {
    format!(
        "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n  <GetCallerIdentityResult>\n    <Arn>{arn}</Arn>\n    <UserId>{account}</UserId>\n    <Account>{account}</Account>\n  </GetCallerIdentityResult>\n  <ResponseMetadata>\n    <RequestId>{request_id}</RequestId>\n  </ResponseMetadata>\n</GetCallerIdentityResponse>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_from_form_or_query() {
        assert_eq!(action(None, b"Action=GetCallerIdentity&Version=2011-06-15").as_deref(), Some("GetCallerIdentity"));
        assert_eq!(action(Some("Version=2011-06-15&Action=AssumeRole"), b"").as_deref(), Some("AssumeRole"));
        assert_eq!(action(None, b""), None);
    }
}

//! SQS's two wire protocols, reduced to one: a query-protocol form (`Action=...`) becomes
//! the JSON protocol's input document, and an answer (a JSON output document) is rendered
//! as JSON or as the query protocol's XML. Errors in each protocol's format.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use serde_json::{Map, Value};

use super::error::SqsError;
use crate::http_util::{self, Body};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Json,
    Query,
}

/// A form field tree: `Attribute.1.Name=x` → {Attribute: {1: {Name: x}}}.
enum Node {
    Leaf(String),
    Tree(BTreeMap<String, Node>),
}

fn insert(tree: &mut BTreeMap<String, Node>, path: &[&str], value: String) {
    let Some((first, rest)) = path.split_first() else { return };
    if rest.is_empty() {
        tree.insert((*first).to_string(), Node::Leaf(value));
        return;
    }
    let entry = tree.entry((*first).to_string()).or_insert_with(|| Node::Tree(BTreeMap::new()));
    if let Node::Leaf(_) = entry {
        *entry = Node::Tree(BTreeMap::new());
    }
    if let Node::Tree(t) = entry {
        insert(t, rest, value);
    }
}

/// The members of a numbered list (`X.1`, `X.2`, ...), in index order.
fn numbered(node: &Node) -> Vec<&Node> {
    match node {
        Node::Tree(t) => {
            let mut items: Vec<(u64, &Node)> =
                t.iter().filter_map(|(k, v)| k.parse::<u64>().ok().map(|i| (i, v))).collect();
            items.sort_by_key(|(i, _)| *i);
            items.into_iter().map(|(_, v)| v).collect()
        }
        Node::Leaf(_) => Vec::new(),
    }
}

fn leaf(node: Option<&Node>) -> Option<String> {
    match node {
        Some(Node::Leaf(s)) => Some(s.clone()),
        _ => None,
    }
}

fn child<'a>(node: &'a Node, name: &str) -> Option<&'a Node> {
    match node {
        Node::Tree(t) => t.get(name),
        Node::Leaf(_) => None,
    }
}

/// A query-protocol structure as the JSON protocol's document.
fn structure(tree: &BTreeMap<String, Node>, op: &str) -> Value {
    let mut out = Map::new();
    for (k, v) in tree {
        let (name, value) = match k.as_str() {
            "Attribute" => ("Attributes".to_string(), name_value_map(v, "Name", "Value")),
            "Tag" => (if op == "CreateQueue" { "tags" } else { "Tags" }.to_string(), name_value_map(v, "Key", "Value")),
            "MessageAttribute" | "MessageSystemAttribute" => {
                let mut m = Map::new();
                for item in numbered(v) {
                    if let (Some(n), Some(Node::Tree(val))) = (leaf(child(item, "Name")), child(item, "Value")) {
                        m.insert(n, structure(val, op));
                    }
                }
                (format!("{k}s"), Value::Object(m))
            }
            "AttributeName" | "MessageSystemAttributeName" | "MessageAttributeName" | "TagKey" | "AWSAccountId" => (
                format!("{k}s"),
                Value::Array(numbered(v).into_iter().filter_map(|n| leaf(Some(n))).map(Value::String).collect()),
            ),
            "ActionName" => (
                "Actions".to_string(),
                Value::Array(numbered(v).into_iter().filter_map(|n| leaf(Some(n))).map(Value::String).collect()),
            ),
            k if k.ends_with("BatchRequestEntry") => (
                "Entries".to_string(),
                Value::Array(
                    numbered(v)
                        .into_iter()
                        .map(|n| match n {
                            Node::Tree(t) => structure(t, op),
                            Node::Leaf(s) => Value::String(s.clone()),
                        })
                        .collect(),
                ),
            ),
            _ => (
                k.clone(),
                match v {
                    Node::Leaf(s) => Value::String(s.clone()),
                    Node::Tree(t) => structure(t, op),
                },
            ),
        };
        out.insert(name, value);
    }
    Value::Object(out)
}

fn name_value_map(v: &Node, key: &str, value: &str) -> Value {
    let mut m = Map::new();
    for item in numbered(v) {
        if let Some(k) = leaf(child(item, key)) {
            m.insert(k, Value::String(leaf(child(item, value)).unwrap_or_default()));
        }
    }
    Value::Object(m)
}

/// A query-protocol request (form body and/or URL query) as (Action, JSON input).
pub fn decode_query(pairs: &[(String, String)]) -> Result<(String, Value), SqsError> {
    let mut tree = BTreeMap::new();
    let mut action = None;
    for (k, v) in pairs {
        match k.as_str() {
            "Action" => action = Some(v.clone()),
            "Version" | "AWSAccessKeyId" | "Signature" | "SignatureMethod" | "SignatureVersion" | "Timestamp"
            | "Expires" | "SecurityToken" => {}
            _ if k.starts_with("X-Amz-") => {}
            _ => {
                let parts: Vec<&str> = k.split('.').collect();
                insert(&mut tree, &parts, v.clone());
            }
        }
    }
    let action = action.ok_or_else(|| SqsError::missing_parameter("Action"))?;
    let input = structure(&tree, &action);
    Ok((action, input))
}

pub fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    let s = String::from_utf8_lossy(body);
    s.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (form_decode(k), form_decode(v))
        })
        .collect()
}

fn form_decode(s: &str) -> String {
    let plus = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus).decode_utf8_lossy().into_owned()
}

/// The answer to a successful call.
pub fn ok(proto: Proto, op: &str, output: &Value, request_id: &str) -> Response<Body> {
    let mut r = match proto {
        Proto::Json => http_util::full(
            StatusCode::OK,
            "application/x-amz-json-1.0",
            serde_json::to_vec(output).unwrap_or_else(|_| b"{}".to_vec()),
        ),
        Proto::Query => {
            let mut x = String::with_capacity(512);
            x.push_str("<?xml version=\"1.0\"?>");
            x.push_str(&format!("<{op}Response xmlns=\"http://queue.amazonaws.com/doc/2012-11-05/\">"));
            if output.as_object().is_some_and(|o| !o.is_empty()) {
                x.push_str(&format!("<{op}Result>"));
                if let Some(o) = output.as_object() {
                    for (k, v) in o {
                        emit(&mut x, op, k, v);
                    }
                }
                x.push_str(&format!("</{op}Result>"));
            }
            x.push_str(&format!(
                "<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{op}Response>"
            ));
            http_util::full(StatusCode::OK, "text/xml", Bytes::from(x))
        }
    };
    if let Ok(v) = HeaderValue::from_str(request_id) {
        r.headers_mut().insert("x-amzn-requestid", v);
    }
    r
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// One member of a JSON output document as query-protocol XML (flattened lists and maps).
fn emit(x: &mut String, op: &str, key: &str, v: &Value) {
    let esc = crate::aws::xml::escape;
    match (key, v) {
        ("Attributes", Value::Object(m)) => {
            for (k, v) in m {
                x.push_str(&format!("<Attribute><Name>{}</Name><Value>{}</Value></Attribute>", esc(k), esc(&text(v))));
            }
        }
        ("Tags", Value::Object(m)) => {
            for (k, v) in m {
                x.push_str(&format!("<Tag><Key>{}</Key><Value>{}</Value></Tag>", esc(k), esc(&text(v))));
            }
        }
        ("MessageAttributes", Value::Object(m)) => {
            for (k, v) in m {
                x.push_str(&format!("<MessageAttribute><Name>{}</Name><Value>", esc(k)));
                if let Some(o) = v.as_object() {
                    for (k2, v2) in o {
                        emit(x, op, k2, v2);
                    }
                }
                x.push_str("</Value></MessageAttribute>");
            }
        }
        (_, Value::Array(items)) => {
            let name = match key {
                "Messages" => "Message".to_string(),
                "QueueUrls" | "queueUrls" => "QueueUrl".to_string(),
                "Successful" => format!("{op}ResultEntry"),
                "Failed" => "BatchResultErrorEntry".to_string(),
                other => other.to_string(),
            };
            for item in items {
                x.push_str(&format!("<{name}>"));
                match item.as_object() {
                    Some(o) => {
                        for (k, v) in o {
                            emit(x, op, k, v);
                        }
                    }
                    None => x.push_str(&esc(&text(item))),
                }
                x.push_str(&format!("</{name}>"));
            }
        }
        (_, Value::Object(o)) => {
            x.push_str(&format!("<{key}>"));
            for (k, v) in o {
                emit(x, op, k, v);
            }
            x.push_str(&format!("</{key}>"));
        }
        _ => x.push_str(&format!("<{key}>{}</{key}>", esc(&text(v)))),
    }
}

/// An error in the protocol's format (JSON with `x-amzn-query-error`, or `<ErrorResponse>`).
pub fn error(proto: Proto, e: &SqsError, request_id: &str) -> Response<Body> {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut r = match proto {
        Proto::Json => {
            let body = serde_json::json!({"__type": format!("com.amazonaws.sqs#{}", e.shape), "message": e.message});
            let mut r =
                http_util::full(status, "application/x-amz-json-1.0", serde_json::to_vec(&body).unwrap_or_default());
            if let Ok(v) = HeaderValue::from_str(&format!("{};{}", e.code, e.fault())) {
                r.headers_mut().insert("x-amzn-query-error", v);
            }
            r
        }
        Proto::Query => {
            // AWS words an unknown queue differently in the query protocol.
            let message = if e == &SqsError::non_existent_queue() {
                super::error::NON_EXISTENT_QUEUE_QUERY
            } else {
                e.message.as_str()
            };
            let x = format!(
                "<?xml version=\"1.0\"?><ErrorResponse xmlns=\"http://queue.amazonaws.com/doc/2012-11-05/\"><Error><Type>{}</Type><Code>{}</Code><Message>{}</Message><Detail/></Error><RequestId>{request_id}</RequestId></ErrorResponse>",
                e.fault(),
                e.code,
                crate::aws::xml::escape(message)
            );
            http_util::full(status, "text/xml", Bytes::from(x))
        }
    };
    if let Ok(v) = HeaderValue::from_str(request_id) {
        r.headers_mut().insert("x-amzn-requestid", v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(s: &str) -> Vec<(String, String)> {
        form_pairs(s.as_bytes())
    }

    #[test]
    fn query_becomes_json_input() {
        let (op, v) = decode_query(&pairs(
            "Action=SendMessage&QueueUrl=http%3A%2F%2Fh%2F1%2Fq&MessageBody=a+b&MessageAttribute.1.Name=Foo&MessageAttribute.1.Value.DataType=String&MessageAttribute.1.Value.StringValue=Bar&Version=2012-11-05",
        ))
        .unwrap();
        assert_eq!(op, "SendMessage");
        assert_eq!(v["MessageBody"], "a b");
        assert_eq!(v["QueueUrl"], "http://h/1/q");
        assert_eq!(v["MessageAttributes"]["Foo"]["StringValue"], "Bar");
        let (_, v) = decode_query(&pairs(
            "Action=CreateQueue&QueueName=q&Attribute.2.Name=B&Attribute.2.Value=2&Attribute.1.Name=A&Attribute.1.Value=1&Tag.1.Key=k&Tag.1.Value=v",
        ))
        .unwrap();
        assert_eq!(v["Attributes"]["A"], "1");
        assert_eq!(v["Attributes"]["B"], "2");
        assert_eq!(v["tags"]["k"], "v");
        let (_, v) = decode_query(&pairs(
            "Action=DeleteMessageBatch&DeleteMessageBatchRequestEntry.2.Id=b&DeleteMessageBatchRequestEntry.10.Id=c&DeleteMessageBatchRequestEntry.1.Id=a",
        ))
        .unwrap();
        let ids: Vec<&str> = v["Entries"].as_array().unwrap().iter().map(|e| e["Id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
    }

    #[test]
    fn xml_answers_flatten_lists_and_maps() {
        let out = serde_json::json!({"Messages": [{"Body": "<x>", "Attributes": {"SenderId": "s"}}]});
        let r = ok(Proto::Query, "ReceiveMessage", &out, "rid");
        let body = r.into_body();
        let _ = body;
        let mut x = String::new();
        emit(&mut x, "ReceiveMessage", "Messages", &out["Messages"]);
        assert_eq!(
            x,
            "<Message><Attribute><Name>SenderId</Name><Value>s</Value></Attribute><Body>&lt;x&gt;</Body></Message>"
        );
    }
}

//! Bucket notifications to Lambda: `PutBucketNotificationConfiguration` with
//! `LambdaFunctionConfiguration`s, and the S3 event (the `Records` message AWS sends) queued
//! as an Event invocation of the function after each matching object change. Queue and topic
//! configurations are accepted and dropped with a warning (RustStack has no SQS or SNS).
//!
//! The rules live in `<s3 dir>/notifications/<bucket>.json`, written atomically.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::error::ApiError;
use super::wire::{Element, Xml};

/// One `LambdaFunctionConfiguration`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Rule {
    pub id: String,
    pub function_arn: String,
    /// `s3:ObjectCreated:*`, `s3:ObjectRemoved:Delete`, …
    pub events: Vec<String>,
    pub prefix: String,
    pub suffix: String,
}

/// Where matching events go: `(function ARN, event payload)`.
pub type Sink = Box<dyn Fn(&str, Vec<u8>) + Send + Sync>;

pub struct Notifications {
    dir: PathBuf,
    rules: RwLock<HashMap<String, Vec<Rule>>>,
    sink: OnceLock<Sink>,
}

/// What happened to an object, for the event.
pub struct Change<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    /// `ObjectCreated:Put`, `ObjectRemoved:Delete`, …
    pub event: &'static str,
    pub size: u64,
    /// Unquoted.
    pub etag: String,
    pub version_id: Option<String>,
    pub request_id: &'a str,
}

impl Notifications {
    pub fn open(dir: PathBuf) -> std::io::Result<Notifications> {
        std::fs::create_dir_all(&dir)?;
        let mut rules = HashMap::new();
        for e in std::fs::read_dir(&dir)?.flatten() {
            let p = e.path();
            let Some(bucket) = p.file_stem().and_then(|s| s.to_str()).map(str::to_string) else { continue };
            if p.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            match std::fs::read(&p).ok().and_then(|b| serde_json::from_slice::<Vec<Rule>>(&b).ok()) {
                Some(r) => {
                    rules.insert(bucket, r);
                }
                None => tracing::warn!(path = %p.display(), "skipping an unreadable notification configuration"),
            }
        }
        Ok(Notifications { dir, rules: RwLock::new(rules), sink: OnceLock::new() })
    }

    /// Where events go (set once, by the server, to Lambda's Event queue).
    pub fn set_sink(&self, sink: Sink) {
        let _ = self.sink.set(sink);
    }

    /// PutBucketNotificationConfiguration: replaces the bucket's rules.
    pub(crate) fn put(&self, bucket: &str, xml: &str) -> Result<(), ApiError> {
        let doc = Element::parse(xml)?;
        if doc.name != "NotificationConfiguration" {
            return Err(ApiError::MalformedXml);
        }
        let mut rules = Vec::new();
        for tag in ["LambdaFunctionConfiguration", "CloudFunctionConfiguration"] {
            for c in doc.children(tag) {
                let function_arn = c
                    .child_text("LambdaFunctionArn")
                    .or_else(|| c.child_text("CloudFunction"))
                    .filter(|a| a.starts_with("arn:") && a.contains(":lambda:"))
                    .ok_or_else(|| ApiError::InvalidArgument("A Lambda function ARN is required".into()))?;
                let events: Vec<String> = c.children("Event").map(|e| e.text.trim().to_string()).collect();
                if events.is_empty() || events.iter().any(|e| !e.starts_with("s3:")) {
                    return Err(ApiError::InvalidArgument("The event is not valid".into()));
                }
                let (mut prefix, mut suffix) = (String::new(), String::new());
                let filter_rules =
                    c.children("Filter").flat_map(|f| f.children("S3Key")).flat_map(|k| k.children("FilterRule"));
                for rule in filter_rules {
                    let name = rule.child_text("Name").unwrap_or_default().to_ascii_lowercase();
                    let value = rule.child_text("Value").unwrap_or_default();
                    match name.as_str() {
                        "prefix" => prefix = value,
                        "suffix" => suffix = value,
                        _ => return Err(ApiError::InvalidArgument(format!("Invalid filter rule name: {name}"))),
                    }
                }
                let id = c.child_text("Id").unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
                rules.push(Rule { id, function_arn, events, prefix, suffix });
            }
        }
        for tag in ["QueueConfiguration", "TopicConfiguration"] {
            if doc.child(tag).is_some() {
                tracing::warn!(bucket, "{tag}: RustStack has no SQS or SNS; these notifications are not kept");
            }
        }
        let path = self.dir.join(format!("{bucket}.json"));
        if rules.is_empty() {
            let _ = std::fs::remove_file(&path);
            self.rules.write().remove(bucket);
        } else {
            let bytes = serde_json::to_vec_pretty(&rules).map_err(std::io::Error::other)?;
            crate::aws::fs::write_atomic(&path, &bytes)?;
            self.rules.write().insert(bucket.to_string(), rules);
        }
        Ok(())
    }

    /// GetBucketNotificationConfiguration's document.
    pub fn get_xml(&self, bucket: &str) -> String {
        let mut x = Xml::new("NotificationConfiguration");
        for r in self.rules.read().get(bucket).into_iter().flatten() {
            x.open("CloudFunctionConfiguration");
            x.elem("Id", &r.id);
            x.elem("CloudFunction", &r.function_arn);
            for e in &r.events {
                x.elem("Event", e);
            }
            if !r.prefix.is_empty() || !r.suffix.is_empty() {
                x.open("Filter").open("S3Key");
                for (name, value) in [("prefix", &r.prefix), ("suffix", &r.suffix)] {
                    if !value.is_empty() {
                        x.open("FilterRule").elem("Name", name).elem("Value", value).close("FilterRule");
                    }
                }
                x.close("S3Key").close("Filter");
            }
            x.close("CloudFunctionConfiguration");
        }
        x.finish("NotificationConfiguration")
    }

    /// A bucket was deleted: so are its rules.
    pub fn forget(&self, bucket: &str) {
        if self.rules.write().remove(bucket).is_some() {
            let _ = std::fs::remove_file(self.dir.join(format!("{bucket}.json")));
        }
    }

    /// Whether any rule could care about this bucket (skips the object lookup otherwise).
    pub fn watches(&self, bucket: &str) -> bool {
        self.rules.read().get(bucket).is_some_and(|r| !r.is_empty())
    }

    /// Queues the S3 event for every rule the change matches.
    pub fn emit(&self, change: &Change) {
        let Some(sink) = self.sink.get() else { return };
        let rules: Vec<Rule> = self.rules.read().get(change.bucket).cloned().unwrap_or_default();
        for r in rules {
            let wanted = r.events.iter().any(|e| event_matches(e, change.event));
            if !wanted || !change.key.starts_with(&r.prefix) || !change.key.ends_with(&r.suffix) {
                continue;
            }
            let region = r.function_arn.split(':').nth(3).filter(|s| !s.is_empty()).unwrap_or("us-east-1");
            let mut object = json!({
                "key": form_encode(change.key),
                "size": change.size,
                "eTag": change.etag,
                "sequencer": format!("{:016X}", crate::aws::epoch_ms()),
            });
            if let Some(v) = change.version_id.as_ref().filter(|v| v.as_str() != "null") {
                object["versionId"] = json!(v);
            }
            if change.event.starts_with("ObjectRemoved") {
                object.as_object_mut().map(|o| {
                    o.remove("size");
                    o.remove("eTag")
                });
            }
            let event = json!({"Records": [{
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": region,
                "eventTime": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
                "eventName": change.event,
                "userIdentity": {"principalId": "AWS:RUSTSTACK"},
                "requestParameters": {"sourceIPAddress": "127.0.0.1"},
                "responseElements": {"x-amz-request-id": change.request_id, "x-amz-id-2": change.request_id},
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": r.id,
                    "bucket": {"name": change.bucket, "ownerIdentity": {"principalId": "RUSTSTACK"},
                               "arn": format!("arn:aws:s3:::{}", change.bucket)},
                    "object": object,
                },
            }]});
            sink(&r.function_arn, serde_json::to_vec(&event).unwrap_or_default());
        }
    }
}

/// `s3:ObjectCreated:*` matches `ObjectCreated:Put`; `s3:ObjectCreated:Put` only itself.
fn event_matches(pattern: &str, event: &str) -> bool {
    let p = pattern.strip_prefix("s3:").unwrap_or(pattern);
    match p.strip_suffix('*') {
        Some(head) => event.starts_with(head),
        None => p == event,
    }
}

/// Keys in S3 events are URL-encoded the way HTML forms are (space as `+`), slashes kept.
fn form_encode(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' | b'/' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_and_encoding() {
        assert!(event_matches("s3:ObjectCreated:*", "ObjectCreated:Put"));
        assert!(!event_matches("s3:ObjectCreated:*", "ObjectRemoved:Delete"));
        assert!(event_matches("s3:ObjectRemoved:Delete", "ObjectRemoved:Delete"));
        assert_eq!(form_encode("a b/c+d.txt"), "a+b/c%2Bd.txt");
    }
}

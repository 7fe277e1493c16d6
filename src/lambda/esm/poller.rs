//! The poller of one mapping (placeholder until the embedded SQS lands).

use std::sync::Weak;

use crate::lambda::Lambda;

pub async fn run(_lambda: Weak<Lambda>, _uuid: String, mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

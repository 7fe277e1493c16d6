//! Which image a function runs in, and getting it onto the engine: present → use it,
//! missing → pull it with progress in the log, failure → a clear reason, never a hang.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures_util::StreamExt;

use super::message;

/// A pull that reports nothing for this long has failed.
const PULL_STALL: Duration = Duration::from_secs(60);

/// What this server knows about one image.
#[derive(Default)]
pub struct ImageState {
    /// Known to be present on the engine.
    pub present: bool,
    /// ENTRYPOINT and CMD from the image's config, once looked at.
    pub config: Option<(Vec<String>, Vec<String>)>,
    /// The image has no `/bin/sh`, so its output cannot be sent to a FIFO.
    pub no_shell: bool,
}

/// `public.ecr.aws/lambda/<repo>:<tag>` for a Lambda runtime identifier.
pub fn default_image(runtime: &str) -> Option<String> {
    let (repo, tag) = match runtime {
        "provided" => ("provided", "alami".to_string()),
        r if r.starts_with("provided.") => ("provided", r["provided.".len()..].to_string()),
        r if r.starts_with("dotnetcore") => ("dotnet", format!("core{}", &r["dotnetcore".len()..])),
        r => {
            let i = r.find(|ch: char| ch.is_ascii_digit())?;
            let tag = r[i..].strip_suffix(".x").unwrap_or(&r[i..]);
            (&r[..i], tag.to_string())
        }
    };
    if repo.is_empty() || tag.is_empty() {
        return None;
    }
    Some(format!("public.ecr.aws/lambda/{repo}:{tag}"))
}

/// `repo[:tag]` or `repo@digest` → (fromImage, tag). A missing tag means `latest` (an empty
/// tag would pull every tag).
pub fn split_ref(image: &str) -> (&str, Option<&str>) {
    if image.contains('@') {
        return (image, None);
    }
    let name_start = image.rfind('/').map(|i| i + 1).unwrap_or(0);
    match image[name_start..].rfind(':') {
        Some(i) => (&image[..name_start + i], Some(&image[name_start + i + 1..])),
        None => (image, Some("latest")),
    }
}

/// Pulls an image, logging progress layer by layer.
pub async fn pull(docker: &Docker, image: &str) -> Result<(), String> {
    pull_with(docker, image, PULL_STALL).await
}

async fn pull_with(docker: &Docker, image: &str, stall: Duration) -> Result<(), String> {
    let (from, tag) = split_ref(image);
    let mut b = CreateImageOptionsBuilder::new().from_image(from);
    if let Some(t) = tag {
        b = b.tag(t);
    }
    tracing::info!(image, "pulling image");
    let started = Instant::now();
    let mut stream = docker.create_image(Some(b.build()), None, None);
    // Per layer: the last status shown, and when it was shown.
    let mut layers: HashMap<String, (String, Instant)> = HashMap::new();
    loop {
        let info = match tokio::time::timeout(stall, stream.next()).await {
            Err(_) => return Err(format!("pull of {image} stalled: no progress for {} s", stall.as_secs())),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(format!("cannot pull image {image}: {}", message(&e))),
            Ok(Some(Ok(info))) => info,
        };
        let status = info.status.unwrap_or_default();
        let Some(layer) = info.id.filter(|_| !status.starts_with("Pulling from")) else {
            if !status.is_empty() {
                tracing::info!(image, "pull: {status}");
            }
            continue;
        };
        let progress = info.progress_detail.and_then(|p| Some((p.current?, p.total?)));
        let now = Instant::now();
        let (last, at) = layers.entry(layer.clone()).or_insert_with(|| (String::new(), now));
        // Every change of status; repeated progress at most every 2 s per layer.
        if *last != status || now.duration_since(*at) >= Duration::from_secs(2) {
            match progress {
                Some((cur, total)) if total > 0 => tracing::info!(
                    image,
                    layer = %layer,
                    "pull: {status} {:.1}/{:.1} MB",
                    cur as f64 / 1e6,
                    total as f64 / 1e6
                ),
                _ => tracing::info!(image, layer = %layer, "pull: {status}"),
            }
            *last = status;
            *at = now;
        }
    }
    tracing::info!(image, secs = format!("{:.1}", started.elapsed().as_secs_f64()), "pulled image");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use bytes::Bytes;
    use http_body_util::{BodyExt, StreamBody};
    use hyper::body::Frame;

    /// A fake engine on a unix socket: `/images/create` answers with `lines`, one chunk each,
    /// then hangs if `hang`. Returns the socket path and the query strings it was sent.
    async fn fake_engine(
        lines: Vec<&'static str>,
        hang: bool,
    ) -> (std::path::PathBuf, Arc<parking_lot::Mutex<Vec<String>>>) {
        let path = std::env::temp_dir().join(format!("ruststack-fake-docker-{}.sock", uuid::Uuid::new_v4().simple()));
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let seen = seen2.clone();
                let lines = lines.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        seen.lock().push(format!("{} {}", req.uri().path(), req.uri().query().unwrap_or("")));
                        let lines = lines.clone();
                        async move {
                            let chunks = futures_util::stream::iter(lines.into_iter().map(|l| {
                                Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(format!("{l}\r\n"))))
                            }));
                            let tail = futures_util::stream::once(async move {
                                if hang {
                                    std::future::pending::<()>().await;
                                }
                                Ok(Frame::data(Bytes::new()))
                            });
                            let body = BodyExt::boxed(StreamBody::new(chunks.chain(tail)));
                            Ok::<_, std::convert::Infallible>(
                                http::Response::builder()
                                    .header("content-type", "application/json")
                                    .body(body)
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        (path, seen)
    }

    fn client(path: &std::path::Path) -> Docker {
        Docker::connect_with_unix(&path.display().to_string(), 10, bollard::API_DEFAULT_VERSION).unwrap()
    }

    #[tokio::test]
    async fn pull_follows_progress_to_the_end() {
        let (path, seen) = fake_engine(
            vec![
                r#"{"status":"Pulling from lambda/python","id":"3.11"}"#,
                r#"{"status":"Pulling fs layer","progressDetail":{},"id":"aaa"}"#,
                r#"{"status":"Downloading","progressDetail":{"current":1000,"total":2000},"id":"aaa"}"#,
                r#"{"status":"Pull complete","progressDetail":{},"id":"aaa"}"#,
                r#"{"status":"Status: Downloaded newer image for public.ecr.aws/lambda/python:3.11"}"#,
            ],
            false,
        )
        .await;
        pull(&client(&path), "public.ecr.aws/lambda/python:3.11").await.unwrap();
        let q = seen.lock().join("\n");
        assert!(q.contains("/images/create"), "{q}");
        assert!(q.contains("fromImage=public.ecr.aws%2Flambda%2Fpython") && q.contains("tag=3.11"), "{q}");
        let _ = std::fs::remove_file(path);
    }

    #[tokio::test]
    async fn pull_errors_are_reported_with_the_reason() {
        let (path, _) = fake_engine(
            vec![
                r#"{"status":"Pulling from nope","id":"1"}"#,
                r#"{"errorDetail":{"message":"manifest for does-not-exist/nope:1 not found"},"error":"manifest for does-not-exist/nope:1 not found"}"#,
            ],
            false,
        )
        .await;
        let err = pull(&client(&path), "does-not-exist/nope:1").await.unwrap_err();
        assert!(err.contains("does-not-exist/nope:1") && err.contains("not found"), "{err}");
        let _ = std::fs::remove_file(path);
    }

    #[tokio::test]
    async fn a_stalled_pull_fails() {
        let (path, _) =
            fake_engine(vec![r#"{"status":"Pulling fs layer","progressDetail":{},"id":"aaa"}"#], true).await;
        let err = pull_with(&client(&path), "img:1", Duration::from_millis(300)).await.unwrap_err();
        assert!(err.contains("stalled"), "{err}");
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn default_images() {
        let d = |r: &str| default_image(r).unwrap_or_default();
        assert_eq!(d("python3.11"), "public.ecr.aws/lambda/python:3.11");
        assert_eq!(d("python3.9"), "public.ecr.aws/lambda/python:3.9");
        assert_eq!(d("nodejs20.x"), "public.ecr.aws/lambda/nodejs:20");
        assert_eq!(d("provided.al2023"), "public.ecr.aws/lambda/provided:al2023");
        assert_eq!(d("provided.al2"), "public.ecr.aws/lambda/provided:al2");
        assert_eq!(d("java21"), "public.ecr.aws/lambda/java:21");
        assert_eq!(d("java8.al2"), "public.ecr.aws/lambda/java:8.al2");
        assert_eq!(d("dotnet8"), "public.ecr.aws/lambda/dotnet:8");
        assert_eq!(d("ruby3.3"), "public.ecr.aws/lambda/ruby:3.3");
        assert_eq!(default_image("nonsense"), None);
    }

    #[test]
    fn image_refs() {
        assert_eq!(split_ref("public.ecr.aws/lambda/python:3.11"), ("public.ecr.aws/lambda/python", Some("3.11")));
        assert_eq!(split_ref("localhost:5000/img"), ("localhost:5000/img", Some("latest")));
        assert_eq!(split_ref("localhost:5000/img:v1"), ("localhost:5000/img", Some("v1")));
        assert_eq!(split_ref("img@sha256:abc"), ("img@sha256:abc", None));
        assert_eq!(split_ref("alpine"), ("alpine", Some("latest")));
    }
}

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
        let info = match tokio::time::timeout(PULL_STALL, stream.next()).await {
            Err(_) => return Err(format!("pull of {image} stalled: no progress for {} s", PULL_STALL.as_secs())),
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

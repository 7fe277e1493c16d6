//! The command line: every flag, each also read from a `RUSTSTACK_*` environment variable.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(name = "ruststack", version, about = "A local AWS Lambda service in one binary")]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub server: Config,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve a function's invocations from a runtime you start yourself (e.g. under a debugger).
    Attach(AttachArgs),
}

#[derive(Args, Debug, Clone)]
pub struct AttachArgs {
    /// The function to attach to (name or ARN).
    pub function: String,
    /// The RustStack endpoint.
    #[arg(long, env = "RUSTSTACK_ENDPOINT", default_value = "http://127.0.0.1:4566")]
    pub endpoint: String,
    /// Keep the function's timeout while attached (by default it is suspended).
    #[arg(long)]
    pub keep_timeout: bool,
    /// Print the runtime's environment variables and hold the attachment until interrupted.
    #[arg(long)]
    pub print_env: bool,
    /// The runtime command to run, after `--`.
    #[arg(last = true)]
    pub command: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "RUSTSTACK_HOST", default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port to listen on.
    #[arg(long, env = "RUSTSTACK_PORT", default_value_t = 4566)]
    pub port: u16,
    /// Where functions, layers, code and S3 objects are kept (default ~/.ruststack).
    #[arg(long, env = "RUSTSTACK_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// How execution environments run.
    #[arg(long, env = "RUSTSTACK_LAMBDA_EXECUTOR", value_enum, default_value_t = ExecutorMode::Subprocess)]
    pub lambda_executor: ExecutorMode,
    /// Seconds an idle environment stays warm.
    #[arg(long, env = "RUSTSTACK_LAMBDA_CONTAINER_TTL", default_value_t = 300)]
    pub lambda_container_ttl: u64,
    /// Most environments alive (and busy) at once, across the server.
    #[arg(long, env = "RUSTSTACK_LAMBDA_MAX_CONTAINERS", default_value_t = 10)]
    pub lambda_max_containers: usize,
    /// How containers reach RustStack.
    #[arg(long, env = "RUSTSTACK_LAMBDA_NETWORK", value_enum, default_value_t = NetworkMode::Host)]
    pub lambda_network: NetworkMode,
    /// RUNTIME=IMAGE: use IMAGE for RUNTIME instead of public.ecr.aws/lambda (repeatable).
    #[arg(long, env = "RUSTSTACK_LAMBDA_RUNTIME_IMAGE", value_delimiter = ',')]
    pub lambda_runtime_image: Vec<String>,
    /// Invocations that may wait for a free environment before callers get 429.
    #[arg(long, env = "RUSTSTACK_LAMBDA_QUEUE_SIZE", default_value_t = 100)]
    pub lambda_queue_size: usize,
    /// Seconds a new environment may take to call /next before it is killed.
    #[arg(long, env = "RUSTSTACK_LAMBDA_INIT_TIMEOUT", default_value_t = 10)]
    pub lambda_init_timeout: u64,
    /// Delay in ms between retries of failed Event invocations (AWS: minutes).
    #[arg(long, env = "RUSTSTACK_LAMBDA_EVENT_RETRY_DELAY_MS", default_value_t = 200)]
    pub lambda_event_retry_delay_ms: u64,
    /// Milliseconds a new or updated function stays Pending / InProgress before it settles
    /// (AWS: seconds; RustStack: as soon as its code is ready). For testing clients that wait.
    #[arg(long, env = "RUSTSTACK_LAMBDA_STATE_DELAY_MS", default_value_t = 0)]
    pub lambda_state_delay_ms: u64,
    /// Default region when a request does not name one.
    #[arg(long, env = "RUSTSTACK_REGION", default_value = "us-east-1")]
    pub region: String,
    /// Account id in ARNs.
    #[arg(long, env = "RUSTSTACK_ACCOUNT_ID", default_value = "000000000000")]
    pub account_id: String,
    /// Python interpreter for python3.x functions in subprocess mode.
    #[arg(long, env = "RUSTSTACK_PYTHON", default_value = "python3")]
    pub python: String,
    /// Node.js for nodejs functions in subprocess mode.
    #[arg(long, env = "RUSTSTACK_NODE", default_value = "node")]
    pub node: String,
    /// Where requests for AWS services RustStack does not implement are forwarded (LocalStack, moto, DynamoDB Local).
    #[arg(long, env = "RUSTSTACK_UPSTREAM")]
    pub upstream: Option<String>,
    /// SERVICE=URL: set AWS_ENDPOINT_URL_<SERVICE> in functions (repeatable).
    #[arg(long, env = "RUSTSTACK_SERVICE_ENDPOINT", value_delimiter = ',')]
    pub service_endpoint: Vec<String>,
    /// S3Bucket name that makes `Code={"S3Bucket": BUCKET, "S3Key": "/abs/dir"}` run a local
    /// directory in place, reloaded on every change (LocalStack's convention).
    #[arg(long, env = "RUSTSTACK_HOT_RELOAD_BUCKET", default_value = "hot-reload")]
    pub hot_reload_bucket: String,
    /// GLOB,...: only changes to files matching one of these (relative to the watched
    /// directory, e.g. `**/dist/**/*.js`) reload a hot-reload function. Default: every change.
    #[arg(long, env = "RUSTSTACK_HOT_RELOAD_PATTERNS", value_delimiter = ',')]
    pub hot_reload_patterns: Vec<String>,
    /// Seconds in-flight invocations get to finish on SIGTERM.
    #[arg(long, env = "RUSTSTACK_SHUTDOWN_GRACE", default_value_t = 10)]
    pub shutdown_grace: u64,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExecutorMode {
    Subprocess,
    Docker,
    Auto,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum NetworkMode {
    Host,
    Bridge,
}

impl Config {
    pub fn data_dir(&self) -> PathBuf {
        if let Some(d) = &self.data_dir {
            return d.clone();
        }
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
        home.join(".ruststack")
    }

    /// `AWS_ENDPOINT_URL_<SERVICE>` variables from `--service-endpoint SERVICE=URL`: the SDKs'
    /// per-service names (upper case, `-` and spaces become `_`).
    pub fn service_endpoint_env(&self) -> Result<Vec<(String, String)>, String> {
        self.service_endpoint
            .iter()
            .map(|s| match s.split_once('=') {
                Some((svc, url))
                    if !svc.trim().is_empty() && (url.starts_with("http://") || url.starts_with("https://")) =>
                {
                    let name: String = svc
                        .trim()
                        .chars()
                        .map(|c| if c == '-' || c == ' ' { '_' } else { c.to_ascii_uppercase() })
                        .collect();
                    Ok((format!("AWS_ENDPOINT_URL_{name}"), url.to_string()))
                }
                _ => Err(format!("--service-endpoint expects SERVICE=http(s)://..., got '{s}'")),
            })
            .collect()
    }

    /// RUNTIME=IMAGE pairs; malformed entries are reported, not ignored.
    pub fn runtime_images(&self) -> Result<Vec<(String, String)>, String> {
        self.lambda_runtime_image
            .iter()
            .map(|s| match s.split_once('=') {
                Some((r, i)) if !r.is_empty() && !i.is_empty() => Ok((r.to_string(), i.to_string())),
                _ => Err(format!("--lambda-runtime-image expects RUNTIME=IMAGE, got '{s}'")),
            })
            .collect()
    }
}

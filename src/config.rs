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
    /// The function's region (else AWS_REGION, AWS_DEFAULT_REGION, else the server's
    /// --region); an ARN's own region wins.
    #[arg(long)]
    pub region: Option<String>,
    /// Keep the function's timeout while attached (by default it is suspended).
    #[arg(long)]
    pub keep_timeout: bool,
    /// Print the runtime's environment variables and hold the attachment until interrupted.
    #[arg(long)]
    pub print_env: bool,
    /// Start the function's own runtime under a debugger: Python under debugpy, Node.js under
    /// `--inspect-brk`, `provided.*` the ./bootstrap here with its environment printed. The
    /// function's layers are on its paths. With --print-env: print that environment (and the
    /// command) and hold, for a runtime you start yourself.
    #[arg(long, conflicts_with = "command")]
    pub debug: bool,
    /// The debugger's port with --debug (default 5678 for Python, 9229 for Node.js).
    #[arg(long, requires = "debug")]
    pub debug_port: Option<u16>,
    /// Python interpreter for --debug (it needs debugpy).
    #[arg(long, env = "RUSTSTACK_PYTHON", default_value = "python3")]
    pub python: String,
    /// Node.js for --debug.
    #[arg(long, env = "RUSTSTACK_NODE", default_value = "node")]
    pub node: String,
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
    /// Start python3.x environments by forking a pre-initialized interpreter (one per host
    /// Python) instead of exec'ing one (a fraction of the cold start). `false` execs each one.
    #[arg(long, env = "RUSTSTACK_PYTHON_FORK", default_value_t = true, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub python_fork: bool,
    /// RUNTIME=PATH: run RUNTIME (python3.X) functions on the interpreter at PATH in subprocess
    /// mode (repeatable). Without one, a `python3.X` on PATH, else --python.
    #[arg(long, env = "RUSTSTACK_PYTHON_RUNTIME", value_delimiter = ',')]
    pub python_runtime: Vec<String>,
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
    /// How containers get code and layers: bind `mount` (the engine sees this machine's
    /// files) or `upload` through the Docker API. Default: mount for a local engine, upload
    /// for a remote one (`DOCKER_HOST=tcp://...` or `ssh://...`).
    #[arg(long, env = "RUSTSTACK_LAMBDA_CODE_TRANSFER", value_enum)]
    pub lambda_code_transfer: Option<CodeTransferMode>,
    /// Docker cold starts take a spare container, created and started ahead with nothing of
    /// its image running yet: blank spares, two per image, which any zip function of that
    /// image takes (its code linked in, its variables and command given when taken), made
    /// again after each cold start. Hot-reload functions keep one of their own. Local
    /// engines only; at most --lambda-max-containers spares. `false`: none.
    #[arg(long, env = "RUSTSTACK_LAMBDA_DOCKER_SPARE", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub lambda_docker_spare: bool,
    /// The address containers use to reach RustStack (Runtime API and AWS_ENDPOINT_URL), e.g.
    /// this machine's address on the network a remote Docker engine sees. RustStack listens
    /// for containers on the matching local address.
    #[arg(long, env = "RUSTSTACK_LAMBDA_ADVERTISE_HOST")]
    pub lambda_advertise_host: Option<String>,
    /// FN[=PORT]: start FN's environments under a debugger listening on 127.0.0.1:PORT
    /// (default 5678 for Python, 9229 for Node.js), timeout suspended, one environment kept
    /// (repeatable). FN is a name (that function in every region) or a function ARN (in its
    /// region only).
    #[arg(long, env = "RUSTSTACK_LAMBDA_DEBUG", value_delimiter = ',')]
    pub lambda_debug: Vec<String>,
}

/// One `--lambda-debug` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebugEntry {
    pub name: String,
    /// The ARN's region: that region only. None: the name in every region.
    pub region: Option<String>,
    pub port: Option<u16>,
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

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum CodeTransferMode {
    Mount,
    Upload,
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

    /// `python3.X=PATH` pairs of --python-runtime; malformed entries are reported.
    pub fn python_runtimes(&self) -> Result<Vec<(String, String)>, String> {
        self.python_runtime
            .iter()
            .map(|s| match s.split_once('=') {
                Some((r, p))
                    if r.strip_prefix("python3.")
                        .is_some_and(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()))
                        && !p.is_empty() =>
                {
                    Ok((r.to_string(), p.to_string()))
                }
                _ => Err(format!(
                    "--python-runtime expects python3.X=PATH (e.g. python3.12=/usr/bin/python3.12), got '{s}'"
                )),
            })
            .collect()
    }

    /// `--lambda-debug FN[=PORT]` entries: (function name, its region when FN is an ARN,
    /// port if given). Malformed entries are reported, not ignored.
    pub fn lambda_debug(&self) -> Result<Vec<DebugEntry>, String> {
        self.lambda_debug
            .iter()
            .map(|s| {
                let (name, port) = match s.split_once('=') {
                    Some((n, p)) => (n.trim(), Some(p.trim())),
                    None => (s.trim(), None),
                };
                let bad_port = || format!("--lambda-debug expects FN[=PORT] with PORT in 1-65535, got '{s}'");
                let port = port.map(|p| p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad_port)).transpose()?;
                if name.is_empty() {
                    return Err(format!("--lambda-debug expects FN[=PORT], got '{s}'"));
                }
                let f = crate::aws::arn::parse_function_ref(name)
                    .map_err(|e| format!("--lambda-debug expects FN[=PORT] with FN a function name or ARN: {e}"))?;
                if f.qualifier.is_some() {
                    return Err(format!(
                        "--lambda-debug names a function, not a version or alias (it debugs every version): '{s}'"
                    ));
                }
                Ok(DebugEntry { name: f.name, region: f.region, port })
            })
            .collect()
    }

    /// The `--lambda-debug` entry for `function` in `region`: Some(port if given) when it is
    /// debugged.
    pub fn debug_port(&self, function: &str, region: &str) -> Option<Option<u16>> {
        self.lambda_debug()
            .ok()?
            .into_iter()
            .find(|e| e.name == function && e.region.as_deref().is_none_or(|r| r == region))
            .map(|e| e.port)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(args: &[&str]) -> Config {
        let cli = Cli::try_parse_from(std::iter::once("ruststack").chain(args.iter().copied())).expect("parse");
        cli.server
    }

    #[test]
    fn lambda_debug_entries() {
        let c = cfg(&[
            "--lambda-debug",
            "a",
            "--lambda-debug",
            "b=7000,c = 7001",
            "--lambda-debug",
            "arn:aws:lambda:eu-west-1:000000000000:function:d=7002",
        ]);
        let e = |name: &str, region: Option<&str>, port| DebugEntry {
            name: name.into(),
            region: region.map(str::to_string),
            port,
        };
        assert_eq!(
            c.lambda_debug().unwrap(),
            vec![
                e("a", None, None),
                e("b", None, Some(7000)),
                e("c", None, Some(7001)),
                e("d", Some("eu-west-1"), Some(7002))
            ]
        );
        assert_eq!(c.debug_port("b", "us-east-1"), Some(Some(7000)));
        assert_eq!(c.debug_port("a", "us-east-1"), Some(None));
        assert_eq!(c.debug_port("a", "eu-west-1"), Some(None), "a name debugs the function in every region");
        assert_eq!(c.debug_port("d", "eu-west-1"), Some(Some(7002)));
        assert_eq!(c.debug_port("d", "us-east-1"), None, "an ARN debugs the function in its region only");
        assert_eq!(c.debug_port("z", "us-east-1"), None);
        for bad in ["a=", "a=0", "a=70000", "=5", "a=x", "bad name"] {
            let err = cfg(&["--lambda-debug", bad]).lambda_debug().unwrap_err();
            assert!(err.contains("--lambda-debug expects FN[=PORT]"), "{bad}: {err}");
        }
        let err = cfg(&["--lambda-debug", "a:live"]).lambda_debug().unwrap_err();
        assert!(err.contains("not a version or alias"), "{err}");
    }
}

//! RustStack Lambda: a local AWS Lambda service.
//!
//! The modules stand in layers, and every arrow points down:
//! `server → lambda, logs, s3 → engine → wire helpers`. Nothing imports a layer above it,
//! and no two modules import each other (tests/layers.rs checks both).
//!
//! - [`server`] (top): the listener on 4566. It routes each request by service (SigV4 scope,
//!   `X-Amz-Target`, Host, path) to [`lambda`], [`logs`] or [`s3`], serves the internal
//!   `/_ruststack/*` endpoints, and shuts down gracefully.
//! - [`lambda`]: the Lambda service: control plane (`api`), its data (`model`, `store`),
//!   deployment packages (`code`), Events, URLs, event source mappings (`esm`, whose pollers
//!   read [`sqs`] in-process), and the server side of attach. A request
//!   body is parsed once: the model layer (`validate`, over the tables botocore's model
//!   generates into `model_gen`) checks it, then it becomes the operation's generated serde
//!   input (`model_gen::input`) that the handler takes. Its invoke
//!   path resolves name and qualifier to an engine `EnvSpec`, calls the engine, and renders
//!   AWS's answer. [`logs`] (CloudWatch Logs) and [`s3`] (the minimal S3 functions need) sit
//!   beside it; lambda uses both (code from S3, invocation logs), neither uses lambda.
//! - [`engine`]: everything that runs code: the Runtime API endpoint (one per environment),
//!   the pool (warm environments, limits, TTL, provisioned, draining), the sandboxes
//!   (subprocess, docker, attached) and the log sink. Its input is its own plain-data
//!   `EnvSpec`; its entry point is `Engine::invoke(spec, request) -> RunOutcome`. It knows
//!   nothing of the services above it.
//! - Wire helpers (bottom): [`aws`] (errors, ARNs, ids, time formats, the atomic file
//!   write) and [`http_util`] (bodies, one HTTP/1 connection loop). They import no other layer
//!   ([`aws`] is the lowest floor: [`config`] parses function ARNs with it).
//! - [`sqs`] (beside [`logs`] and [`s3`]): the embedded Amazon SQS, both wire protocols,
//!   persisted under `<data-dir>/sqs`; lambda's event source mappings call it in-process.
//! - [`upstream`] and [`sts`], beside [`lambda`]: services RustStack does not implement go to
//!   `--upstream` (or get a 501 in their own protocol); STS answers GetCallerIdentity.
//! - Beside the stack: [`config`] (the command line and its `RUSTSTACK_*` variables), read by
//!   `main` and the services; [`cli`], the `ruststack attach` client, which speaks HTTP to a
//!   running server and imports no server types.

pub mod aws;
pub mod cli;
pub mod config;
pub mod engine;
pub mod http_util;
pub mod lambda;
pub mod logs;
pub mod s3;
pub mod server;
pub mod sqs;
pub mod sts;
pub mod upstream;

//! RustStack Lambda: a local AWS Lambda service.
//!
//! - [`config`]: the command line and its `RUSTSTACK_*` variables.
//! - [`server`]: the listener on 4566, routing by service, graceful shutdown.
//! - [`aws`]: wire helpers shared by every service (errors, ARNs, ids, time).
//! - [`lambda`]: the Lambda control plane (`api`), its data (`model`, `store`),
//!   deployment packages (`code`) and the invoke path (`invoke`).
//! - [`runtime_api`]: the server side of the Lambda Runtime API, one endpoint per environment.
//! - [`pool`]: warm environments: acquire, release, TTL reaping, limits.
//! - [`executor`]: how an environment runs: subprocess, docker, attached.
//! - [`s3`]: the minimal S3 that functions need.
//! - [`upstream`]: services RustStack does not implement: forwarded to `--upstream`, or a 501 in their protocol.
//! - [`sts`]: STS GetCallerIdentity.
//! - [`attach`]: the `ruststack attach` subcommand (client side).

pub mod attach;
pub mod aws;
pub mod config;
pub mod executor;
pub mod http_util;
pub mod lambda;
pub mod logs;
pub mod pool;
pub mod runtime_api;
pub mod s3;
pub mod server;
pub mod sts;
pub mod upstream;

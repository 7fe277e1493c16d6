//! The Docker executor (bollard): Lambda images with the environment's Runtime API endpoint.
//!
//! Not implemented yet (issue 4): starting an environment returns a clear error.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use super::{EnvSpec, LogSink};
use crate::aws::AwsError;
use crate::config::Config;
use crate::runtime_api::Endpoint;

pub struct DockerExecutor {}

pub struct Container {}

impl DockerExecutor {
    pub fn new(_cfg: &Config, _server_addr: SocketAddr) -> DockerExecutor {
        DockerExecutor {}
    }

    pub fn bind_ip(&self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    }

    pub async fn start(
        &self,
        _spec: &EnvSpec,
        _api: SocketAddr,
        _endpoint: Arc<Endpoint>,
        _log: Arc<LogSink>,
    ) -> Result<Container, AwsError> {
        Err(AwsError::new(
            http::StatusCode::BAD_GATEWAY,
            "InvalidRuntimeException",
            "the docker executor is not available in this build",
        ))
    }
}

impl Container {
    pub async fn stop(&self) {}
    pub async fn flush_logs(&self) {}
}

//! `--lambda-advertise-host`: the address containers use to reach RustStack (its Runtime API
//! listeners and `AWS_ENDPOINT_URL`), and the local address those listeners bind to.

use std::net::{IpAddr, SocketAddr, TcpListener, ToSocketAddrs};

/// Where containers reach RustStack, and where RustStack listens for them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advertise {
    /// The name or address put into `AWS_LAMBDA_RUNTIME_API` and `AWS_ENDPOINT_URL`.
    pub host: String,
    /// The local address listeners bind to: the one `host` names, or 0.0.0.0 (with a loud
    /// warning at start) when `host` is not an address of this machine (NAT, port forwards).
    pub bind: IpAddr,
}

impl Advertise {
    /// Resolves `host` and finds which local address matches it. Blocking (DNS): call it
    /// off the async workers.
    pub fn resolve(host: &str) -> Result<Advertise, String> {
        let host = host.trim();
        let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        if bare.is_empty() {
            return Err("--lambda-advertise-host is empty".into());
        }
        let ips: Vec<IpAddr> = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => (bare, 0)
                .to_socket_addrs()
                .map_err(|e| format!("--lambda-advertise-host {host}: cannot resolve: {e}"))?
                .map(|a| a.ip())
                .collect(),
        };
        if ips.iter().any(|ip| ip.is_unspecified()) {
            return Err(format!(
                "--lambda-advertise-host {host}: containers cannot connect to an unspecified address; name one they can reach"
            ));
        }
        // A local address is one we can bind; the first such wins (IPv4 first).
        let mut sorted = ips.clone();
        sorted.sort_by_key(|ip| !ip.is_ipv4());
        let local = sorted.iter().copied().find(|ip| TcpListener::bind(SocketAddr::new(*ip, 0)).is_ok());
        let bind = match local {
            Some(ip) => ip,
            None if ips.is_empty() => return Err(format!("--lambda-advertise-host {host}: resolves to no address")),
            None => {
                if sorted[0].is_ipv4() {
                    IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
                } else {
                    IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
                }
            }
        };
        Ok(Advertise { host: bare.to_string(), bind })
    }

    /// `host:port` as containers write it (IPv6 literals in brackets).
    pub fn authority(&self, port: u16) -> String {
        if self.host.parse::<std::net::Ipv6Addr>().is_ok() {
            format!("[{}]:{port}", self.host)
        } else {
            format!("{}:{port}", self.host)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_binds_itself() {
        let a = Advertise::resolve("127.0.0.1").unwrap();
        assert_eq!(a.bind, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(a.authority(9001), "127.0.0.1:9001");
    }

    #[test]
    fn foreign_address_binds_all_and_unspecified_is_refused() {
        // TEST-NET-3 is never an address of this machine.
        let a = Advertise::resolve("203.0.113.7").unwrap();
        assert!(a.bind.is_unspecified());
        assert_eq!(a.host, "203.0.113.7");
        assert!(Advertise::resolve("0.0.0.0").is_err());
        assert!(Advertise::resolve("").is_err());
        assert_eq!(Advertise::resolve("[::1]").map(|a| a.authority(1)).ok().as_deref(), Some("[::1]:1"));
    }

    #[test]
    fn a_name_binds_the_local_address_it_resolves_to() {
        // Containers get the name; the listeners bind the address (IPv4 first).
        let a = Advertise::resolve("localhost").unwrap();
        assert_eq!(a.host, "localhost");
        assert!(a.bind.is_loopback(), "{a:?}");
        assert_eq!(a.authority(9001), "localhost:9001");
    }
}

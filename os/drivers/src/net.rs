//! The `net` driver: the egress policy. It owns the network (it keeps the host network
//! namespace); a consumer's handle can only open `tcp/HOST:PORT` for the `HOST:PORT`s its
//! route allows, and gets the connected socket back. Every refusal is logged.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::OwnedFd;
use std::time::Duration;

use testudo_scheme::{Errno, Grant, NodeKind, Opened, Rights, SchemeProvider};

/// Serves `net`.
#[derive(Debug, Default)]
pub struct NetProvider;

/// A consumer's egress handle: who it is and where it may connect.
#[derive(Debug, Clone)]
pub struct Egress {
    consumer: String,
    allow: Vec<String>,
}

/// Resolves `host:port`: IP literals and `localhost` only (the sandbox has no resolver
/// configuration); anything else must be given as an address in the route.
pub fn resolve(target: &str) -> Option<SocketAddr> {
    if let Ok(addr) = target.parse::<SocketAddr>() {
        return Some(addr);
    }
    let (host, port) = target.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    if host == "localhost" {
        return Some(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    (host, port).to_socket_addrs().ok()?.next()
}

impl SchemeProvider for NetProvider {
    type Node = Egress;

    fn root(&mut self, grant: &Grant) -> Result<Egress, Errno> {
        Ok(Egress {
            consumer: grant.consumer.clone(),
            allow: grant.allow.clone(),
        })
    }

    fn open(
        &mut self,
        parent: &Egress,
        path: &str,
        _rights: Rights,
    ) -> Result<Opened<Egress>, Errno> {
        let Some(target) = path.strip_prefix(testudo_plan::interfaces::NET_TCP_PREFIX) else {
            println!(
                "denied: {} asked for {path:?} (only tcp/HOST:PORT exists)",
                parent.consumer
            );
            return Err(Errno::ENOENT);
        };
        if !parent.allow.iter().any(|allowed| allowed == target) {
            println!(
                "denied: {} may not connect to {target} (route allows: {})",
                parent.consumer,
                parent.allow.join(", ")
            );
            return Err(Errno::EACCES);
        }
        let addr = resolve(target).ok_or(Errno::EHOSTUNREACH)?;
        let stream =
            TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|error| {
                println!(
                    "connect for {} to {target} failed: {error}",
                    parent.consumer
                );
                Errno::from_raw(error.raw_os_error().unwrap_or(libc::ECONNREFUSED))
            })?;
        Ok(Opened::Raw(OwnedFd::from(stream)))
    }

    fn fstat(&mut self, _node: &Egress) -> Result<(NodeKind, u64), Errno> {
        Ok((NodeKind::Directory, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_literals_and_localhost_only_from_text() {
        assert_eq!(
            resolve("127.0.0.1:80"),
            Some(SocketAddr::from(([127, 0, 0, 1], 80)))
        );
        assert_eq!(
            resolve("localhost:8883"),
            Some(SocketAddr::from(([127, 0, 0, 1], 8883)))
        );
        assert_eq!(resolve("nonsense"), None);
    }
}

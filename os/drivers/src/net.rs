//! The `net` driver: the egress policy. It owns the network (it keeps the host network
//! namespace); a consumer's handle can only open `tcp/HOST:PORT` for the `HOST:PORT`s its
//! route allows, and gets the connected socket back. Every refusal is logged. Names are
//! resolved by [`Resolver`] from the plan's network settings (`TESTUDO_NETWORK`), after the
//! route allowed the name: the policy is by name, never by address.

use std::net::TcpStream;
use std::os::fd::OwnedFd;
use std::time::Duration;

use testudo_plan::env::{self, NetworkSettings};
use testudo_scheme::{Errno, Grant, NodeKind, Opened, Rights, SchemeProvider};

use crate::resolver::Resolver;
use crate::DriverError;

/// How long a connection attempt may take before the consumer gets `ETIMEDOUT`.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `net`.
#[derive(Debug, Clone)]
pub struct NetProvider {
    resolver: Resolver,
}

impl Default for NetProvider {
    fn default() -> NetProvider {
        NetProvider::new(Resolver::system())
    }
}

impl NetProvider {
    /// Serves `net` resolving names with `resolver`.
    pub fn new(resolver: Resolver) -> NetProvider {
        NetProvider { resolver }
    }

    /// The provider init started: the network settings in [`env::NETWORK`], or the system
    /// resolver when init passed none (a component that does not own the board's network).
    pub fn from_env() -> Result<NetProvider, DriverError> {
        let Ok(text) = std::env::var(env::NETWORK) else {
            return Ok(NetProvider::default());
        };
        let settings: NetworkSettings =
            env::from_value(&text).map_err(|source| DriverError::NetworkSettings { source })?;
        let resolver =
            Resolver::new(&settings).map_err(|source| DriverError::Resolver { source })?;
        Ok(NetProvider::new(resolver))
    }
}

/// A consumer's egress handle: who it is and where it may connect.
#[derive(Debug, Clone)]
pub struct Egress {
    consumer: String,
    allow: Vec<String>,
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
        let addr = self.resolver.resolve(target).map_err(|error| {
            println!(
                "resolving {target} for {} failed: {}",
                parent.consumer,
                testudo_error_chain::error_chain(&error)
            );
            Errno::EHOSTUNREACH
        })?;
        let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map_err(|error| {
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

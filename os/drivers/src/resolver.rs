//! How the `net` driver turns a route's `HOST:PORT` into an address, in this order: an IP
//! literal; `localhost`; the plan's `hosts` map (names no DNS server knows, such as a local
//! hub); the board's DNS servers (each an address, or `ADDRESS:PORT` for a server off port
//! 53), asked in order over UDP ([`crate::dns`]); and, only where
//! the plan configures no network (a development host, whose network the host set up), the
//! system resolver. Nothing is cached: each connection asks again, so a changed record or a
//! server that comes back is seen at the next attempt.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use testudo_plan::env::NetworkSettings;

use crate::dns::{self, DnsError};

/// The DNS port.
pub const DNS_PORT: u16 = 53;
/// How long one DNS server has to answer one query.
pub const DNS_TIMEOUT: Duration = Duration::from_secs(2);
/// How many times the list of DNS servers is tried for one name.
pub const DNS_ROUNDS: usize = 2;

/// Why a target has no address.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The target is not `HOST:PORT`.
    #[error("{target:?} is not HOST:PORT")]
    NotHostPort {
        /// The target as given.
        target: String,
    },
    /// A `hosts` entry's address is not an IP address.
    #[error("the hosts entry {name} = {address:?} is not an IP address")]
    HostsEntry {
        /// The name.
        name: String,
        /// The address as written.
        address: String,
    },
    /// A DNS server of the board is not an IP address.
    #[error("the DNS server {server:?} is not an IP address")]
    DnsServer {
        /// The server as written.
        server: String,
    },
    /// The plan configures the network but names no DNS server, and the name is not in
    /// `hosts`.
    #[error("{name} is not in the plan's hosts and the board names no DNS server")]
    NoDnsServer {
        /// The name.
        name: String,
    },
    /// The name is not one DNS can carry.
    #[error("asking for {name}")]
    Name {
        /// The name.
        name: String,
        /// Why.
        #[source]
        source: DnsError,
    },
    /// Sending the query or receiving the answer failed (no route, timeout).
    #[error("asking {server} for {name}")]
    Exchange {
        /// The name.
        name: String,
        /// The server asked.
        server: SocketAddr,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// The server's answer cannot be used.
    #[error("{server}'s answer for {name}")]
    Answer {
        /// The name.
        name: String,
        /// The server.
        server: SocketAddr,
        /// What is wrong with it.
        #[source]
        source: DnsError,
    },
    /// The system resolver failed or found nothing.
    #[error("resolving {name} with the system resolver")]
    System {
        /// The name.
        name: String,
        /// The resolver's error.
        #[source]
        source: std::io::Error,
    },
}

/// Resolves the targets of egress routes (see the module documentation for the order).
#[derive(Debug, Clone, Default)]
pub struct Resolver {
    hosts: BTreeMap<String, IpAddr>,
    servers: Vec<SocketAddr>,
    /// Whether names DNS servers cannot answer go to the system resolver: only where the
    /// plan leaves the network to the host.
    system_fallback: bool,
}

impl Resolver {
    /// The system resolver only (no plan settings: a host's own network).
    pub fn system() -> Resolver {
        Resolver {
            system_fallback: true,
            ..Resolver::default()
        }
    }

    /// The resolver `settings` describe: their `hosts`, and the board's DNS servers when the
    /// plan configures the board's network (otherwise the system resolver after `hosts`).
    pub fn new(settings: &NetworkSettings) -> Result<Resolver, ResolveError> {
        let hosts = settings
            .hosts
            .iter()
            .map(|(name, address)| {
                let ip = address.parse().map_err(|_| ResolveError::HostsEntry {
                    name: name.clone(),
                    address: address.clone(),
                })?;
                Ok((name.to_ascii_lowercase(), ip))
            })
            .collect::<Result<_, ResolveError>>()?;
        let servers = match &settings.interface {
            Some(interface) => interface
                .dns
                .iter()
                .map(|server| dns_server(server))
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        Ok(Resolver {
            hosts,
            servers,
            system_fallback: settings.interface.is_none(),
        })
    }

    /// The same resolver asking `servers` (tests: a DNS server on a private port).
    pub fn with_servers(mut self, servers: Vec<SocketAddr>) -> Resolver {
        self.servers = servers;
        self
    }

    /// The address of `target` (`HOST:PORT`).
    pub fn resolve(&self, target: &str) -> Result<SocketAddr, ResolveError> {
        if let Ok(address) = target.parse::<SocketAddr>() {
            return Ok(address);
        }
        let not_host_port = || ResolveError::NotHostPort {
            target: target.to_owned(),
        };
        let (host, port) = target.rsplit_once(':').ok_or_else(not_host_port)?;
        let port: u16 = port.parse().map_err(|_| not_host_port())?;
        if host.is_empty() {
            return Err(not_host_port());
        }
        let name = host.to_ascii_lowercase();
        if name == "localhost" {
            return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
        }
        if let Some(ip) = self.hosts.get(&name) {
            return Ok(SocketAddr::new(*ip, port));
        }
        if !self.servers.is_empty() {
            return self
                .ask_servers(&name)
                .map(|ip| SocketAddr::new(IpAddr::V4(ip), port));
        }
        if self.system_fallback {
            return system_resolve(&name, port);
        }
        Err(ResolveError::NoDnsServer { name })
    }

    /// Asks each server in turn, [`DNS_ROUNDS`] times over; the last error if none answers.
    fn ask_servers(&self, name: &str) -> Result<Ipv4Addr, ResolveError> {
        let mut last = None;
        for _ in 0..DNS_ROUNDS {
            for server in &self.servers {
                match ask(*server, name) {
                    Ok(ip) => return Ok(ip),
                    // A name DNS cannot carry fails the same way everywhere.
                    Err(error @ ResolveError::Name { .. }) => return Err(error),
                    Err(error) => last = Some(error),
                }
            }
        }
        Err(last.unwrap_or_else(|| ResolveError::NoDnsServer {
            name: name.to_owned(),
        }))
    }
}

/// A DNS server: an IP address (port 53) or `ADDRESS:PORT` (a server on another port).
fn dns_server(server: &str) -> Result<SocketAddr, ResolveError> {
    server
        .parse::<SocketAddr>()
        .or_else(|_| {
            server
                .parse::<IpAddr>()
                .map(|ip| SocketAddr::new(ip, DNS_PORT))
        })
        .map_err(|_| ResolveError::DnsServer {
            server: server.to_owned(),
        })
}

fn system_resolve(name: &str, port: u16) -> Result<SocketAddr, ResolveError> {
    let system = |source| ResolveError::System {
        name: name.to_owned(),
        source,
    };
    (name, port)
        .to_socket_addrs()
        .map_err(system)?
        .next()
        .ok_or_else(|| system(std::io::ErrorKind::NotFound.into()))
}

/// A query id nobody on the path can predict (a spoofed answer must guess it).
fn query_id() -> u16 {
    let mut id = [0u8; 2];
    // SAFETY: getrandom writes at most `id.len()` bytes into the buffer it is given.
    let written = unsafe { libc::getrandom(id.as_mut_ptr().cast(), id.len(), 0) };
    if written != 2 {
        // No entropy source: the answer's source address and question are still checked.
        return std::process::id() as u16;
    }
    u16::from_ne_bytes(id)
}

/// A UDP socket connected to one DNS server, used with `write`, `poll` and `read` only: the
/// `net_driver` seccomp role then needs no syscall for DNS beyond the ones it has for TCP
/// (`socket`, `connect`); a connected socket also drops datagrams from any other sender.
struct DnsSocket {
    file: std::fs::File,
}

impl DnsSocket {
    fn connect(server: SocketAddr) -> std::io::Result<DnsSocket> {
        let family = match server {
            SocketAddr::V4(_) => libc::AF_INET,
            SocketAddr::V6(_) => libc::AF_INET6,
        };
        // SAFETY: socket(2) with constant arguments; the result is checked.
        let fd = unsafe { libc::socket(family, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor nobody else owns.
        let socket = UdpSocket::from(unsafe { OwnedFd::from_raw_fd(fd) });
        socket.connect(server)?;
        Ok(DnsSocket {
            file: std::fs::File::from(OwnedFd::from(socket)),
        })
    }

    fn send(&self, query: &[u8]) -> std::io::Result<()> {
        (&self.file).write_all(query)
    }

    /// The next datagram, or `TimedOut` once `deadline` passed.
    fn receive(&self, buffer: &mut [u8], deadline: Instant) -> std::io::Result<usize> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        let mut poll = libc::pollfd {
            fd: self.file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let millis = libc::c_int::try_from(left.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd for the duration of the call.
        let ready = unsafe { libc::poll(&mut poll, 1, millis) };
        match ready {
            n if n < 0 => Err(std::io::Error::last_os_error()),
            0 => Err(std::io::ErrorKind::TimedOut.into()),
            _ => (&self.file).read(buffer),
        }
    }
}

/// One query to one server: the first IPv4 address of `name`.
fn ask(server: SocketAddr, name: &str) -> Result<Ipv4Addr, ResolveError> {
    let query = dns::query(query_id(), name).map_err(|source| ResolveError::Name {
        name: name.to_owned(),
        source,
    })?;
    let exchange = |source| ResolveError::Exchange {
        name: name.to_owned(),
        server,
        source,
    };
    let socket = DnsSocket::connect(server).map_err(exchange)?;
    socket.send(&query).map_err(exchange)?;
    let deadline = Instant::now() + DNS_TIMEOUT;
    let mut answer = [0u8; dns::MAX_MESSAGE];
    loop {
        let len = socket.receive(&mut answer, deadline).map_err(exchange)?;
        match dns::parse_answer(&query, &answer[..len]) {
            // A stray or spoofed datagram: keep waiting for the real answer.
            Err(DnsError::NotTheAnswer) => continue,
            Ok(addresses) => return Ok(addresses[0]),
            Err(source) => {
                return Err(ResolveError::Answer {
                    name: name.to_owned(),
                    server,
                    source,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use testudo_plan::BoardNetwork;

    fn settings(dns: &[&str], hosts: &[(&str, &str)]) -> NetworkSettings {
        NetworkSettings {
            interface: Some(BoardNetwork {
                interface: "eth0".into(),
                address: "10.0.2.15/24".into(),
                gateway: Some("10.0.2.2".into()),
                dns: dns.iter().map(|s| s.to_string()).collect(),
            }),
            hosts: hosts
                .iter()
                .map(|(n, a)| (n.to_string(), a.to_string()))
                .collect(),
        }
    }

    #[test]
    fn literals_localhost_and_hosts_come_before_dns() {
        let resolver = Resolver::new(&settings(&[], &[("Hub.Testudo.Dev", "10.0.2.2")])).unwrap();
        assert_eq!(
            resolver.resolve("127.0.0.1:80").unwrap(),
            SocketAddr::from(([127, 0, 0, 1], 80))
        );
        assert_eq!(
            resolver.resolve("[::1]:443").unwrap(),
            "[::1]:443".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            resolver.resolve("localhost:8883").unwrap(),
            SocketAddr::from(([127, 0, 0, 1], 8883))
        );
        assert_eq!(
            resolver.resolve("hub.testudo.dev:8883").unwrap(),
            SocketAddr::from(([10, 0, 2, 2], 8883))
        );
        assert!(matches!(
            resolver.resolve("elsewhere.test:443"),
            Err(ResolveError::NoDnsServer { .. })
        ));
        for target in ["nonsense", "host:port", ":443", "host:70000"] {
            assert!(
                matches!(
                    resolver.resolve(target),
                    Err(ResolveError::NotHostPort { .. })
                ),
                "{target}"
            );
        }
    }

    #[test]
    fn settings_that_are_not_addresses_are_refused() {
        assert!(matches!(
            Resolver::new(&settings(&[], &[("hub", "not-an-ip")])),
            Err(ResolveError::HostsEntry { .. })
        ));
        assert!(matches!(
            Resolver::new(&settings(&["dns.example"], &[])),
            Err(ResolveError::DnsServer { .. })
        ));
    }

    #[test]
    fn a_silent_server_is_a_timeout_after_every_round() {
        // A bound socket that never answers.
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let resolver = Resolver::default().with_servers(vec![silent.local_addr().unwrap()]);
        let error = resolver.resolve("hub.example.test:443").unwrap_err();
        let ResolveError::Exchange { source, .. } = error else {
            panic!("{error:?}");
        };
        assert_eq!(source.kind(), std::io::ErrorKind::TimedOut);
    }
}

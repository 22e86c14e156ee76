//! Making the hub connection: a [`Dialer`] makes the TCP connection (inside a testudo
//! sandbox: the `net` route, [`NetRouteDialer`]) or the agent dials itself, and the agent runs
//! TLS over it, checked against the hub's name. The MQTT loop ([`crate::mqtt_loop`]) runs
//! over the resulting stream, so MQTT runs end to end over TLS with the hub.

use std::net::TcpStream;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rumqttc::tokio_rustls::TlsConnector;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use testudo_scheme::{Handle, Rights};

use crate::error::{AgentError, Result};
use crate::mqtt_loop::{Connector, Stream};

/// Makes a TCP connection to `host:port`. Blocking: the agent calls it on its runtime thread
/// (the agent component has no other thread for it; its apps are served on their own), so a
/// dialer answers as soon as the connection is made or refused.
pub trait Dialer: Send + Sync + std::fmt::Debug {
    /// Returns the connected stream.
    fn dial(
        &self,
        host: &str,
        port: u16,
    ) -> std::result::Result<TcpStream, Box<dyn std::error::Error + Send + Sync>>;
}

/// Dials through a `net` route: `open_raw("tcp/HOST:PORT")` on the handle; the `net` driver
/// connects only if the route allows `HOST:PORT` and hands back the connected socket.
#[derive(Debug)]
pub struct NetRouteDialer {
    net: Handle,
}

impl NetRouteDialer {
    /// Dials through `net` (the component's `net` handle).
    pub fn new(net: Handle) -> Self {
        Self { net }
    }
}

impl Dialer for NetRouteDialer {
    fn dial(
        &self,
        host: &str,
        port: u16,
    ) -> std::result::Result<TcpStream, Box<dyn std::error::Error + Send + Sync>> {
        let fd: OwnedFd = self.net.open_raw(
            &testudo_plan::interfaces::net_tcp_path(&format!("{host}:{port}")),
            Rights::ReadWrite,
        )?;
        Ok(TcpStream::from(fd))
    }
}

/// `O_NONBLOCK` with `fcntl` (std's `set_nonblocking` uses `ioctl(FIONBIO)`, which the
/// agent's seccomp policy does not allow: `ioctl` is too broad).
fn set_nonblocking(stream: &TcpStream) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = stream.as_raw_fd();
    // SAFETY: F_GETFL/F_SETFL on an fd owned by `stream`, which outlives both calls.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Longest TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the last connection attempt failed, kept for the agent to report (the MQTT loop only
/// sees that connecting failed).
pub type DialFailure = Arc<Mutex<Option<AgentError>>>;

/// Takes the failure recorded in `failure`, if any (reported once).
pub fn take_failure(failure: &DialFailure) -> Option<AgentError> {
    failure
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
}

/// The [`Connector`] for one connection to `host:port`: dialed by `dialer` (or by the agent
/// when `None`), then TLS with `tls` checked against `host`. A failure is recorded in
/// `failure`.
pub fn tls_connector(
    dialer: Option<Arc<dyn Dialer>>,
    host: &str,
    port: u16,
    tls: Arc<ClientConfig>,
    failure: DialFailure,
) -> Connector {
    let host = host.to_owned();
    Box::pin(async move {
        match connect_tls(dialer, &host, port, tls).await {
            Ok(stream) => Ok(Box::new(stream) as Box<dyn Stream>),
            Err(error) => {
                let summary = std::io::Error::other(error.to_string());
                *failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(error);
                Err(summary)
            }
        }
    })
}

pub(crate) async fn connect_tls(
    dialer: Option<Arc<dyn Dialer>>,
    host: &str,
    port: u16,
    tls: Arc<ClientConfig>,
) -> Result<rumqttc::tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let target = format!("{host}:{port}");
    let dial_error = |source: Box<dyn std::error::Error + Send + Sync>| AgentError::Dial {
        target: target.clone(),
        source,
    };
    let stream = match dialer {
        Some(dialer) => {
            let stream = dialer.dial(host, port).map_err(dial_error)?;
            set_nonblocking(&stream).map_err(|e| dial_error(Box::new(e)))?;
            tokio::net::TcpStream::from_std(stream).map_err(|e| dial_error(Box::new(e)))?
        }
        None => tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| dial_error(Box::new(e)))?,
    };
    let handshake_error = |source| AgentError::TlsHandshake {
        host: host.to_owned(),
        source,
    };
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| handshake_error(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)))?;
    let connector = TlsConnector::from(tls);
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name, stream)).await {
        Ok(Ok(tls)) => Ok(tls),
        Ok(Err(e)) => Err(handshake_error(e)),
        Err(_) => Err(handshake_error(std::io::Error::from(
            std::io::ErrorKind::TimedOut,
        ))),
    }
}

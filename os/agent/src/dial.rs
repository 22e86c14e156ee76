//! Dialing the hub through someone else's connection: a [`Dialer`] makes the TCP connection
//! (inside a testudo sandbox: the `net` route, [`NetRouteDialer`]) and the agent runs TLS over
//! it itself.
//!
//! The MQTT client (rumqttc 0.25) can only dial by itself, so [`Bridge`] gives it a
//! one-connection Unix socket in the abstract namespace (private to the agent's network
//! namespace; no file is created) and, for the connection it accepts, dials through the
//! [`Dialer`], performs the TLS handshake against the hub's name and relays bytes. MQTT
//! still runs end to end over TLS with the hub; only the plaintext hop between the client and
//! the bridge stays inside the process.

use std::net::TcpStream;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rumqttc::tokio_rustls::TlsConnector;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use testudo_scheme::{Handle, Rights};
use tokio::net::UnixListener;

use crate::error::{AgentError, Result};

/// Makes a TCP connection to `host:port`. Blocking; called on a blocking thread.
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
        let fd: OwnedFd = self
            .net
            .open_raw(&format!("tcp/{host}:{port}"), Rights::ReadWrite)?;
        Ok(TcpStream::from(fd))
    }
}

/// How long the bridge waits for the MQTT client to connect to it.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A one-connection local endpoint for the MQTT client that reaches the hub through a
/// [`Dialer`]. Why a dial failed is kept for the agent to report (the MQTT client only sees
/// the bridge close).
#[derive(Debug)]
pub struct Bridge {
    /// The abstract socket name (starts with a NUL byte), to give the MQTT client.
    pub address: String,
    failure: Arc<Mutex<Option<AgentError>>>,
}

impl Bridge {
    /// Binds the endpoint and starts relaying the first connection to `host:port` (dialed by
    /// `dialer`, TLS with `tls` checked against `host`). Must be called on a tokio runtime.
    pub fn start(
        dialer: Arc<dyn Dialer>,
        host: &str,
        port: u16,
        tls: Arc<ClientConfig>,
    ) -> Result<Self> {
        let target = format!("{host}:{port}");
        // Abstract names are private to the network namespace; 128 random bits keep two
        // agents sharing one (outside a sandbox) apart.
        let address = format!(
            "\0testudo-agent-{:016x}{:016x}",
            fastrand::u64(..),
            fastrand::u64(..)
        );
        let listener = UnixListener::bind(&address).map_err(|source| AgentError::Dial {
            target: target.clone(),
            source: Box::new(source),
        })?;
        let failure = Arc::new(Mutex::new(None));
        let relay = Relay {
            dialer,
            host: host.to_owned(),
            port,
            tls,
            failure: failure.clone(),
        };
        tokio::spawn(relay.run(listener));
        Ok(Self { address, failure })
    }

    /// Why the last dial or handshake failed, if it did (taken: reported once).
    pub fn take_failure(&self) -> Option<AgentError> {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
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

struct Relay {
    dialer: Arc<dyn Dialer>,
    host: String,
    port: u16,
    tls: Arc<ClientConfig>,
    failure: Arc<Mutex<Option<AgentError>>>,
}

impl Relay {
    async fn run(self, listener: UnixListener) {
        let Ok(Ok((mut local, _))) = tokio::time::timeout(ACCEPT_TIMEOUT, listener.accept()).await
        else {
            return;
        };
        // One connection per bridge: nobody else can connect once it is accepted.
        drop(listener);
        let mut remote = match self.connect().await {
            Ok(remote) => remote,
            Err(error) => {
                *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(error);
                return; // dropping `local` ends the MQTT client's connection attempt
            }
        };
        // Either side closing ends the relay; errors mean the connection is gone, which the
        // MQTT client notices and reports.
        let _ = tokio::io::copy_bidirectional(&mut local, &mut remote).await;
    }

    async fn connect(
        &self,
    ) -> Result<rumqttc::tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let target = format!("{}:{}", self.host, self.port);
        let dial_error = |source: Box<dyn std::error::Error + Send + Sync>| AgentError::Dial {
            target: target.clone(),
            source,
        };
        let (dialer, host, port) = (self.dialer.clone(), self.host.clone(), self.port);
        let stream = tokio::task::spawn_blocking(move || dialer.dial(&host, port))
            .await
            .map_err(|join| dial_error(Box::new(join)))?
            .map_err(dial_error)?;
        set_nonblocking(&stream).map_err(|e| dial_error(Box::new(e)))?;
        let stream =
            tokio::net::TcpStream::from_std(stream).map_err(|e| dial_error(Box::new(e)))?;
        let handshake_error = |source| AgentError::TlsHandshake {
            host: self.host.clone(),
            source,
        };
        let name = ServerName::try_from(self.host.clone()).map_err(|e| {
            handshake_error(std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
        })?;
        let connector = TlsConnector::from(self.tls.clone());
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name, stream)).await {
            Ok(Ok(tls)) => Ok(tls),
            Ok(Err(e)) => Err(handshake_error(e)),
            Err(_) => Err(handshake_error(std::io::Error::from(
                std::io::ErrorKind::TimedOut,
            ))),
        }
    }
}

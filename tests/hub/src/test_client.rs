//! A minimal MQTT/TLS device client for tests and benchmarks of the emulator itself (a test
//! peer, not a product client: the real device agent lives in `os/agent`).

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::clock;
use crate::mqtt::{Connect, Packet, Publish};
use crate::session::Framed;

/// A connected test device.
pub struct TestDevice {
    conn: Framed<TlsStream<TcpStream>>,
    next_pkid: u16,
    /// Publishes received while waiting for something else.
    pub inbox: Vec<Publish>,
}

impl std::fmt::Debug for TestDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDevice").finish()
    }
}

fn other(error: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(error.to_string())
}

/// Parameters of a test connection.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Emulator MQTT address.
    pub addr: std::net::SocketAddr,
    /// Host name for TLS (SNI and certificate check).
    pub host: String,
    /// CA PEM to trust.
    pub ca_pem: String,
    /// MQTT client id.
    pub client_id: String,
    /// User name.
    pub username: String,
    /// Password (SAS token).
    pub password: Option<String>,
    /// Client certificate chain and key (PEM), for X.509 devices.
    pub client_cert: Option<(String, String)>,
    /// Keep-alive seconds.
    pub keep_alive: u16,
}

impl ConnectOptions {
    /// Options for a SAS device of the hub at `addr`, token valid for `ttl`.
    pub fn sas_device(
        addr: std::net::SocketAddr,
        host: &str,
        ca_pem: &str,
        device_id: &str,
        key: &str,
        ttl: Duration,
    ) -> Self {
        let resource = format!("{host}/devices/{device_id}");
        let token = crate::sas::generate(&resource, key, None, clock::unix_now() + ttl.as_secs());
        ConnectOptions {
            addr,
            host: host.to_owned(),
            ca_pem: ca_pem.to_owned(),
            client_id: device_id.to_owned(),
            username: format!("{host}/{device_id}/?api-version=2021-04-12"),
            password: token,
            client_cert: None,
            keep_alive: 60,
        }
    }
}

impl TestDevice {
    /// Connects; returns the client and the CONNACK return code.
    pub async fn connect(options: &ConnectOptions) -> std::io::Result<(TestDevice, u8)> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut options.ca_pem.as_bytes()) {
            roots.add(cert?).map_err(other)?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(other)?
            .with_root_certificates(roots);
        let config = match &options.client_cert {
            Some((chain, key)) => {
                let chain: Vec<CertificateDer<'static>> =
                    rustls_pemfile::certs(&mut chain.as_bytes()).collect::<Result<_, _>>()?;
                let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key.as_bytes())?
                    .ok_or_else(|| other("no private key in PEM"))?;
                builder.with_client_auth_cert(chain, key).map_err(other)?
            }
            None => builder.with_no_client_auth(),
        };
        let connector = TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(options.addr).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from(options.host.clone()).map_err(other)?;
        let tls = connector.connect(name, tcp).await?;
        let mut conn = Framed::new(tls);
        conn.write(&Packet::Connect(Connect {
            client_id: options.client_id.clone(),
            username: Some(options.username.clone()),
            password: options.password.clone().map(String::into_bytes),
            keep_alive: options.keep_alive,
            clean_session: true,
            will_topic: None,
        }))
        .await
        .map_err(|e| other(format!("{e:?}")))?;
        let mut device = TestDevice {
            conn,
            next_pkid: 1,
            inbox: Vec::new(),
        };
        match device.read().await? {
            Packet::ConnAck { code, .. } => Ok((device, code)),
            other_packet => Err(other(format!("expected CONNACK, got {other_packet:?}"))),
        }
    }

    async fn read(&mut self) -> std::io::Result<Packet> {
        self.conn.read_packet().await.map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::ConnectionAborted, format!("{e:?}"))
        })
    }

    fn pkid(&mut self) -> u16 {
        let pkid = self.next_pkid;
        self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
        pkid
    }

    /// Subscribes; returns the SUBACK codes.
    pub async fn subscribe(&mut self, filters: &[&str]) -> std::io::Result<Vec<u8>> {
        let pkid = self.pkid();
        self.conn
            .write(&Packet::Subscribe {
                pkid,
                filters: filters.iter().map(|f| ((*f).to_owned(), 1)).collect(),
            })
            .await
            .map_err(|e| other(format!("{e:?}")))?;
        loop {
            match self.read().await? {
                Packet::SubAck { pkid: got, codes } if got == pkid => return Ok(codes),
                Packet::Publish(publish) => self.inbox.push(publish),
                _ => {}
            }
        }
    }

    /// Publishes at QoS 1 and waits for the PUBACK (queueing publishes that arrive meanwhile).
    pub async fn publish(&mut self, topic: &str, payload: &[u8]) -> std::io::Result<()> {
        let pkid = self.pkid();
        self.conn
            .write(&Packet::Publish(Publish {
                topic: topic.to_owned(),
                payload: payload.to_vec(),
                qos: 1,
                retain: false,
                dup: false,
                pkid,
            }))
            .await
            .map_err(|e| other(format!("{e:?}")))?;
        loop {
            match self.read().await? {
                Packet::PubAck { pkid: got } if got == pkid => return Ok(()),
                Packet::Publish(publish) => self.inbox.push(publish),
                _ => {}
            }
        }
    }

    /// The next publish whose topic starts with `prefix` (from the inbox first).
    pub async fn next_publish(&mut self, prefix: &str) -> std::io::Result<Publish> {
        if let Some(index) = self.inbox.iter().position(|p| p.topic.starts_with(prefix)) {
            return Ok(self.inbox.remove(index));
        }
        loop {
            if let Packet::Publish(publish) = self.read().await? {
                if publish.topic.starts_with(prefix) {
                    return Ok(publish);
                }
                self.inbox.push(publish);
            }
        }
    }

    /// Sends raw bytes (for malformed-input tests).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.conn.write_raw(bytes).await
    }

    /// Waits until the server closes the connection; returns false if it is still open
    /// after `timeout`.
    pub async fn closed_within(&mut self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, async {
            loop {
                if self.read().await.is_err() {
                    return;
                }
            }
        })
        .await
        .is_ok()
    }

    /// Sends DISCONNECT and closes.
    pub async fn disconnect(mut self) {
        let _ = self.conn.write(&Packet::Disconnect).await;
        self.conn.shutdown().await;
    }
}

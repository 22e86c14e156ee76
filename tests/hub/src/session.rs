//! One device connection on the MQTT endpoint: TLS, CONNECT authentication, then the
//! IoT Hub topic protocol (twin GET/PATCH, desired pushes, direct methods, telemetry) or,
//! for DPS user names, the provisioning protocol ([`crate::dps`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::clock;
use crate::error::{HubError, PacketError};
use crate::hub::{to_json, AuthOutcome, Hub, SessionCommand};
use crate::mqtt::{self, Connect, Packet, Publish};
use crate::sas::url_decode;
use crate::x509_ca::PresentedCertificate;

/// Time allowed for the TLS handshake and the CONNECT packet.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// IoT Hub's limit on subscriptions per connection.
const MAX_SUBSCRIPTIONS: usize = 5;

/// Why a connection ended early.
#[derive(Debug)]
pub enum ConnectionEnd {
    /// The stream failed or closed.
    Io,
    /// The peer violated MQTT or IoT Hub rules.
    Protocol,
    /// Keep-alive or handshake timeout.
    Timeout,
}

impl From<std::io::Error> for ConnectionEnd {
    fn from(_: std::io::Error) -> Self {
        ConnectionEnd::Io
    }
}

impl From<PacketError> for ConnectionEnd {
    fn from(_: PacketError) -> Self {
        ConnectionEnd::Protocol
    }
}

/// Bytes reserved for one read: small, since an idle connection keeps them while it waits (a
/// larger packet grows the buffer, doubling, over several reads).
const READ_CHUNK: usize = 64;

/// A framed MQTT connection over any byte stream (used by the server and the test client).
pub struct Framed<S> {
    stream: S,
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Framed<S> {
    /// Wraps a stream.
    pub fn new(stream: S) -> Self {
        Framed {
            stream,
            buf: Vec::new(),
        }
    }

    /// The next complete packet, if already buffered.
    pub fn buffered_packet(&mut self) -> Result<Option<Packet>, PacketError> {
        match mqtt::decode(&self.buf, mqtt::MAX_PACKET_SIZE)? {
            Some((packet, used)) => {
                self.buf.drain(..used);
                if self.buf.is_empty() {
                    self.buf = Vec::new();
                }
                Ok(Some(packet))
            }
            None => Ok(None),
        }
    }

    /// Reads more bytes (cancel-safe). Returns false at end of stream.
    ///
    /// Reads straight into the packet buffer: a read buffer inside this future would be part
    /// of every connection task's state, idle or not (it was 4 KiB of the ~20 KiB a
    /// connection cost).
    pub async fn fill(&mut self) -> Result<bool, ConnectionEnd> {
        self.buf.reserve(READ_CHUNK);
        let n = self.stream.read_buf(&mut self.buf).await?;
        Ok(n > 0)
    }

    /// Reads one packet.
    pub async fn read_packet(&mut self) -> Result<Packet, ConnectionEnd> {
        loop {
            if let Some(packet) = self.buffered_packet()? {
                return Ok(packet);
            }
            if !self.fill().await? {
                return Err(ConnectionEnd::Io);
            }
        }
    }

    /// Writes one packet.
    pub async fn write(&mut self, packet: &Packet) -> Result<(), ConnectionEnd> {
        let mut bytes = Vec::new();
        mqtt::encode(packet, &mut bytes);
        self.stream.write_all(&bytes).await?;
        self.stream.flush().await?;
        Ok(())
    }

    /// Writes raw bytes.
    pub async fn write_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// Writes a QoS 0 publish.
    pub async fn publish(&mut self, topic: String, payload: Vec<u8>) -> Result<(), ConnectionEnd> {
        self.write(&Packet::Publish(Publish {
            topic,
            payload,
            qos: 0,
            retain: false,
            dup: false,
            pkid: 0,
        }))
        .await
    }

    /// Closes the stream.
    pub async fn shutdown(&mut self) {
        let _ = self.stream.shutdown().await;
    }
}

/// Sleeps for the configured reply delay, if any.
pub(crate) async fn fault_delay(hub: &Hub) {
    let delay = hub.faults().delay_ms;
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
}

/// Serves one accepted TCP connection until it ends or the emulator shuts down.
pub async fn serve_connection(
    hub: Arc<Hub>,
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    shutdown: watch::Receiver<bool>,
) {
    let _ = tcp.set_nodelay(true);
    let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await else {
        return;
    };
    let client = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(PresentedCertificate::from_chain);
    let mut conn = Framed::new(tls);
    let connect = match tokio::time::timeout(HANDSHAKE_TIMEOUT, conn.read_packet()).await {
        Ok(Ok(Packet::Connect(connect))) => connect,
        _ => return,
    };
    let username = connect.username.clone().unwrap_or_default();
    if username.contains("/registrations/") {
        crate::dps::serve(&hub, conn, &connect, client.as_ref(), shutdown).await;
    } else {
        let _ = device_session(&hub, conn, &connect, client.as_ref(), shutdown).await;
    }
}

async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(conn: &mut Framed<S>, code: u8) {
    let _ = conn
        .write(&Packet::ConnAck {
            session_present: false,
            code,
        })
        .await;
    conn.shutdown().await;
}

/// Splits `a/b/?k=v&k2=v2` into (`a/b/`, {k: v, k2: v2}) with values URL-decoded.
pub(crate) fn split_query(topic: &str) -> (&str, BTreeMap<String, String>) {
    let (path, query) = topic.split_once('?').unwrap_or((topic, ""));
    let params = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (
                url_decode(key).unwrap_or_else(|| key.to_owned()),
                url_decode(value).unwrap_or_else(|| value.to_owned()),
            )
        })
        .collect();
    (path, params)
}

async fn device_session<S: AsyncRead + AsyncWrite + Unpin>(
    hub: &Arc<Hub>,
    mut conn: Framed<S>,
    connect: &Connect,
    client: Option<&PresentedCertificate>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ConnectionEnd> {
    fault_delay(hub).await;
    let id = connect.client_id.as_str();
    // User name: {host}/{deviceId}/?api-version=...
    let username = connect.username.as_deref().unwrap_or_default();
    let mut parts = username.splitn(3, '/');
    let (user_host, user_device) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let host = hub.config().host_name;
    let host_ok = user_host.eq_ignore_ascii_case(&host)
        || user_host
            .to_ascii_lowercase()
            .starts_with(&format!("{}:", host.to_ascii_lowercase()));
    if id.is_empty() || user_device != id || !host_ok {
        refuse(&mut conn, 4).await;
        return Ok(());
    }
    if hub.faults().throttle {
        refuse(&mut conn, 3).await;
        return Ok(());
    }
    let expiry = match hub.authenticate_device(id, connect.password.as_deref(), client) {
        AuthOutcome::Accepted { expiry } => expiry,
        AuthOutcome::BadCredentials => {
            refuse(&mut conn, 4).await;
            return Ok(());
        }
        AuthOutcome::NotAuthorized => {
            refuse(&mut conn, 5).await;
            return Ok(());
        }
    };
    let (conn_id, mut commands) = hub.open_session(id);
    let result = async {
        conn.write(&Packet::ConnAck {
            session_present: false,
            code: 0,
        })
        .await?;
        // Ended at the token's expiry to the millisecond (not to the whole second: a token
        // made at T.9 expires 1.1 s later, not 2 s, whatever its nominal lifetime).
        let token_deadline = expiry.map(|se| Instant::now() + clock::until_unix(se));
        let keep_alive = (connect.keep_alive > 0)
            .then(|| Duration::from_millis(u64::from(connect.keep_alive) * 1500));
        let mut last_seen = Instant::now();
        let mut session = DeviceSession {
            hub,
            id,
            conn_id,
            subscriptions: Vec::new(),
        };
        loop {
            while let Some(packet) = conn.buffered_packet()? {
                last_seen = Instant::now();
                // Boxed: the handling of one packet (twin reads and writes, JSON) is a large
                // future; inline, every idle connection's task would be that large too.
                if !Box::pin(session.handle(&mut conn, packet)).await? {
                    return Ok(());
                }
            }
            let idle_deadline = keep_alive.map(|ka| last_seen + ka);
            tokio::select! {
                more = conn.fill() => {
                    if !more? {
                        return Ok(());
                    }
                }
                command = commands.recv() => match command {
                    Some(SessionCommand::Publish { topic, payload }) => {
                        if session.wants(&topic) {
                            fault_delay(hub).await;
                            conn.publish(topic, payload).await?;
                        }
                    }
                    Some(SessionCommand::Close) | None => return Ok(()),
                },
                () = sleep_until_opt(token_deadline) => return Ok(()),
                () = sleep_until_opt(idle_deadline) => return Err(ConnectionEnd::Timeout),
                _ = shutdown.changed() => return Ok(()),
            }
        }
    }
    .await;
    hub.close_session(id, conn_id);
    conn.shutdown().await;
    result
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

struct DeviceSession<'a> {
    hub: &'a Arc<Hub>,
    id: &'a str,
    conn_id: u64,
    subscriptions: Vec<String>,
}

impl DeviceSession<'_> {
    fn allowed_filters(&self) -> [String; 4] {
        [
            "$iothub/twin/res/#".to_owned(),
            "$iothub/twin/PATCH/properties/desired/#".to_owned(),
            "$iothub/methods/POST/#".to_owned(),
            format!("devices/{}/messages/devicebound/#", self.id),
        ]
    }

    fn sync_method_subscription(&self) {
        let subscribed = self.wants("$iothub/methods/POST/");
        self.hub
            .set_methods_subscribed(self.id, self.conn_id, subscribed);
    }

    /// Sends a response, as IoT Hub does, only if the device subscribed to its topic.
    async fn respond<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        conn: &mut Framed<S>,
        topic: String,
        body: Vec<u8>,
    ) -> Result<(), ConnectionEnd> {
        if self.wants(&topic) {
            conn.publish(topic, body).await?;
        }
        Ok(())
    }

    /// Whether a hub-originated publish matches a subscription.
    fn wants(&self, topic: &str) -> bool {
        self.subscriptions.iter().any(|filter| {
            filter
                .strip_suffix('#')
                .is_some_and(|prefix| topic.starts_with(prefix))
        })
    }

    /// Handles one packet; `Ok(false)` ends the session cleanly.
    async fn handle<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut Framed<S>,
        packet: Packet,
    ) -> Result<bool, ConnectionEnd> {
        match packet {
            Packet::Subscribe { pkid, filters } => {
                let allowed = self.allowed_filters();
                let codes = filters
                    .into_iter()
                    .map(|(filter, qos)| {
                        let known = allowed.contains(&filter);
                        let room = self.subscriptions.contains(&filter)
                            || self.subscriptions.len() < MAX_SUBSCRIPTIONS;
                        if known && room {
                            if !self.subscriptions.contains(&filter) {
                                self.subscriptions.push(filter);
                            }
                            qos.min(1)
                        } else {
                            0x80
                        }
                    })
                    .collect();
                self.sync_method_subscription();
                fault_delay(self.hub).await;
                conn.write(&Packet::SubAck { pkid, codes }).await?;
            }
            Packet::Unsubscribe { pkid, filters } => {
                self.subscriptions.retain(|s| !filters.contains(s));
                self.sync_method_subscription();
                conn.write(&Packet::UnsubAck { pkid }).await?;
            }
            Packet::PingReq => conn.write(&Packet::PingResp).await?,
            Packet::Disconnect => return Ok(false),
            Packet::PubAck { .. } => {}
            Packet::Publish(publish) => return self.handle_publish(conn, publish).await,
            // A second CONNECT, or server-to-client packets: protocol violation.
            _ => return Err(ConnectionEnd::Protocol),
        }
        Ok(true)
    }

    async fn handle_publish<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut Framed<S>,
        publish: Publish,
    ) -> Result<bool, ConnectionEnd> {
        if publish.qos > 1 {
            return Err(ConnectionEnd::Protocol);
        }
        let throttled = self.hub.faults().throttle;
        fault_delay(self.hub).await;
        let events_prefix = format!("devices/{}/messages/events/", self.id);
        let topic = publish.topic.as_str();
        if let Some(properties) = topic.strip_prefix(&events_prefix) {
            if throttled {
                return Err(ConnectionEnd::Protocol);
            }
            let (_, props) = split_query(&format!("?{properties}"));
            self.hub.record_telemetry(self.id, props, &publish.payload);
        } else if topic.starts_with("$iothub/twin/GET/") {
            let (_, params) = split_query(topic);
            let rid = params.get("$rid").cloned().unwrap_or_default();
            let (status, body) = if throttled {
                (
                    429,
                    to_json(&json!({"message": "throttled (emulator fault)"})),
                )
            } else {
                match self.hub.device_twin_document(self.id) {
                    Ok(doc) => (200, to_json(&doc)),
                    Err(error) => (404, to_json(&json!({"message": error.to_string()}))),
                }
            };
            self.respond(conn, format!("$iothub/twin/res/{status}/?$rid={rid}"), body)
                .await?;
        } else if topic.starts_with("$iothub/twin/PATCH/properties/reported/") {
            let (_, params) = split_query(topic);
            let rid = params.get("$rid").cloned().unwrap_or_default();
            let (topic, body) = if throttled {
                (
                    format!("$iothub/twin/res/429/?$rid={rid}"),
                    to_json(&json!({"message": "throttled (emulator fault)"})),
                )
            } else {
                match self.hub.patch_reported(self.id, &publish.payload) {
                    Ok(version) => (
                        format!("$iothub/twin/res/204/?$rid={rid}&$version={version}"),
                        Vec::new(),
                    ),
                    Err(HubError::Twin { source, .. }) => (
                        format!("$iothub/twin/res/{}/?$rid={rid}", source.status()),
                        to_json(&json!({"message": source.to_string()})),
                    ),
                    Err(error) => (
                        format!("$iothub/twin/res/404/?$rid={rid}"),
                        to_json(&json!({"message": error.to_string()})),
                    ),
                }
            };
            self.respond(conn, topic, body).await?;
        } else if let Some(rest) = topic.strip_prefix("$iothub/methods/res/") {
            let (path, params) = split_query(rest);
            let status = path.trim_end_matches('/').parse::<i64>().unwrap_or(500);
            let rid = params.get("$rid").cloned().unwrap_or_default();
            self.hub
                .complete_method(self.id, &rid, status, &publish.payload);
        } else {
            // IoT Hub closes connections that publish to topics they may not use.
            return Err(ConnectionEnd::Protocol);
        }
        if publish.qos == 1 {
            conn.write(&Packet::PubAck { pkid: publish.pkid }).await?;
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_decoded() {
        let (path, params) = split_query("$iothub/twin/res/204/?$rid=7&$version=3");
        assert_eq!(path, "$iothub/twin/res/204/");
        assert_eq!(params["$rid"], "7");
        assert_eq!(params["$version"], "3");
        let (_, props) = split_query("?%24.ct=application%2Fjson&a=b%20c");
        assert_eq!(props["$.ct"], "application/json");
        assert_eq!(props["a"], "b c");
    }
}

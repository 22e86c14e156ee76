//! The MQTT client's event loop over a connection the agent makes itself.
//!
//! rumqttc 0.25 can only dial by itself (`EventLoop` connects in its private
//! `network_connect`; its `Network` type cannot be built from outside), so the agent keeps
//! rumqttc's public protocol state ([`MqttState`]: packet ids, in-flight publishes,
//! acknowledgements, pings) and packet codec ([`Packet::read`]/[`Packet::write`]) and drives
//! them here over any byte stream: the TLS stream over the socket the `net` route hands back
//! (inside a sandbox), or over a TCP connection it dials (outside). Requests come from a
//! normal [`AsyncClient`] (made with [`AsyncClient::from_senders`]), events go out as
//! rumqttc's [`Event`]s, so the agent's session logic is the same either way.
//!
//! Behaviour follows rumqttc's `EventLoop::poll`: the first poll connects (stream, CONNECT,
//! CONNACK, all within the connection timeout); then each poll yields one event, reading a
//! batch of incoming packets and answering them, sending one request (at most `inflight`
//! unacknowledged publishes), or sending a PINGREQ every keep-alive period (a second ping
//! without a PINGRESP is an error). Every write is flushed within the connection timeout.
//! One loop serves one connection: after an error the agent makes a new one.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, MqttOptions, MqttState, Packet,
    PingReq, Request, StateError,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{self, Instant, Sleep};

/// A connected byte stream to the broker.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// Makes the connection (dial and TLS). Its error is reported by the caller's own means;
/// the loop only reports that connecting failed.
pub type Connector = Pin<Box<dyn Future<Output = std::io::Result<Box<dyn Stream>>> + Send>>;

/// Connecting: the stream, CONNECT written, CONNACK read, within the connection timeout.
type Connecting =
    Pin<Box<dyn Future<Output = Result<(Framed, rumqttc::ConnAck), ConnectionError>> + Send>>;

/// Most incoming packets handled per read before yielding.
const READ_BATCH: usize = 10;

/// Packet framing over a stream: a read buffer and a write buffer.
struct Framed {
    stream: Box<dyn Stream>,
    read: BytesMut,
    write: BytesMut,
    max_incoming: usize,
    max_outgoing: usize,
}

impl Framed {
    /// The next whole packet already in the read buffer, if any.
    fn buffered(&mut self) -> Result<Option<Packet>, StateError> {
        match Packet::read(&mut self.read, self.max_incoming) {
            Ok(packet) => Ok(Some(packet)),
            Err(rumqttc::Error::InsufficientBytes(_)) => Ok(None),
            Err(error) => Err(StateError::Deserialization(error)),
        }
    }

    /// The next packet, reading as needed. Cancel-safe: bytes are only consumed with a whole
    /// packet.
    async fn next(&mut self) -> Result<Packet, StateError> {
        loop {
            if let Some(packet) = self.buffered()? {
                return Ok(packet);
            }
            if self.stream.read_buf(&mut self.read).await? == 0 {
                return Err(StateError::ConnectionAborted);
            }
        }
    }

    /// Adds `packet` to the write buffer.
    fn feed(&mut self, packet: &Packet) -> Result<(), StateError> {
        packet
            .write(&mut self.write, self.max_outgoing)
            .map(|_| ())
            .map_err(StateError::Deserialization)
    }

    /// Writes the buffer out. Cancel-safe: the buffer advances by what each write took.
    async fn flush(&mut self) -> std::io::Result<()> {
        while !self.write.is_empty() {
            if self.stream.write_buf(&mut self.write).await? == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
        }
        self.stream.flush().await
    }
}

/// An MQTT event loop over the stream a [`Connector`] makes.
pub struct StreamEventLoop {
    options: MqttOptions,
    state: MqttState,
    requests: flume::Receiver<Request>,
    connector: Option<Connector>,
    connecting: Option<Connecting>,
    network: Option<Framed>,
    keepalive: Option<Pin<Box<Sleep>>>,
    timeout: Duration,
    max_incoming: usize,
    max_outgoing: usize,
}

impl std::fmt::Debug for StreamEventLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamEventLoop")
            .field("client_id", &self.options.client_id())
            .field("connected", &self.network.is_some())
            .finish_non_exhaustive()
    }
}

impl StreamEventLoop {
    /// A client and the loop that connects with `connector` on its first poll. `capacity`
    /// bounds the client's request channel; `timeout` bounds connecting and every flush;
    /// `max_incoming`/`max_outgoing` bound packet sizes.
    pub fn new(
        options: MqttOptions,
        connector: Connector,
        capacity: usize,
        timeout: Duration,
        max_incoming: usize,
        max_outgoing: usize,
    ) -> (AsyncClient, StreamEventLoop) {
        let (requests_tx, requests) = flume::bounded(capacity);
        let state = MqttState::new(options.inflight(), false);
        let eventloop = StreamEventLoop {
            options,
            state,
            requests,
            connector: Some(connector),
            connecting: None,
            network: None,
            keepalive: None,
            timeout,
            max_incoming,
            max_outgoing,
        };
        (AsyncClient::from_senders(requests_tx), eventloop)
    }

    /// The next event. Errors end the connection; later polls keep failing. Cancel-safe (the
    /// agent polls inside `select!`): an unfinished connect or write resumes on the next poll.
    pub async fn poll(&mut self) -> Result<Event, ConnectionError> {
        if self.network.is_none() {
            if self.connecting.is_none() {
                let Some(connector) = self.connector.take() else {
                    return Err(ConnectionError::Io(std::io::Error::new(
                        std::io::ErrorKind::NotConnected,
                        "the connection ended",
                    )));
                };
                self.connecting = Some(self.start_connect(connector));
            }
            let Some(connecting) = self.connecting.as_mut() else {
                return Err(ConnectionError::RequestsDone);
            };
            let connected = connecting.await;
            self.connecting = None;
            let (framed, connack) = connected?;
            self.network = Some(framed);
            if !self.options.keep_alive().is_zero() {
                self.keepalive = Some(Box::pin(time::sleep(self.options.keep_alive())));
            }
            return Ok(Event::Incoming(Packet::ConnAck(connack)));
        }
        let result = self.select().await;
        if result.is_err() {
            self.network = None;
            self.keepalive = None;
        }
        result
    }

    fn start_connect(&self, connector: Connector) -> Connecting {
        let mut connect = rumqttc::Connect::new(self.options.client_id());
        connect.keep_alive = u16::try_from(self.options.keep_alive().as_secs()).unwrap_or(u16::MAX);
        connect.clean_session = self.options.clean_session();
        connect.last_will = self.options.last_will();
        connect.login = self.options.credentials();
        let (max_incoming, max_outgoing, timeout) =
            (self.max_incoming, self.max_outgoing, self.timeout);
        Box::pin(async move {
            let handshake = async move {
                let mut framed = Framed {
                    stream: connector.await?,
                    read: BytesMut::with_capacity(4096),
                    write: BytesMut::with_capacity(4096),
                    max_incoming,
                    max_outgoing,
                };
                framed.feed(&Packet::Connect(connect))?;
                framed.flush().await?;
                match framed.next().await? {
                    Packet::ConnAck(connack) if connack.code == ConnectReturnCode::Success => {
                        Ok((framed, connack))
                    }
                    Packet::ConnAck(connack) => {
                        Err(ConnectionError::ConnectionRefused(connack.code))
                    }
                    packet => Err(ConnectionError::NotConnAck(packet)),
                }
            };
            match time::timeout(timeout, handshake).await {
                Ok(connected) => connected,
                Err(_) => Err(ConnectionError::NetworkTimeout),
            }
        })
    }

    /// One event from the connected session.
    async fn select(&mut self) -> Result<Event, ConnectionError> {
        if let Some(event) = self.state.events.pop_front() {
            return Ok(event);
        }
        let Some(network) = self.network.as_mut() else {
            return Err(ConnectionError::RequestsDone);
        };
        let can_send =
            self.state.inflight() < self.options.inflight() && self.state.collision.is_none();
        let keepalive_sleep = &mut self.keepalive;
        let keepalive = async move {
            match keepalive_sleep.as_mut() {
                Some(sleep) => sleep.await,
                None => std::future::pending().await,
            }
        };
        enum Ready {
            Incoming(Packet),
            Request(Request),
            RequestsDone,
            Ping,
        }
        let ready = tokio::select! {
            packet = network.next() => Ready::Incoming(packet?),
            request = self.requests.recv_async(), if can_send => match request {
                Ok(request) => Ready::Request(request),
                Err(_) => Ready::RequestsDone,
            },
            () = keepalive => Ready::Ping,
        };
        match ready {
            Ready::Incoming(first) => {
                let mut next = Some(first);
                let mut handled = 0;
                while let Some(packet) = next {
                    if let Some(answer) = self.state.handle_incoming_packet(packet)? {
                        network.feed(&answer)?;
                    }
                    handled += 1;
                    next = if handled < READ_BATCH {
                        network.buffered()?
                    } else {
                        None
                    };
                }
            }
            Ready::Request(request) => {
                if let Some(packet) = self.state.handle_outgoing_packet(request)? {
                    network.feed(&packet)?;
                }
            }
            Ready::RequestsDone => return Err(ConnectionError::RequestsDone),
            Ready::Ping => {
                if let Some(sleep) = self.keepalive.as_mut() {
                    sleep
                        .as_mut()
                        .reset(Instant::now() + self.options.keep_alive());
                }
                if let Some(packet) = self
                    .state
                    .handle_outgoing_packet(Request::PingReq(PingReq))?
                {
                    network.feed(&packet)?;
                }
            }
        }
        match time::timeout(self.timeout, network.flush()).await {
            Ok(flushed) => flushed?,
            Err(_) => return Err(ConnectionError::FlushTimeout),
        }
        self.state
            .events
            .pop_front()
            .ok_or(ConnectionError::RequestsDone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::{ConnAck, Outgoing, PubAck, QoS};
    use tokio::io::{duplex, DuplexStream};

    const MAX: usize = 1 << 20;

    /// A client and loop for device `dev` whose connection `connector` makes.
    fn event_loop(connector: Connector, keep_alive: u64) -> (AsyncClient, StreamEventLoop) {
        let mut options = MqttOptions::new("dev", "hub.example", 8883);
        options.set_keep_alive(Duration::from_secs(keep_alive));
        StreamEventLoop::new(options, connector, 8, Duration::from_secs(5), MAX, MAX)
    }

    /// A client and loop whose connection is one end of an in-memory pipe; the other end
    /// plays the broker.
    fn connected(keep_alive: u64) -> (AsyncClient, StreamEventLoop, DuplexStream) {
        let (client_end, broker) = duplex(64 * 1024);
        let connector: Connector =
            Box::pin(async move { Ok(Box::new(client_end) as Box<dyn Stream>) });
        let (client, eventloop) = event_loop(connector, keep_alive);
        (client, eventloop, broker)
    }

    async fn next_packet(broker: &mut DuplexStream, buf: &mut BytesMut) -> Packet {
        loop {
            match Packet::read(buf, MAX) {
                Ok(packet) => return packet,
                Err(rumqttc::Error::InsufficientBytes(_)) => {}
                Err(error) => panic!("client sent garbage: {error}"),
            }
            assert!(
                broker.read_buf(buf).await.expect("read") > 0,
                "client closed"
            );
        }
    }

    fn bytes_of(packet: &Packet) -> BytesMut {
        let mut bytes = BytesMut::new();
        packet.write(&mut bytes, MAX).expect("encodes");
        bytes
    }

    /// The broker answers the client's CONNECT with `code`.
    async fn send_connack(broker: &mut DuplexStream, code: ConnectReturnCode) {
        let connack = Packet::ConnAck(ConnAck::new(code, false));
        broker.write_all(&bytes_of(&connack)).await.expect("write");
    }

    #[tokio::test]
    async fn connects_publishes_and_reads_an_ack_split_across_reads() {
        let (client, mut eventloop, mut broker) = connected(60);
        let hub = tokio::spawn(async move {
            let mut buf = BytesMut::new();
            let Packet::Connect(connect) = next_packet(&mut broker, &mut buf).await else {
                panic!("CONNECT expected first");
            };
            assert_eq!(connect.client_id, "dev");
            assert_eq!(connect.keep_alive, 60);
            send_connack(&mut broker, ConnectReturnCode::Success).await;
            let Packet::Publish(publish) = next_packet(&mut broker, &mut buf).await else {
                panic!("PUBLISH expected");
            };
            assert_eq!(publish.topic, "devices/dev/messages/events/");
            assert_eq!(&publish.payload[..], b"{\"t\":1}");
            let ack = bytes_of(&Packet::PubAck(PubAck::new(publish.pkid)));
            broker.write_all(&ack[..1]).await.expect("write");
            tokio::time::sleep(Duration::from_millis(20)).await;
            broker.write_all(&ack[1..]).await.expect("write");
            broker
        });
        assert!(matches!(
            eventloop.poll().await,
            Ok(Event::Incoming(Packet::ConnAck(_)))
        ));
        client
            .try_publish(
                "devices/dev/messages/events/",
                QoS::AtLeastOnce,
                false,
                b"{\"t\":1}".to_vec(),
            )
            .expect("queued");
        assert!(matches!(
            eventloop.poll().await,
            Ok(Event::Outgoing(Outgoing::Publish(1)))
        ));
        assert!(matches!(
            eventloop.poll().await,
            Ok(Event::Incoming(Packet::PubAck(PubAck { pkid: 1 })))
        ));
        let _broker = hub.await.expect("hub task");
    }

    #[tokio::test]
    async fn a_poll_cancelled_while_connecting_resumes_the_same_connection() {
        let (client_end, mut broker) = duplex(64 * 1024);
        let connector: Connector = Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok(Box::new(client_end) as Box<dyn Stream>)
        });
        let (_client, mut eventloop) = event_loop(connector, 60);
        let hub = tokio::spawn(async move {
            let mut buf = BytesMut::new();
            next_packet(&mut broker, &mut buf).await;
            send_connack(&mut broker, ConnectReturnCode::Success).await;
            broker
        });
        // What the agent's `select!` does when a command arrives while connecting.
        assert!(
            tokio::time::timeout(Duration::from_millis(10), eventloop.poll())
                .await
                .is_err()
        );
        assert!(matches!(
            eventloop.poll().await,
            Ok(Event::Incoming(Packet::ConnAck(_)))
        ));
        let _broker = hub.await.expect("hub task");
    }

    #[tokio::test]
    async fn a_refused_connect_and_a_failed_connector_are_errors() {
        let (_client, mut eventloop, mut broker) = connected(60);
        let hub = tokio::spawn(async move {
            let mut buf = BytesMut::new();
            next_packet(&mut broker, &mut buf).await;
            send_connack(&mut broker, ConnectReturnCode::NotAuthorized).await;
            broker
        });
        assert!(matches!(
            eventloop.poll().await,
            Err(ConnectionError::ConnectionRefused(
                ConnectReturnCode::NotAuthorized
            ))
        ));
        let _broker = hub.await.expect("hub task");
        // One loop, one connection: polling again does not reconnect.
        assert!(matches!(
            eventloop.poll().await,
            Err(ConnectionError::Io(_))
        ));

        let connector: Connector =
            Box::pin(async { Err(std::io::Error::other("net route refused")) });
        let (_client, mut eventloop) = event_loop(connector, 60);
        assert!(matches!(
            eventloop.poll().await,
            Err(ConnectionError::Io(_))
        ));
    }

    #[tokio::test]
    async fn a_broker_that_stops_answering_pings_ends_the_connection() {
        let (_client, mut eventloop, mut broker) = connected(1);
        let hub = tokio::spawn(async move {
            let mut buf = BytesMut::new();
            next_packet(&mut broker, &mut buf).await;
            send_connack(&mut broker, ConnectReturnCode::Success).await;
            assert!(matches!(
                next_packet(&mut broker, &mut buf).await,
                Packet::PingReq
            ));
            broker // kept open, silent
        });
        assert!(matches!(
            eventloop.poll().await,
            Ok(Event::Incoming(Packet::ConnAck(_)))
        ));
        assert!(matches!(
            eventloop.poll().await,
            Ok(Event::Outgoing(Outgoing::PingReq))
        ));
        assert!(matches!(
            eventloop.poll().await,
            Err(ConnectionError::MqttState(StateError::AwaitPingResp))
        ));
        let _broker = hub.await.expect("hub task");
    }
}

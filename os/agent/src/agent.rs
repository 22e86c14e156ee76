//! The agent: one task per device that keeps an MQTT session to the hub alive and the twin in
//! sync.
//!
//! Per connection: CONNECT (fresh SAS token) -> SUBSCRIBE twin responses and desired patches ->
//! GET the full twin -> send queued reported patches and telemetry -> serve. The token is renewed
//! before it expires by draining in-flight requests and reconnecting; anything the hub had not
//! acknowledged goes back to the front of the offline queue, so nothing accepted is lost.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, SystemTime};

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, MqttOptions, Outgoing, Packet, Publish,
    QoS, SubscribeReasonCode,
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, Instant};

pub use crate::config::{AgentConfig, Authentication};
use crate::dial::{self, DialFailure};
use crate::error::{AgentError, Result};
use crate::handle::Command;
pub use crate::handle::{Acknowledgement, AgentEvent, AgentHandle, MethodCall};
use crate::mqtt_loop::StreamEventLoop;
use crate::queue::{Item, OfflineQueue, Payload};
use crate::sas;
use crate::topics::{self, Incoming};
use crate::twin::{self, DesiredTracker};

/// Starts the agent task on the current tokio runtime. It runs until
/// [`AgentHandle::shutdown`] or until every handle is dropped. Read the events: the channel is
/// unbounded so the MQTT session never stalls on a slow application, which means an
/// application that keeps the receiver but never reads it grows it without limit.
pub fn spawn(config: AgentConfig) -> (AgentHandle, mpsc::UnboundedReceiver<AgentEvent>) {
    let (commands, command_rx) = mpsc::unbounded_channel();
    let (events, event_rx) = mpsc::unbounded_channel();
    let handle = AgentHandle {
        commands,
        device_id: config.device_id.clone(),
    };
    let queue = OfflineQueue::new(config.reported_capacity, config.telemetry_capacity);
    let worker = Worker {
        config,
        commands: command_rx,
        events,
        queue,
        tracker: DesiredTracker::new(),
        next_rid: 1,
        connections: 0,
        dial_failure: DialFailure::default(),
    };
    tokio::spawn(worker.run());
    (handle, event_rx)
}

/// Longest time to connect (dial, TLS, CONNECT/CONNACK) and to write out any packet.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest packet accepted from the hub (twin documents and method calls are far smaller).
const MAX_INCOMING_PACKET: usize = 1024 * 1024;
/// Largest packet sent.
const MAX_OUTGOING_PACKET: usize = 256 * 1024;

/// Why a connection ended.
enum Ending {
    Shutdown(Option<oneshot::Sender<()>>),
    RenewToken,
    Lost(AgentError),
}

/// What was handed to the MQTT client and is waiting for its packet id.
enum Sent {
    /// A twin request (answered by rid on the response topic, not by PUBACK).
    TwinRequest,
    /// Telemetry, answered by PUBACK.
    Telemetry(u64),
}

/// An outstanding twin request.
enum TwinRequest {
    Get { sent: Instant },
    Reported { item: Item, seq: u64, sent: Instant },
}

/// Per-connection bookkeeping.
struct Session {
    client: AsyncClient,
    ready: bool,
    draining: bool,
    awaiting_pkid: VecDeque<Sent>,
    telemetry: BTreeMap<u64, (Item, Instant)>,
    telemetry_by_pkid: BTreeMap<u16, u64>,
    twin: BTreeMap<u64, TwinRequest>,
    next_seq: u64,
    get_due: Option<Instant>,
    paused_until: Option<Instant>,
}

impl Session {
    fn in_flight(&self) -> usize {
        self.telemetry.len()
            + self
                .twin
                .values()
                .filter(|r| matches!(r, TwinRequest::Reported { .. }))
                .count()
    }

    /// When the oldest unanswered request (twin or telemetry) was sent.
    fn oldest_sent(&self) -> Option<Instant> {
        let twin = self.twin.values().map(|r| match r {
            TwinRequest::Get { sent } | TwinRequest::Reported { sent, .. } => *sent,
        });
        let telemetry = self.telemetry.values().map(|(_, sent)| *sent);
        twin.chain(telemetry).min()
    }

    /// Everything sent but not acknowledged, in send order.
    fn take_unacknowledged(&mut self) -> Vec<Item> {
        let mut items: Vec<(u64, Item)> = std::mem::take(&mut self.telemetry)
            .into_iter()
            .map(|(seq, (item, _))| (seq, item))
            .collect();
        for request in std::mem::take(&mut self.twin).into_values() {
            if let TwinRequest::Reported { item, seq, .. } = request {
                items.push((seq, item));
            }
        }
        items.sort_by_key(|(seq, _)| *seq);
        items.into_iter().map(|(_, item)| item).collect()
    }
}

struct Worker {
    config: AgentConfig,
    commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<AgentEvent>,
    queue: OfflineQueue,
    tracker: DesiredTracker,
    next_rid: u64,
    connections: u64,
    /// Why the current connection could not be made, if it could not (dial or TLS).
    dial_failure: DialFailure,
}

impl Worker {
    async fn run(mut self) {
        let mut attempt: u32 = 0;
        loop {
            let ending = match self.connect().await {
                Ok((client, eventloop, token_expiry)) => {
                    self.serve(client, eventloop, token_expiry, &mut attempt)
                        .await
                }
                Err(err) => Ending::Lost(err),
            };
            match ending {
                Ending::Shutdown(done) => {
                    self.fail_queue();
                    if let Some(done) = done {
                        let _ = done.send(());
                    }
                    return;
                }
                Ending::RenewToken => continue,
                Ending::Lost(err) => {
                    let delay = self.config.backoff.random_delay(attempt);
                    attempt = attempt.saturating_add(1);
                    self.emit(AgentEvent::Disconnected {
                        reason: error_chain(&err),
                        identity_refused: matches!(
                            err,
                            AgentError::ConnectRefused {
                                identity_refused: true,
                                ..
                            }
                        ),
                    });
                    if let Some(done) = self.wait_or_shutdown(delay).await {
                        self.fail_queue();
                        let _ = done.send(());
                        return;
                    }
                }
            }
        }
    }

    /// Waits `delay` while still accepting queued items; returns the shutdown acknowledgement
    /// sender if asked to stop (or a closed channel's None wrapped as Some(dummy) is avoided).
    async fn wait_or_shutdown(&mut self, delay: Duration) -> Option<oneshot::Sender<()>> {
        let deadline = Instant::now() + delay;
        loop {
            tokio::select! {
                _ = sleep_until(deadline) => return None,
                command = self.commands.recv() => match command {
                    Some(Command::Enqueue(item)) => { let _ = self.queue.push(item); }
                    // Offline: the call this answers is gone with its connection.
                    Some(Command::RespondMethod { .. }) => {}
                    Some(Command::Shutdown(done)) => return Some(done),
                    None => return Some(oneshot::channel().0),
                },
            }
        }
    }

    fn fail_queue(&mut self) {
        while let Some(item) = self.queue.pop() {
            item.finish(Err(AgentError::AgentStopped {
                device_id: self.config.device_id.clone(),
            }));
        }
    }

    fn emit(&self, event: AgentEvent) {
        // The application may have dropped the receiver; the agent keeps working regardless.
        let _ = self.events.send(event);
    }

    /// Connects; with SAS, the expiry (`se`, Unix seconds) of the token it presented.
    async fn connect(&mut self) -> Result<(AsyncClient, StreamEventLoop, Option<u64>)> {
        dial::take_failure(&self.dial_failure);
        let config = &self.config;
        let client_id = config.client_id();
        let tls = config.tls.client_config(&config.connect_host)?;
        let connector = dial::tls_connector(
            config.dialer.clone(),
            &config.connect_host,
            config.port,
            tls,
            self.dial_failure.clone(),
        );
        let mut options =
            MqttOptions::new(client_id.clone(), config.connect_host.clone(), config.port);
        options.set_keep_alive(config.keep_alive.max(Duration::from_secs(1)));
        options.set_clean_session(true);
        options.set_inflight(100);
        let username = topics::username(&config.host_name, &client_id, config.model_id.as_deref());
        let token = match &config.auth {
            Authentication::Sas { signer, token_ttl } if config.sign_inline => {
                let expiry = sas::unix_now().saturating_add(token_ttl.as_secs().max(1));
                Some(sas::build_token(
                    &config.resource_uri(),
                    None,
                    expiry,
                    signer.as_ref(),
                )?)
            }
            Authentication::Sas { signer, token_ttl } => Some(
                sas::build_token_now(config.resource_uri(), None, *token_ttl, signer.clone())
                    .await?,
            ),
            Authentication::X509 => None,
        };
        let token_expiry = token.as_ref().map(|token| token.expiry);
        options.set_credentials(username, token.map(|token| token.token).unwrap_or_default());
        let capacity = config.max_in_flight * 2 + 8;
        let (client, eventloop) = StreamEventLoop::new(
            options,
            connector,
            capacity,
            CONNECTION_TIMEOUT,
            MAX_INCOMING_PACKET,
            MAX_OUTGOING_PACKET,
        );
        Ok((client, eventloop, token_expiry))
    }

    async fn serve(
        &mut self,
        client: AsyncClient,
        mut eventloop: StreamEventLoop,
        token_expiry: Option<u64>,
        attempt: &mut u32,
    ) -> Ending {
        let mut session = Session {
            client,
            ready: false,
            draining: false,
            awaiting_pkid: VecDeque::new(),
            telemetry: BTreeMap::new(),
            telemetry_by_pkid: BTreeMap::new(),
            twin: BTreeMap::new(),
            next_seq: 0,
            get_due: None,
            paused_until: None,
        };
        self.tracker.expect_full_twin();
        let renew_at = token_expiry
            .map(|expiry| Instant::now() + sas::renewal_delay(expiry, SystemTime::now()));
        let mut drain_deadline: Option<Instant> = None;
        let ending = loop {
            let timer = self.next_timer(&session, renew_at, drain_deadline);
            tokio::select! {
                event = eventloop.poll() => {
                    match self.on_event(&mut session, event, attempt) {
                        Ok(Some(ending)) => break ending,
                        Ok(None) => {}
                        Err(err) => break Ending::Lost(err),
                    }
                }
                command = self.commands.recv() => match command {
                    Some(Command::Enqueue(item)) => { let _ = self.queue.push(item); }
                    Some(Command::RespondMethod { rid, status, body }) => {
                        if session.ready {
                            let topic = topics::method_response(status, &rid);
                            if let Err(err) = publish(&session.client, &topic, body) {
                                break Ending::Lost(err);
                            }
                            session.awaiting_pkid.push_back(Sent::TwinRequest);
                        }
                    }
                    Some(Command::Shutdown(done)) => {
                        disconnect(&session.client, &mut eventloop).await;
                        break Ending::Shutdown(Some(done));
                    }
                    None => break Ending::Shutdown(None),
                },
                _ = sleep_until(timer) => {
                    let now = Instant::now();
                    if let Some(at) = renew_at {
                        if now >= at && !session.draining {
                            session.draining = true;
                            drain_deadline = Some(now + self.config.drain_timeout);
                            self.emit(AgentEvent::RenewingToken);
                        }
                    }
                    if session.draining && drain_deadline.is_some_and(|d| now >= d) {
                        break Ending::RenewToken;
                    }
                    if let Err(err) = self.on_timer(&mut session, now) {
                        break Ending::Lost(err);
                    }
                }
            }
            if session.draining && session.in_flight() == 0 {
                disconnect(&session.client, &mut eventloop).await;
                break Ending::RenewToken;
            }
            if let Err(err) = self.pump(&mut session) {
                break Ending::Lost(err);
            }
        };
        let unacknowledged = session.take_unacknowledged();
        self.queue.requeue_front(unacknowledged.into_iter());
        ending
    }

    fn next_timer(
        &self,
        session: &Session,
        renew_at: Option<Instant>,
        drain: Option<Instant>,
    ) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        let oldest_request = session
            .oldest_sent()
            .map(|sent| sent + self.config.request_timeout);
        [
            renew_at.filter(|_| !session.draining),
            drain,
            oldest_request,
            session.get_due,
            session.paused_until,
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(far)
    }

    fn on_timer(&mut self, session: &mut Session, now: Instant) -> Result<()> {
        let timeout = self.config.request_timeout;
        if session
            .oldest_sent()
            .is_some_and(|sent| now >= sent + timeout)
        {
            // The hub stopped answering on this connection: start over on a new one.
            return Err(AgentError::AcknowledgementTimeout {
                host: self.config.connect_host.clone(),
                seconds: timeout.as_secs(),
            });
        }
        if session.paused_until.is_some_and(|t| now >= t) {
            session.paused_until = None;
        }
        if session.get_due.is_some_and(|t| now >= t) && session.paused_until.is_none() {
            session.get_due = None;
            self.send_get(session)?;
        }
        Ok(())
    }

    fn on_event(
        &mut self,
        session: &mut Session,
        event: std::result::Result<Event, ConnectionError>,
        attempt: &mut u32,
    ) -> Result<Option<Ending>> {
        let host = self.config.connect_host.clone();
        let event = match event {
            Ok(event) => event,
            Err(ConnectionError::ConnectionRefused(code)) => {
                return Err(AgentError::ConnectRefused {
                    host,
                    code: describe_refusal(code),
                    identity_refused: matches!(
                        code,
                        ConnectReturnCode::BadUserNamePassword
                            | ConnectReturnCode::NotAuthorized
                            | ConnectReturnCode::BadClientId
                    ),
                });
            }
            Err(source) => {
                // The MQTT loop only sees that connecting failed: report why.
                if let Some(failure) = dial::take_failure(&self.dial_failure) {
                    return Err(failure);
                }
                return Err(AgentError::Connect {
                    host,
                    source: Box::new(source),
                });
            }
        };
        match event {
            Event::Incoming(Packet::ConnAck(_)) => {
                let subscriptions = [
                    topics::TWIN_RESPONSES,
                    topics::DESIRED_PATCHES,
                    topics::METHOD_REQUESTS,
                ]
                .map(|topic| rumqttc::SubscribeFilter::new(topic.to_string(), QoS::AtLeastOnce));
                session
                    .client
                    .try_subscribe_many(subscriptions)
                    .map_err(|source| AgentError::SendRequest {
                        what: "subscribe",
                        topic: topics::TWIN_RESPONSES.into(),
                        source: Box::new(source),
                    })?;
            }
            Event::Incoming(Packet::SubAck(ack)) => {
                if ack
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, SubscribeReasonCode::Failure))
                {
                    return Err(AgentError::ConnectRefused {
                        host,
                        code: "subscription refused".into(),
                        identity_refused: false,
                    });
                }
                self.connections += 1;
                *attempt = 0;
                session.ready = true;
                self.emit(AgentEvent::Connected {
                    connection: self.connections,
                });
                self.send_get(session)?;
            }
            Event::Incoming(Packet::Publish(publish)) => self.on_publish(session, publish)?,
            Event::Incoming(Packet::PubAck(ack)) => {
                if let Some(seq) = session.telemetry_by_pkid.remove(&ack.pkid) {
                    if let Some((item, _)) = session.telemetry.remove(&seq) {
                        item.finish(Ok(None));
                    }
                }
            }
            Event::Outgoing(Outgoing::Publish(pkid)) => match session.awaiting_pkid.pop_front() {
                Some(Sent::Telemetry(seq)) => {
                    session.telemetry_by_pkid.insert(pkid, seq);
                }
                Some(Sent::TwinRequest) | None => {}
            },
            Event::Incoming(Packet::Disconnect) => {
                return Err(AgentError::Connect {
                    host,
                    source: Box::new(ConnectionError::RequestsDone),
                });
            }
            _ => {}
        }
        Ok(None)
    }

    fn on_publish(&mut self, session: &mut Session, publish: Publish) -> Result<()> {
        match topics::parse(&publish.topic) {
            Incoming::TwinResponse {
                status,
                rid,
                retry_after,
                version,
            } => {
                let Some(request) = session.twin.remove(&rid) else {
                    return Ok(()); // answer to a request from an earlier connection
                };
                match (request, status) {
                    (TwinRequest::Get { .. }, 200) => self.on_full_twin(session, &publish),
                    (TwinRequest::Get { .. }, status) => {
                        let wait = self.retry_wait(status, retry_after);
                        if status == 429 {
                            session.paused_until = Some(Instant::now() + wait);
                            self.emit(AgentEvent::Throttled { retry_after: wait });
                        } else {
                            self.emit(AgentEvent::Error(AgentError::TwinRequest {
                                request: "GET",
                                rid,
                                status,
                            }));
                        }
                        session.get_due = Some(Instant::now() + wait);
                    }
                    (TwinRequest::Reported { item, .. }, 200..=299) => item.finish(Ok(version)),
                    (TwinRequest::Reported { item, .. }, status)
                        if status == 429 || status >= 500 =>
                    {
                        let wait = self.retry_wait(status, retry_after);
                        if status == 429 {
                            self.emit(AgentEvent::Throttled { retry_after: wait });
                        }
                        session.paused_until = Some(Instant::now() + wait);
                        self.queue.requeue_front(std::iter::once(item));
                    }
                    (TwinRequest::Reported { item, .. }, status) => {
                        item.finish(Err(AgentError::TwinRequest {
                            request: "PATCH reported",
                            rid,
                            status,
                        }));
                    }
                }
            }
            Incoming::DesiredPatch { .. } => match twin::parse_desired_patch(&publish.payload) {
                Ok((version, patch)) => {
                    let step = self.tracker.on_patch(version, patch);
                    for change in step.changes {
                        self.emit(AgentEvent::Desired(change));
                    }
                    if step.needs_full_twin
                        && !session
                            .twin
                            .values()
                            .any(|r| matches!(r, TwinRequest::Get { .. }))
                    {
                        self.send_get(session)?;
                    }
                }
                Err(source) => self.emit(AgentEvent::Error(AgentError::ParseTwin {
                    topic: publish.topic.clone(),
                    source,
                })),
            },
            Incoming::MethodRequest { name, rid } => {
                self.emit(AgentEvent::MethodCall(MethodCall {
                    name,
                    rid,
                    payload: publish.payload.to_vec(),
                }));
            }
            Incoming::Other => {}
        }
        Ok(())
    }

    fn on_full_twin(&mut self, session: &mut Session, publish: &Publish) {
        match twin::parse_full_twin(&publish.payload) {
            Ok(full) => {
                self.emit(AgentEvent::FullTwin {
                    reported_version: full.reported_version,
                });
                let step = self
                    .tracker
                    .on_full_twin(full.desired_version, full.desired);
                for change in step.changes {
                    self.emit(AgentEvent::Desired(change));
                }
            }
            Err(source) => {
                self.emit(AgentEvent::Error(AgentError::ParseTwin {
                    topic: publish.topic.clone(),
                    source,
                }));
                // Ask again later: the hub may have been mid-update.
                session.get_due = Some(Instant::now() + self.config.backoff.random_delay(2));
            }
        }
    }

    fn retry_wait(&self, status: u16, retry_after: Option<u64>) -> Duration {
        match retry_after {
            Some(seconds) => Duration::from_secs(seconds.min(300)),
            None if status == 429 => self.config.backoff.random_delay(3),
            None => self.config.backoff.random_delay(1),
        }
    }

    fn send_get(&mut self, session: &mut Session) -> Result<()> {
        let rid = self.rid();
        let topic = topics::twin_get(rid);
        publish(&session.client, &topic, Vec::new())?;
        session.awaiting_pkid.push_back(Sent::TwinRequest);
        session.twin.insert(
            rid,
            TwinRequest::Get {
                sent: Instant::now(),
            },
        );
        Ok(())
    }

    fn rid(&mut self) -> u64 {
        let rid = self.next_rid;
        self.next_rid = self.next_rid.wrapping_add(1).max(1);
        rid
    }

    /// Sends queued items while the session has room.
    fn pump(&mut self, session: &mut Session) -> Result<()> {
        if !session.ready || session.draining || session.paused_until.is_some() {
            return Ok(());
        }
        while session.in_flight() < self.config.max_in_flight {
            // Reported patches go one at a time: the hub may process concurrent requests in any
            // order, and merge patches must apply in the order the application made them.
            let reported_in_flight = session
                .twin
                .values()
                .any(|r| matches!(r, TwinRequest::Reported { .. }));
            if reported_in_flight && self.queue.front_is_reported() {
                break;
            }
            let Some(item) = self.queue.pop() else { break };
            let seq = session.next_seq;
            session.next_seq += 1;
            match &item.payload {
                Payload::Reported(bytes) => {
                    let rid = self.rid();
                    let topic = topics::twin_patch_reported(rid);
                    if let Err(err) = publish(&session.client, &topic, bytes.clone()) {
                        self.queue.requeue_front(std::iter::once(item));
                        return Err(err);
                    }
                    session.awaiting_pkid.push_back(Sent::TwinRequest);
                    session.twin.insert(
                        rid,
                        TwinRequest::Reported {
                            item,
                            seq,
                            sent: Instant::now(),
                        },
                    );
                }
                Payload::Telemetry { body, properties } => {
                    let topic = self.config.telemetry_topic(properties);
                    if let Err(err) = publish(&session.client, &topic, body.clone()) {
                        self.queue.requeue_front(std::iter::once(item));
                        return Err(err);
                    }
                    session.awaiting_pkid.push_back(Sent::Telemetry(seq));
                    session.telemetry.insert(seq, (item, Instant::now()));
                }
            }
        }
        Ok(())
    }
}

/// Sends DISCONNECT and gives it a moment (at most 500 ms) to be written.
async fn disconnect(client: &AsyncClient, eventloop: &mut StreamEventLoop) {
    let _ = client.try_disconnect();
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
}

fn publish(client: &AsyncClient, topic: &str, payload: Vec<u8>) -> Result<()> {
    client
        .try_publish(topic, QoS::AtLeastOnce, false, payload)
        .map_err(|source| AgentError::SendRequest {
            what: "publish",
            topic: topic.to_string(),
            source: Box::new(source),
        })
}

fn describe_refusal(code: ConnectReturnCode) -> String {
    match code {
        ConnectReturnCode::Success => "success".into(),
        ConnectReturnCode::RefusedProtocolVersion => "unacceptable protocol version".into(),
        ConnectReturnCode::BadClientId => "identifier rejected".into(),
        ConnectReturnCode::ServiceUnavailable => "server unavailable (throttled?)".into(),
        ConnectReturnCode::BadUserNamePassword => "bad user name or password".into(),
        ConnectReturnCode::NotAuthorized => "not authorized".into(),
    }
}

/// An error and its sources, joined with ": " (for one-line event reasons).
pub use testudo_error_chain::error_chain;

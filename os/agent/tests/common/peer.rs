//! A scripted MQTT-over-TLS peer for protocol cases the emulator cannot produce on purpose
//! (malformed twin JSON, version gaps). It speaks real MQTT 3.1.1 (rumqttc's codec) over real
//! TLS (rustls, a throwaway CA from rcgen).

#![allow(clippy::unwrap_used)] // test support code: a failed setup step is a failed test
#![allow(dead_code)]

use std::sync::Arc;

use bytes::BytesMut;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rumqttc::{
    ConnAck, ConnectReturnCode, Packet, PingResp, PubAck, Publish, QoS, SubAck, SubscribeReasonCode,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

pub struct PeerListener {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    pub port: u16,
    pub ca_pem: String,
}

pub async fn listen() -> PeerListener {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, &ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from(leaf.der().to_vec())],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
    )
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    PeerListener {
        listener,
        acceptor: TlsAcceptor::from(Arc::new(config)),
        port,
        ca_pem: ca_cert.pem(),
    }
}

impl PeerListener {
    /// Accepts one device, answers CONNECT and SUBSCRIBE.
    pub async fn accept(&self) -> Peer {
        let (tcp, _) = self.listener.accept().await.unwrap();
        let stream = self.acceptor.accept(tcp).await.unwrap();
        let mut peer = Peer {
            stream,
            buf: BytesMut::new(),
        };
        match peer.read_packet().await {
            Packet::Connect(_) => {}
            other => panic!("expected CONNECT, got {other:?}"),
        }
        peer.send(Packet::ConnAck(ConnAck::new(
            ConnectReturnCode::Success,
            false,
        )))
        .await;
        match peer.read_packet().await {
            Packet::Subscribe(subscribe) => {
                let codes = subscribe
                    .filters
                    .iter()
                    .map(|_| SubscribeReasonCode::Success(QoS::AtLeastOnce))
                    .collect();
                peer.send(Packet::SubAck(SubAck::new(subscribe.pkid, codes)))
                    .await;
            }
            other => panic!("expected SUBSCRIBE, got {other:?}"),
        }
        peer
    }
}

pub struct Peer {
    stream: TlsStream<TcpStream>,
    buf: BytesMut,
}

impl Peer {
    pub async fn read_packet(&mut self) -> Packet {
        loop {
            match Packet::read(&mut self.buf, 1 << 20) {
                Ok(packet) => return packet,
                Err(rumqttc::Error::InsufficientBytes(_)) => {
                    let n = self.stream.read_buf(&mut self.buf).await.unwrap();
                    assert!(n > 0, "device closed the connection");
                }
                Err(err) => panic!("bad packet from the device: {err:?}"),
            }
        }
    }

    pub async fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        packet.write(&mut out, 1 << 20).unwrap();
        self.stream.write_all(&out).await.unwrap();
        self.stream.flush().await.unwrap();
    }

    /// Next PUBLISH from the device (acknowledged; pings answered on the way).
    pub async fn next_publish(&mut self) -> Publish {
        loop {
            match self.read_packet().await {
                Packet::Publish(publish) => {
                    if publish.qos == QoS::AtLeastOnce {
                        self.send(Packet::PubAck(PubAck::new(publish.pkid))).await;
                    }
                    return publish;
                }
                Packet::PingReq => self.send(Packet::PingResp).await,
                _ => {}
            }
        }
    }

    /// Publishes to the device (QoS 0, as IoT Hub does for twin traffic).
    pub async fn publish(&mut self, topic: &str, payload: &[u8]) {
        self.send(Packet::Publish(Publish::new(
            topic,
            QoS::AtMostOnce,
            payload.to_vec(),
        )))
        .await;
    }

    /// Waits for a twin GET and returns its `$rid`.
    pub async fn expect_get(&mut self) -> String {
        let publish = self.next_publish().await;
        let topic = publish.topic.clone();
        let rid = topic
            .strip_prefix("$iothub/twin/GET/?$rid=")
            .unwrap_or_else(|| panic!("expected a twin GET, got {topic}"));
        rid.to_string()
    }
}

#[allow(unused_imports)]
use PingResp as _;

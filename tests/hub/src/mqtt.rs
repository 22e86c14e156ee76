//! A small MQTT 3.1.1 packet codec: exactly the packets IoT Hub exchanges, decoded
//! defensively from untrusted bytes (every length checked, no panics, bounded size).

use crate::error::PacketError;

/// Largest packet the emulator accepts (IoT Hub's message limit is 256 KiB; leave headroom).
pub const MAX_PACKET_SIZE: usize = 512 * 1024;

/// CONNECT fields the hub uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// Client identifier (device id, or DPS registration id).
    pub client_id: String,
    /// User name (IoT Hub: `{host}/{deviceId}/?api-version=...`).
    pub username: Option<String>,
    /// Password (IoT Hub: a SAS token).
    pub password: Option<Vec<u8>>,
    /// Keep-alive in seconds (0 = none).
    pub keep_alive: u16,
    /// Clean-session flag.
    pub clean_session: bool,
    /// Will topic, if a will was given (IoT Hub ignores wills on most topics).
    pub will_topic: Option<String>,
}

/// A PUBLISH packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// Topic name.
    pub topic: String,
    /// Application payload.
    pub payload: Vec<u8>,
    /// QoS 0, 1 or 2.
    pub qos: u8,
    /// Retain flag.
    pub retain: bool,
    /// Duplicate-delivery flag.
    pub dup: bool,
    /// Packet identifier (only for QoS > 0).
    pub pkid: u16,
}

/// The MQTT 3.1.1 packets the emulator reads or writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// CONNECT (client to server).
    Connect(Connect),
    /// CONNACK with session-present flag and return code.
    ConnAck {
        /// Session present.
        session_present: bool,
        /// Return code (0 accepted, 1-5 refused).
        code: u8,
    },
    /// PUBLISH (both directions).
    Publish(Publish),
    /// PUBACK.
    PubAck {
        /// Packet identifier.
        pkid: u16,
    },
    /// SUBSCRIBE with (filter, requested QoS) pairs.
    Subscribe {
        /// Packet identifier.
        pkid: u16,
        /// Topic filters and requested QoS.
        filters: Vec<(String, u8)>,
    },
    /// SUBACK with one return code per filter.
    SubAck {
        /// Packet identifier.
        pkid: u16,
        /// Granted QoS or 0x80 failure, per filter.
        codes: Vec<u8>,
    },
    /// UNSUBSCRIBE.
    Unsubscribe {
        /// Packet identifier.
        pkid: u16,
        /// Topic filters.
        filters: Vec<String>,
    },
    /// UNSUBACK.
    UnsubAck {
        /// Packet identifier.
        pkid: u16,
    },
    /// PINGREQ.
    PingReq,
    /// PINGRESP.
    PingResp,
    /// DISCONNECT.
    Disconnect,
}

/// Decodes one packet from the front of `buf`. Returns `Ok(None)` when more bytes are
/// needed, or the packet and the number of bytes it used.
pub fn decode(buf: &[u8], max_size: usize) -> Result<Option<(Packet, usize)>, PacketError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let mut remaining: usize = 0;
    let mut header_len = 1;
    let mut multiplier: usize = 1;
    loop {
        let Some(&byte) = buf.get(header_len) else {
            return Ok(None);
        };
        header_len += 1;
        remaining += usize::from(byte & 0x7f) * multiplier;
        if byte & 0x80 == 0 {
            break;
        }
        if header_len > 4 {
            return Err(PacketError::MalformedLength);
        }
        multiplier *= 128;
    }
    if remaining > max_size {
        return Err(PacketError::TooLarge {
            size: remaining,
            limit: max_size,
        });
    }
    let total = header_len + remaining;
    let Some(body) = buf.get(header_len..total) else {
        return Ok(None);
    };
    let packet = decode_body(first >> 4, first & 0x0f, body)?;
    Ok(Some((packet, total)))
}

fn decode_body(packet_type: u8, flags: u8, body: &[u8]) -> Result<Packet, PacketError> {
    let expect_flags = |want: u8| {
        if flags == want {
            Ok(())
        } else {
            Err(PacketError::InvalidFlags { packet_type, flags })
        }
    };
    let mut r = Reader { buf: body, pos: 0 };
    let packet = match packet_type {
        1 => {
            expect_flags(0)?;
            Packet::Connect(decode_connect(&mut r)?)
        }
        2 => {
            expect_flags(0)?;
            let ack = r.u8()?;
            let code = r.u8()?;
            Packet::ConnAck {
                session_present: ack & 1 == 1,
                code,
            }
        }
        3 => {
            let qos = (flags >> 1) & 0x03;
            if qos == 3 {
                return Err(PacketError::InvalidFlags { packet_type, flags });
            }
            let topic = r.string()?;
            if topic.is_empty() || topic.contains(['+', '#']) {
                return Err(PacketError::Violation("invalid topic name in PUBLISH"));
            }
            let pkid = if qos > 0 { r.u16()? } else { 0 };
            if qos > 0 && pkid == 0 {
                return Err(PacketError::Violation("packet identifier 0"));
            }
            Packet::Publish(Publish {
                topic,
                payload: r.rest().to_vec(),
                qos,
                retain: flags & 1 == 1,
                dup: flags & 0x08 != 0,
                pkid,
            })
        }
        4 => {
            expect_flags(0)?;
            Packet::PubAck { pkid: r.u16()? }
        }
        8 => {
            expect_flags(2)?;
            let pkid = r.u16()?;
            let mut filters = Vec::new();
            while !r.is_empty() {
                let filter = r.string()?;
                let qos = r.u8()?;
                if qos > 2 {
                    return Err(PacketError::Violation("requested QoS above 2"));
                }
                if filter.is_empty() {
                    return Err(PacketError::Violation("empty topic filter"));
                }
                filters.push((filter, qos));
            }
            if filters.is_empty() {
                return Err(PacketError::Violation("SUBSCRIBE without filters"));
            }
            Packet::Subscribe { pkid, filters }
        }
        9 => {
            expect_flags(0)?;
            let pkid = r.u16()?;
            Packet::SubAck {
                pkid,
                codes: r.rest().to_vec(),
            }
        }
        10 => {
            expect_flags(2)?;
            let pkid = r.u16()?;
            let mut filters = Vec::new();
            while !r.is_empty() {
                filters.push(r.string()?);
            }
            if filters.is_empty() {
                return Err(PacketError::Violation("UNSUBSCRIBE without filters"));
            }
            Packet::Unsubscribe { pkid, filters }
        }
        11 => {
            expect_flags(0)?;
            Packet::UnsubAck { pkid: r.u16()? }
        }
        12 => {
            expect_flags(0)?;
            Packet::PingReq
        }
        13 => {
            expect_flags(0)?;
            Packet::PingResp
        }
        14 => {
            expect_flags(0)?;
            Packet::Disconnect
        }
        other => return Err(PacketError::UnexpectedType(other)),
    };
    if !r.is_empty() {
        return Err(PacketError::Violation("trailing bytes after packet"));
    }
    Ok(packet)
}

fn decode_connect(r: &mut Reader<'_>) -> Result<Connect, PacketError> {
    if r.string()? != "MQTT" {
        return Err(PacketError::ProtocolName);
    }
    let level = r.u8()?;
    if level != 4 {
        return Err(PacketError::ProtocolLevel(level));
    }
    let flags = r.u8()?;
    if flags & 1 != 0 {
        return Err(PacketError::Violation("reserved CONNECT flag set"));
    }
    let keep_alive = r.u16()?;
    let client_id = r.string()?;
    let has_will = flags & 0x04 != 0;
    if !has_will && flags & 0x38 != 0 {
        return Err(PacketError::Violation("will QoS/retain without will"));
    }
    let will_topic = if has_will {
        let topic = r.string()?;
        let _message = r.binary()?;
        Some(topic)
    } else {
        None
    };
    let username = if flags & 0x80 != 0 {
        Some(r.string()?)
    } else {
        None
    };
    let password = if flags & 0x40 != 0 {
        if username.is_none() {
            return Err(PacketError::Violation("password without user name"));
        }
        Some(r.binary()?.to_vec())
    } else {
        None
    };
    Ok(Connect {
        client_id,
        username,
        password,
        keep_alive,
        clean_session: flags & 0x02 != 0,
        will_topic,
    })
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], PacketError> {
        let end = self.pos.checked_add(n).ok_or(PacketError::Truncated)?;
        let slice = self.buf.get(self.pos..end).ok_or(PacketError::Truncated)?;
        self.pos = end;
        Ok(slice)
    }
    fn u8(&mut self) -> Result<u8, PacketError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, PacketError> {
        let bytes = self.take(2)?;
        Ok(u16::from_be_bytes([bytes[0], bytes[1]]))
    }
    fn binary(&mut self) -> Result<&'a [u8], PacketError> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }
    fn string(&mut self) -> Result<String, PacketError> {
        let bytes = self.binary()?;
        let text = std::str::from_utf8(bytes).map_err(|_| PacketError::InvalidString)?;
        if text.contains('\0') {
            return Err(PacketError::InvalidString);
        }
        Ok(text.to_owned())
    }
    fn rest(&mut self) -> &'a [u8] {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        self.pos = self.buf.len();
        rest
    }
}

/// Appends the encoding of `packet` to `out`. Strings longer than 65535 bytes are
/// truncated at a character boundary (the hub never produces such strings).
pub fn encode(packet: &Packet, out: &mut Vec<u8>) {
    let mut body = Vec::new();
    let first: u8 = match packet {
        Packet::Connect(connect) => {
            put_str(&mut body, "MQTT");
            body.push(4);
            let mut flags = 0u8;
            if connect.clean_session {
                flags |= 0x02;
            }
            if connect.username.is_some() {
                flags |= 0x80;
            }
            if connect.password.is_some() {
                flags |= 0x40;
            }
            if connect.will_topic.is_some() {
                flags |= 0x04;
            }
            body.push(flags);
            body.extend_from_slice(&connect.keep_alive.to_be_bytes());
            put_str(&mut body, &connect.client_id);
            if let Some(topic) = &connect.will_topic {
                // The hub keeps only the will topic; the message is written empty.
                put_str(&mut body, topic);
                put_bin(&mut body, &[]);
            }
            if let Some(username) = &connect.username {
                put_str(&mut body, username);
            }
            if let Some(password) = &connect.password {
                put_bin(&mut body, password);
            }
            0x10
        }
        Packet::ConnAck {
            session_present,
            code,
        } => {
            body.push(u8::from(*session_present));
            body.push(*code);
            0x20
        }
        Packet::Publish(publish) => {
            put_str(&mut body, &publish.topic);
            if publish.qos > 0 {
                body.extend_from_slice(&publish.pkid.to_be_bytes());
            }
            body.extend_from_slice(&publish.payload);
            0x30 | (u8::from(publish.dup) << 3)
                | ((publish.qos & 3) << 1)
                | u8::from(publish.retain)
        }
        Packet::PubAck { pkid } => {
            body.extend_from_slice(&pkid.to_be_bytes());
            0x40
        }
        Packet::Subscribe { pkid, filters } => {
            body.extend_from_slice(&pkid.to_be_bytes());
            for (filter, qos) in filters {
                put_str(&mut body, filter);
                body.push(*qos);
            }
            0x82
        }
        Packet::SubAck { pkid, codes } => {
            body.extend_from_slice(&pkid.to_be_bytes());
            body.extend_from_slice(codes);
            0x90
        }
        Packet::Unsubscribe { pkid, filters } => {
            body.extend_from_slice(&pkid.to_be_bytes());
            for filter in filters {
                put_str(&mut body, filter);
            }
            0xa2
        }
        Packet::UnsubAck { pkid } => {
            body.extend_from_slice(&pkid.to_be_bytes());
            0xb0
        }
        Packet::PingReq => 0xc0,
        Packet::PingResp => 0xd0,
        Packet::Disconnect => 0xe0,
    };
    out.push(first);
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(&body);
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    let mut end = text.len().min(usize::from(u16::MAX));
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    put_bin(out, &text.as_bytes()[..end]);
}

fn put_bin(out: &mut Vec<u8>, bytes: &[u8]) {
    let bytes = &bytes[..bytes.len().min(usize::from(u16::MAX))];
    out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(packet: Packet) {
        let mut bytes = Vec::new();
        encode(&packet, &mut bytes);
        let decoded = decode(&bytes, MAX_PACKET_SIZE).unwrap().unwrap();
        assert_eq!(decoded, (packet, bytes.len()));
    }

    #[test]
    fn packets_round_trip() {
        round_trip(Packet::Connect(Connect {
            client_id: "dev1".into(),
            username: Some("hub/dev1/?api-version=2021-04-12".into()),
            password: Some(b"SharedAccessSignature sr=x".to_vec()),
            keep_alive: 60,
            clean_session: true,
            will_topic: None,
        }));
        round_trip(Packet::Connect(Connect {
            client_id: "dev2".into(),
            username: None,
            password: None,
            keep_alive: 0,
            clean_session: false,
            will_topic: Some("devices/dev2/messages/events/".into()),
        }));
        round_trip(Packet::Publish(Publish {
            topic: "$iothub/twin/GET/?$rid=1".into(),
            payload: vec![0; 300],
            qos: 1,
            retain: false,
            dup: false,
            pkid: 7,
        }));
        round_trip(Packet::Subscribe {
            pkid: 3,
            filters: vec![("$iothub/twin/res/#".into(), 1)],
        });
        round_trip(Packet::SubAck {
            pkid: 3,
            codes: vec![1, 0x80],
        });
        round_trip(Packet::PingReq);
        round_trip(Packet::Disconnect);
    }

    #[test]
    fn partial_input_asks_for_more() {
        let mut bytes = Vec::new();
        encode(&Packet::PubAck { pkid: 9 }, &mut bytes);
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut], MAX_PACKET_SIZE), Ok(None));
        }
    }

    #[test]
    fn random_and_mutated_input_never_panics() {
        // A deterministic stand-in for the cargo-fuzz target (fuzz/mqtt_packets.rs).
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut seed = Vec::new();
        encode(
            &Packet::Subscribe {
                pkid: 1,
                filters: vec![("$iothub/twin/res/#".into(), 1)],
            },
            &mut seed,
        );
        for round in 0..20_000 {
            let mut bytes = if round % 2 == 0 {
                seed.clone()
            } else {
                (0..(next() % 64)).map(|_| next() as u8).collect()
            };
            if !bytes.is_empty() {
                let index = (next() as usize) % bytes.len();
                bytes[index] = next() as u8;
            }
            if let Ok(Some((packet, used))) = decode(&bytes, MAX_PACKET_SIZE) {
                assert!(used <= bytes.len());
                let mut again = Vec::new();
                encode(&packet, &mut again);
                assert_eq!(
                    decode(&again, MAX_PACKET_SIZE),
                    Ok(Some((packet, again.len())))
                );
            }
        }
    }

    #[test]
    fn hostile_input_is_rejected() {
        assert_eq!(
            decode(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01], MAX_PACKET_SIZE),
            Err(PacketError::MalformedLength)
        );
        assert!(matches!(
            decode(&[0x30, 0xff, 0xff, 0xff, 0x7f], MAX_PACKET_SIZE),
            Err(PacketError::TooLarge { .. })
        ));
        // PUBLISH with QoS 3.
        assert!(decode(&[0x36, 0x03, 0x00, 0x01, b'a'], MAX_PACKET_SIZE).is_err());
        // Topic length beyond the body.
        assert_eq!(
            decode(&[0x30, 0x02, 0x00, 0x09], MAX_PACKET_SIZE),
            Err(PacketError::Truncated)
        );
        // Reserved type 0 and 15.
        assert!(decode(&[0x00, 0x00], MAX_PACKET_SIZE).is_err());
        assert!(decode(&[0xf0, 0x00], MAX_PACKET_SIZE).is_err());
        // Invalid UTF-8 topic.
        assert_eq!(
            decode(&[0x30, 0x04, 0x00, 0x02, 0xff, 0xfe], MAX_PACKET_SIZE),
            Err(PacketError::InvalidString)
        );
    }
}

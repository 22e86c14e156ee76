//! Fuzzes the MQTT 3.1.1 decoder with untrusted bytes: it must never panic, never read past
//! the input, and every packet it accepts must re-encode to bytes that decode to the same
//! packet.

use testudo_hub::mqtt::{decode, encode, MAX_PACKET_SIZE};

/// One fuzz input: must return without panicking.
pub fn fuzz(data: &[u8]) {
    let mut rest = data;
    while let Ok(Some((packet, used))) = decode(rest, MAX_PACKET_SIZE) {
        assert!(used > 0 && used <= rest.len());
        let mut bytes = Vec::new();
        encode(&packet, &mut bytes);
        let again = decode(&bytes, MAX_PACKET_SIZE);
        assert_eq!(again, Ok(Some((packet, bytes.len()))));
        rest = &rest[used..];
    }
}

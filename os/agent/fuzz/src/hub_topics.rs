//! Topics published by the hub are attacker-controlled strings: parsing must never panic.

/// One fuzz input: must return without panicking.
pub fn fuzz(data: &[u8]) {
    if let Ok(topic) = std::str::from_utf8(data) {
        let _ = testudo_agent::topics::parse(topic);
        let _ = testudo_agent::dps::parse_response_topic(topic);
    }
}

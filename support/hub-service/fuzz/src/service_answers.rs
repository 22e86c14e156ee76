//! Target `service_answers`: any bytes as a hub's HTTP/1.1 answer
//! ([`testudo_hub_service::client::parse_answer`]). Nothing may panic, and a body read is
//! within the answer, no longer than its `Content-Length`.

/// The target's body.
pub fn fuzz(data: &[u8]) {
    if let Ok((_, body)) = testudo_hub_service::client::parse_answer(data) {
        assert!(body.len() <= data.len());
        let start = body.as_ptr() as usize;
        let base = data.as_ptr() as usize;
        assert!(start >= base && start + body.len() <= base + data.len());
    }
}

//! Response heads of the server a module is downloaded from are untrusted bytes: parsing them
//! and checking what they say against a request must never panic, whatever the offset and
//! size asked for.

/// One fuzz input: must return without panicking. Its first 16 bytes, when there are that
/// many, choose the request's offset and module size (little-endian `u64`s); the rest (or
/// all of a shorter input) is the answer.
pub fn fuzz(data: &[u8]) {
    use testudo_agent::module_fetch::{parse_head, plan_body};
    let (offset, size, answer) = match data.split_first_chunk::<16>() {
        Some((numbers, answer)) => {
            let (offset, size) = numbers.split_at(8);
            let number =
                |bytes: &[u8]| u64::from_le_bytes(<[u8; 8]>::try_from(bytes).unwrap_or_default());
            (number(offset), number(size), answer)
        }
        None => (0, data.len() as u64, data),
    };
    for bytes in [data, answer] {
        if let Ok(Some((head, length))) = parse_head(bytes) {
            assert!(length <= bytes.len());
            if let Ok(plan) = plan_body(&head, offset.min(size), size) {
                assert!(plan.skip <= size);
            }
        }
    }
}

//! A hostile network: arbitrary bytes as the answer to the `net` driver's DNS query for
//! `hub.example.test` (query id 0x1234, as the corpus files carry it). Parsing must return
//! addresses or an error, never panic; addresses only for an answer that echoes the query.

use testudo_drivers::dns;

/// The name every corpus answer answers.
pub const NAME: &str = "hub.example.test";
/// The query id every corpus answer carries.
pub const ID: u16 = 0x1234;

/// One fuzz input: must return without panicking.
pub fn fuzz(data: &[u8]) {
    let query = dns::query(ID, NAME).expect("the fixed query is valid");
    if let Ok(addresses) = dns::parse_answer(&query, data) {
        assert!(!addresses.is_empty());
        assert_eq!(&data[..2], &query[..2]);
        assert_eq!(&data[12..query.len()], &query[12..]);
    }
}

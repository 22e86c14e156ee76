//! DNS over UDP, the little the `net` driver needs (RFC 1035 §4): a query for one name's
//! IPv4 addresses (type A, class IN, recursion desired) and a defensive reading of the
//! answer. Answers are untrusted bytes: every length is checked against the message before
//! it is used, names are skipped without following compression pointers (so there is no
//! pointer to loop on), and nothing is allocated by the size an answer claims.

use std::net::Ipv4Addr;

/// Largest DNS message over UDP without EDNS (RFC 1035 §2.3.4); larger answers are cut.
pub const MAX_MESSAGE: usize = 512;
/// Longest name in its text form (RFC 1035 §2.3.4, without the final dot).
pub const MAX_NAME: usize = 253;
const HEADER: usize = 12;
const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;
const FLAG_RESPONSE: u16 = 0x8000;
const FLAG_RECURSION_DESIRED: u16 = 0x0100;
const RCODE_MASK: u16 = 0x000F;

/// A query or answer that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// The name to ask for is not a host name DNS can carry.
    #[error(
        "{name:?} is not a DNS host name (labels of 1-63 letters, digits or '-', 253 bytes in all)"
    )]
    InvalidName {
        /// The name as given.
        name: String,
    },
    /// The answer ends inside a field.
    #[error("the answer ends at byte {len}, inside a field that starts at byte {at}")]
    Truncated {
        /// Where the field starts.
        at: usize,
        /// The answer's length.
        len: usize,
    },
    /// The message is a query, or answers another query (its id or question differs).
    #[error("the message is not the answer to this query")]
    NotTheAnswer,
    /// A label's length byte uses the reserved forms `01` or `10` in its top bits.
    #[error("a name at byte {at} has a label of reserved type {byte:#04x}")]
    ReservedLabel {
        /// Where the length byte is.
        at: usize,
        /// The byte.
        byte: u8,
    },
    /// The server answered with an error code.
    #[error("the server answered {} (response code {code})", response_code_name(*code))]
    ServerError {
        /// RCODE (RFC 1035 §4.1.1).
        code: u8,
    },
    /// The answer is well formed but has no IPv4 address.
    #[error("the answer holds no IPv4 address")]
    NoAddress,
}

fn response_code_name(code: u8) -> &'static str {
    match code {
        1 => "format error",
        2 => "server failure",
        3 => "no such name",
        4 => "not implemented",
        5 => "refused",
        _ => "an error",
    }
}

/// Checks `name` and returns its labels.
fn labels(name: &str) -> Result<Vec<&str>, DnsError> {
    let invalid = || DnsError::InvalidName {
        name: name.to_owned(),
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(invalid());
    }
    let labels: Vec<&str> = name.split('.').collect();
    let valid_label = |label: &&str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if labels.iter().all(valid_label) {
        Ok(labels)
    } else {
        Err(invalid())
    }
}

/// The query with id `id` for the IPv4 addresses of `name`.
pub fn query(id: u16, name: &str) -> Result<Vec<u8>, DnsError> {
    let labels = labels(name)?;
    let mut message = Vec::with_capacity(HEADER + name.len() + 6);
    message.extend_from_slice(&id.to_be_bytes());
    message.extend_from_slice(&FLAG_RECURSION_DESIRED.to_be_bytes());
    // One question; no answer, authority or additional records.
    for count in [1u16, 0, 0, 0] {
        message.extend_from_slice(&count.to_be_bytes());
    }
    for label in labels {
        // Each label is 1-63 bytes (checked by `labels`).
        message.push(label.len() as u8);
        message.extend_from_slice(label.as_bytes());
    }
    message.push(0);
    message.extend_from_slice(&TYPE_A.to_be_bytes());
    message.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(message)
}

/// Reads answers as a cursor that never passes the end.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, len: usize) -> Result<&[u8], DnsError> {
        let truncated = DnsError::Truncated {
            at: self.at,
            len: self.bytes.len(),
        };
        let end = self.at.checked_add(len).ok_or(truncated.clone())?;
        let field = self.bytes.get(self.at..end).ok_or(truncated)?;
        self.at = end;
        Ok(field)
    }

    fn u16(&mut self) -> Result<u16, DnsError> {
        let field = self.take(2)?;
        Ok(u16::from_be_bytes([field[0], field[1]]))
    }

    /// Skips a name: labels up to the root label or a compression pointer (whose target is
    /// not needed: no name in an answer is read, only the question is compared).
    fn skip_name(&mut self) -> Result<(), DnsError> {
        loop {
            let at = self.at;
            let byte = self.take(1)?[0];
            match byte & 0xC0 {
                0x00 if byte == 0 => return Ok(()),
                0x00 => {
                    self.take(usize::from(byte))?;
                }
                0xC0 => {
                    self.take(1)?;
                    return Ok(());
                }
                _ => return Err(DnsError::ReservedLabel { at, byte }),
            }
        }
    }
}

/// The IPv4 addresses in `answer`, the server's reply to `query` (as built by [`query`]).
///
/// The answer must carry the query's id and echo its question byte for byte; every `A`
/// record of class `IN` in the answer section counts (a recursive server puts the records
/// of a CNAME chain there, ending with the addresses).
pub fn parse_answer(query: &[u8], answer: &[u8]) -> Result<Vec<Ipv4Addr>, DnsError> {
    let question = query.get(HEADER..).ok_or(DnsError::NotTheAnswer)?;
    let mut reader = Reader {
        bytes: answer,
        at: 0,
    };
    let id = reader.take(2)?;
    if id != &query[..2] {
        return Err(DnsError::NotTheAnswer);
    }
    let flags = reader.u16()?;
    if flags & FLAG_RESPONSE == 0 {
        return Err(DnsError::NotTheAnswer);
    }
    let questions = reader.u16()?;
    let answers = reader.u16()?;
    reader.take(4)?;
    // RCODE is read after the header is known to be complete.
    let code = (flags & RCODE_MASK) as u8;
    if code != 0 {
        return Err(DnsError::ServerError { code });
    }
    if questions != 1 || reader.take(question.len())? != question {
        return Err(DnsError::NotTheAnswer);
    }
    let mut addresses = Vec::new();
    for _ in 0..answers {
        reader.skip_name()?;
        let kind = reader.u16()?;
        let class = reader.u16()?;
        reader.take(4)?; // TTL: the driver does not cache.
        let length = reader.u16()?;
        let data = reader.take(usize::from(length))?;
        if kind == TYPE_A && class == CLASS_IN {
            if let Ok(octets) = <[u8; 4]>::try_from(data) {
                addresses.push(Ipv4Addr::from(octets));
            }
        }
    }
    if addresses.is_empty() {
        Err(DnsError::NoAddress)
    } else {
        Ok(addresses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer to `query` with `records` (type, data) after the echoed question, each
    /// record's name a pointer to the question's name.
    fn answer(query: &[u8], code: u8, records: &[(u16, &[u8])]) -> Vec<u8> {
        let mut out = query[..2].to_vec();
        out.extend_from_slice(&(0x8180u16 | u16::from(code)).to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&(records.len() as u16).to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(&query[HEADER..]);
        for (kind, data) in records {
            out.extend_from_slice(&[0xC0, 0x0C]);
            out.extend_from_slice(&kind.to_be_bytes());
            out.extend_from_slice(&CLASS_IN.to_be_bytes());
            out.extend_from_slice(&[0, 0, 0, 60]);
            out.extend_from_slice(&(data.len() as u16).to_be_bytes());
            out.extend_from_slice(data);
        }
        out
    }

    #[test]
    fn a_query_carries_id_flags_and_the_name_as_labels() {
        let q = query(0x1234, "hub.example.test").unwrap();
        assert_eq!(&q[..4], &[0x12, 0x34, 0x01, 0x00]);
        assert_eq!(&q[4..12], &[0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&q[12..], b"\x03hub\x07example\x04test\x00\x00\x01\x00\x01");
        assert_eq!(query(1, "hub.example.test.").unwrap(), {
            let mut same = q.clone();
            same[..2].copy_from_slice(&[0, 1]);
            same
        });
    }

    #[test]
    fn names_dns_cannot_carry_are_refused() {
        let long_label = format!("{}.test", "a".repeat(64));
        let long_name = vec!["abcdefghi"; 26].join(".");
        for name in [
            "",
            ".",
            "a..b",
            "space here",
            "ünï.test",
            &long_label,
            &long_name,
        ] {
            assert!(
                matches!(query(1, name), Err(DnsError::InvalidName { .. })),
                "{name:?}"
            );
        }
    }

    #[test]
    fn the_addresses_of_a_cname_chain_are_read() {
        let q = query(7, "hub.example.test").unwrap();
        let reply = answer(
            &q,
            0,
            &[
                (5, b"\x03hub\xC0\x10"),
                (1, &[10, 0, 2, 2]),
                (28, &[0; 16]),
                (1, &[10, 0, 2, 3]),
            ],
        );
        assert_eq!(
            parse_answer(&q, &reply).unwrap(),
            [Ipv4Addr::new(10, 0, 2, 2), Ipv4Addr::new(10, 0, 2, 3)]
        );
    }

    #[test]
    fn answers_to_other_queries_errors_and_empty_answers_are_told_apart() {
        let q = query(7, "hub.example.test").unwrap();
        let other = query(8, "hub.example.test").unwrap();
        let elsewhere = query(7, "evil.example.test").unwrap();
        let addresses: &[(u16, &[u8])] = &[(1, &[10, 0, 2, 2])];
        assert_eq!(
            parse_answer(&q, &answer(&other, 0, addresses)),
            Err(DnsError::NotTheAnswer)
        );
        assert_eq!(
            parse_answer(&q, &answer(&elsewhere, 0, addresses)),
            Err(DnsError::NotTheAnswer)
        );
        assert_eq!(parse_answer(&q, &q), Err(DnsError::NotTheAnswer));
        assert_eq!(
            parse_answer(&q, &answer(&q, 3, &[])),
            Err(DnsError::ServerError { code: 3 })
        );
        assert_eq!(
            parse_answer(&q, &answer(&q, 0, &[(28, &[0; 16])])),
            Err(DnsError::NoAddress)
        );
    }

    #[test]
    fn every_cut_of_an_answer_is_an_error_not_a_panic() {
        let q = query(7, "hub.example.test").unwrap();
        let reply = answer(&q, 0, &[(1, &[10, 0, 2, 2])]);
        for len in 0..reply.len() {
            assert!(parse_answer(&q, &reply[..len]).is_err(), "cut at {len}");
        }
        let mut reserved = reply.clone();
        reserved[q.len()] = 0x80;
        assert!(matches!(
            parse_answer(&q, &reserved),
            Err(DnsError::ReservedLabel { byte: 0x80, .. })
        ));
    }
}

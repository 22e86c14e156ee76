//! DPS's HTTPS JSON API at the HTTP/1.1 level, shared by TPM attestation on a host
//! ([`crate::dps_tpm`]: blocking, its own sockets) and on a device ([`crate::dps_tpm_route`]:
//! async, through the `net` route): one request per connection (`Connection: close`), bodies
//! with `Content-Length` only, answers bounded in size and parsed as untrusted bytes.

use serde_json::Value;

/// Why an answer is not a usable HTTP/1.1 JSON answer.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    /// The header is not text.
    #[error("the header is not UTF-8")]
    HeaderNotUtf8,
    /// The first line is not `HTTP/1.x CODE ...`.
    #[error("bad status line {line:?}")]
    StatusLine {
        /// The line as received.
        line: String,
    },
    /// A header line has no `:`.
    #[error("malformed header line {line:?}")]
    HeaderLine {
        /// The line as received.
        line: String,
    },
    /// `Content-Length` is not a number.
    #[error("bad Content-Length {value:?}")]
    ContentLength {
        /// The value as received.
        value: String,
    },
    /// A chunked body (DPS sends `Content-Length`).
    #[error("chunked answers are not supported")]
    Chunked,
    /// The body is not JSON.
    #[error("the body is not JSON")]
    BodyNotJson(#[source] serde_json::Error),
    /// More bytes than an answer may have.
    #[error("an answer longer than {limit} bytes")]
    TooLarge {
        /// The bound.
        limit: usize,
    },
    /// The connection ended before the whole answer arrived.
    #[error("the connection closed mid-answer")]
    Incomplete,
}

/// The text of a request (everything in it is ASCII or JSON).
pub fn request_text(
    host: &str,
    port: u16,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    body: Option<&Value>,
) -> String {
    let payload = body.map(Value::to_string).unwrap_or_default();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: testudo-agent\r\nAccept: application/json\r\nConnection: close\r\nContent-Length: {}\r\n",
        payload.len()
    );
    if body.is_some() {
        request.push_str("Content-Type: application/json; charset=utf-8\r\n");
    }
    if let Some(authorization) = authorization {
        request.push_str("Authorization: ");
        request.push_str(authorization);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    request.push_str(&payload);
    request
}

/// An answer as its bytes arrive, at most `limit` of them.
#[derive(Debug)]
pub struct Answer {
    bytes: Vec<u8>,
    limit: usize,
}

impl Answer {
    /// An empty answer bounded to `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            bytes: Vec::new(),
            limit,
        }
    }

    /// Adds what one read returned; whether the answer is now complete.
    pub fn push(&mut self, chunk: &[u8]) -> Result<bool, AnswerError> {
        self.bytes.extend_from_slice(chunk);
        if self.bytes.len() > self.limit {
            return Err(AnswerError::TooLarge { limit: self.limit });
        }
        Ok(parse_response(&self.bytes).is_ok_and(|parsed| parsed.is_some()))
    }

    /// The status and JSON body (`null` when empty) of the complete answer.
    pub fn finish(&self) -> Result<(u16, Value), AnswerError> {
        parse_response(&self.bytes)?.ok_or(AnswerError::Incomplete)
    }
}

/// Parses an HTTP/1.1 answer with a `Content-Length` body; `Ok(None)` while incomplete.
pub fn parse_response(bytes: &[u8]) -> Result<Option<(u16, Value)>, AnswerError> {
    let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&bytes[..end]).map_err(|_| AnswerError::HeaderNotUtf8)?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| status_line.starts_with("HTTP/1."))
        .ok_or_else(|| AnswerError::StatusLine {
            line: status_line.to_owned(),
        })?;
    let mut length = 0usize;
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| AnswerError::HeaderLine {
                line: line.to_owned(),
            })?;
        if name.eq_ignore_ascii_case("content-length") {
            length = value
                .trim()
                .parse()
                .map_err(|_| AnswerError::ContentLength {
                    value: value.trim().to_owned(),
                })?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(AnswerError::Chunked);
        }
    }
    let body = &bytes[end + 4..];
    if body.len() < length {
        return Ok(None);
    }
    let body = &body[..length];
    let value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(body).map_err(AnswerError::BodyNotJson)?
    };
    Ok(Some((status, value)))
}

/// What an answer says, for an error message: its `message`, or the whole document.
pub fn describe(answer: &Value) -> String {
    answer
        .get("message")
        .and_then(Value::as_str)
        .map_or_else(|| answer.to_string(), str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_http_answers_and_waits_for_the_whole_body() {
        let full = b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 7\r\n\r\n{\"a\":1}";
        assert_eq!(parse_response(full).unwrap(), Some((401, json!({"a": 1}))));
        assert_eq!(parse_response(&full[..full.len() - 1]).unwrap(), None);
        assert_eq!(parse_response(b"HTTP/1.1 20").unwrap(), None);
        assert!(matches!(
            parse_response(b"garbage\r\n\r\n"),
            Err(AnswerError::StatusLine { .. })
        ));
        assert!(matches!(
            parse_response(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"),
            Err(AnswerError::Chunked)
        ));
        assert!(matches!(
            parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{x"),
            Err(AnswerError::BodyNotJson(_))
        ));
    }

    #[test]
    fn answers_are_bounded_and_must_be_whole() {
        let full = b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\n{}";
        let mut answer = Answer::new(1024);
        assert!(!answer.push(&full[..20]).unwrap());
        assert!(matches!(answer.finish(), Err(AnswerError::Incomplete)));
        assert!(answer.push(&full[20..]).unwrap());
        assert_eq!(answer.finish().unwrap(), (202, json!({})));
        let mut small = Answer::new(16);
        assert!(matches!(
            small.push(full),
            Err(AnswerError::TooLarge { limit: 16 })
        ));
    }

    #[test]
    fn requests_carry_length_type_and_authorization() {
        let text = request_text(
            "dps.example",
            443,
            "PUT",
            "/s/registrations/d/register",
            Some("SharedAccessSignature sr=x"),
            Some(&json!({"registrationId": "d"})),
        );
        assert!(text
            .starts_with("PUT /s/registrations/d/register HTTP/1.1\r\nHost: dps.example:443\r\n"));
        assert!(text.contains("Content-Length: 22\r\n"), "{text}");
        assert!(text.contains("Content-Type: application/json; charset=utf-8\r\n"));
        assert!(text.contains("Authorization: SharedAccessSignature sr=x\r\n"));
        assert!(text.ends_with("\r\n\r\n{\"registrationId\":\"d\"}"));
    }
}

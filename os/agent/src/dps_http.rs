//! DPS's HTTPS JSON API at the HTTP/1.1 level, shared by TPM attestation on a host
//! ([`crate::dps_tpm`]: blocking, its own sockets) and on a device ([`crate::dps_tpm_route`]:
//! async, through the `net` route): one request per connection (`Connection: close`), bodies
//! with `Content-Length` only, answers bounded in size and parsed as untrusted bytes; and when
//! to poll a registration's operation ([`poll_wait`]).

use std::time::Duration;

use serde_json::Value;

use crate::dps::{operation_status, Assignment, OperationStatus};
use crate::error::AgentError;
use crate::http_head::{self, HeadError};
use crate::sas::percent_encode;

/// DPS REST API version (the one iot-identity-service uses).
pub const API_VERSION: &str = "2021-06-01";

/// The path of a registration (`PUT`, with the TPM's keys, then with the TPM-signed token).
pub fn register_path(id_scope: &str, registration_id: &str) -> String {
    format!(
        "/{}/registrations/{}/register?api-version={API_VERSION}",
        percent_encode(id_scope),
        percent_encode(registration_id)
    )
}

/// The path of a registration operation's status (`GET`, polled until assigned).
pub fn operation_path(id_scope: &str, registration_id: &str, operation_id: &str) -> String {
    format!(
        "/{}/registrations/{}/operations/{}?api-version={API_VERSION}",
        percent_encode(id_scope),
        percent_encode(registration_id),
        percent_encode(operation_id)
    )
}

/// What a registration's answer (to the TPM-signed PUT, or a status poll) calls for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperationStep {
    /// DPS assigned the device.
    Assigned(Assignment),
    /// Still assigning: poll this operation, after `Retry-After` if DPS named one.
    Poll {
        /// The operation to poll.
        operation_id: String,
        /// DPS's `Retry-After`.
        retry_after: Option<Duration>,
    },
}

/// The step `answer` calls for in `registration_id`'s registration; `request` names the
/// request in errors. A status other than 200 or 202, a failed registration or an answer
/// that is not an operation's state is an error.
pub fn operation_step(
    registration_id: &str,
    request: &str,
    answer: Response,
) -> Result<OperationStep, AgentError> {
    let fail = |reason: String| AgentError::Provision {
        registration_id: registration_id.to_owned(),
        reason,
    };
    if answer.status != 200 && answer.status != 202 {
        return Err(fail(format!(
            "{request} answered {}: {}",
            answer.status,
            describe(&answer.body)
        )));
    }
    let state = operation_status(&answer.body).map_err(|source| AgentError::ProvisionAnswer {
        registration_id: registration_id.to_owned(),
        source,
    })?;
    match state {
        OperationStatus::Assigned(assignment) => Ok(OperationStep::Assigned(assignment)),
        OperationStatus::Failed { message } => Err(fail(message)),
        OperationStatus::Assigning { operation_id } => Ok(OperationStep::Poll {
            operation_id,
            retry_after: answer.retry_after,
        }),
    }
}

/// The first wait before polling a registration's operation when DPS names none.
pub const FIRST_POLL_WAIT: Duration = Duration::from_millis(100);
/// The longest wait between polls when DPS names none (the Azure SDKs' fixed interval).
pub const MAX_POLL_WAIT: Duration = Duration::from_secs(2);
/// The longest `Retry-After` honoured: a larger one is taken as this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// A complete answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// The HTTP status.
    pub status: u16,
    /// `Retry-After` in seconds, when the answer has one (an HTTP date is not honoured).
    pub retry_after: Option<Duration>,
    /// The JSON body, `null` when empty.
    pub body: Value,
}

/// How long to wait before status poll number `poll` (0 for the first) of a registration's
/// operation: what DPS asked for (`Retry-After`, at most [`MAX_RETRY_AFTER`]), else
/// [`FIRST_POLL_WAIT`] doubled at each poll up to [`MAX_POLL_WAIT`]. DPS usually assigns
/// within a second, so the first polls come early; a slow assignment is polled as the
/// Azure SDKs poll it.
pub fn poll_wait(poll: u32, retry_after: Option<Duration>) -> Duration {
    match retry_after {
        Some(wait) => wait.min(MAX_RETRY_AFTER),
        None => FIRST_POLL_WAIT
            .saturating_mul(2u32.saturating_pow(poll))
            .min(MAX_POLL_WAIT),
    }
}

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

    /// The complete answer.
    pub fn finish(&self) -> Result<Response, AnswerError> {
        parse_response(&self.bytes)?.ok_or(AnswerError::Incomplete)
    }
}

/// Parses an HTTP/1.1 answer with a `Content-Length` body; `Ok(None)` while incomplete.
pub fn parse_response(bytes: &[u8]) -> Result<Option<Response>, AnswerError> {
    let Some(head) = http_head::split(bytes).map_err(|error| match error {
        HeadError::NotText => AnswerError::HeaderNotUtf8,
        HeadError::StatusLine { line } => AnswerError::StatusLine { line },
        HeadError::FieldLine { line } => AnswerError::HeaderLine { line },
    })?
    else {
        return Ok(None);
    };
    let mut length = 0usize;
    let mut retry_after = None;
    for (name, value) in head.fields {
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse().map_err(|_| AnswerError::ContentLength {
                value: value.to_owned(),
            })?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(AnswerError::Chunked);
        } else if name.eq_ignore_ascii_case("retry-after") {
            // Advisory: a value that is not delta-seconds is ignored, not an error.
            retry_after = value.parse::<u64>().ok().map(Duration::from_secs);
        }
    }
    let status = head.status;
    let body = &bytes[head.len..];
    if body.len() < length {
        return Ok(None);
    }
    let body = &body[..length];
    let value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(body).map_err(AnswerError::BodyNotJson)?
    };
    Ok(Some(Response {
        status,
        retry_after,
        body: value,
    }))
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
        let answer = parse_response(full).unwrap().unwrap();
        assert_eq!((answer.status, answer.body), (401, json!({"a": 1})));
        assert_eq!(answer.retry_after, None);
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
        let finished = answer.finish().unwrap();
        assert_eq!((finished.status, finished.body), (202, json!({})));
        let mut small = Answer::new(16);
        assert!(matches!(
            small.push(full),
            Err(AnswerError::TooLarge { limit: 16 })
        ));
    }

    #[test]
    fn retry_after_in_seconds_is_read_and_anything_else_ignored() {
        let with = |value: &str| {
            let text = format!(
                "HTTP/1.1 202 Accepted\r\nRetry-After: {value}\r\nContent-Length: 0\r\n\r\n"
            );
            parse_response(text.as_bytes())
                .unwrap()
                .unwrap()
                .retry_after
        };
        assert_eq!(with("3"), Some(Duration::from_secs(3)));
        assert_eq!(with(" 0 "), Some(Duration::ZERO));
        assert_eq!(with("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(with("-1"), None);
        assert_eq!(with("99999999999999999999999"), None);
    }

    #[test]
    fn polls_come_early_then_back_off_unless_dps_says_when() {
        let waits: Vec<u64> = (0..7)
            .map(|poll| poll_wait(poll, None).as_millis() as u64)
            .collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(poll_wait(u32::MAX, None), MAX_POLL_WAIT);
        assert_eq!(
            poll_wait(0, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(
            poll_wait(5, Some(Duration::from_secs(3600))),
            MAX_RETRY_AFTER
        );
    }

    #[test]
    fn answers_step_the_registration_or_fail_it() {
        let answer = |status, retry_after, body| Response {
            status,
            retry_after,
            body,
        };
        let three = Some(Duration::from_secs(3));
        assert_eq!(
            operation_step(
                "d",
                "PUT",
                answer(
                    202,
                    three,
                    json!({"operationId": "4.a", "status": "assigning"})
                )
            )
            .unwrap(),
            OperationStep::Poll {
                operation_id: "4.a".into(),
                retry_after: three
            }
        );
        assert_eq!(
            operation_step(
                "d",
                "GET",
                answer(
                    200,
                    None,
                    json!({"status": "assigned", "registrationState": {"assignedHub": "h", "deviceId": "d"}})
                )
            )
            .unwrap(),
            OperationStep::Assigned(Assignment {
                assigned_hub: "h".into(),
                device_id: "d".into()
            })
        );
        let refused = operation_step("d", "GET", answer(404, None, json!({"message": "gone"})));
        assert!(
            matches!(&refused, Err(AgentError::Provision { reason, .. }) if reason == "GET answered 404: gone"),
            "{refused:?}"
        );
        let failed = operation_step(
            "d",
            "GET",
            answer(
                200,
                None,
                json!({"status": "failed", "registrationState": {"errorMessage": "disabled"}}),
            ),
        );
        assert!(
            matches!(&failed, Err(AgentError::Provision { reason, .. }) if reason == "disabled")
        );
        let garbage = operation_step("d", "GET", answer(200, None, json!([1])));
        assert!(matches!(garbage, Err(AgentError::ProvisionAnswer { .. })));
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

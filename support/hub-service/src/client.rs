//! [`ServiceClient`]: the service API over blocking HTTPS/1.1 (rustls, `Connection: close`,
//! one request per connection), answers bounded and parsed as untrusted bytes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::connection_string::ServiceConnectionString;
use crate::error::ServiceError;
use crate::sas::service_token;
use crate::API_VERSION;

/// Largest answer read (a twin is at most 64 KiB of properties plus metadata).
pub const MAX_ANSWER: usize = 1024 * 1024;
/// How long a request may wait for the hub.
const TIMEOUT: Duration = Duration::from_secs(60);
/// Lifetime of each request's SAS token.
const TOKEN_TTL: u64 = 300;

/// A client of one hub's service API.
#[derive(Debug)]
pub struct ServiceClient {
    hub: ServiceConnectionString,
    tls: Arc<rustls::ClientConfig>,
    /// Where to connect instead of resolving the hub's name (its TLS name stays the hub's).
    address: Option<SocketAddr>,
}

impl ServiceClient {
    /// A client for `hub` that trusts the certificates in `trust_anchors_pem` (Microsoft's
    /// roots for a real hub, the emulator's CA for the emulator).
    pub fn new(
        hub: ServiceConnectionString,
        trust_anchors_pem: &str,
    ) -> Result<ServiceClient, ServiceError> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut trust_anchors_pem.as_bytes()).flatten() {
            // A certificate rustls cannot use is skipped, as a browser's store would.
            let _ = roots.add(cert);
        }
        if roots.is_empty() {
            return Err(ServiceError::TrustAnchors { host: hub.host });
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|source| ServiceError::Tls {
                host: hub.host.clone(),
                source,
            })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(ServiceClient {
            hub,
            tls: Arc::new(tls),
            address: None,
        })
    }

    /// Connects to `address` instead of resolving the hub's host name, which is still the
    /// name its certificate must carry (a development hub whose name no DNS knows).
    pub fn connect_to(mut self, address: SocketAddr) -> ServiceClient {
        self.address = Some(address);
        self
    }

    /// The hub this client talks to (`host[:port]`).
    pub fn hub_name(&self) -> String {
        self.hub.host_name()
    }

    /// The device's twin (`GET /twins/{id}`): `deviceId`, `properties.desired`,
    /// `properties.reported`, ...
    pub fn twin(&self, device: &str) -> Result<Value, ServiceError> {
        self.request("GET", &twin_path(device), None, None)
            .map(|(_, twin)| twin)
    }

    /// Patches the device's desired properties (`PATCH /twins/{id}`; `null` deletes a key);
    /// returns the twin after the patch.
    pub fn patch_desired(&self, device: &str, desired: &Value) -> Result<Value, ServiceError> {
        let body = json!({ "properties": { "desired": desired } });
        self.request("PATCH", &twin_path(device), Some(&body), None)
            .map(|(_, twin)| twin)
    }

    /// Sends one request to the service API (`path` without `api-version`), with an
    /// `If-Match` precondition when `if_match` names an etag; the status and JSON body
    /// (`null` when empty) of a 2xx answer.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> Result<(u16, Value), ServiceError> {
        let payload = body.map(Value::to_string).unwrap_or_default();
        self.exchange(
            method,
            path,
            "application/json; charset=utf-8",
            payload.as_bytes(),
            if_match,
        )
    }

    /// `PUT`s `bytes` (`application/octet-stream`) at `path`: an upload, e.g. to the
    /// emulator's artifact store. Returns the status and the JSON answer, like
    /// [`ServiceClient::request`].
    pub fn upload(&self, path: &str, bytes: &[u8]) -> Result<(u16, Value), ServiceError> {
        self.exchange("PUT", path, "application/octet-stream", bytes, None)
    }

    /// One request with a body of `content_type`; its answer, bounded and checked.
    fn exchange(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        payload: &[u8],
        if_match: Option<&str>,
    ) -> Result<(u16, Value), ServiceError> {
        let label = format!("{method} {path}");
        let host_name = self.hub.host_name();
        let transport = |source| ServiceError::Transport {
            request: label.clone(),
            host: host_name.clone(),
            source,
        };
        let expiry = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |now| now.as_secs())
            + TOKEN_TTL;
        let token = service_token(&host_name, &self.hub.key_name, &self.hub.key, expiry)?;
        let server_name = rustls::pki_types::ServerName::try_from(self.hub.host.clone())
            .map_err(|_| ServiceError::ConnectionString { field: "HostName" })?;
        let connection =
            rustls::ClientConnection::new(self.tls.clone(), server_name).map_err(|source| {
                ServiceError::Tls {
                    host: self.hub.host.clone(),
                    source,
                }
            })?;
        let tcp = match self.address {
            Some(address) => TcpStream::connect(address),
            None => TcpStream::connect((self.hub.host.as_str(), self.hub.port)),
        }
        .map_err(transport)?;
        tcp.set_read_timeout(Some(TIMEOUT)).map_err(transport)?;
        tcp.set_write_timeout(Some(TIMEOUT)).map_err(transport)?;
        let mut stream = rustls::StreamOwned::new(connection, tcp);
        let separator = if path.contains('?') { '&' } else { '?' };
        let precondition = if_match
            .map(|etag| format!("If-Match: \"{etag}\"\r\n"))
            .unwrap_or_default();
        let head = format!(
            "{method} {path}{separator}api-version={API_VERSION} HTTP/1.1\r\nHost: {host_name}\r\nAuthorization: {token}\r\nAccept: application/json\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{precondition}Connection: close\r\n\r\n",
            payload.len()
        );
        stream.write_all(head.as_bytes()).map_err(transport)?;
        stream.write_all(payload).map_err(transport)?;
        stream.flush().map_err(transport)?;
        let mut answer = Vec::new();
        let mut limited = (&mut stream).take(MAX_ANSWER as u64 + 1);
        match limited.read_to_end(&mut answer) {
            Ok(_) => {}
            // Servers may close without TLS close_notify; what arrived is checked below.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
            Err(e) => return Err(transport(e)),
        }
        let unreadable = |reason| ServiceError::Answer {
            request: label.clone(),
            reason,
        };
        if answer.len() > MAX_ANSWER {
            return Err(unreadable("longer than 1 MiB"));
        }
        let (status, body) = parse_answer(&answer).map_err(unreadable)?;
        if !(200..300).contains(&status) {
            return Err(ServiceError::Status {
                request: label,
                status,
                message: error_message(body),
            });
        }
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok((status, Value::Null));
        }
        serde_json::from_slice(body)
            .map(|json| (status, json))
            .map_err(|_| unreadable("the body is not JSON"))
    }
}

fn twin_path(device: &str) -> String {
    format!(
        "/twins/{}",
        percent_encoding::utf8_percent_encode(device, crate::sas::UNRESERVED)
    )
}

/// The status and body of a whole HTTP/1.1 answer (`Content-Length`, or until the
/// connection closed); chunked answers are refused. Fuzzed (`support/hub-service/fuzz`).
pub fn parse_answer(answer: &[u8]) -> Result<(u16, &[u8]), &'static str> {
    let end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of header")?;
    let head = std::str::from_utf8(&answer[..end]).map_err(|_| "the header is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    if !status_line.starts_with("HTTP/1.") {
        return Err("not an HTTP/1.x status line");
    }
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or("no status code")?;
    let body = &answer[end + 4..];
    let mut length = None;
    for line in lines {
        let (name, value) = line.split_once(':').ok_or("a malformed header line")?;
        if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err("chunked answers are not read");
        }
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .trim()
                    .parse::<usize>()
                    .map_err(|_| "a malformed Content-Length")?,
            );
        }
    }
    match length {
        Some(length) if body.len() < length => Err("the connection closed mid-answer"),
        Some(length) => Ok((status, &body[..length])),
        None => Ok((status, body)),
    }
}

/// The hub's error message: `Message` (IoT Hub) or `message`, else the body's start.
fn error_message(body: &[u8]) -> String {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    parsed
        .as_ref()
        .and_then(|v| v.get("Message").or_else(|| v.get("message")))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(200).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_by_length_or_to_the_end_and_chunked_is_refused() {
        assert_eq!(
            parse_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}trailing"),
            Ok((200, &b"{}"[..]))
        );
        assert_eq!(
            parse_answer(b"HTTP/1.1 204 No Content\r\n\r\n"),
            Ok((204, &b""[..]))
        );
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{}").is_err());
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
        assert!(parse_answer(b"SSH-2.0\r\n\r\n").is_err());
        assert!(parse_answer(b"HTTP/1.1 200 OK").is_err());
    }

    #[test]
    fn the_hubs_message_is_shown() {
        assert_eq!(
            error_message(br#"{"Message":"ErrorCode:DeviceNotFound;no such device"}"#),
            "ErrorCode:DeviceNotFound;no such device"
        );
        assert_eq!(error_message(b"plain"), "plain");
    }

    #[test]
    fn device_ids_are_encoded_in_the_path() {
        assert_eq!(twin_path("gw-01.x"), "/twins/gw-01.x");
        assert_eq!(twin_path("a/b"), "/twins/a%2Fb");
    }
}

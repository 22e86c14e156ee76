//! Downloading an app's WASM module over HTTPS, as a verified deployment document names it
//! (URL, size, sha256), into a [`ModuleSink`]: [`fetch_module`]. The same transfer fetches the
//! rest of an OS update bundle from the byte its staging file ends at, without a digest (the
//! updater checks the bundle, the relay cannot read it back): [`fetch_range`].
//!
//! - Only `https://HOST[:PORT]/PATH` ([`ModuleUrl::parse`]); `HOST` is dialed through the
//!   [`Dialer`] (the `net` route), checked against the server's certificate and sent as `Host`.
//! - HTTP/1.1, one `GET` per connection (`Connection: close`). A transfer that stops early
//!   (connection closed or reset, nothing received for [`STALL_TIMEOUT`], server unreachable)
//!   is resumed on a new connection with `Range: bytes=N-` after a short wait, at most
//!   [`MAX_ATTEMPTS`] connections in all. A `206` must continue exactly at `N` up to the end
//!   of a module of the expected size; a server that ignores `Range` answers `200`, and the
//!   first `N` bytes of its body are skipped, never sent to the sink again.
//! - Answers are untrusted bytes: the response head is bounded ([`MAX_HEAD`]) and parsed by
//!   hand ([`parse_head`]), what it says is checked against the request ([`plan_body`]), and
//!   no byte beyond the module's size reaches the sink. Bodies are framed by
//!   `Content-Length` or by the end of the connection; `Transfer-Encoding` (chunked) is
//!   refused: a static file server (nginx) sends `Content-Length`, and a module is a file.
//! - Memory is bounded whatever the size: one [`BUFFER_SIZE`] buffer, each read goes to the
//!   sink and the hasher ([`ModuleHasher`]) before the next; the size and sha256 are checked
//!   at the end against the request (a size the server states is checked up front).
//!   A [`RangeRequest`] starts at its offset (the first request already asks for the range)
//!   and is checked for its size only.

use std::io::ErrorKind;
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use testudo_deployment::{ModuleDigest, ModuleHasher};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::dial::{self, Dialer};
use crate::error::{AgentError, Result};
use crate::http_head::{self, HeadError};

/// Most connections one download makes (the first and its resumptions).
pub const MAX_ATTEMPTS: u32 = 5;
/// The wait before resumption `n` (1-based) is `n` times this.
pub const RETRY_WAIT: Duration = Duration::from_millis(200);
/// A connection that delivers nothing for this long is given up (and the download resumed).
pub const STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response head (status line and headers) accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// The download's one buffer: no read is larger, no write to the sink either.
pub const BUFFER_SIZE: usize = 64 * 1024;

/// A module to fetch, from a deployment document init has verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModuleRequest<'a> {
    /// `https://HOST[:PORT]/PATH`.
    pub url: &'a str,
    /// The module's size in bytes.
    pub size: u64,
    /// Its sha256, 64 lower-case hex digits.
    pub sha256: &'a str,
}

/// Where the module's bytes go, in order, exactly once each. Any `std::io::Write` is one.
pub trait ModuleSink {
    /// Takes the next bytes of the module (at most [`BUFFER_SIZE`] at a time).
    fn accept(&mut self, bytes: &[u8]) -> std::io::Result<()>;
}

impl<W: std::io::Write + ?Sized> ModuleSink for W {
    fn accept(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.write_all(bytes)
    }
}

/// An `https` URL split into what the download needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleUrl {
    /// Host name (or IPv4 address): dialed, TLS server name and `Host`.
    pub host: String,
    /// Port, 443 unless the URL names one.
    pub port: u16,
    /// Request target: the path and query, starting with `/`.
    pub path: String,
}

impl ModuleUrl {
    /// Splits `https://HOST[:PORT]/PATH`; refuses any other scheme, user info, IPv6
    /// literals, fragments and characters that do not belong in a request line.
    pub fn parse(url: &str) -> std::result::Result<ModuleUrl, &'static str> {
        let rest = url
            .get(..8)
            .filter(|scheme| scheme.eq_ignore_ascii_case("https://"))
            .and_then(|_| url.get(8..))
            .ok_or("only https:// URLs are fetched")?;
        let (authority, path) = rest
            .find('/')
            .map_or((rest, ""), |slash| rest.split_at(slash));
        if path.is_empty() {
            return Err("no path after the host");
        }
        if authority.contains('@') {
            return Err("user information in the URL");
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (
                host,
                port.parse::<u16>()
                    .ok()
                    .filter(|port| *port != 0)
                    .ok_or("the port is not a number from 1 to 65535")?,
            ),
            None => (authority, 443),
        };
        let host_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.';
        if host.is_empty() || !host.chars().all(host_char) {
            return Err("the host is not a DNS name or IPv4 address");
        }
        if path.contains('#') {
            return Err("a fragment in the URL");
        }
        if !path.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the path has spaces, control or non-ASCII characters");
        }
        Ok(ModuleUrl {
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        })
    }

    /// The `Host` header's value.
    fn host_header(&self) -> String {
        if self.port == 443 {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Decodes a sha256 given as 64 lower-case hex digits.
fn parse_sha256(text: &str) -> Option<[u8; 32]> {
    let digits = text.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    let value = |digit: u8| match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    };
    let mut digest = [0u8; 32];
    for (byte, pair) in digest.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = value(pair[0])? << 4 | value(pair[1])?;
    }
    Some(digest)
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// `Content-Range: bytes FIRST-LAST/TOTAL` (`TOTAL` may be `*`: unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    /// First byte sent.
    pub first: u64,
    /// Last byte sent.
    pub last: u64,
    /// The whole resource's size, when the server states it.
    pub total: Option<u64>,
}

/// What a response head says about its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// HTTP status.
    pub status: u16,
    /// `Content-Length`.
    pub content_length: Option<u64>,
    /// `Content-Range`.
    pub content_range: Option<ContentRange>,
}

/// Why an answer cannot be (the rest of) the module.
#[derive(Debug, thiserror::Error)]
pub enum ResponseError {
    /// No end of the head within the bound.
    #[error("a response head longer than {limit} bytes")]
    HeadTooLarge {
        /// The bound.
        limit: usize,
    },
    /// The head is not text.
    #[error("the response head is not UTF-8")]
    HeadNotText,
    /// The first line is not `HTTP/1.x CODE ...`.
    #[error("bad status line {line:?}")]
    StatusLine {
        /// The line as received.
        line: String,
    },
    /// A header line without `:`.
    #[error("malformed header line {line:?}")]
    HeaderLine {
        /// The line as received.
        line: String,
    },
    /// `Content-Length` is not one number (or is given twice differently).
    #[error("bad Content-Length {value:?}")]
    ContentLength {
        /// The value as received.
        value: String,
    },
    /// `Content-Range` is not `bytes FIRST-LAST/TOTAL`.
    #[error("bad Content-Range {value:?}")]
    ContentRange {
        /// The value as received.
        value: String,
    },
    /// A `Transfer-Encoding` (chunked): a static file comes with `Content-Length`.
    #[error("Transfer-Encoding {value:?} is not supported (only Content-Length bodies)")]
    TransferEncoding {
        /// The value as received.
        value: String,
    },
    /// A compressed body.
    #[error("Content-Encoding {value:?} was not asked for")]
    ContentEncoding {
        /// The value as received.
        value: String,
    },
    /// Neither `200` nor `206`.
    #[error("status {status}")]
    Status {
        /// The status.
        status: u16,
    },
    /// The server states another size for the whole module.
    #[error("the server's file is {served} bytes")]
    ServedSize {
        /// The size the server states.
        served: u64,
    },
    /// A `206` that is not the module from the requested byte to its end.
    #[error("Content-Range {first}-{last}/{total:?} is not bytes {offset} to the end")]
    RangeMismatch {
        /// First byte sent.
        first: u64,
        /// Last byte sent.
        last: u64,
        /// Total stated.
        total: Option<u64>,
        /// The byte asked for.
        offset: u64,
    },
    /// A `206` without `Content-Range`.
    #[error("a partial answer without Content-Range")]
    RangeMissing,
    /// `Content-Length` disagrees with the range.
    #[error("Content-Length {length} for a range of {range} bytes")]
    LengthMismatch {
        /// `Content-Length`.
        length: u64,
        /// What the range covers.
        range: u64,
    },
    /// A body without `Content-Length` went on beyond the module's size.
    #[error("the body goes on beyond the module's {size} bytes")]
    BodyBeyondModule {
        /// The module's size.
        size: u64,
    },
}

/// Parses a response head at the start of `bytes`: `Ok(None)` while its end (an empty line)
/// has not arrived, else the head and its length (where the body starts). Never looks
/// beyond [`MAX_HEAD`] bytes.
pub fn parse_head(
    bytes: &[u8],
) -> std::result::Result<Option<(ResponseHead, usize)>, ResponseError> {
    let window = &bytes[..bytes.len().min(MAX_HEAD)];
    let Some(head) = http_head::split(window).map_err(|error| match error {
        HeadError::NotText => ResponseError::HeadNotText,
        HeadError::StatusLine { line } => ResponseError::StatusLine { line },
        HeadError::FieldLine { line } => ResponseError::HeaderLine { line },
    })?
    else {
        return if bytes.len() >= MAX_HEAD {
            Err(ResponseError::HeadTooLarge { limit: MAX_HEAD })
        } else {
            Ok(None)
        };
    };
    let mut parsed = ResponseHead {
        status: head.status,
        content_length: None,
        content_range: None,
    };
    for (name, value) in head.fields {
        if name.eq_ignore_ascii_case("content-length") {
            let length = parse_number(value).ok_or_else(|| ResponseError::ContentLength {
                value: value.to_owned(),
            })?;
            if parsed.content_length.is_some_and(|known| known != length) {
                return Err(ResponseError::ContentLength {
                    value: value.to_owned(),
                });
            }
            parsed.content_length = Some(length);
        } else if name.eq_ignore_ascii_case("content-range") {
            parsed.content_range =
                Some(
                    parse_content_range(value).ok_or_else(|| ResponseError::ContentRange {
                        value: value.to_owned(),
                    })?,
                );
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            && !value.eq_ignore_ascii_case("identity")
        {
            return Err(ResponseError::TransferEncoding {
                value: value.to_owned(),
            });
        } else if name.eq_ignore_ascii_case("content-encoding")
            && !value.eq_ignore_ascii_case("identity")
        {
            return Err(ResponseError::ContentEncoding {
                value: value.to_owned(),
            });
        }
    }
    Ok(Some((parsed, head.len)))
}

/// A decimal number of digits only (no sign, no spaces inside).
fn parse_number(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn parse_content_range(value: &str) -> Option<ContentRange> {
    let (unit, rest) = value.split_once(' ')?;
    if !unit.eq_ignore_ascii_case("bytes") {
        return None;
    }
    let (range, total) = rest.trim_start().split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let (first, last) = (parse_number(first)?, parse_number(last)?);
    let total = match total {
        "*" => None,
        total => Some(parse_number(total)?),
    };
    if last < first || total.is_some_and(|total| last >= total) {
        return None;
    }
    Some(ContentRange { first, last, total })
}

/// How to read a body that passed [`plan_body`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyPlan {
    /// Bytes at its start that the sink already has (a `200` to a resumption).
    pub skip: u64,
    /// Its length (`Content-Length`); `None`: until the connection closes.
    pub length: Option<u64>,
}

/// Checks that an answer with `head` to a request from byte `offset` of a module of `size`
/// bytes carries the module from `offset` to its end, and says how to read it.
pub fn plan_body(
    head: &ResponseHead,
    offset: u64,
    size: u64,
) -> std::result::Result<BodyPlan, ResponseError> {
    match head.status {
        200 => {
            if let Some(served) = head.content_length.filter(|length| *length != size) {
                return Err(ResponseError::ServedSize { served });
            }
            Ok(BodyPlan {
                skip: offset,
                length: head.content_length,
            })
        }
        206 => {
            let range = head.content_range.ok_or(ResponseError::RangeMissing)?;
            if let Some(served) = range.total.filter(|total| *total != size) {
                return Err(ResponseError::ServedSize { served });
            }
            if range.first != offset
                || range.total.is_none()
                || range.last.checked_add(1) != Some(size)
            {
                return Err(ResponseError::RangeMismatch {
                    first: range.first,
                    last: range.last,
                    total: range.total,
                    offset,
                });
            }
            let covered = size - offset;
            if let Some(length) = head.content_length.filter(|length| *length != covered) {
                return Err(ResponseError::LengthMismatch {
                    length,
                    range: covered,
                });
            }
            Ok(BodyPlan {
                skip: 0,
                length: Some(covered),
            })
        }
        status => Err(ResponseError::Status { status }),
    }
}

/// Why one connection stopped before the module's end; the download resumes after it.
#[derive(Debug, thiserror::Error)]
pub enum Interruption {
    /// Dialing or the TLS handshake failed.
    #[error("connecting failed")]
    Connect(#[source] Box<AgentError>),
    /// Sending the request failed.
    #[error("sending the request failed")]
    Send(#[source] std::io::Error),
    /// Reading the answer failed (reset, TLS error, no TLS close).
    #[error("receiving failed")]
    Receive(#[source] std::io::Error),
    /// The server closed the connection before the whole answer.
    #[error("the server closed the connection early")]
    Closed,
    /// Nothing arrived for too long.
    #[error("nothing received for {seconds} s")]
    Stalled {
        /// The timeout.
        seconds: u64,
    },
    /// A server error that may pass (5xx, 408, 429).
    #[error("status {status}")]
    Status {
        /// The status.
        status: u16,
    },
}

/// How one connection ended without the whole module.
enum Stop {
    /// Try again from where it stopped.
    Interrupted(Interruption),
    /// Give up.
    Failed(AgentError),
}

/// Downloads `request`'s module into `sink`: its bytes in order, each once, exactly
/// `request.size` of them, resuming an interrupted transfer from the byte it stopped at (at
/// most [`MAX_ATTEMPTS`] connections, through `dialer`, TLS with `tls` against the URL's
/// host). `progress` is told the bytes received so far and the total after each write.
/// Returns the module's digest once its size and sha256 are the request's.
///
/// On an error the sink may hold a prefix of the module (or, for
/// [`AgentError::ModuleHash`], all of a module that is not the one asked for): the caller
/// discards it.
pub async fn fetch_module(
    dialer: Arc<dyn Dialer>,
    tls: Arc<ClientConfig>,
    request: &ModuleRequest<'_>,
    sink: &mut (dyn ModuleSink + Send),
    mut progress: impl FnMut(u64, u64),
) -> Result<ModuleDigest> {
    let refuse = |reason| AgentError::ModuleRequest {
        url: request.url.to_owned(),
        reason,
    };
    let url = ModuleUrl::parse(request.url).map_err(refuse)?;
    let expected =
        parse_sha256(request.sha256).ok_or(refuse("the sha256 is not 64 lower-case hex digits"))?;
    let mut download = Download {
        url: &url,
        url_text: request.url,
        size: request.size,
        received: 0,
        hasher: Some(ModuleHasher::new()),
        buffer: vec![0; BUFFER_SIZE],
    };
    download.run(&dialer, &tls, sink, &mut progress).await?;
    let digest = download.hasher.unwrap_or_default().finish();
    if digest.size != request.size {
        // Unreachable by construction (every connection ends at the module's end or fails);
        // checked again rather than trusted.
        return Err(AgentError::ModuleSize {
            url: request.url.to_owned(),
            expected: request.size,
            served: digest.size,
        });
    }
    if digest.sha256 != expected {
        return Err(AgentError::ModuleHash {
            url: request.url.to_owned(),
            expected: request.sha256.to_owned(),
            found: hex(&digest.sha256),
        });
    }
    Ok(digest)
}

/// A file to fetch from byte `offset` to its end, whose content is checked by the component
/// it is fetched for, not here (an OS update bundle: the updater checks it against the signed
/// manifest, and the relay cannot read back what it staged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeRequest<'a> {
    /// `https://HOST[:PORT]/PATH`.
    pub url: &'a str,
    /// The whole file's size in bytes: what the server must state and serve.
    pub size: u64,
    /// The first byte wanted (what the sink already has before it).
    pub offset: u64,
}

/// Downloads bytes `request.offset` to `request.size` of a file into `sink`, as
/// [`fetch_module`] does (in order, each once, resuming interrupted transfers with `Range`,
/// the same bounds on answers and memory) but from `request.offset` on and without a digest:
/// the first request already asks for `Range: bytes=OFFSET-`. `progress` is told the bytes
/// of the file the sink has (the offset included) and the file's size after each write.
/// Nothing is fetched when the offset is the size.
///
/// On an error the sink holds the bytes from the offset up to where the transfer stopped
/// ([`AgentError::ModuleTransfer`] says where): a later request can resume from there.
pub async fn fetch_range(
    dialer: Arc<dyn Dialer>,
    tls: Arc<ClientConfig>,
    request: &RangeRequest<'_>,
    sink: &mut (dyn ModuleSink + Send),
    mut progress: impl FnMut(u64, u64),
) -> Result<()> {
    let refuse = |reason| AgentError::ModuleRequest {
        url: request.url.to_owned(),
        reason,
    };
    let url = ModuleUrl::parse(request.url).map_err(refuse)?;
    if request.offset > request.size {
        return Err(refuse("the first byte asked for is beyond the file's end"));
    }
    let mut download = Download {
        url: &url,
        url_text: request.url,
        size: request.size,
        received: request.offset,
        hasher: None,
        buffer: vec![0; BUFFER_SIZE],
    };
    download.run(&dialer, &tls, sink, &mut progress).await
}

/// One download's state across its connections.
struct Download<'a> {
    url: &'a ModuleUrl,
    /// The URL as requested (for errors).
    url_text: &'a str,
    /// The whole file's size.
    size: u64,
    /// Bytes of the file the sink has (those before a range's offset included): the offset
    /// to resume from.
    received: u64,
    /// What the sink has been given, hashed, when the caller checks a digest (from byte 0).
    hasher: Option<ModuleHasher>,
    buffer: Vec<u8>,
}

impl Download<'_> {
    /// Connections until the sink has the file's end, at most [`MAX_ATTEMPTS`].
    async fn run(
        &mut self,
        dialer: &Arc<dyn Dialer>,
        tls: &Arc<ClientConfig>,
        sink: &mut (dyn ModuleSink + Send),
        progress: &mut impl FnMut(u64, u64),
    ) -> Result<()> {
        let mut attempts = 0;
        while self.received < self.size {
            if attempts > 0 {
                tokio::time::sleep(RETRY_WAIT.saturating_mul(attempts)).await;
            }
            attempts += 1;
            let interruption = match self.connection(dialer, tls, sink, progress).await {
                Ok(()) => break,
                Err(Stop::Failed(error)) => return Err(error),
                Err(Stop::Interrupted(interruption)) => interruption,
            };
            if attempts >= MAX_ATTEMPTS {
                return Err(AgentError::ModuleTransfer {
                    url: self.url_text.to_owned(),
                    received: self.received,
                    expected: self.size,
                    attempts,
                    source: interruption,
                });
            }
        }
        Ok(())
    }

    /// One connection: request from the current offset, check the head, stream the body.
    async fn connection(
        &mut self,
        dialer: &Arc<dyn Dialer>,
        tls: &Arc<ClientConfig>,
        sink: &mut (dyn ModuleSink + Send),
        progress: &mut impl FnMut(u64, u64),
    ) -> std::result::Result<(), Stop> {
        let offset = self.received;
        let size = self.size;
        let url = self.url_text;
        let answer_error = |source: ResponseError| match source {
            ResponseError::Status { status } => AgentError::ModuleStatus {
                url: url.to_owned(),
                offset,
                status,
            },
            ResponseError::ServedSize { served } => AgentError::ModuleSize {
                url: url.to_owned(),
                expected: size,
                served,
            },
            source => AgentError::ModuleResponse {
                url: url.to_owned(),
                offset,
                source,
            },
        };
        let mut stream = dial::connect_tls(
            Some(dialer.clone()),
            &self.url.host,
            self.url.port,
            tls.clone(),
        )
        .await
        .map_err(|error| match &error {
            // A certificate the trust anchors refuse will not change on retrying.
            AgentError::TlsHandshake { source, .. } if source.kind() == ErrorKind::InvalidData => {
                Stop::Failed(error)
            }
            _ => Stop::Interrupted(Interruption::Connect(Box::new(error))),
        })?;
        let mut text = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: testudo-agent\r\nAccept-Encoding: identity\r\nConnection: close\r\n",
            self.url.path,
            self.url.host_header()
        );
        if offset > 0 {
            text.push_str(&format!("Range: bytes={offset}-\r\n"));
        }
        text.push_str("\r\n");
        let sent = async {
            stream.write_all(text.as_bytes()).await?;
            stream.flush().await
        };
        sent.await
            .map_err(|e| Stop::Interrupted(Interruption::Send(e)))?;

        // The head, and whatever body came with it, in the buffer.
        let mut filled = 0;
        let (head, head_length) = loop {
            if let Some(found) = parse_head(&self.buffer[..filled])
                .map_err(|source| Stop::Failed(answer_error(source)))?
            {
                break found;
            }
            let read = read_some(&mut stream, &mut self.buffer[filled..]).await?;
            if read == 0 {
                return Err(Stop::Interrupted(Interruption::Closed));
            }
            filled += read;
        };
        let plan = match plan_body(&head, offset, size) {
            Ok(plan) => plan,
            Err(ResponseError::Status { status })
                if status >= 500 || status == 408 || status == 429 =>
            {
                return Err(Stop::Interrupted(Interruption::Status { status }));
            }
            Err(source) => return Err(Stop::Failed(answer_error(source))),
        };
        let mut body = Body {
            skip: plan.skip,
            left: plan.length,
        };
        let (mut start, mut end) = (head_length, filled);
        loop {
            let bytes = body.take(&self.buffer[start..end]);
            if bytes.len() as u64 > size - self.received {
                return Err(Stop::Failed(answer_error(
                    ResponseError::BodyBeyondModule { size },
                )));
            }
            if !bytes.is_empty() {
                sink.accept(bytes).map_err(|source| {
                    Stop::Failed(AgentError::ModuleSink {
                        url: url.to_owned(),
                        offset: self.received,
                        source,
                    })
                })?;
                self.received += bytes.len() as u64;
                if let Some(hasher) = self.hasher.as_mut() {
                    hasher.update(bytes);
                }
                progress(self.received, size);
            }
            if body.left == Some(0) {
                return Ok(());
            }
            let read = read_some(&mut stream, &mut self.buffer).await?;
            if read == 0 {
                // The end of a body framed by the connection is the end of the module only
                // if every byte came.
                return if body.left.is_none() && self.received == size {
                    Ok(())
                } else {
                    Err(Stop::Interrupted(Interruption::Closed))
                };
            }
            (start, end) = (0, read);
        }
    }
}

/// What is left of a body: bytes to skip, bytes to read.
struct Body {
    skip: u64,
    left: Option<u64>,
}

impl Body {
    /// The part of `bytes` (the body's next) that is the module's next: within the body's
    /// length, after the bytes to skip.
    fn take<'b>(&mut self, bytes: &'b [u8]) -> &'b [u8] {
        let mut bytes = bytes;
        if let Some(left) = self.left.as_mut() {
            let within = bytes
                .len()
                .min(usize::try_from(*left).unwrap_or(usize::MAX));
            bytes = &bytes[..within];
            *left -= within as u64;
        }
        let skipped = bytes
            .len()
            .min(usize::try_from(self.skip).unwrap_or(usize::MAX));
        self.skip -= skipped as u64;
        &bytes[skipped..]
    }
}

/// One read, bounded by [`STALL_TIMEOUT`]; an error or timeout interrupts the connection.
async fn read_some(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
    buffer: &mut [u8],
) -> std::result::Result<usize, Stop> {
    match tokio::time::timeout(STALL_TIMEOUT, stream.read(buffer)).await {
        Ok(Ok(read)) => Ok(read),
        Ok(Err(error)) => Err(Stop::Interrupted(Interruption::Receive(error))),
        Err(_) => Err(Stop::Interrupted(Interruption::Stalled {
            seconds: STALL_TIMEOUT.as_secs(),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_urls_with_a_host_and_path() {
        assert_eq!(
            ModuleUrl::parse("https://artifacts.example.com/apps/a.wasm?v=2").unwrap(),
            ModuleUrl {
                host: "artifacts.example.com".into(),
                port: 443,
                path: "/apps/a.wasm?v=2".into()
            }
        );
        assert_eq!(
            ModuleUrl::parse("HTTPS://h:8443/a").unwrap(),
            ModuleUrl {
                host: "h".into(),
                port: 8443,
                path: "/a".into()
            }
        );
        assert_eq!(
            ModuleUrl::parse("https://h:8443/a").unwrap().host_header(),
            "h:8443"
        );
        assert_eq!(ModuleUrl::parse("https://h/a").unwrap().host_header(), "h");
        for bad in [
            "http://h/a",
            "ftp://h/a",
            "https://h",
            "https:///a",
            "https://u@h/a",
            "https://h:0/a",
            "https://h:99999/a",
            "https://h:x/a",
            "https://[::1]/a",
            "https://h/a b",
            "https://h/a\r\nX: y",
            "https://h/a#frag",
            "https://h/é",
            "",
            "https://",
        ] {
            assert!(ModuleUrl::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn sha256_is_64_lower_hex_digits() {
        let text = "00ff".repeat(16);
        let digest = parse_sha256(&text).unwrap();
        assert_eq!((digest[0], digest[1], digest[31]), (0x00, 0xff, 0xff));
        assert_eq!(hex(&digest), text);
        assert_eq!(parse_sha256(&"00FF".repeat(16)), None);
        assert_eq!(parse_sha256(&"0".repeat(63)), None);
        assert_eq!(parse_sha256(&"g".repeat(64)), None);
    }

    fn head(text: &str) -> ResponseHead {
        let (head, length) = parse_head(text.as_bytes()).unwrap().unwrap();
        assert_eq!(&text[length..], "BODY");
        head
    }

    #[test]
    fn heads_are_parsed_and_bounded() {
        assert_eq!(
            head("HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\ncontent-range: bytes 5-14/15\r\n\r\nBODY"),
            ResponseHead {
                status: 206,
                content_length: Some(10),
                content_range: Some(ContentRange {
                    first: 5,
                    last: 14,
                    total: Some(15)
                })
            }
        );
        assert_eq!(head("HTTP/1.0 404 Not Found\r\n\r\nBODY").status, 404);
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n")
            .unwrap()
            .is_none());
        assert!(matches!(
            parse_head(&vec![b'a'; MAX_HEAD]),
            Err(ResponseError::HeadTooLarge { .. })
        ));
        let mut late = vec![b'a'; MAX_HEAD];
        late.extend_from_slice(b"\r\n\r\n");
        assert!(matches!(
            parse_head(&late),
            Err(ResponseError::HeadTooLarge { .. })
        ));
        for (text, check) in [
            ("HTTP/2 200\r\n\r\n", "status"),
            ("HTTP/1.1 20 OK\r\n\r\n", "status"),
            ("HTTP/1.1 200 OK\r\nno colon\r\n\r\n", "header"),
            ("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "length"),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                "length",
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
                "length",
            ),
            (
                "HTTP/1.1 206 OK\r\nContent-Range: bytes 5-4/15\r\n\r\n",
                "range",
            ),
            (
                "HTTP/1.1 206 OK\r\nContent-Range: bytes 5-15/15\r\n\r\n",
                "range",
            ),
            (
                "HTTP/1.1 206 OK\r\nContent-Range: items 0-1/2\r\n\r\n",
                "range",
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                "chunked",
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n",
                "encoding",
            ),
        ] {
            let outcome = parse_head(text.as_bytes());
            let expected = matches!(
                (&outcome, check),
                (Err(ResponseError::StatusLine { .. }), "status")
                    | (Err(ResponseError::HeaderLine { .. }), "header")
                    | (Err(ResponseError::ContentLength { .. }), "length")
                    | (Err(ResponseError::ContentRange { .. }), "range")
                    | (Err(ResponseError::TransferEncoding { .. }), "chunked")
                    | (Err(ResponseError::ContentEncoding { .. }), "encoding")
            );
            assert!(expected, "{text:?}: {outcome:?}");
        }
        assert!(matches!(
            parse_head(b"HTTP/1.1 200 OK\r\nX: \xff\r\n\r\n"),
            Err(ResponseError::HeadNotText)
        ));
    }

    fn answer(
        status: u16,
        length: Option<u64>,
        range: Option<(u64, u64, Option<u64>)>,
    ) -> ResponseHead {
        ResponseHead {
            status,
            content_length: length,
            content_range: range.map(|(first, last, total)| ContentRange { first, last, total }),
        }
    }

    #[test]
    fn answers_must_carry_the_rest_of_the_module() {
        let plan = |head, offset| plan_body(&head, offset, 100);
        assert_eq!(
            plan(answer(200, Some(100), None), 0).unwrap(),
            BodyPlan {
                skip: 0,
                length: Some(100)
            }
        );
        // A server that ignores Range: the prefix is skipped.
        assert_eq!(
            plan(answer(200, Some(100), None), 40).unwrap(),
            BodyPlan {
                skip: 40,
                length: Some(100)
            }
        );
        assert_eq!(
            plan(answer(200, None, None), 0).unwrap(),
            BodyPlan {
                skip: 0,
                length: None
            }
        );
        assert_eq!(
            plan(answer(206, Some(60), Some((40, 99, Some(100)))), 40).unwrap(),
            BodyPlan {
                skip: 0,
                length: Some(60)
            }
        );
        assert_eq!(
            plan(answer(206, None, Some((40, 99, Some(100)))), 40).unwrap(),
            BodyPlan {
                skip: 0,
                length: Some(60)
            }
        );
        assert!(matches!(
            plan(answer(200, Some(99), None), 0),
            Err(ResponseError::ServedSize { served: 99 })
        ));
        assert!(matches!(
            plan(answer(206, Some(60), Some((40, 100, Some(101)))), 40),
            Err(ResponseError::ServedSize { served: 101 })
        ));
        for wrong in [(41, 99, Some(100)), (40, 98, Some(100)), (40, 99, None)] {
            assert!(matches!(
                plan(answer(206, None, Some(wrong)), 40),
                Err(ResponseError::RangeMismatch { offset: 40, .. })
            ));
        }
        assert!(matches!(
            plan(answer(206, Some(61), Some((40, 99, Some(100)))), 40),
            Err(ResponseError::LengthMismatch {
                length: 61,
                range: 60
            })
        ));
        assert!(matches!(
            plan(answer(206, Some(60), None), 40),
            Err(ResponseError::RangeMissing)
        ));
        assert!(matches!(
            plan(answer(416, None, None), 40),
            Err(ResponseError::Status { status: 416 })
        ));
    }

    #[test]
    fn bodies_are_cut_to_their_length_after_the_skipped_prefix() {
        let mut body = Body {
            skip: 3,
            left: Some(8),
        };
        assert_eq!(body.take(b"ab"), b"");
        assert_eq!(body.take(b"cdef"), b"def");
        assert_eq!(body.take(b"ghijkl"), b"gh");
        assert_eq!(body.left, Some(0));
        let mut open = Body {
            skip: 0,
            left: None,
        };
        assert_eq!(open.take(b"xyz"), b"xyz");
    }
}

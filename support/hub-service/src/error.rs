//! The crate's error type: a variant per step that can fail, carrying what it worked on.

/// Why a service request could not be made or was refused.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The connection string lacks a field or has a malformed one.
    #[error("service connection string: {field} is missing or malformed")]
    ConnectionString {
        /// `HostName`, `SharedAccessKeyName` or `SharedAccessKey`.
        field: &'static str,
    },
    /// The trust anchors (PEM) hold no usable certificate.
    #[error("trust anchors for {host}: no usable certificate")]
    TrustAnchors {
        /// The hub's host name.
        host: String,
    },
    /// The TLS client could not be set up.
    #[error("TLS set-up for {host}")]
    Tls {
        /// The hub's host name.
        host: String,
        /// What rustls said.
        #[source]
        source: rustls::Error,
    },
    /// Connecting, sending or receiving failed.
    #[error("{request} to {host}")]
    Transport {
        /// `METHOD path`.
        request: String,
        /// The hub's host name (and port).
        host: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The answer is not an HTTP/1.1 answer this client reads, or is too large.
    #[error("{request}: unreadable answer ({reason})")]
    Answer {
        /// `METHOD path`.
        request: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The hub refused the request.
    #[error("{request}: the hub answered {status}: {message}")]
    Status {
        /// `METHOD path`.
        request: String,
        /// The HTTP status.
        status: u16,
        /// The hub's `Message` (or the body's start).
        message: String,
    },
}

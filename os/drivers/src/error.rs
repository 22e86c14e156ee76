//! Errors of the driver daemons.

use std::path::PathBuf;

/// What can stop a driver daemon.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The scheme library failed (no control socket, transport error).
    #[error("serving the {driver} scheme")]
    Serve {
        /// Driver name.
        driver: &'static str,
        /// The scheme error.
        #[source]
        source: testudo_scheme::SchemeError,
    },
    /// The process was started without its control socket variable.
    #[error(
        "{driver}: no control socket ({}); start it from testudo-init",
        testudo_plan::env::SCHEME_FD
    )]
    NoControl {
        /// Driver name.
        driver: &'static str,
    },
    /// A device or directory the driver owns is unusable.
    #[error("{driver}: opening {path}")]
    Resource {
        /// Driver name.
        driver: &'static str,
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The network settings init passed are not JSON of the expected shape.
    #[error("reading the network settings ({})", testudo_plan::env::NETWORK)]
    NetworkSettings {
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The network settings name addresses that are not addresses.
    #[error("setting up name resolution")]
    Resolver {
        /// What is wrong.
        #[source]
        source: crate::resolver::ResolveError,
    },
}

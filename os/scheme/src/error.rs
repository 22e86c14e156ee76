//! Errors of the scheme library.

use nix::errno::Errno;

/// Everything that can go wrong using or serving a scheme.
#[derive(Debug, thiserror::Error)]
pub enum SchemeError {
    /// The kernel refused a send/receive/socketpair/poll on a handle.
    #[error("{op} failed at the transport")]
    Transport {
        /// The operation (`send`, `receive`, `socketpair`, `poll`).
        op: &'static str,
        /// The kernel's error.
        #[source]
        source: Errno,
    },
    /// The provider answered the request with an error code.
    #[error("{op} refused by the provider ({errno})")]
    Refused {
        /// The scheme operation (`open`, `read`, `write`, `dup`, `fstat`, `fsync`).
        op: &'static str,
        /// The error the provider returned.
        errno: Errno,
    },
    /// The peer closed the connection (the provider exited or dropped the handle).
    #[error("{op}: the other end of the handle is closed")]
    Closed {
        /// The scheme operation.
        op: &'static str,
    },
    /// A message did not have the expected shape.
    #[error("malformed message during {op}: {detail}")]
    Malformed {
        /// The scheme operation.
        op: &'static str,
        /// What was wrong with it.
        detail: String,
    },
    /// A payload is larger than one message can carry.
    #[error("{op}: payload of {len} bytes exceeds the {max} byte limit")]
    TooLarge {
        /// The scheme operation.
        op: &'static str,
        /// Requested length.
        len: usize,
        /// Maximum length.
        max: usize,
    },
    /// The environment describing granted handles could not be parsed.
    #[error("environment variable {var} entry {entry:?} is not NAME=FD")]
    HandleEnv {
        /// The variable.
        var: &'static str,
        /// The offending entry.
        entry: String,
    },
    /// A handle the component expected was not routed to it.
    #[error("no handle named {name:?} was granted to this component")]
    MissingHandle {
        /// The local route name.
        name: String,
    },
    /// `open` returned a raw fd where a scheme handle was expected, or the other way round.
    #[error("open {path:?}: the provider returned a {got}, expected a {expected}")]
    WrongHandleKind {
        /// The path opened.
        path: String,
        /// What came back.
        got: &'static str,
        /// What the caller asked for.
        expected: &'static str,
    },
}

impl SchemeError {
    /// The errno a provider refused with, if this is a refusal.
    pub fn refused_errno(&self) -> Option<Errno> {
        match self {
            SchemeError::Refused { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

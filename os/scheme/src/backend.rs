//! The kernel-facing layer, in one place. Everything else in this crate talks to the kernel
//! only through [`Backend`]; [`Active`] selects the implementation for the target OS.
//!
//! Mapping to Redox (for a future `redox` module implementing [`Backend`]):
//! - a handle fd here = a Redox file descriptor on the provider's scheme;
//! - [`Backend::send`]/[`Backend::receive`] of one request/response = the kernel queueing an
//!   `Sqe` to the scheme socket and the provider writing back a `Cqe`;
//! - an fd attached with `SCM_RIGHTS` = `CqeOpcode::RespondWithFd` / `Opcode::Sendfd`;
//! - [`Backend::pair`] (a new handle for a consumer) = the provider answering `OpenAt`
//!   with `OpenResult::ThisScheme { number }`.

use std::os::fd::{BorrowedFd, OwnedFd};

use crate::SchemeError;

/// Kernel operations the scheme library needs.
pub trait Backend {
    /// Creates a connected pair of message sockets: (kept end, end to hand out).
    fn pair() -> Result<(OwnedFd, OwnedFd), SchemeError>;
    /// Sends one message, optionally with one fd attached.
    fn send(
        fd: BorrowedFd<'_>,
        message: &[u8],
        attach: Option<BorrowedFd<'_>>,
    ) -> Result<(), SchemeError>;
    /// Receives one message into `buf`; returns its length (0 = peer closed) and any fd.
    fn receive(fd: BorrowedFd<'_>, buf: &mut [u8])
        -> Result<(usize, Option<OwnedFd>), SchemeError>;
    /// Waits until at least one of `fds` is readable or closed; returns their indices.
    fn wait_readable(fds: &[BorrowedFd<'_>], ready: &mut Vec<usize>) -> Result<(), SchemeError>;
}

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::Linux;

/// The backend for this target.
#[cfg(target_os = "linux")]
pub type Active = Linux;

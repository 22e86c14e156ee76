//! Redox-style scheme IPC on Linux: a handle is a capability, carried as a Unix socket fd.
//!
//! # Model
//! A *provider* serves a scheme; a *consumer* holds [`Handle`]s to it. Every handle is its own
//! `SOCK_SEQPACKET` connection to the provider, so the provider knows which node and which
//! [`Rights`] a request is about from the connection it arrives on: a consumer cannot name
//! anything it was not handed. New handles are only ever derived from held ones:
//! [`Handle::open`] (a path *relative to* the handle, never a global path) and
//! [`Handle::dup`] (same node, rights narrowed). Closing is dropping the fd.
//!
//! Messages use Redox's scheme v2 entries ([`syscall::schemev2::Sqe`] / [`Cqe`]) as the wire
//! format, so a provider written against [`SchemeProvider`] maps onto a Redox kernel later
//! (see [`backend`]).
//!
//! # Consumer API (stable; used by the WASM host and every driver)
//! ```no_run
//! use testudo_scheme::{granted_handles, Rights};
//! let mut handles = granted_handles()?;            // reads TESTUDO_HANDLES
//! let log = handles.take("log")?;                 // the route's local name
//! log.write(b"hello\n")?;
//! let storage = handles.take("storage")?;
//! let file = storage.open("state.json", Rights::ReadWrite)?;
//! let ro = file.dup(Rights::Read)?;               // narrowed: writes are refused
//! let mut buf = [0u8; 64];
//! let n = ro.read(&mut buf)?;
//! let size = ro.fstat()?.size;
//! file.write(b"{}")?;
//! file.fsync()?;                                   // durable once this returns
//! # let _ = (n, size);
//! # Ok::<(), testudo_scheme::SchemeError>(())
//! ```
//!
//! # How a process receives its handles
//! `testudo-init` places every routed handle at a fixed fd number (3, 4, ... in the order of the
//! route names) and describes them in the environment variable [`HANDLES_ENV`]
//! (`TESTUDO_HANDLES=log=3,storage=4`). A provider additionally receives its control socket,
//! described by [`CONTROL_ENV`] (`TESTUDO_SCHEME_FD=N`), on which init sends it new root
//! handles together with a [`Grant`] (who the consumer is, which capability, which rights,
//! the route's `allow` list). No other fds are open in a component besides 0, 1 and 2.

pub mod backend;
mod error;
mod grant;
mod handle;
pub mod lifecycle;
mod provider;
mod rights;
mod stat;
mod wire;

pub use error::SchemeError;
pub use grant::{
    format_handles_env, granted_handles, handle_pair, parse_handles_env, provider_control,
    send_grant, Grant, GrantedHandles, CONTROL_ENV, HANDLES_ENV,
};
pub use handle::Handle;
pub use nix::errno::Errno;
pub use provider::{Opened, SchemeProvider, Server};
pub use rights::Rights;
pub use stat::{NodeKind, Stat};
pub use wire::{MAX_MESSAGE, MAX_PAYLOAD};

/// The Redox crate whose scheme v2 entries are the wire format.
pub use syscall;

/// The interfaces served by the drivers in this repository and what a path or a read/write
/// means on each are part of the device contract: [`testudo_plan::interfaces`].
pub use testudo_plan::interfaces;

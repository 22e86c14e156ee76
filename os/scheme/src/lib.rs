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

/// Conventions of the interfaces served by the drivers in this repository (what a path or
/// a read/write means on each). Stable; the WASM host maps its host functions onto these.
///
/// - `log`: `write` one or more UTF-8 lines; the provider prefixes them with the consumer's
///   name. `read` is refused.
/// - `storage`: the root handle is the consumer's own directory. `open("name", rights)` opens
///   (write rights: creates) a file; names are a single path component, no `/`, `.` or `..`.
///   `read`/`write` move sequentially from offset 0; `open("name?truncate", Write|ReadWrite)`
///   truncates first. `fstat` gives the size. `fsync` on a file makes its data durable
///   (`fdatasync`), on the root handle the directory's entries (`fsync` of the directory);
///   a file the driver creates has its directory entry made durable before `open` returns.
/// - `sensor`: `read` on the root handle returns one reading as a UTF-8 line
///   `<name> <value> <unit>\n` (e.g. `temperature 21.5 C`).
/// - `telemetry`: `write` one message (a JSON document) per call.
/// - `tpm`: `write` one TPM 2.0 command, then `read` its response.
/// - `net`: `open_raw("tcp/HOST:PORT", ReadWrite)` returns a connected TCP socket if
///   `HOST:PORT` is in the route's `allow` list; anything else is refused with `EACCES`.
/// - `status` (served by init): `read` on the root handle returns one line per component,
///   `name state restarts`.
pub mod interfaces {}

//! testudo's drivers and services as scheme daemons. Each binary in `src/bin/` is a thin
//! `main` around one provider here:
//!
//! - [`log::LogProvider`] (`testudo-log`): `log` interface; writes lines prefixed with the
//!   consumer's name to its stdout (which `testudo-init` relays).
//! - [`storage::StorageProvider`] (`testudo-storage`): `storage`; each consumer's root handle
//!   is its own directory under the data directory (`/data` inside the sandbox).
//! - [`tpm::TpmProvider`] (`testudo-tpm`): `tpm`; forwards raw TPM 2.0 commands to the TPM
//!   device node or a swtpm `unixio` socket.
//! - [`net::NetProvider`] (`testudo-net`): `net`; connects only to the route's `allow`ed
//!   `HOST:PORT`s and hands back the connected socket; names are resolved by
//!   [`resolver::Resolver`] (the plan's `hosts`, then DNS over UDP with [`dns`]).
//! - [`sensor::SensorProvider`] (`testudo-sensor`): `sensor`; a deterministic demo
//!   temperature sensor.
//!
//! The conventions of each interface are in [`testudo_scheme::interfaces`]. The binary
//! `testudo-escape-probe` is a test component: it tries one escape and reports the outcome.

pub mod daemon;
pub mod dns;
mod error;
pub mod log;
pub mod net;
pub mod resolver;
pub mod sensor;
pub mod storage;
pub mod tpm;

pub use error::DriverError;

//! The test kit: set-up that tests and benchmarks of several crates share, written once.
//!
//! - [`dnsmasq`]: a private DNS server answering from its command line.
//! - [`fuzz`]: replaying a fuzz target's stored corpus as a regular test.
//! - [`nginx`]: a private nginx serving a directory over HTTPS with a test CA's certificate.
//! - [`python`]: the interpreter of the project's Python environment, where the official Azure
//!   IoT SDKs and other Python peers are installed.
//! - [`swtpm`]: private software TPMs for one test each.
//! - [`wasm`]: the C apps of `wasm-apps/`, compiled with the flags `cargo xtask apps` uses.

pub mod dnsmasq;
pub mod fuzz;
pub mod nginx;
pub mod python;
pub mod swtpm;
pub mod wasm;

//! The test kit: set-up that tests and benchmarks of several crates share, written once.
//!
//! - [`python`]: the interpreter of the project's Python environment, where the official Azure
//!   IoT SDKs and other Python peers are installed.

pub mod python;

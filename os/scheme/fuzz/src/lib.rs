//! Fuzz targets of the scheme protocol (hostile consumers and providers).
//!
//! Each module's `fuzz` is one target's body: `cargo fuzz` runs it from the binaries in
//! `fuzz_targets/` (nightly, feature `libfuzzer`), and `tests/replay.rs` replays the stored
//! corpus `corpus/<target>/` through it on stable (part of `cargo test`).

pub mod consumer_responses;
pub mod provider_requests;

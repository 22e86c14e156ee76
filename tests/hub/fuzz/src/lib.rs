//! Fuzz targets of the test hub's MQTT, twin, TPM wire and client certificate parsers.
//!
//! Each module's `fuzz` is one target's body: `cargo fuzz` runs it from the binaries in
//! `fuzz_targets/` (nightly, feature `libfuzzer`), and `tests/replay.rs` replays the stored
//! corpus `corpus/<target>/` through it on stable (part of `cargo test`).

pub mod client_certificates;
pub mod mqtt_packets;
pub mod tpm_public;
pub mod twin_patches;

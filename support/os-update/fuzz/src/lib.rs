//! Fuzz targets of the OS update shapes (`testudo-os-update`).
//!
//! Each module's `fuzz` is one target's body: `cargo fuzz` runs it from the binaries in
//! `fuzz_targets/` (nightly, feature `libfuzzer`), and `tests/replay.rs` replays the stored
//! corpus `corpus/<target>/` through it on stable (part of `cargo test`). `keys` holds the
//! fixed fuzz keys the signature targets sign and verify with.

pub mod desired_device_updates;
pub mod import_manifests;
pub mod keys;
pub mod manifest_signatures;
pub mod update_requests;

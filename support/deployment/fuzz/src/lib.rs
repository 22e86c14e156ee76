//! Fuzz targets of the signed app deployment document (`testudo-deployment`).
//!
//! Each module's `fuzz` is one target's body: `cargo fuzz` runs it from the binaries in
//! `fuzz_targets/` (nightly, feature `libfuzzer`), and `tests/replay.rs` replays the stored
//! corpus `corpus/<target>/` through it on stable (part of `cargo test`).

pub mod deployment_documents;
pub mod desired_apps;
pub mod session_states;

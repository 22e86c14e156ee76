//! Fuzz targets of the WASM host's untrusted inputs (app bytes, `.cwasm` sidecars, plan fields).
//!
//! Each module's `fuzz` is one target's body: `cargo fuzz` runs it from the binaries in
//! `fuzz_targets/` (nightly, feature `libfuzzer`), and `tests/replay.rs` replays the stored
//! corpus `corpus/<target>/` through it on stable (part of `cargo test`).

pub mod plan_fields;
pub mod sidecar;
pub mod untrusted_app;

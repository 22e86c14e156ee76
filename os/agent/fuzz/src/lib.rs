//! Fuzz targets of the cloud agent's parsers of hub, DPS, TPM, spool and module server data.
//!
//! Each module's `fuzz` is one target's body: `cargo fuzz` runs it from the binaries in
//! `fuzz_targets/` (nightly, feature `libfuzzer`), and `tests/replay.rs` replays the stored
//! corpus `corpus/<target>/` through it on stable (part of `cargo test`).

pub mod device_documents;
pub mod hub_topics;
pub mod module_download_heads;
pub mod spool_journal;
pub mod tpm_hmac_response;
pub mod tpm_responses;
pub mod twin_documents;

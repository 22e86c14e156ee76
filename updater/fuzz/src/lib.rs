//! Fuzz targets of the updater's bundle, CMS envelope (encrypted bundles), delta patch (bsdiff 4), squashfs payload, manifest, key-file, system.conf and GRUB environment
//! readers (a file, or inside an ESP's FAT), and of the updater component's reading of init's
//! status.
//!
//! Each module's `fuzz` is one target's body: `cargo fuzz` runs it from the binaries in
//! `fuzz_targets/` (nightly, feature `libfuzzer`), and `tests/replay.rs` replays the stored
//! corpus `corpus/<target>/` through it on stable (part of `cargo test`).

pub mod bsdiff_patch;
pub mod bundle;
pub mod cms_envelope;
pub mod esp_grubenv;
pub mod grubenv;
pub mod manifest;
pub mod squashfs_payload;
pub mod status_file;
pub mod status_lines;
pub mod system_conf;

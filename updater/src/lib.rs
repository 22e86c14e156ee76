//! A/B updater: RAUC-compatible bundles, slots, boot selection, install.
//!
//! Bundles: [`manifest`], [`signature`] (CMS), [`verity`] (hash tree), [`payload`]
//! (squashfs), [`crypt`] (encrypted bundles), [`bundle`] (write, verify, extract), [`keys`]
//! (development keys); delta
//! bundles: [`delta`] (the manifest record, making one) and [`patch`] (bsdiff 4 patches).
//! Devices: [`system_conf`], [`slot`], [`status_file`], [`bootloader`], [`install`], [`mark`],
//! [`version`] (downgrade ordering), [`programs`] (a bundle's hooks and handler, sandboxed). Shared: [`ini`] (RAUC's key-file dialect), [`error`].
//!
//! Typical use: `bundle::create(&BundleSpec, &Signer, out)` on the build host;
//! `bundle::open(path, &Keyring)` then `install::install(...)` on the device.

pub mod bootloader;
pub mod bundle;
pub mod crypt;
pub mod delta;
pub mod deterministic_ecdsa;
pub mod error;
pub mod ini;
pub mod install;
pub mod keys;
pub mod manifest;
pub mod mark;
pub mod patch;
pub mod payload;
pub mod programs;
pub mod signature;
pub mod slot;
pub mod status_file;
pub mod system_conf;
pub mod verity;
pub mod version;

pub use bundle::{BundleSpec, CreatedBundle, VerifiedBundle};
pub use error::{Result, UpdaterError};
pub use manifest::{BundleFormat, Manifest};
pub use signature::{Keyring, Signer};
pub use system_conf::SystemConf;

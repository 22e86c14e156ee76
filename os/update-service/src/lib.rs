//! The device's updater component (binary `testudo-updater`), sandboxed like every other
//! component and holding only its routes: the EFI system partition (the boot-selection state,
//! `/dev/disk/by-partlabel/esp`), both rootfs partitions, its own directory on the data
//! partition (staging and record), init's `status` and init's `power`.
//!
//! At every boot it marks the slot GRUB booted good in the grubenv (`<slot>_OK=1`,
//! `<slot>_TRY=0`, RAUC's `mark-good`; [`confirm`]): a slot that confirmed before at once (its
//! boot reached user space), a slot on trial — activated by an update and not yet confirmed —
//! once the system is healthy ([`health`]). A trial that is not healthy in time is rebooted,
//! so GRUB counts another of its `update.boot_tries` and, once they are used up, boots the
//! previous slot.
//!
//! It serves the `update` capability to the cloud agent ([`scheme`]): the agent relays Azure
//! Device Update workflows and downloads; the updater verifies the manifest's signature before
//! anything is downloaded, the staged bundle (manifest hash, CMS, verity) before anything is
//! written, and writes the other slot ([`workflow`], [`install_job`]).
//!
//! - [`health`]: the health condition over init's status lines (pure).
//! - [`confirm`]: the confirmation, over the [`confirm::BootHost`] trait.
//! - [`workflow`]: the OS update state machine ([`Updates`]).
//! - [`file_choice`]: which file is downloaded: a delta for the running image, or the full
//!   bundle.
//! - [`install_job`]: verifying a staged bundle and installing it.
//! - [`record`]: what is kept on the data partition across reboots.
//! - [`scheme`]: the `update` capability.
//! - [`device`]: the real host: scheme handles and the grubenv on the ESP.
//! - [`service`]: the process (confirmation thread and server).
//! - [`error`]: the errors ([`UpdateServiceError`]).

pub mod confirm;
pub mod device;
pub mod error;
pub mod file_choice;
pub mod health;
pub mod install_job;
pub mod record;
pub mod scheme;
pub mod service;
pub mod workflow;

pub use confirm::{confirm_boot, BootHost, Confirmation};
pub use error::UpdateServiceError;
pub use health::{HealthPolicy, HealthWatch, Verdict};
pub use workflow::{UpdateConfig, Updates};

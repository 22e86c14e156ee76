//! Image builder: reproducible rootfs, disk images and update bundles, and a QEMU runner.
//!
//! `builder::build` turns a plan into `rootfs.img` (squashfs), `disk.img` (GPT: ESP with
//! GRUB, rootfs A and B, data), `update.raucb` (via testudo-updater) and a signed
//! `manifest.json`; `vm::run_vm` boots a disk image under QEMU with OVMF and swtpm.

pub mod binaries;
pub mod builder;
pub mod cache;
pub mod cwasm;
pub mod datafs;
pub mod deltas;
pub mod digest;
pub mod digest_cache;
pub mod disk;
pub mod error;
pub mod esp;
pub mod gpt;
pub mod initramfs;
pub mod kernel;
pub mod keys;
pub mod manifest;
pub mod progress;
pub mod reproducible;
pub mod rootfs;
pub mod source_root;
pub mod system_conf;
pub mod tool;
pub mod vm;
pub mod vm_scenario;
pub mod vm_tpm;

pub use builder::{build, BuildReport, BuildRequest, HostPaths, StepReport};
pub use cache::{Cache, Reuse};
pub use error::{ImageError, Result};
pub use progress::ProgressMode;
pub use reproducible::SourceDateEpoch;
pub use tool::{HostTools, ToolRunner};
pub use vm::{run_vm, VmOptions, VmOutcome};

//! Installing a verified bundle into the inactive slot.
//!
//! Order (each write is durable before the next starts):
//! 1. checks, nothing written: compatible (or, in its place, the bundle's install-check hook),
//!    bundle programs (hooks, handler) only where `[bundle-programs] run=sandboxed`, no casync
//!    index, min-bundle-version, downgrade, target slot is not the booted one (by name and by
//!    device), image fits the slot;
//! 2. target marked bad in the bootloader (on disk) and `status=installing` recorded;
//! 3. image streamed from the payload into the slot in chunks (sha256 checked against the
//!    signed manifest while streaming), fsync, then read back and hashed again; with programs
//!    ([`crate::programs`], each sandboxed with only its step's slot), the image's
//!    pre-install hook before, its install hook in place of the write, its post-install hook
//!    after, or the bundle's handler in place of all of it;
//! 4. `status=ok` + version recorded, then target made primary with one try (the updater's,
//!    never a program's: none of them sees the bootloader).
//!
//! An interruption anywhere leaves the target not bootable (until step 4's last write) and
//! the booted slot untouched, so the next boot picks the old slot; a re-run starts over.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::ControlFlow;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use crate::bootloader::{BootState, Bootloader};
use crate::bundle::VerifiedBundle;
use crate::error::{read_err, write_err, Result, UpdaterError};
use crate::manifest::{ImageEntry, ImageHook, Manifest};
use crate::programs::{BundlePrograms, ProgramOutcome, ProgramRun, ProgramRunner, SandboxedRunner};
use crate::slot;
use crate::status_file::{SlotStatus, StatusFile};
use crate::system_conf::{ProgramsPolicy, SlotConf, SystemConf};
use crate::version;

mod from_patch;

use from_patch::{check_delta_base, DeltaSlots};

/// Install knobs.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    /// Accept a bundle version lower than the installed one.
    pub allow_downgrade: bool,
    /// Bytes per write step (default 1 MiB).
    pub chunk_size: usize,
    /// After fsync, drop the slot's pages from the page cache and hash what the device
    /// returns (default true). Without it the written bytes are still hashed on the way in.
    pub read_back: bool,
}

impl Default for InstallOptions {
    fn default() -> Self {
        InstallOptions {
            allow_downgrade: false,
            chunk_size: 1024 * 1024,
            read_back: true,
        }
    }
}

/// One write step of an install, reported to the observer BEFORE it is performed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Mark the target slot bad in the bootloader.
    MarkTargetBad {
        /// Bootname.
        bootname: String,
    },
    /// Record `status=installing` for a slot in the status file.
    RecordInstalling {
        /// Slot name.
        slot: String,
    },
    /// Write one chunk of an image.
    WriteChunk {
        /// Slot name.
        slot: String,
        /// Byte offset in the slot.
        offset: u64,
        /// Chunk length.
        len: usize,
    },
    /// fsync the slot (and set a file slot's length).
    SyncSlot {
        /// Slot name.
        slot: String,
    },
    /// Record `status=ok` and the bundle version.
    RecordInstalled {
        /// Slot name.
        slot: String,
    },
    /// Run one of the bundle's programs (it may write the slots of its step).
    RunProgram {
        /// Which (`post-install hook of [image.rootfs]`).
        program: String,
    },
    /// Make the target primary with one try.
    SetPrimary {
        /// Bootname.
        bootname: String,
    },
}

/// What an install did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InstallReport {
    /// The bootable slot updated (e.g. `rootfs.1`).
    pub target: String,
    /// Its bootname.
    pub bootname: String,
    /// The bundle version installed.
    pub version: Option<String>,
    /// Image bytes written.
    pub bytes_written: u64,
    /// Number of write steps performed.
    pub steps: usize,
    /// What each of the bundle's programs did, in the order they ran.
    pub programs: Vec<ProgramOutcome>,
}

/// Steps counter + observer; an observer returning `Break` stops the install right there,
/// like a power cut (no clean-up runs).
struct Steps<'o> {
    count: usize,
    observer: &'o mut dyn FnMut(usize, &Step) -> ControlFlow<()>,
}

impl Steps<'_> {
    fn next(&mut self, step: Step) -> Result<()> {
        let index = self.count;
        if let ControlFlow::Break(()) = (self.observer)(index, &step) {
            return Err(UpdaterError::Interrupted { step: index });
        }
        self.count += 1;
        Ok(())
    }
}

/// Whether paths `a` and `b` name the same slot: the same block device (its device number,
/// whatever node or link names it) or the same file. Compared by `stat`, not by resolving
/// links, so the updater component needs no `readlink`.
fn same_device(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) if a.file_type().is_block_device() && b.file_type().is_block_device() => {
            a.rdev() == b.rdev()
        }
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => a == b,
    }
}

/// The refusal checks, shared by `install` and the CLI's dry-run: returns the bootable
/// target slot and `(image, slot)` pairs. Writes nothing.
pub fn plan<'c>(
    conf: &'c SystemConf,
    booted: &'c SlotConf,
    bundle: &VerifiedBundle,
    status: &StatusFile,
    options: &InstallOptions,
) -> Result<(&'c SlotConf, Vec<(ImageEntry, &'c SlotConf)>)> {
    check_manifest(conf, booted, bundle, status, options)?;
    let target = slot::other_bootable(conf, booted)?;
    let mut pairs = Vec::new();
    for image in &bundle.manifest.images {
        let slot = slot::for_image(conf, target, &image.slot_class)?;
        if slot.name() == booted.name() || same_device(&slot.device, &booted.device) {
            return Err(UpdaterError::TargetSlot {
                message: format!(
                    "slot {} is the booted one; refusing to write it",
                    slot.name()
                ),
            });
        }
        check_fits(image, slot)?;
        if let Some(delta) = &image.delta {
            let source = slot::for_image(conf, booted, &image.slot_class)?;
            check_delta_base(delta, source, status)?;
        }
        pairs.push((image.clone(), slot));
    }
    if pairs.is_empty() {
        return Err(UpdaterError::TargetSlot {
            message: "the bundle has no image".to_string(),
        });
    }
    Ok((target, pairs))
}

/// The bundle is for this system, carries no programs to run and no casync index, and is not
/// a downgrade (unless allowed).
fn check_manifest(
    conf: &SystemConf,
    booted: &SlotConf,
    bundle: &VerifiedBundle,
    status: &StatusFile,
    options: &InstallOptions,
) -> Result<()> {
    let manifest = &bundle.manifest;
    // An install-check hook decides compatibility in its place (RAUC's rule).
    if manifest.hooks.is_empty() && manifest.compatible != conf.compatible {
        return Err(UpdaterError::Incompatible {
            bundle: manifest.compatible.clone(),
            system: conf.compatible.clone(),
        });
    }
    // Hooks and handlers replace or wrap the write in RAUC; they run only where the system
    // lets them, sandboxed. Silently skipping them could install something else than intended.
    let scripts = manifest.scripts();
    if !scripts.is_empty() && conf.bundle_programs.policy == ProgramsPolicy::Refuse {
        return Err(UpdaterError::BundlePrograms { scripts });
    }
    if let Some(index) = manifest.images.iter().find(|i| i.is_casync_index()) {
        return Err(UpdaterError::CasyncBundle {
            filename: index.filename.clone(),
        });
    }
    let bundle_version = manifest.version.clone().unwrap_or_default();
    if let Some(min) = &conf.min_bundle_version {
        if version::compare(&bundle_version, min).is_lt() {
            return Err(UpdaterError::Downgrade {
                bundle: bundle_version,
                installed: format!("{min} (min-bundle-version)"),
            });
        }
    }
    if options.allow_downgrade {
        return Ok(());
    }
    match status.get(&booted.name()).bundle_version {
        Some(installed) if version::compare(&bundle_version, &installed).is_lt() => {
            Err(UpdaterError::Downgrade {
                bundle: bundle_version,
                installed,
            })
        }
        _ => Ok(()),
    }
}

/// The slot is a regular file (grown as needed) or a block device at least as large as
/// `image`.
fn check_fits(image: &ImageEntry, slot: &SlotConf) -> Result<()> {
    let meta = std::fs::metadata(&slot.device).map_err(read_err(&slot.device))?;
    if meta.file_type().is_block_device() {
        let mut device = File::open(&slot.device).map_err(read_err(&slot.device))?;
        let capacity = device
            .seek(SeekFrom::End(0))
            .map_err(read_err(&slot.device))?;
        if capacity < image.installed_size() {
            return Err(UpdaterError::TargetSlot {
                message: format!(
                    "image {} ({} bytes) does not fit slot {} ({capacity} bytes)",
                    image.filename,
                    image.installed_size(),
                    slot.name()
                ),
            });
        }
    } else if !meta.is_file() {
        return Err(UpdaterError::TargetSlot {
            message: format!(
                "slot device {} is neither a block device nor a file",
                slot.device.display()
            ),
        });
    }
    Ok(())
}

/// Installs `bundle` (already verified by [`crate::bundle::open`]) from the running slot
/// `booted`, running its programs (if the system allows them) in the sandbox of
/// [`SandboxedRunner`]. `observer` sees every write step before it happens and may stop the
/// install.
pub fn install(
    conf: &SystemConf,
    booted: &SlotConf,
    bundle: &VerifiedBundle,
    bootloader: &mut dyn Bootloader,
    options: &InstallOptions,
    observer: &mut dyn FnMut(usize, &Step) -> ControlFlow<()>,
) -> Result<InstallReport> {
    let runner = SandboxedRunner::new(&conf.bundle_programs);
    install_with(conf, booted, bundle, bootloader, options, &runner, observer)
}

/// [`install`] with the bundle's programs run by `runner`.
pub fn install_with(
    conf: &SystemConf,
    booted: &SlotConf,
    bundle: &VerifiedBundle,
    bootloader: &mut dyn Bootloader,
    options: &InstallOptions,
    runner: &dyn ProgramRunner,
    observer: &mut dyn FnMut(usize, &Step) -> ControlFlow<()>,
) -> Result<InstallReport> {
    let status_path = conf.status_path()?;
    let mut status = StatusFile::load(&status_path)?;
    let (target, pairs) = plan(conf, booted, bundle, &status, options)?;
    let bootname = target.bootname.clone().unwrap_or_default();
    let mut steps = Steps { count: 0, observer };
    let staged = match bundle.manifest.scripts().is_empty() {
        true => None,
        false => Some(crate::programs::stage_bundle(conf, bundle)?),
    };
    let staged_dir = staged
        .as_ref()
        .map(|dir| dir.path().join(crate::programs::BUNDLE_DIR));
    let mut programs = staged_dir
        .as_deref()
        .map(|dir| BundlePrograms::new(conf, booted, &bundle.manifest, dir, runner));
    if let Some(programs) = programs.as_mut() {
        let check = programs.install_check()?;
        run_program(programs, check, &mut steps)?;
    }

    steps.next(Step::MarkTargetBad {
        bootname: bootname.clone(),
    })?;
    bootloader.set_state(&bootname, BootState::Bad)?;
    for (_, slot) in &pairs {
        steps.next(Step::RecordInstalling { slot: slot.name() })?;
        let mut record = status.get(&slot.name());
        record.status = Some("installing".to_string());
        record.bundle_version = None;
        record.sha256 = None;
        status.set(&slot.name(), record);
        status.save()?;
    }

    let mut writing = Writing {
        conf,
        booted,
        bundle,
        options,
        programs: programs.as_mut(),
        steps: &mut steps,
    };
    let bytes_written = match writing.all_slots(&pairs) {
        Ok(written) => written,
        Err((err, slot)) => {
            if !matches!(err, UpdaterError::Interrupted { .. }) {
                // Best effort: the slot is already marked bad; this only tells why.
                let mut record = status.get(&slot);
                record.status = Some("failed".to_string());
                status.set(&slot, record);
                let _ = status.save();
            }
            return Err(err);
        }
    };

    for (image, slot) in &pairs {
        steps.next(Step::RecordInstalled { slot: slot.name() })?;
        let record = installed_status(&bundle.manifest, image, &status.get(&slot.name()));
        status.set(&slot.name(), record);
        status.save()?;
    }
    steps.next(Step::SetPrimary {
        bootname: bootname.clone(),
    })?;
    bootloader.set_primary(&bootname)?;
    Ok(InstallReport {
        target: target.name(),
        bootname,
        version: bundle.manifest.version.clone(),
        bytes_written,
        steps: steps.count,
        programs: programs.map(|p| p.outcomes).unwrap_or_default(),
    })
}

/// Announces and runs `run`, if there is one.
fn run_program(
    programs: &mut BundlePrograms<'_>,
    run: Option<ProgramRun>,
    steps: &mut Steps<'_>,
) -> Result<()> {
    let Some(run) = run else { return Ok(()) };
    steps.next(Step::RunProgram {
        program: run.name.clone(),
    })?;
    programs.execute(&run)
}

/// Step 3 of an install: what writes the target slots.
struct Writing<'w, 'p, 'o> {
    conf: &'w SystemConf,
    booted: &'w SlotConf,
    bundle: &'w VerifiedBundle,
    options: &'w InstallOptions,
    programs: Option<&'w mut BundlePrograms<'p>>,
    steps: &'w mut Steps<'o>,
}

impl Writing<'_, '_, '_> {
    /// Writes every `(image, slot)` pair: the handler for all of them, else each image in
    /// turn. Returns the bytes the updater itself wrote, or the error and the slot it hit.
    fn all_slots(
        &mut self,
        pairs: &[(ImageEntry, &SlotConf)],
    ) -> std::result::Result<u64, (UpdaterError, String)> {
        if let Some(programs) = self.programs.as_deref_mut() {
            let handler = programs
                .handler(pairs)
                .map_err(|err| (err, pairs[0].1.name()))?;
            if handler.is_some() {
                return run_program(programs, handler, self.steps)
                    .map(|()| 0)
                    .map_err(|err| (err, pairs[0].1.name()));
            }
        }
        let mut written = 0;
        for (image, slot) in pairs {
            written += self
                .one_slot(image, slot)
                .map_err(|err| (err, slot.name()))?;
        }
        Ok(written)
    }

    /// The image's pre-install hook, its install hook or the updater's own write, then its
    /// post-install hook.
    fn one_slot(&mut self, image: &ImageEntry, slot: &SlotConf) -> Result<u64> {
        self.hook(ImageHook::PreInstall, image, slot)?;
        let written = if self.hook(ImageHook::Install, image, slot)? {
            0
        } else {
            self.write(image, slot)?
        };
        self.hook(ImageHook::PostInstall, image, slot)?;
        Ok(written)
    }

    /// Runs `hook` of `image` if it has one; whether it ran.
    fn hook(&mut self, hook: ImageHook, image: &ImageEntry, slot: &SlotConf) -> Result<bool> {
        let Some(programs) = self.programs.as_deref_mut() else {
            return Ok(false);
        };
        let run = programs.slot_hook(hook, image, slot)?;
        let ran = run.is_some();
        run_program(programs, run, self.steps)?;
        Ok(ran)
    }

    /// The updater's own write of `image` (whole or through its delta) into `slot`.
    fn write(&mut self, image: &ImageEntry, slot: &SlotConf) -> Result<u64> {
        match &image.delta {
            None => write_image(self.bundle, image, slot, self.options, self.steps),
            Some(delta) => {
                let source = slot::for_image(self.conf, self.booted, &image.slot_class)?;
                from_patch::write_image(
                    self.bundle,
                    image,
                    delta,
                    DeltaSlots {
                        source,
                        target: slot,
                    },
                    self.options,
                    self.steps,
                )
            }
        }
    }
}

/// The status record of a slot that now holds `image` of the bundle with `manifest`.
fn installed_status(manifest: &Manifest, image: &ImageEntry, previous: &SlotStatus) -> SlotStatus {
    SlotStatus {
        bundle_compatible: Some(manifest.compatible.clone()),
        bundle_version: manifest.version.clone(),
        bundle_description: manifest.description.clone(),
        bundle_build: manifest.build.clone(),
        status: Some("ok".to_string()),
        sha256: Some(hex::encode(image.installed_sha256())),
        size: Some(image.installed_size()),
        installed_count: previous.installed_count + 1,
    }
}

/// Streams one image into its slot, then syncs and reads it back.
fn write_image(
    bundle: &VerifiedBundle,
    image: &ImageEntry,
    slot: &SlotConf,
    options: &InstallOptions,
    steps: &mut Steps<'_>,
) -> Result<u64> {
    let chunk_size = options.chunk_size.max(4096);
    let device = &slot.device;
    let mut out = OpenOptions::new()
        .write(true)
        .open(device)
        .map_err(write_err(device))?;
    let written = bundle.stream_image(image, |reader| {
        let mut buf = vec![0u8; chunk_size];
        let mut offset = 0u64;
        loop {
            let filled = read_full(reader, &mut buf).map_err(read_err(&bundle.path))?;
            if filled == 0 {
                break;
            }
            if offset + filled as u64 > image.size {
                return Err(UpdaterError::VerifyImage {
                    filename: image.filename.clone(),
                    message: "longer than the manifest says".to_string(),
                });
            }
            steps.next(Step::WriteChunk {
                slot: slot.name(),
                offset,
                len: filled,
            })?;
            out.write_all(&buf[..filled]).map_err(write_err(device))?;
            offset += filled as u64;
        }
        Ok(offset)
    })?;
    let expected = Expected {
        filename: &image.filename,
        sha256: image.sha256,
        size: written,
    };
    finish_slot(out, slot, &expected, options, steps)?;
    Ok(written)
}

/// What a written slot must hold: `size` bytes of image `filename` with `sha256`.
struct Expected<'a> {
    filename: &'a str,
    sha256: [u8; 32],
    size: u64,
}

/// Ends the writing of `slot` through `out`: the sync step, a file slot cut to the image's
/// size, fsync, then (with `options.read_back`) the read-back against `expected`.
fn finish_slot(
    out: File,
    slot: &SlotConf,
    expected: &Expected<'_>,
    options: &InstallOptions,
    steps: &mut Steps<'_>,
) -> Result<()> {
    let device = &slot.device;
    steps.next(Step::SyncSlot { slot: slot.name() })?;
    if out.metadata().map_err(read_err(device))?.is_file() {
        out.set_len(expected.size).map_err(write_err(device))?;
    }
    out.sync_all().map_err(write_err(device))?;
    drop(out);
    if options.read_back {
        read_back(device, expected)?;
    }
    Ok(())
}

fn read_full(reader: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Re-reads the written bytes (after dropping them from the page cache) and compares them
/// with `expected`.
fn read_back(device: &Path, expected: &Expected<'_>) -> Result<()> {
    let Expected {
        filename,
        sha256,
        size,
    } = *expected;
    use std::os::fd::AsRawFd;
    let file = File::open(device).map_err(read_err(device))?;
    // SAFETY: plain advisory syscall on a valid, open descriptor; no memory is shared.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
    }
    let (hash, count) = crate::bundle::sha256_reader(file.take(size), device)?;
    if count != size || hash != sha256 {
        return Err(UpdaterError::VerifyImage {
            filename: filename.to_owned(),
            message: format!(
                "read-back of {} does not match the manifest",
                device.display()
            ),
        });
    }
    Ok(())
}

//! Writing a slot from a delta bundle's patch ([`crate::delta`]).
//!
//! Before anything is written ([`check_delta_base`], called by `plan`): the active slot of the
//! image's class holds exactly the delta's base, by the status file's record of what was
//! installed there, or, for a slot that has none (the factory image), by hashing it.
//!
//! Then ([`write_image`]): the patch is hashed against the signed manifest, its header is
//! checked against the signed target size, and the patch is applied from the active slot
//! into the target slot in chunks (each a [`Step::WriteChunk`] the observer sees), while
//! the new bytes are hashed (sha256 and dm-verity root): one thread applies the patch, the
//! calling one hashes and writes, a bounded number of chunks apart. The slot is synced and read back;
//! only when both hashes and the read-back match the signed target does the install go on
//! to mark it (the caller). Memory: the patch reader's buffers and a few chunks, whatever the
//! image size.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};

use super::{finish_slot, Expected, Step, Steps};
use crate::bundle::VerifiedBundle;
use crate::delta::{DeltaSpec, IdentityHasher, ImageIdentity};
use crate::error::{read_err, write_err, Result, UpdaterError};
use crate::install::InstallOptions;
use crate::manifest::ImageEntry;
use crate::patch::{self, ApplyError, FileSource, PatchBlocks, PatchHeader};
use crate::payload;
use crate::status_file::StatusFile;
use crate::system_conf::SlotConf;

/// The slots a delta joins: the active one it reads, the inactive one it writes.
#[derive(Debug, Clone, Copy)]
pub struct DeltaSlots<'c> {
    /// The active slot of the image's class (holds the base).
    pub source: &'c SlotConf,
    /// The slot being written.
    pub target: &'c SlotConf,
}

/// Checks that `source` holds the base of `delta`: by its status record when it has one
/// (what this updater installed there), else by hashing the slot's first `base.size` bytes.
pub(super) fn check_delta_base(
    delta: &DeltaSpec,
    source: &SlotConf,
    status: &StatusFile,
) -> Result<()> {
    let base = &delta.base;
    let wanted = hex::encode(base.sha256);
    let mismatch = |found: String| UpdaterError::DeltaBase {
        slot: source.name(),
        message: format!(
            "holds {found}, the delta applies to sha256 {wanted} ({} bytes)",
            base.size
        ),
    };
    let record = status.get(&source.name());
    if let (Some(sha256), Some(size)) = (record.sha256, record.size) {
        return if sha256 == wanted && size == base.size {
            Ok(())
        } else {
            Err(mismatch(format!("sha256 {sha256} ({size} bytes)")))
        };
    }
    let device = &source.device;
    let file = File::open(device).map_err(read_err(device))?;
    let (sha256, size) = crate::bundle::sha256_reader(file.take(base.size), device)?;
    if size != base.size {
        return Err(mismatch(format!("only {size} bytes")));
    }
    if sha256 != base.sha256 {
        return Err(mismatch(format!("sha256 {}", hex::encode(sha256))));
    }
    Ok(())
}

/// Applies `image`'s patch from `slots.source` into `slots.target`; returns the bytes
/// written. Fails with [`UpdaterError::DeltaResult`] when the result is not the signed
/// target, [`UpdaterError::ApplyPatch`] when the patch is malformed.
pub(super) fn write_image(
    bundle: &VerifiedBundle,
    image: &ImageEntry,
    delta: &DeltaSpec,
    slots: DeltaSlots<'_>,
    options: &InstallOptions,
    steps: &mut Steps<'_>,
) -> Result<u64> {
    let filename = &image.filename;
    let header = read_header(bundle, image)?;
    if header.new_size != delta.target.size {
        return Err(UpdaterError::DeltaResult {
            filename: filename.clone(),
            message: format!(
                "the patch makes {} bytes, the manifest's target has {}",
                header.new_size, delta.target.size
            ),
        });
    }
    let source_device = &slots.source.device;
    let source_file = File::open(source_device).map_err(read_err(source_device))?;
    let source = FileSource {
        file: &source_file,
        len: delta.base.size,
    };
    let device = &slots.target.device;
    let out = OpenOptions::new()
        .write(true)
        .open(device)
        .map_err(write_err(device))?;
    let chunk_size = options.chunk_size.max(4096);
    let mut sink = SlotSink {
        out,
        slot: slots.target,
        offset: 0,
        hasher: IdentityHasher::default(),
        steps,
    };
    // Two threads, a few chunks apart: one applies the patch (bzip2, the old slot's bytes,
    // the sums), this one hashes and writes what it made.
    let (made, received) = std::sync::mpsc::sync_channel::<Vec<u8>>(PIPELINE_CHUNKS);
    std::thread::scope(|scope| {
        let maker = scope.spawn(|| apply_patch(bundle, image, &header, &source, chunk_size, made));
        let mut written = Ok(());
        for chunk in received.iter() {
            written = sink.write_chunk(&chunk);
            if written.is_err() {
                break;
            }
        }
        // A writer that stopped makes the maker's next send fail, which ends it.
        drop(received);
        let applied = maker.join().unwrap_or_else(|_| {
            Err(apply_failed(
                filename,
                std::io::Error::other("the patch thread panicked"),
            ))
        });
        // What stopped the writer (a write error, an interruption) comes first.
        written.and(applied)
    })?;
    let (out, identity) = sink.finish();
    check_result(filename, &identity, &delta.target)?;
    let expected = Expected {
        filename,
        sha256: delta.target.sha256,
        size: delta.target.size,
    };
    finish_slot(out, slots.target, &expected, options, steps)?;
    Ok(identity.size)
}

/// Chunks made ahead of the writer, at most (memory: this many chunks).
const PIPELINE_CHUNKS: usize = 2;

/// Applies `image`'s patch (its `header` read) to `source`, sending the new image to `made`
/// in chunks of `chunk_size` bytes (the last may be shorter).
fn apply_patch(
    bundle: &VerifiedBundle,
    image: &ImageEntry,
    header: &PatchHeader,
    source: &FileSource<'_>,
    chunk_size: usize,
    made: std::sync::mpsc::SyncSender<Vec<u8>>,
) -> Result<()> {
    let filename = &image.filename;
    let stopped = || apply_failed(filename, std::io::Error::other("the slot writer stopped"));
    let mut chunk = Vec::with_capacity(chunk_size);
    let [control, diff, extra] = header.blocks(image.size);
    let path = bundle.payload();
    payload::read_file(path, filename, |control_reader| {
        skip(control_reader, control.0, bundle)?;
        payload::read_file(path, filename, |diff_reader| {
            skip(diff_reader, diff.0, bundle)?;
            payload::read_file(path, filename, |extra_reader| {
                skip(extra_reader, extra.0, bundle)?;
                let blocks = PatchBlocks {
                    control: control_reader.take(control.1),
                    diff: diff_reader.take(diff.1),
                    extra: extra_reader.take(extra.1),
                };
                patch::apply(header, blocks, source, |mut piece| {
                    while !piece.is_empty() {
                        let take = (chunk_size - chunk.len()).min(piece.len());
                        chunk.extend_from_slice(&piece[..take]);
                        piece = &piece[take..];
                        if chunk.len() == chunk_size {
                            let full =
                                std::mem::replace(&mut chunk, Vec::with_capacity(chunk_size));
                            made.send(full).map_err(|_| stopped())?;
                        }
                    }
                    Ok(())
                })
                .map(drop)
                .map_err(|error| match error {
                    ApplyError::Patch(source) => UpdaterError::ApplyPatch {
                        filename: filename.clone(),
                        source,
                    },
                    ApplyError::Emit(error) => error,
                })
            })
        })
    })?;
    if !chunk.is_empty() {
        made.send(chunk).map_err(|_| stopped())?;
    }
    Ok(())
}

/// An [`UpdaterError::ApplyPatch`] of `filename` for an I/O error outside the patch's bytes.
fn apply_failed(filename: &str, error: std::io::Error) -> UpdaterError {
    UpdaterError::ApplyPatch {
        filename: filename.to_owned(),
        source: patch::PatchError::Block {
            block: "output",
            source: error,
        },
    }
}

/// The patch's 32-byte header, parsed against the patch's signed size, read in the pass that
/// re-checks the patch's sha256 against the manifest, as for any image (its every byte was
/// verified with the bundle already).
fn read_header(bundle: &VerifiedBundle, image: &ImageEntry) -> Result<PatchHeader> {
    let apply_err = |source| UpdaterError::ApplyPatch {
        filename: image.filename.clone(),
        source,
    };
    let bytes = bundle.stream_image(image, |reader| {
        let mut bytes = [0u8; patch::HEADER_LEN as usize];
        reader.read_exact(&mut bytes).map_err(|source| {
            apply_err(patch::PatchError::Block {
                block: "header",
                source,
            })
        })?;
        Ok(bytes)
    })?;
    PatchHeader::parse(&bytes, image.size).map_err(apply_err)
}

/// Reads and drops the first `count` bytes of `reader` (a file of `bundle`'s payload).
fn skip(reader: &mut dyn Read, count: u64, bundle: &VerifiedBundle) -> Result<()> {
    let skipped = std::io::copy(&mut reader.take(count), &mut std::io::sink())
        .map_err(read_err(&bundle.path))?;
    if skipped != count {
        return Err(UpdaterError::BundleFormat {
            path: bundle.path.clone(),
            message: format!("a patch ends after {skipped} of {count} bytes"),
        });
    }
    Ok(())
}

/// The result against the signed target: sha256, size and verity root.
fn check_result(filename: &str, made: &ImageIdentity, target: &ImageIdentity) -> Result<()> {
    let differs = |what: &str| {
        Err(UpdaterError::DeltaResult {
            filename: filename.to_owned(),
            message: format!("the patched image's {what} differs from the signed target's"),
        })
    };
    if made.size != target.size {
        return differs("size");
    }
    if made.sha256 != target.sha256 {
        return differs("sha256");
    }
    if made.verity_root != target.verity_root {
        return differs("verity root");
    }
    Ok(())
}

/// The target slot being written chunk by chunk, hashed on the way.
struct SlotSink<'s, 'o> {
    out: File,
    slot: &'s SlotConf,
    offset: u64,
    hasher: IdentityHasher,
    steps: &'s mut Steps<'o>,
}

impl SlotSink<'_, '_> {
    /// Hashes `chunk` and writes it at the current offset (a step the observer sees first).
    fn write_chunk(&mut self, chunk: &[u8]) -> Result<()> {
        self.hasher.update(chunk);
        self.steps.next(Step::WriteChunk {
            slot: self.slot.name(),
            offset: self.offset,
            len: chunk.len(),
        })?;
        self.out
            .write_all(chunk)
            .map_err(write_err(&self.slot.device))?;
        self.offset += chunk.len() as u64;
        Ok(())
    }

    /// The slot and the identity of everything written (an image that is not whole 4 KiB
    /// blocks cannot be a target: reported as a mismatch).
    fn finish(self) -> (File, ImageIdentity) {
        let size = self.offset;
        let identity = self.hasher.finish().unwrap_or(ImageIdentity {
            sha256: [0; 32],
            size,
            verity_root: [0; 32],
        });
        (self.out, identity)
    }
}

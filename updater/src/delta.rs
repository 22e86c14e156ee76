//! Delta bundles: a bundle in RAUC's format whose image is a binary patch ([`crate::patch`])
//! from a named base image to the new one, instead of the new image itself.
//!
//! The signed manifest names both ends, in a `[meta.delta.<slot class>]` group (RAUC 1.8
//! accepts and ignores `meta.*` groups, so `rauc info` still reads every delta bundle):
//!
//! ```text
//! [image.rootfs]
//! sha256=<of the patch>          size=<of the patch>    filename=rootfs.img.bsdiff
//! [meta.delta.rootfs]
//! format=bsdiff4
//! base-sha256=…  base-size=…  base-verity-root=…
//! target-sha256=…  target-size=…  target-verity-root=…
//! ```
//!
//! The verity roots are dm-verity root hashes ([`crate::verity`]: sha256, 4 KiB blocks) with
//! the all-zero salt [`IMAGE_VERITY_SALT`], so anyone can recompute them from the image.
//! RAUC itself picks an install handler from the image's file name; no handler matches
//! `*.bsdiff`, so `rauc install` refuses a delta bundle instead of writing a patch into a slot:
//! installing one needs testudo.
//!
//! [`create`] makes a delta bundle from two full bundles (build host, both images in memory);
//! the installer ([`crate::install`]) checks the base before writing and the result before
//! marking anything bootable.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::bundle::{self, BundleSpec, CreatedBundle, VerifiedBundle};
use crate::error::{read_err, write_err, Result, UpdaterError};
use crate::ini::Group;
use crate::signature::Signer;
use crate::{patch, verity};

/// The only patch format: bsdiff 4 ([`crate::patch`]).
pub const PATCH_FORMAT: &str = "bsdiff4";
/// Prefix of the manifest group describing the delta of one slot class.
pub const META_GROUP_PREFIX: &str = "meta.delta.";
/// Appended to the image's file name to name its patch in a delta bundle.
pub const PATCH_SUFFIX: &str = ".bsdiff";
/// Salt of the verity roots that identify images in a delta manifest.
pub const IMAGE_VERITY_SALT: [u8; 32] = [0; 32];

/// What identifies an image: its sha256, size and dm-verity root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ImageIdentity {
    /// sha256 of the whole image.
    #[serde(with = "crate::manifest::hex_bytes")]
    pub sha256: [u8; 32],
    /// Size in bytes (a multiple of 4096).
    pub size: u64,
    /// dm-verity root hash with [`IMAGE_VERITY_SALT`].
    #[serde(with = "crate::manifest::hex_bytes")]
    pub verity_root: [u8; 32],
}

/// Both hashes of an image computed in one pass, as its bytes stream past.
#[derive(Debug, Clone)]
pub struct IdentityHasher {
    sha256: Sha256,
    root: verity::RootHasher,
    size: u64,
}

impl Default for IdentityHasher {
    fn default() -> Self {
        IdentityHasher {
            sha256: Sha256::new(),
            root: verity::RootHasher::new(IMAGE_VERITY_SALT),
            size: 0,
        }
    }
}

impl IdentityHasher {
    /// Feeds the next bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.sha256.update(bytes);
        self.root.update(bytes);
        self.size += bytes.len() as u64;
    }

    /// The identity, or `None` if the image is not a whole number (at least two) of 4 KiB
    /// blocks.
    pub fn finish(self) -> Option<ImageIdentity> {
        Some(ImageIdentity {
            verity_root: self.root.finish()?,
            sha256: self.sha256.finalize().into(),
            size: self.size,
        })
    }
}

impl ImageIdentity {
    /// The identity of `bytes` (an image named `filename`, for the error).
    pub fn of(bytes: &[u8], filename: &str) -> Result<Self> {
        let mut hasher = IdentityHasher::default();
        hasher.update(bytes);
        hasher
            .finish()
            .ok_or_else(|| not_blocks(filename, bytes.len() as u64))
    }
}

fn not_blocks(filename: &str, size: u64) -> UpdaterError {
    UpdaterError::Manifest {
        message: format!(
            "image {filename} ({size} bytes) is not a whole number of 4096-byte blocks; delta updates need block images"
        ),
    }
}

/// The `[meta.delta.<slot class>]` record of a delta image.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeltaSpec {
    /// The image the patch applies to: what the device's active slot must hold.
    pub base: ImageIdentity,
    /// The image the patch produces: what the inactive slot must hold afterwards.
    pub target: ImageIdentity,
}

impl DeltaSpec {
    /// Parses the group (untrusted until the signature is checked).
    pub fn parse(group: &Group) -> Result<Self> {
        let format = group.get("format").unwrap_or_default();
        if format != PATCH_FORMAT {
            return Err(UpdaterError::Manifest {
                message: format!(
                    "[{}] format={format:?} is not a supported patch format ({PATCH_FORMAT})",
                    group.name
                ),
            });
        }
        let identity = |end: &str| -> Result<ImageIdentity> {
            let size = crate::manifest::number(group, &format!("{end}-size"))?;
            if size < 2 * verity::BLOCK_SIZE as u64
                || !size.is_multiple_of(verity::BLOCK_SIZE as u64)
            {
                return Err(UpdaterError::Manifest {
                    message: format!(
                        "[{}] {end}-size={size} is not a whole number of 4096-byte blocks",
                        group.name
                    ),
                });
            }
            Ok(ImageIdentity {
                sha256: crate::manifest::hex32(group, &format!("{end}-sha256"))?,
                size,
                verity_root: crate::manifest::hex32(group, &format!("{end}-verity-root"))?,
            })
        };
        Ok(DeltaSpec {
            base: identity("base")?,
            target: identity("target")?,
        })
    }

    /// Writes the record into `group`.
    pub fn render(&self, group: &mut Group) {
        group.set("format", PATCH_FORMAT);
        for (end, identity) in [("base", &self.base), ("target", &self.target)] {
            group.set(&format!("{end}-sha256"), hex::encode(identity.sha256));
            group.set(&format!("{end}-size"), identity.size.to_string());
            group.set(
                &format!("{end}-verity-root"),
                hex::encode(identity.verity_root),
            );
        }
    }
}

/// Makes a delta bundle at `out` that turns the images of `from` into those of `to`: same
/// compatible, version, description and build as `to`, verity format, signed by `signer`.
/// Every image of `to` needs an image of the same slot class in `from`; both must be full
/// images of whole 4 KiB blocks. Memory: both images of a slot class at once, plus the
/// patch search (about 6x the image).
pub fn create(
    from: &VerifiedBundle,
    to: &VerifiedBundle,
    signer: &Signer,
    out: &Path,
) -> Result<CreatedBundle> {
    if from.manifest.compatible != to.manifest.compatible {
        return Err(UpdaterError::Incompatible {
            bundle: to.manifest.compatible.clone(),
            system: from.manifest.compatible.clone(),
        });
    }
    let out_dir = match out.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let staging = tempfile::Builder::new()
        .prefix(".testudo-delta-")
        .tempdir_in(&out_dir)
        .map_err(write_err(&out_dir))?;
    let mut images = Vec::new();
    let mut deltas = BTreeMap::new();
    for new_entry in &to.manifest.images {
        let class = &new_entry.slot_class;
        let old_entry = from
            .manifest
            .image(class)
            .ok_or_else(|| UpdaterError::Manifest {
                message: format!("the base bundle has no image for slot class {class}"),
            })?;
        if old_entry.delta.is_some() || new_entry.delta.is_some() {
            return Err(UpdaterError::Manifest {
                message: format!("slot class {class}: deltas are made between full bundles"),
            });
        }
        let old = read_image(from, old_entry)?;
        let new = read_image(to, new_entry)?;
        let spec = DeltaSpec {
            base: identity(old_entry, &old)?,
            target: identity(new_entry, &new)?,
        };
        let patch_path = staging
            .path()
            .join(format!("{}{PATCH_SUFFIX}", new_entry.filename));
        let mut file = std::fs::File::create(&patch_path).map_err(write_err(&patch_path))?;
        patch::create(&old, &new, &mut std::io::BufWriter::new(&mut file)).map_err(|source| {
            UpdaterError::CreatePatch {
                filename: new_entry.filename.clone(),
                source,
            }
        })?;
        file.sync_all().map_err(write_err(&patch_path))?;
        deltas.insert(class.clone(), spec);
        images.push((class.clone(), patch_path));
    }
    let mut spec = BundleSpec::new(
        &to.manifest.compatible,
        to.manifest.version.as_deref().unwrap_or_default(),
        images,
    );
    spec.description = to.manifest.description.clone();
    spec.build = to.manifest.build.clone();
    spec.deltas = deltas;
    // The patches are compressed already.
    spec.mksquashfs_args = ["-noI", "-noD", "-noF", "-noX"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    bundle::create(&spec, signer, out)
}

/// The identity of `entry`'s image, whose `bytes` [`read_image`] checked against the
/// manifest's sha256 and size already: only the verity root is computed.
fn identity(entry: &crate::manifest::ImageEntry, bytes: &[u8]) -> Result<ImageIdentity> {
    let mut root = verity::RootHasher::new(IMAGE_VERITY_SALT);
    root.update(bytes);
    Ok(ImageIdentity {
        sha256: entry.sha256,
        size: entry.size,
        verity_root: root
            .finish()
            .ok_or_else(|| not_blocks(&entry.filename, entry.size))?,
    })
}

/// The image `entry` of `bundle` in memory (its sha256 re-checked while read).
fn read_image(bundle: &VerifiedBundle, entry: &crate::manifest::ImageEntry) -> Result<Vec<u8>> {
    let capacity = usize::try_from(entry.size).map_err(|_| UpdaterError::Manifest {
        message: format!("image {} is too large for this machine", entry.filename),
    })?;
    bundle.stream_image(entry, |reader| {
        let mut bytes = Vec::with_capacity(capacity);
        reader
            .read_to_end(&mut bytes)
            .map_err(read_err(&bundle.path))?;
        Ok(bytes)
    })
}

//! `.raucb` bundles: `payload || CMS (DER) || u64 big-endian CMS length`.
//!
//! * plain: payload = squashfs (with `manifest.raucm` inside), CMS detached over it.
//! * verity: payload = squashfs || dm-verity tree; CMS inline over the manifest, which adds
//!   `verity-hash/salt/size` (the copy inside the squashfs lacks them, as with `rauc bundle`).
//!
//! [`open`] checks the framing, the signature against a keyring and then EVERY payload byte
//! (hash tree or detached signature), streaming with bounded memory, before anything else
//! reads the payload. Images are then streamed out with their manifest sha256 re-checked.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::crypt::{self, CryptKey, Decryptor};
use crate::delta::DeltaSpec;
use crate::error::{read_err, write_err, Result, UpdaterError};
use crate::manifest::{
    check_filename, BundleFormat, ImageEntry, Manifest, VerityParams, MANIFEST_FILENAME,
};
use crate::signature::{self, Keyring, Signer, VerifiedSigner};
use crate::{payload, verity};

/// Appended to an image's file name to name its block hash index: the sha256 of each 4 KiB
/// block, concatenated (RAUC's `adaptive=block-hash-index`).
pub const BLOCK_HASH_INDEX_SUFFIX: &str = ".block-hash-index";
/// The `adaptive=` value of an image with a block hash index (RAUC writes the trailing `;`).
pub const ADAPTIVE_BLOCK_HASH_INDEX: &str = "block-hash-index;";

/// RAUC's default maximum signature size.
pub const MAX_SIGNATURE_SIZE: u64 = 64 * 1024;
/// Largest manifest read from a payload.
const MAX_MANIFEST_SIZE: u64 = 1024 * 1024;

/// What to put in a bundle.
#[derive(Debug, Clone)]
pub struct BundleSpec {
    /// `[update] compatible=`: must equal the device's system.conf `compatible`.
    pub compatible: String,
    /// `[update] version=` (dotted numbers, compared for downgrade protection).
    pub version: String,
    /// `[update] description=`.
    pub description: Option<String>,
    /// `[update] build=`.
    pub build: Option<String>,
    /// verity (default) or plain.
    pub format: BundleFormat,
    /// (slot class, image file): the file is stored under its own file name.
    pub images: Vec<(String, PathBuf)>,
    /// Extra mksquashfs arguments (e.g. `-comp`, `zstd`), after the mode pinning of
    /// [`pinned_mode_args`].
    pub mksquashfs_args: Vec<String>,
    /// sha256 and size of image files the caller has already hashed (a build cache keeps
    /// them), by the path given in `images`: used instead of reading the file again. The size
    /// is checked against the file; a wrong sha256 yields a bundle every installer refuses.
    pub known_digests: BTreeMap<PathBuf, ([u8; 32], u64)>,
    /// Give every image that is a whole number of 4 KiB blocks RAUC's
    /// `adaptive=block-hash-index;` and its index file (see [`BLOCK_HASH_INDEX_SUFFIX`]), so
    /// a streaming-capable `rauc` copies unchanged blocks from the active slot.
    pub adaptive: bool,
    /// For a delta bundle: per slot class, the base and target the image (a patch) joins.
    pub deltas: BTreeMap<String, DeltaSpec>,
}

impl BundleSpec {
    /// A verity bundle spec with one image per `(slot class, path)`.
    pub fn new(compatible: &str, version: &str, images: Vec<(String, PathBuf)>) -> Self {
        BundleSpec {
            compatible: compatible.to_string(),
            version: version.to_string(),
            description: None,
            build: None,
            format: BundleFormat::Verity,
            images,
            mksquashfs_args: Vec::new(),
            known_digests: BTreeMap::new(),
            adaptive: false,
            deltas: BTreeMap::new(),
        }
    }
}

/// sha256 and size of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<([u8; 32], u64)> {
    let file = File::open(path).map_err(read_err(path))?;
    sha256_reader(file, path)
}

/// Chunks read ahead of the hashing by [`sha256_reader`].
const READ_AHEAD_CHUNKS: usize = 2;
/// Bytes per read of [`sha256_reader`].
const READ_CHUNK: usize = 1024 * 1024;

/// sha256 and length of everything `reader` (reading `path`) yields, in 1 MiB chunks. The
/// reading (the copy out of the page cache, or the device's reads) runs on a second thread
/// while this one hashes the chunk before: on this hardware the copy costs about as much as
/// the hashing. At most `READ_AHEAD_CHUNKS + 2` chunks are allocated.
pub(crate) fn sha256_reader(mut reader: impl Read + Send, path: &Path) -> Result<([u8; 32], u64)> {
    std::thread::scope(|scope| {
        let (to_hasher, chunks) = std::sync::mpsc::sync_channel::<Vec<u8>>(READ_AHEAD_CHUNKS);
        let (to_reader, spent) = std::sync::mpsc::channel::<Vec<u8>>();
        let reading = scope.spawn(move || -> std::io::Result<()> {
            loop {
                let mut buf = spent.try_recv().unwrap_or_default();
                buf.resize(READ_CHUNK, 0);
                let n = loop {
                    match reader.read(&mut buf) {
                        Ok(n) => break n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    }
                };
                if n == 0 {
                    return Ok(());
                }
                buf.truncate(n);
                if to_hasher.send(buf).is_err() {
                    return Ok(());
                }
            }
        });
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        for chunk in &chunks {
            hasher.update(&chunk);
            size += chunk.len() as u64;
            // The reader may have finished already; the buffer is then simply freed.
            let _ = to_reader.send(chunk);
        }
        match reading.join() {
            Ok(read) => read.map_err(read_err(path))?,
            Err(panic) => std::panic::resume_unwind(panic),
        }
        Ok((hasher.finalize().into(), size))
    })
}

/// What [`create`] made.
#[derive(Debug, Clone)]
pub struct CreatedBundle {
    /// The manifest that was signed.
    pub manifest: Manifest,
    /// sha256 of the payload: everything before the CMS signature (squashfs, padding and,
    /// for verity, the hash tree). It does not change when the bundle is re-signed.
    pub payload_sha256: [u8; 32],
    /// Size of the payload.
    pub payload_size: u64,
}

/// Creates a signed bundle at `out` (written to a temporary file, then renamed). Reproducible,
/// signature included, for RSA and ECDSA P-256 signers (no signing time; RFC 6979 nonces,
/// see [`crate::deterministic_ecdsa`]).
pub fn create(spec: &BundleSpec, signer: &Signer, out: &Path) -> Result<CreatedBundle> {
    let loaded = signer.load()?;
    if spec.images.is_empty() {
        return Err(UpdaterError::Manifest {
            message: "a bundle needs at least one image".to_string(),
        });
    }
    let out_dir = match out.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let staging = tempfile::Builder::new()
        .prefix(".testudo-bundle-")
        .tempdir_in(&out_dir)
        .map_err(write_err(&out_dir))?;
    let content = staging.path().join("content");
    std::fs::create_dir(&content).map_err(write_err(&content))?;

    let mut manifest = Manifest {
        compatible: spec.compatible.clone(),
        version: Some(spec.version.clone()),
        description: spec.description.clone(),
        build: spec.build.clone(),
        format: spec.format,
        verity: None,
        crypt_key: None,
        hooks_filename: None,
        hooks: Vec::new(),
        handler: None,
        images: stage_images(spec, &content)?,
    };
    let inner_manifest = manifest.render();
    let manifest_path = content.join(MANIFEST_FILENAME);
    std::fs::write(&manifest_path, &inner_manifest).map_err(write_err(&manifest_path))?;

    let temp_out = staging.path().join("bundle.raucb");
    let indexes: Vec<String> = manifest
        .images
        .iter()
        .filter(|i| i.adaptive.is_some())
        .map(|i| format!("{}{BLOCK_HASH_INDEX_SUFFIX}", i.filename))
        .collect();
    let filenames: Vec<&str> = manifest
        .images
        .iter()
        .map(|i| i.filename.as_str())
        .chain(indexes.iter().map(String::as_str))
        .collect();
    let mut mksquashfs_args = pinned_mode_args(&filenames);
    mksquashfs_args.extend(spec.mksquashfs_args.iter().cloned());
    payload::create(&content, &temp_out, &mksquashfs_args)?;
    let squashfs_size = std::fs::metadata(&temp_out)
        .map_err(read_err(&temp_out))?
        .len();
    let mut padded = squashfs_size.div_ceil(4096) * 4096;
    if spec.format != BundleFormat::Plain {
        // A hash tree needs at least two data blocks; zeros after the squashfs are ignored
        // by every reader (the superblock records the filesystem size).
        padded = padded.max(2 * 4096);
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&temp_out)
        .map_err(write_err(&temp_out))?;
    file.set_len(padded).map_err(write_err(&temp_out))?;
    if spec.format == BundleFormat::Crypt {
        // A key only this signer can make again, from exactly this content: the same input
        // gives the same bundle, and no two contents share a key.
        let key = CryptKey::from_bytes(
            loaded.derive_secret(b"testudo crypt key v1\n", inner_manifest.as_bytes())?,
        );
        crypt::encrypt_in_place(&file, &temp_out, padded, &key)?;
        manifest.crypt_key = Some(key);
    }
    file.seek(SeekFrom::Start(0)).map_err(read_err(&temp_out))?;
    // The payload's sha256 (for the caller's records) is computed on the second core while
    // this thread hashes the tree or signs: both read the same bytes from the page cache.
    let mut tree = Vec::new();
    let (cms, data_sha256) = std::thread::scope(|scope| {
        let data_hash = scope.spawn(|| -> Result<Sha256> {
            let reader = File::open(&temp_out).map_err(read_err(&temp_out))?;
            let mut hasher = Sha256::new();
            let copied = std::io::copy(&mut reader.take(padded), &mut hasher)
                .map_err(read_err(&temp_out))?;
            if copied != padded {
                return Err(format_err(&temp_out, "payload shorter than written"));
            }
            Ok(hasher)
        });
        let cms = match spec.format {
            BundleFormat::Plain => signature::sign_detached((&file).take(padded), &loaded),
            BundleFormat::Verity | BundleFormat::Crypt => {
                let salt = verity_salt(&inner_manifest);
                append_hash_tree(&mut file, &temp_out, padded, salt).and_then(|(params, bytes)| {
                    manifest.verity = Some(params);
                    tree = bytes;
                    signature::sign_inline(manifest.render().as_bytes(), &loaded)
                })
            }
        };
        let data_hash = data_hash
            .join()
            .map_err(|_| format_err(&temp_out, "payload hashing thread panicked"))?;
        Ok::<_, UpdaterError>((cms?, data_hash?))
    })?;
    // The payload is the data and, for verity, the tree just appended after it.
    let mut payload_hash = data_sha256;
    payload_hash.update(&tree);
    let payload_size = padded + tree.len() as u64;
    append_signature(&mut file, &temp_out, &cms)?;
    drop(file);
    std::fs::rename(&temp_out, out).map_err(write_err(out))?;
    Ok(CreatedBundle {
        manifest,
        payload_sha256: payload_hash.finalize().into(),
        payload_size,
    })
}

/// mksquashfs arguments that pin the mode and owner of everything in the payload: the root
/// directory `0755`, the manifest and each image file (`image_filenames`) `0644`, owned by
/// root. Without them the payload would carry the modes the staged files happen to have
/// (the umask of whoever created them), so the same input could give different bundles.
pub fn pinned_mode_args(image_filenames: &[&str]) -> Vec<String> {
    let mut args = vec!["-root-mode".to_owned(), "755".to_owned()];
    for name in std::iter::once(MANIFEST_FILENAME).chain(image_filenames.iter().copied()) {
        args.push("-p".to_owned());
        args.push(format!("{name} m 644 0 0"));
    }
    args
}

/// Hard-links (or copies) each `(slot class, file)` into `content` under its file name and
/// returns the manifest entries (sha256 and size of each file; known ones are not re-read).
/// With [`BundleSpec::adaptive`], block images get their block hash index beside them.
fn stage_images(spec: &BundleSpec, content: &Path) -> Result<Vec<ImageEntry>> {
    if let Some(class) = spec
        .deltas
        .keys()
        .find(|class| !spec.images.iter().any(|(c, _)| c == *class))
    {
        return Err(UpdaterError::Manifest {
            message: format!("a delta is given for slot class {class}, which has no image"),
        });
    }
    let mut entries: Vec<ImageEntry> = Vec::new();
    for (slot_class, path) in &spec.images {
        let filename = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| UpdaterError::Manifest {
                message: format!("image path {} has no UTF-8 file name", path.display()),
            })?
            .to_string();
        check_filename(&filename)?;
        if entries
            .iter()
            .any(|i| i.filename == filename || &i.slot_class == slot_class)
        {
            return Err(UpdaterError::Manifest {
                message: format!(
                    "duplicate image file name {filename:?} or slot class {slot_class:?}"
                ),
            });
        }
        let (sha256, size) = match spec.known_digests.get(path) {
            Some(&(sha256, size)) => {
                let actual = std::fs::metadata(path).map_err(read_err(path))?.len();
                if actual != size {
                    return Err(UpdaterError::Manifest {
                        message: format!(
                            "image {} is {actual} bytes, but its known digest is for {size}",
                            path.display()
                        ),
                    });
                }
                (sha256, size)
            }
            None => sha256_file(path)?,
        };
        let staged = content.join(&filename);
        if std::fs::hard_link(path, &staged).is_err() {
            std::fs::copy(path, &staged).map_err(write_err(&staged))?;
        }
        let delta = spec.deltas.get(slot_class).cloned();
        let adaptive = spec.adaptive
            && delta.is_none()
            && size >= 4096
            && size.is_multiple_of(verity::BLOCK_SIZE as u64);
        if adaptive {
            let index = content.join(format!("{filename}{BLOCK_HASH_INDEX_SUFFIX}"));
            write_block_hash_index(path, &index)?;
        }
        entries.push(ImageEntry {
            slot_class: slot_class.clone(),
            variant: None,
            filename,
            sha256,
            size,
            hooks: Vec::new(),
            adaptive: adaptive.then(|| ADAPTIVE_BLOCK_HASH_INDEX.to_owned()),
            delta,
        });
    }
    Ok(entries)
}

/// Writes RAUC's block hash index of `image` to `out`: the sha256 of every 4 KiB block.
pub fn write_block_hash_index(image: &Path, out: &Path) -> Result<()> {
    let mut reader =
        std::io::BufReader::with_capacity(1024 * 1024, File::open(image).map_err(read_err(image))?);
    let mut writer = BufWriter::new(File::create(out).map_err(write_err(out))?);
    let mut block = vec![0u8; verity::BLOCK_SIZE];
    loop {
        match reader.read_exact(&mut block) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(read_err(image)(e)),
        }
        writer
            .write_all(&Sha256::digest(&block))
            .map_err(write_err(out))?;
    }
    writer.flush().map_err(write_err(out))
}

/// The verity salt: derived from the manifest inside the payload, so the same input gives
/// the same bundle payload.
fn verity_salt(inner_manifest: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"testudo verity salt v1\n");
    hasher.update(inner_manifest.as_bytes());
    hasher.finalize().into()
}

/// Computes the dm-verity tree over the first `padded` bytes of `file` (at `path`, read
/// from its current position, the start) and appends it there; returns the manifest's
/// verity parameters and the tree's bytes.
fn append_hash_tree(
    file: &mut File,
    path: &Path,
    padded: u64,
    salt: [u8; 32],
) -> Result<(VerityParams, Vec<u8>)> {
    let tree = verity::compute(std::io::BufReader::new(&*file).take(padded), padded, &salt)
        .map_err(read_err(path))?;
    file.seek(SeekFrom::Start(padded))
        .map_err(write_err(path))?;
    file.write_all(&tree.bytes).map_err(write_err(path))?;
    let params = VerityParams {
        root_hash: tree.root_hash,
        salt,
        hash_tree_size: tree.bytes.len() as u64,
    };
    Ok((params, tree.bytes))
}

/// Appends the CMS signature `cms` and its u64 big-endian length to `file` (at `path`), and
/// syncs it.
fn append_signature(file: &mut File, path: &Path, cms: &[u8]) -> Result<()> {
    file.seek(SeekFrom::End(0)).map_err(write_err(path))?;
    let mut writer = BufWriter::new(&*file);
    writer.write_all(cms).map_err(write_err(path))?;
    writer
        .write_all(&(cms.len() as u64).to_be_bytes())
        .map_err(write_err(path))?;
    writer.flush().map_err(write_err(path))?;
    drop(writer);
    file.sync_all().map_err(write_err(path))
}

/// A bundle whose signature and whole payload have been verified.
#[derive(Debug)]
pub struct VerifiedBundle {
    /// Where it was read from.
    pub path: PathBuf,
    /// The signed manifest.
    pub manifest: Manifest,
    /// Who signed it.
    pub signer: VerifiedSigner,
    /// Size of the squashfs (without hash tree).
    pub squashfs_size: u64,
    /// Size of the whole payload (squashfs and, for verity, the tree).
    pub payload_size: u64,
    /// Size of the CMS signature.
    pub signature_size: u64,
    /// Whether the signature came enveloped for its recipients (`rauc encrypt`) and was
    /// decrypted with the device's key.
    pub encrypted_cms: bool,
}

fn format_err(path: &Path, message: impl Into<String>) -> UpdaterError {
    UpdaterError::BundleFormat {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

extern "C" {
    fn CMS_is_detached(cms: *mut openssl_sys::CMS_ContentInfo) -> std::ffi::c_int;
    fn CMS_get0_type(cms: *const openssl_sys::CMS_ContentInfo) -> *const openssl_sys::ASN1_OBJECT;
}

/// What the bundle's CMS is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CmsKind {
    /// SignedData over the payload (a plain bundle).
    Detached,
    /// SignedData carrying the manifest (a verity or crypt bundle).
    Inline,
    /// EnvelopedData holding a signed CMS, for its recipients (`rauc encrypt`).
    Enveloped,
}

/// What the bundle's CMS `der` is.
fn cms_kind(der: &[u8], path: &Path) -> Result<CmsKind> {
    use foreign_types::ForeignType;
    let cms = openssl::cms::CmsContentInfo::from_der(der).map_err(|source| {
        UpdaterError::VerifySignature {
            path: path.to_path_buf(),
            source,
        }
    })?;
    // SAFETY: `cms` is a live, parsed ContentInfo; the calls only inspect it, and the object
    // `CMS_get0_type` returns belongs to it and is read while it lives.
    let (detached, content_type) = unsafe {
        let object = CMS_get0_type(cms.as_ptr());
        let content_type = if object.is_null() {
            openssl_sys::NID_undef
        } else {
            openssl_sys::OBJ_obj2nid(object)
        };
        (CMS_is_detached(cms.as_ptr()), content_type)
    };
    Ok(if content_type == openssl_sys::NID_pkcs7_enveloped {
        CmsKind::Enveloped
    } else if detached == 1 {
        CmsKind::Detached
    } else {
        CmsKind::Inline
    })
}

/// Maps a hash-tree check failure of the payload of bundle `path` to the error of that step.
fn payload_mismatch(path: &Path, mismatch: verity::Mismatch) -> UpdaterError {
    match mismatch {
        verity::Mismatch::Read(source) => UpdaterError::Read {
            path: path.to_path_buf(),
            source,
        },
        other => UpdaterError::VerifyPayload {
            path: path.to_path_buf(),
            message: other.to_string(),
        },
    }
}

/// The outer framing of a bundle: `payload || CMS || u64 BE CMS length`.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Size of the payload: everything before the CMS signature.
    pub payload_size: u64,
    /// Size of the CMS signature.
    pub signature_size: u64,
    /// The CMS signature (DER), at most [`MAX_SIGNATURE_SIZE`] bytes.
    pub der: Vec<u8>,
}

/// sha256 and size of the payload of the bundle at `path` (everything before the CMS
/// signature), streamed; the framing is checked, the signature is not. The same digest
/// [`create`] reports as [`CreatedBundle::payload_sha256`]: it does not change when the
/// bundle is re-signed.
pub fn payload_sha256(path: &Path) -> Result<([u8; 32], u64)> {
    let file = File::open(path).map_err(read_err(path))?;
    let frame = read_frame(&file, path)?;
    let (sha256, size) = sha256_reader((&file).take(frame.payload_size), path)?;
    if size != frame.payload_size {
        return Err(format_err(path, "payload shorter than its framing says"));
    }
    Ok((sha256, size))
}

/// Reads and checks the framing of the open bundle `file` (from `path`).
pub fn read_frame(file: &File, path: &Path) -> Result<Frame> {
    use std::os::unix::fs::FileExt;
    let len = file.metadata().map_err(read_err(path))?.len();
    if len < 8 {
        return Err(format_err(
            path,
            "file too small to be a bundle (truncated?)",
        ));
    }
    let mut trailer = [0u8; 8];
    file.read_exact_at(&mut trailer, len - 8)
        .map_err(read_err(path))?;
    let signature_size = u64::from_be_bytes(trailer);
    if signature_size == 0 {
        return Err(format_err(path, "signature size is 0"));
    }
    if signature_size > MAX_SIGNATURE_SIZE {
        return Err(format_err(
            path,
            format!(
                "signature size {signature_size} exceeds the limit of {MAX_SIGNATURE_SIZE} bytes"
            ),
        ));
    }
    if signature_size > len - 8 {
        return Err(format_err(
            path,
            "signature size exceeds the file size (truncated?)",
        ));
    }
    let payload_size = len - 8 - signature_size;
    if payload_size == 0 {
        return Err(format_err(path, "no payload"));
    }
    let mut der = vec![0u8; signature_size as usize];
    file.read_exact_at(&mut der, payload_size)
        .map_err(read_err(path))?;
    Ok(Frame {
        payload_size,
        signature_size,
        der,
    })
}

/// Opens `path`, checks framing, signature (against `keyring`) and every payload byte.
/// Nothing is written. An encrypted bundle needs [`open_with`] and a decryption key.
pub fn open(path: &Path, keyring: &Keyring) -> Result<VerifiedBundle> {
    open_observed(path, keyring, None, &mut |_| {})
}

/// [`open`]; a signature enveloped for its recipients is opened with `decryptor`.
pub fn open_with(
    path: &Path,
    keyring: &Keyring,
    decryptor: Option<&Decryptor>,
) -> Result<VerifiedBundle> {
    open_observed(path, keyring, decryptor, &mut |_| {})
}

/// [`open_with`], showing `observe` every byte of the file once, in order, in the same read
/// that verifies the payload: a caller that checks the whole file against a digest of its own
/// (an OS update's manifest names one) reads it once, not twice. When the signature fails, or
/// the payload does not verify, `observe` has seen only part of the file.
pub fn open_observed(
    path: &Path,
    keyring: &Keyring,
    decryptor: Option<&Decryptor>,
    observe: &mut dyn FnMut(&[u8]),
) -> Result<VerifiedBundle> {
    let file = File::open(path).map_err(read_err(path))?;
    let mut frame = read_frame(&file, path)?;
    let mut kind = cms_kind(&frame.der, path)?;
    let encrypted_cms = kind == CmsKind::Enveloped;
    if encrypted_cms {
        let decryptor = decryptor.ok_or_else(|| UpdaterError::EncryptedBundle {
            path: path.to_path_buf(),
        })?;
        frame.der = decryptor.open_envelope(&frame.der, path)?;
        kind = cms_kind(&frame.der, path)?;
    }
    let (mut bundle, observed) = match kind {
        CmsKind::Detached => open_plain(&file, path, &frame, keyring, observe)?,
        CmsKind::Inline => open_verity(&file, path, &frame, keyring, observe)?,
        CmsKind::Enveloped => {
            return Err(format_err(path, "an envelope inside the envelope"));
        }
    };
    bundle.encrypted_cms = encrypted_cms;
    // The rest of the file: the tree (verity), the signature and the framing.
    let len = file.metadata().map_err(read_err(path))?.len();
    observe_range(&file, path, observed, len, observe)?;
    Ok(bundle)
}

/// Shows `observe` the bytes `from..to` of `file`, in 1 MiB reads.
fn observe_range(
    file: &File,
    path: &Path,
    from: u64,
    to: u64,
    observe: &mut dyn FnMut(&[u8]),
) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 1 << 20];
    let mut offset = from;
    while offset < to {
        let chunk = buf.len().min((to - offset) as usize);
        file.read_exact_at(&mut buf[..chunk], offset)
            .map_err(read_err(path))?;
        observe(&buf[..chunk]);
        offset += chunk as u64;
    }
    Ok(())
}

/// A reader showing what passes through it to an observer.
struct ObservedReader<R, O> {
    inner: R,
    observe: O,
}

impl<R: Read, O: FnMut(&[u8])> Read for ObservedReader<R, O> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.observe)(&buf[..n]);
        Ok(n)
    }
}

/// A plain bundle: the detached signature covers the whole payload; the manifest is read
/// from the squashfs only after that. Returns the bundle and how many bytes from the start
/// `observe` has seen.
fn open_plain(
    file: &File,
    path: &Path,
    frame: &Frame,
    keyring: &Keyring,
    observe: &mut dyn FnMut(&[u8]),
) -> Result<(VerifiedBundle, u64)> {
    // The signature check reads the payload on OpenSSL's side of a pipe (another thread):
    // the bytes are collected there in order and shown to `observe` here, chunk by chunk.
    // The reader owns the sending end: it ends, and with it the loop below, when the check
    // is done with the payload.
    let (sender, receiver) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
    let reader = ObservedReader {
        inner: file.take(frame.payload_size),
        observe: move |bytes: &[u8]| {
            let _ = sender.send(bytes.to_vec());
        },
    };
    let signer = std::thread::scope(|scope| {
        let verifying =
            scope.spawn(move || signature::verify_detached(&frame.der, reader, keyring, path));
        for bytes in receiver {
            observe(&bytes);
        }
        verifying
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })?;
    let text = payload::read_small_file(path, MANIFEST_FILENAME, MAX_MANIFEST_SIZE)?;
    let text = String::from_utf8(text).map_err(|_| format_err(path, "manifest is not UTF-8"))?;
    let manifest = Manifest::parse(&text)?;
    if manifest.format != BundleFormat::Plain {
        return Err(format_err(
            path,
            "detached signature but the manifest is not format=plain",
        ));
    }
    check_images_readable(path.into(), &manifest)?;
    let bundle = VerifiedBundle {
        path: path.to_path_buf(),
        manifest,
        signer,
        squashfs_size: frame.payload_size,
        payload_size: frame.payload_size,
        signature_size: frame.signature_size,
        encrypted_cms: false,
    };
    Ok((bundle, frame.payload_size))
}

/// A verity bundle: the inline signature covers the manifest, whose root hash then covers
/// every payload byte through the hash tree. Returns the bundle and how many bytes from the
/// start `observe` has seen.
fn open_verity(
    file: &File,
    path: &Path,
    frame: &Frame,
    keyring: &Keyring,
    observe: &mut dyn FnMut(&[u8]),
) -> Result<(VerifiedBundle, u64)> {
    let (content, signer) = signature::verify_inline(&frame.der, keyring, path)?;
    let text =
        String::from_utf8(content).map_err(|_| format_err(path, "signed manifest is not UTF-8"))?;
    let manifest = Manifest::parse(&text)?;
    let verity = manifest.verity.clone().ok_or_else(|| {
        format_err(
            path,
            "inline signature but the manifest is not format=verity or crypt",
        )
    })?;
    if verity.hash_tree_size >= frame.payload_size {
        return Err(format_err(
            path,
            "hash tree larger than the payload (truncated?)",
        ));
    }
    let squashfs_size = frame.payload_size - verity.hash_tree_size;
    verity::PayloadVerifier::new(
        file,
        squashfs_size,
        squashfs_size,
        verity.hash_tree_size,
        verity.salt,
        verity.root_hash,
    )
    .and_then(|mut verifier| verifier.verify_all_observed(observe))
    .map_err(|mismatch| payload_mismatch(path, mismatch))?;
    let bundle = VerifiedBundle {
        path: path.to_path_buf(),
        manifest,
        signer,
        squashfs_size,
        payload_size: frame.payload_size,
        signature_size: frame.signature_size,
        encrypted_cms: false,
    };
    check_images_readable(bundle.payload(), &bundle.manifest)?;
    Ok((bundle, squashfs_size))
}

/// Every image of `manifest` is in the verified payload of `path`, readable here and of its
/// size: an install fails on a bundle it cannot read before it writes anything. (A casync
/// index stands for an image of the manifest's size; the index itself has its own.)
fn check_images_readable(payload: payload::Source<'_>, manifest: &Manifest) -> Result<()> {
    let files: Vec<(&str, Option<u64>)> = manifest
        .images
        .iter()
        .map(|image| {
            let size = (!image.is_casync_index()).then_some(image.size);
            (image.filename.as_str(), size)
        })
        .collect();
    payload::check_files(payload, &files)
}

/// A reader handing a copy of every byte read to the hashing thread of
/// [`VerifiedBundle::stream_image`] (so decompressing and writing do not wait for the hash).
struct HashingReader<'r> {
    inner: &'r mut dyn Read,
    to_hasher: std::sync::mpsc::SyncSender<Vec<u8>>,
}

impl Read for HashingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            // The hasher only ends when this reader is dropped.
            let _ = self.to_hasher.send(buf[..n].to_vec());
        }
        Ok(n)
    }
}

/// Chunks the hashing thread of [`VerifiedBundle::stream_image`] may lag behind.
const HASH_QUEUE_CHUNKS: usize = 4;

impl VerifiedBundle {
    /// Where the payload's squashfs is read: the bundle file, decrypted on the way for a crypt
    /// bundle.
    pub fn payload(&self) -> payload::Source<'_> {
        payload::Source {
            path: &self.path,
            encrypted: self
                .manifest
                .crypt_key
                .as_ref()
                .map(|key| (key, self.squashfs_size)),
        }
    }

    /// Streams image `entry` through `consume`, then checks size and sha256 against the
    /// manifest. `consume` must read to EOF; a mismatch is reported after it returns.
    pub fn stream_image<T>(
        &self,
        entry: &ImageEntry,
        consume: impl FnOnce(&mut dyn Read) -> Result<T>,
    ) -> Result<T> {
        let (value, hash, count) = payload::read_file(self.payload(), &entry.filename, |reader| {
            std::thread::scope(|scope| {
                let (to_hasher, chunks) =
                    std::sync::mpsc::sync_channel::<Vec<u8>>(HASH_QUEUE_CHUNKS);
                let hashing = scope.spawn(move || {
                    let mut hasher = Sha256::new();
                    let mut count = 0u64;
                    for chunk in chunks {
                        hasher.update(&chunk);
                        count += chunk.len() as u64;
                    }
                    (<[u8; 32]>::from(hasher.finalize()), count)
                });
                let mut hashing_reader = HashingReader {
                    inner: reader,
                    to_hasher,
                };
                let consumed = consume(&mut hashing_reader).and_then(|value| {
                    // Drain anything the consumer left, so the size check is meaningful.
                    std::io::copy(&mut hashing_reader, &mut std::io::sink())
                        .map_err(read_err(&self.path))?;
                    Ok(value)
                });
                drop(hashing_reader);
                let (hash, count) = hashing
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                Ok((consumed?, hash, count))
            })
        })?;
        if count != entry.size {
            return Err(UpdaterError::VerifyImage {
                filename: entry.filename.clone(),
                message: format!("size {count} differs from the manifest's {}", entry.size),
            });
        }
        if hash != entry.sha256 {
            return Err(UpdaterError::VerifyImage {
                filename: entry.filename.clone(),
                message: "sha256 differs from the manifest".to_string(),
            });
        }
        Ok(value)
    }

    /// Extracts every file of the payload into `dir` (created if missing), as `rauc extract`
    /// does: the manifest as the payload holds it, byte for byte, the images, and whatever
    /// else the bundle carries (hook scripts, a handler, casync indexes). The payload was fully
    /// verified by [`open`]; it is unpacked into a staging directory inside `dir`, each image
    /// of the manifest is checked to be a regular file of the manifest's size (a casync index
    /// stands for an image and has its own size), and only then is each entry moved into
    /// place, none over an existing one, so a failure leaves `dir` as it was. (Unlike
    /// [`Self::stream_image`], which the installer uses, the extracted bytes are not hashed a
    /// second time: like `rauc extract`, this relies on the verification done by [`open`].)
    /// Returns how many regular files were extracted.
    pub fn extract(&self, dir: &Path) -> Result<usize> {
        let created = !dir.exists();
        let result = self.extract_into(dir);
        if result.is_err() && created {
            let _ = std::fs::remove_dir_all(dir);
        }
        result
    }

    fn extract_into(&self, dir: &Path) -> Result<usize> {
        std::fs::create_dir_all(dir).map_err(write_err(dir))?;
        let staging = tempfile::Builder::new()
            .prefix(".testudo-extract-")
            .tempdir_in(dir)
            .map_err(write_err(dir))?;
        let out = staging.path().join("payload");
        let files = payload::extract_all(self.payload(), &out)?;
        for entry in &self.manifest.images {
            check_extracted_image(&out, entry)?;
        }
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(&out).map_err(read_err(&out))? {
            let name = entry.map_err(read_err(&out))?.file_name();
            let target = dir.join(&name);
            if std::fs::symlink_metadata(&target).is_ok() {
                return Err(UpdaterError::Write {
                    path: target,
                    source: std::io::ErrorKind::AlreadyExists.into(),
                });
            }
            entries.push((out.join(&name), target));
        }
        entries.sort();
        for (from, target) in entries {
            std::fs::rename(&from, &target).map_err(write_err(&target))?;
        }
        Ok(files)
    }
}

/// Image `entry` of the manifest was extracted into `out` as a regular file of its size.
fn check_extracted_image(out: &Path, entry: &ImageEntry) -> Result<()> {
    let path = out.join(&entry.filename);
    let meta = std::fs::symlink_metadata(&path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            UpdaterError::VerifyImage {
                filename: entry.filename.clone(),
                message: "missing from the payload".to_string(),
            }
        } else {
            UpdaterError::Read {
                path: path.clone(),
                source,
            }
        }
    })?;
    if !meta.is_file() {
        return Err(UpdaterError::VerifyImage {
            filename: entry.filename.clone(),
            message: "not a regular file in the payload".to_string(),
        });
    }
    if !entry.is_casync_index() && meta.len() != entry.size {
        return Err(UpdaterError::VerifyImage {
            filename: entry.filename.clone(),
            message: format!(
                "size {} differs from the manifest's {}",
                meta.len(),
                entry.size
            ),
        });
    }
    Ok(())
}

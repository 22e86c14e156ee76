//! The squashfs payload. Made with squashfs-tools' `mksquashfs`, as RAUC itself does
//! (reproducible: all files owned by root, every timestamp 0); read in-process with the
//! `backhand` crate (gzip, zstd or stored blocks), one file streamed block by block (bounded
//! memory), so the updater on a
//! device needs no squashfs-tools and starts no program. Only payloads whose every byte was
//! verified first are read (signature or verity, `crate::bundle::open`).

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};

use backhand::traits::Compressor;
use backhand::{FilesystemReader, InnerNode, SquashfsFileReader};

use crate::error::{read_err, tool_failed, write_err, Result, UpdaterError};

/// mksquashfs program name (looked up on PATH).
pub const MKSQUASHFS: &str = "mksquashfs";
fn spawn_err(tool: &str) -> impl FnOnce(std::io::Error) -> UpdaterError {
    let tool = tool.to_string();
    move |source| UpdaterError::ToolMissing { tool, source }
}

/// Builds a squashfs of directory `content` at `out` (padded to 4 KiB by mksquashfs).
/// `extra_args` are appended (e.g. `-comp zstd`).
pub fn create(content: &Path, out: &Path, extra_args: &[String]) -> Result<()> {
    let output = Command::new(MKSQUASHFS)
        .arg(content)
        .arg(out)
        .args([
            "-all-root",
            "-noappend",
            "-no-progress",
            "-no-xattrs",
            "-quiet",
        ])
        .args(["-mkfs-time", "0", "-all-time", "0"])
        .args(extra_args)
        // The times are pinned above; mksquashfs refuses to run when `SOURCE_DATE_EPOCH` (set
        // by reproducible-build environments, Nix among them) would also set them.
        .env_remove("SOURCE_DATE_EPOCH")
        .stdin(Stdio::null())
        .output()
        .map_err(spawn_err(MKSQUASHFS))?;
    if !output.status.success() {
        return Err(tool_failed(MKSQUASHFS, output.status, &output.stderr));
    }
    Ok(())
}

/// Checks, before anything is read or written, that the squashfs at the start of `image`
/// can be read here and holds each `(name, size)` of `files` as a regular file of that size.
pub fn check_files(image: &Path, files: &[(&str, u64)]) -> Result<()> {
    let filesystem = open_filesystem(image, files.first().map_or("", |(name, _)| name))?;
    for (name, size) in files {
        let file = find_file(&filesystem, name)?;
        let found = file.file_len() as u64;
        if found != *size {
            return Err(UpdaterError::VerifyImage {
                filename: (*name).to_owned(),
                message: format!("size {found} in the payload differs from the manifest's {size}"),
            });
        }
    }
    Ok(())
}

/// The squashfs at the start of `image`, its tables read (`name`: the file wanted, for the
/// error).
fn open_filesystem(image: &Path, name: &str) -> Result<FilesystemReader<'static>> {
    let file = File::open(image).map_err(read_err(image))?;
    let filesystem = FilesystemReader::from_reader(BufReader::new(file)).map_err(|source| {
        UpdaterError::ReadPayload {
            path: image.to_path_buf(),
            name: name.to_owned(),
            source,
        }
    })?;
    // Refused up front even when every block happens to be stored uncompressed: a bundle is
    // either readable here as a whole or not at all, never found out half-way through a slot.
    match filesystem.compressor {
        None | Some(Compressor::Gzip | Compressor::Zstd | Compressor::Uncompressed) => {
            Ok(filesystem)
        }
        Some(other) => Err(UpdaterError::PayloadCompressor {
            path: image.to_path_buf(),
            compressor: format!("{other:?}").to_lowercase(),
        }),
    }
}

/// The regular file `name` in the root of `filesystem`.
fn find_file<'f>(
    filesystem: &'f FilesystemReader<'static>,
    name: &str,
) -> Result<&'f SquashfsFileReader> {
    let wanted = Path::new("/").join(name);
    let node = filesystem
        .files()
        .find(|node| node.fullpath == wanted)
        .ok_or_else(|| UpdaterError::VerifyImage {
            filename: name.to_owned(),
            message: "missing from the payload".to_owned(),
        })?;
    match &node.inner {
        InnerNode::File(file) => Ok(file),
        _ => Err(UpdaterError::VerifyImage {
            filename: name.to_owned(),
            message: "not a regular file in the payload".to_owned(),
        }),
    }
}

/// Streams file `name` (a plain file name) of the squashfs at the start of `image` into
/// `consume`. Returns what `consume` returned; fails if the squashfs cannot be read (corrupt,
/// or compressed with another compressor than gzip or zstd), has no regular file `name`, or a block
/// is corrupt.
pub fn read_file<T>(
    image: &Path,
    name: &str,
    consume: impl FnOnce(&mut dyn Read) -> Result<T>,
) -> Result<T> {
    let filesystem = open_filesystem(image, name)?;
    let file = find_file(&filesystem, name)?;
    let mut reader = filesystem.file(file).reader();
    consume(&mut reader)
}

/// Extracts the files `names` (plain file names) of the squashfs at the start of `image` into
/// the new directory `dest`, one after the other.
pub fn extract_files(image: &Path, dest: &Path, names: &[&str]) -> Result<()> {
    std::fs::create_dir(dest).map_err(write_err(dest))?;
    for name in names {
        let path = dest.join(name);
        read_file(image, name, |reader| {
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(write_err(&path))?;
            copy_out(reader, image, &mut out, &path)
        })?;
    }
    Ok(())
}

/// Copies `reader` (a file of the payload `image`) into `out` (the file `dest`), telling a
/// read error (a corrupt block) from a write error.
fn copy_out(reader: &mut dyn Read, image: &Path, out: &mut File, dest: &Path) -> Result<()> {
    use std::io::Write;
    let mut buffer = vec![0u8; COPY_BUFFER];
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(read_err(image)(error)),
        };
        out.write_all(&buffer[..n]).map_err(write_err(dest))?;
    }
}

/// The buffer of [`extract_files`]' copies.
const COPY_BUFFER: usize = 1024 * 1024;

/// Reads a small file (at most `limit` bytes) of the squashfs, e.g. the manifest.
pub fn read_small_file(image: &Path, name: &str, limit: u64) -> Result<Vec<u8>> {
    read_file(image, name, |reader| {
        let mut bytes = Vec::new();
        reader
            .take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(crate::error::read_err(image))?;
        if bytes.len() as u64 > limit {
            return Err(UpdaterError::BundleFormat {
                path: image.to_path_buf(),
                message: format!("{name} is larger than {limit} bytes"),
            });
        }
        Ok(bytes)
    })
}

//! The squashfs payload. Made with squashfs-tools' `mksquashfs`, as RAUC itself does
//! (reproducible: all files owned by root, every timestamp 0); read in-process with the
//! `backhand` crate (gzip, zstd or stored blocks), one file streamed block by block (bounded
//! memory), so the updater on a device needs no squashfs-tools and starts no program; an
//! encrypted payload is decrypted sector by sector on the way ([`Source`]). Only payloads
//! whose every byte was verified first are read (signature or verity, `crate::bundle::open`).

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

use backhand::traits::Compressor;
use backhand::{FilesystemReader, InnerNode, SquashfsFileReader};

use crate::crypt::{CryptKey, DecryptingReader};
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

/// Where a squashfs payload is read from: a file holding it in the clear at its start, or
/// one holding it encrypted (`crate::crypt`: a RAUC `format=crypt` bundle) in its first bytes.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    /// The file (a bundle, or a bare squashfs).
    pub path: &'a Path,
    /// For an encrypted payload: its key and the size of the encrypted squashfs.
    pub encrypted: Option<(&'a CryptKey, u64)>,
}

impl<'a> From<&'a Path> for Source<'a> {
    fn from(path: &'a Path) -> Self {
        Source {
            path,
            encrypted: None,
        }
    }
}

impl<'a> From<&'a PathBuf> for Source<'a> {
    fn from(path: &'a PathBuf) -> Self {
        Source::from(path.as_path())
    }
}

/// Checks, before anything is read or written, that the squashfs at the start of `image`
/// can be read here and holds each `(name, size)` of `files` as a regular file, of that size
/// when one is given.
pub fn check_files<'a>(image: impl Into<Source<'a>>, files: &[(&str, Option<u64>)]) -> Result<()> {
    let filesystem = open_filesystem(image.into(), files.first().map_or("", |(name, _)| name))?;
    for (name, size) in files {
        let file = find_file(&filesystem, name)?;
        let found = file.file_len() as u64;
        let Some(size) = *size else { continue };
        if found != size {
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
fn open_filesystem(source: Source<'_>, name: &str) -> Result<FilesystemReader<'static>> {
    let image = source.path;
    let file = File::open(image).map_err(read_err(image))?;
    let filesystem =
        match source.encrypted {
            None => FilesystemReader::from_reader(BufReader::new(file)),
            Some((key, size)) => FilesystemReader::from_reader(BufReader::new(
                DecryptingReader::new(file, size, key.clone()),
            )),
        }
        .map_err(|source| UpdaterError::ReadPayload {
            path: image.to_path_buf(),
            name: name.to_owned(),
            source,
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
pub fn read_file<'a, T>(
    image: impl Into<Source<'a>>,
    name: &str,
    consume: impl FnOnce(&mut dyn Read) -> Result<T>,
) -> Result<T> {
    let filesystem = open_filesystem(image.into(), name)?;
    let file = find_file(&filesystem, name)?;
    let mut reader = filesystem.file(file).reader();
    consume(&mut reader)
}

/// Extracts every entry of the squashfs at the start of `image` into the new directory
/// `dest`, as `unsquashfs` (which `rauc extract` runs) does: directories, regular files byte
/// for byte with their permission bits (set-id bits dropped), symbolic links as they are
/// (never followed: an entry goes only into a directory this extraction created). Device
/// nodes, fifos, sockets and names that would leave `dest` are refused. Returns how many
/// regular files were written.
pub fn extract_all<'a>(source: impl Into<Source<'a>>, dest: &Path) -> Result<usize> {
    extract_except(source, dest, &[])
}

/// [`extract_all`] without the regular files named in `skip` (paths relative to the payload's
/// root, e.g. the images a bundle's hooks do not need).
pub fn extract_except<'a>(
    source: impl Into<Source<'a>>,
    dest: &Path,
    skip: &[&str],
) -> Result<usize> {
    use std::os::unix::fs::PermissionsExt;
    let source = source.into();
    let image = source.path;
    let filesystem = open_filesystem(source, "/")?;
    std::fs::create_dir(dest).map_err(write_err(dest))?;
    // Directories this extraction created (relative to `dest`), and their modes, set last so
    // a read-only directory can still be filled.
    let mut directories: BTreeSet<PathBuf> = BTreeSet::from([PathBuf::new()]);
    let mut modes: Vec<(PathBuf, u32)> = Vec::new();
    let mut files = 0;
    for node in filesystem.files() {
        let name = node.fullpath.display().to_string();
        let entry_err = |message: &str| UpdaterError::PayloadEntry {
            path: image.to_path_buf(),
            name: name.clone(),
            message: message.to_owned(),
        };
        let relative = relative_entry_path(&node.fullpath)
            .ok_or_else(|| entry_err("its name would leave the extraction directory"))?;
        if relative.as_os_str().is_empty() {
            continue;
        }
        let parent = relative.parent().unwrap_or(Path::new(""));
        if !directories.contains(parent) {
            return Err(entry_err("its parent is not a directory of the payload"));
        }
        let target = dest.join(&relative);
        let mode = u32::from(node.header.permissions) & 0o777;
        match &node.inner {
            InnerNode::Dir(_) => {
                std::fs::create_dir(&target).map_err(write_err(&target))?;
                directories.insert(relative);
                modes.push((target, mode));
            }
            InnerNode::File(_) if skip.iter().any(|name| relative == Path::new(name)) => {}
            InnerNode::File(file) => {
                let mut out = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&target)
                    .map_err(write_err(&target))?;
                copy_out(
                    &mut filesystem.file(file).reader(),
                    image,
                    &mut out,
                    &target,
                )?;
                out.set_permissions(std::fs::Permissions::from_mode(mode))
                    .map_err(write_err(&target))?;
                files += 1;
            }
            InnerNode::Symlink(link) => {
                std::os::unix::fs::symlink(&link.link, &target).map_err(write_err(&target))?;
            }
            InnerNode::CharacterDevice(_)
            | InnerNode::BlockDevice(_)
            | InnerNode::NamedPipe
            | InnerNode::Socket => {
                return Err(entry_err(
                    "a device node, fifo or socket, which a bundle never needs",
                ));
            }
        }
    }
    for (directory, mode) in modes.iter().rev() {
        std::fs::set_permissions(directory, std::fs::Permissions::from_mode(*mode))
            .map_err(write_err(directory))?;
    }
    Ok(files)
}

/// `fullpath` of a payload entry (`/a/b`) relative to the payload's root, or `None` when a
/// component is not a plain name (`..`, `.`, a second root).
fn relative_entry_path(fullpath: &Path) -> Option<PathBuf> {
    let mut relative = PathBuf::new();
    for (index, component) in fullpath.components().enumerate() {
        match component {
            Component::RootDir if index == 0 => {}
            Component::Normal(name) => relative.push(name),
            _ => return None,
        }
    }
    Some(relative)
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

/// The buffer of [`extract_all`]'s copies.
const COPY_BUFFER: usize = 1024 * 1024;

/// Reads a small file (at most `limit` bytes) of the squashfs, e.g. the manifest.
pub fn read_small_file<'a>(
    source: impl Into<Source<'a>>,
    name: &str,
    limit: u64,
) -> Result<Vec<u8>> {
    let source = source.into();
    let image = source.path;
    read_file(source, name, |reader| {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_paths_stay_inside_the_extraction_directory() {
        assert_eq!(
            relative_entry_path(Path::new("/extra/note.txt")),
            Some(PathBuf::from("extra/note.txt"))
        );
        assert_eq!(relative_entry_path(Path::new("/")), Some(PathBuf::new()));
        for escaping in ["/../etc/passwd", "/a/../../b", "/a//./b/..", "//x/../y"] {
            let relative = relative_entry_path(Path::new(escaping));
            assert!(
                relative.as_ref().is_none_or(|r| !r.starts_with("..")
                    && r.components().all(|c| matches!(c, Component::Normal(_)))),
                "{escaping}: {relative:?}"
            );
        }
        assert_eq!(relative_entry_path(Path::new("/../etc/passwd")), None);
        assert_eq!(relative_entry_path(Path::new("/a/../../b")), None);
    }
}

//! The squashfs payload, made and read with squashfs-tools (`mksquashfs`, `unsquashfs`), as
//! RAUC itself does. Creation is reproducible: all files owned by root, every timestamp 0.
//! Reading streams one file to a consumer through `unsquashfs -cat` (bounded memory).

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::{tool_failed, Result, UpdaterError};

/// mksquashfs program name (looked up on PATH).
pub const MKSQUASHFS: &str = "mksquashfs";
/// unsquashfs program name (looked up on PATH).
pub const UNSQUASHFS: &str = "unsquashfs";

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
        .stdin(Stdio::null())
        .output()
        .map_err(spawn_err(MKSQUASHFS))?;
    if !output.status.success() {
        return Err(tool_failed(MKSQUASHFS, output.status, &output.stderr));
    }
    Ok(())
}

/// Streams file `name` of the squashfs at the start of `image` into `consume`.
/// Returns what `consume` returned; fails if unsquashfs fails (missing file, corrupt fs).
pub fn read_file<T>(
    image: &Path,
    name: &str,
    consume: impl FnOnce(&mut dyn Read) -> Result<T>,
) -> Result<T> {
    let mut child = Command::new(UNSQUASHFS)
        // Small data/fragment queues: unsquashfs otherwise buffers up to 256 MiB each, so
        // its memory would grow with the image; 4 MiB queues are also faster here.
        .args(["-no-progress", "-da", "4", "-fr", "4", "-cat"])
        .arg(image)
        .arg(name)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err(UNSQUASHFS))?;
    if let Some(stdout) = child.stdout.as_ref() {
        use std::os::fd::AsRawFd;
        // SAFETY: fcntl on a pipe descriptor we own; F_SETPIPE_SZ only resizes the kernel
        // buffer (best effort: a failure just keeps the default 64 KiB).
        unsafe {
            libc::fcntl(stdout.as_raw_fd(), libc::F_SETPIPE_SZ, 1024 * 1024);
        }
    }
    let result = match child.stdout.as_mut() {
        Some(stdout) => consume(stdout),
        None => Err(UpdaterError::Tool {
            tool: UNSQUASHFS.to_string(),
            message: "no stdout pipe".to_string(),
        }),
    };
    // Close our end first so a consumer that stopped early does not leave unsquashfs blocked.
    drop(child.stdout.take());
    let mut stderr = Vec::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_end(&mut stderr);
    }
    let status = child.wait().map_err(|source| UpdaterError::WaitForTool {
        tool: UNSQUASHFS.to_string(),
        source,
    })?;
    let value = result?;
    if !status.success() {
        return Err(tool_failed(UNSQUASHFS, status, &stderr));
    }
    Ok(value)
}

/// Extracts the files `names` of the squashfs at the start of `image` into the new directory
/// `dest` (multi-threaded unsquashfs, 4 MiB queues). Names must be plain file names.
pub fn extract_files(image: &Path, dest: &Path, names: &[&str]) -> Result<()> {
    let output = Command::new(UNSQUASHFS)
        .args(["-no-progress", "-quiet", "-da", "4", "-fr", "4", "-d"])
        .arg(dest)
        .arg(image)
        .args(names)
        .stdin(Stdio::null())
        .output()
        .map_err(spawn_err(UNSQUASHFS))?;
    if !output.status.success() {
        return Err(tool_failed(UNSQUASHFS, output.status, &output.stderr));
    }
    Ok(())
}

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

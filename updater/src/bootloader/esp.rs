//! The grubenv where GRUB finds it on a device: a file in the EFI system partition's FAT file
//! system, read and written through the partition itself (a block device, or an image file)
//! without mounting it. The device's updater holds the partition, not a mount, and no other
//! component touches it.
//!
//! A store replaces the file's 1024 bytes in place, as GRUB's `save_env` does: same size, same
//! clusters, so the file stays where GRUB's block list expects it. The FAT's own bookkeeping
//! is left as it was (no access times; the modification time is the FAT epoch, as without a
//! clock), and the partition is synced before the store returns.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::grub::{GrubEnv, ENV_SIZE};
use crate::error::{read_err, write_err, Result, UpdaterError};

/// A grubenv file inside a FAT file system on `partition`.
#[derive(Debug, Clone)]
pub struct EspGrubEnv {
    partition: PathBuf,
    file: String,
}

impl EspGrubEnv {
    /// The file `file` (e.g. `/EFI/testudo/grubenv`) on the FAT file system of `partition`.
    pub fn new(partition: impl Into<PathBuf>, file: &str) -> EspGrubEnv {
        EspGrubEnv {
            partition: partition.into(),
            file: file.trim_start_matches('/').to_owned(),
        }
    }

    /// The partition.
    pub fn partition(&self) -> &Path {
        &self.partition
    }

    /// Reads and parses the grubenv.
    pub fn load(&self) -> Result<GrubEnv> {
        let bytes = self.with_file(false, |file| {
            let mut bytes = Vec::with_capacity(ENV_SIZE);
            file.take(ENV_SIZE as u64 + 1).read_to_end(&mut bytes)?;
            Ok(bytes)
        })?;
        if bytes.len() != ENV_SIZE {
            return Err(self.bad(format!(
                "is {} bytes, not a {ENV_SIZE}-byte environment block",
                bytes.len()
            )));
        }
        GrubEnv::parse(&bytes)
    }

    /// Replaces the grubenv's contents with `env`, in place, and syncs the partition.
    pub fn store(&self, env: &GrubEnv) -> Result<()> {
        let bytes = env.render()?;
        self.with_file(true, |file| {
            let size = file.seek(SeekFrom::End(0))?;
            if size != ENV_SIZE as u64 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("the file is {size} bytes, not {ENV_SIZE}: not rewritten in place"),
                ));
            }
            file.seek(SeekFrom::Start(0))?;
            file.write_all(&bytes)?;
            file.flush()
        })
    }

    /// Opens the partition and the file on it and runs `work` on the file; for a write, the
    /// file system is flushed and the partition synced afterwards.
    fn with_file<T>(
        &self,
        write: bool,
        work: impl FnOnce(&mut fatfs::File<'_, std::fs::File>) -> std::io::Result<T>,
    ) -> Result<T> {
        let wrap = |source| {
            if write {
                write_err(&self.partition)(source)
            } else {
                read_err(&self.partition)(source)
            }
        };
        let device = OpenOptions::new()
            .read(true)
            .write(write)
            .open(&self.partition)
            .map_err(wrap)?;
        let sync = if write {
            Some(device.try_clone().map_err(wrap)?)
        } else {
            None
        };
        let fs = fatfs::FileSystem::new(device, fatfs::FsOptions::new())
            .map_err(|error| self.bad(format!("no FAT file system: {error}")))?;
        let result = {
            let mut file = fs
                .root_dir()
                .open_file(&self.file)
                .map_err(|error| self.bad(format!("cannot open {}: {error}", self.file)))?;
            work(&mut file).map_err(wrap)?
        };
        fs.unmount().map_err(wrap)?;
        if let Some(device) = sync {
            device.sync_all().map_err(wrap)?;
        }
        Ok(result)
    }

    fn bad(&self, message: String) -> UpdaterError {
        UpdaterError::Bootloader {
            backend: "grub",
            message: format!("{} on {}: {message}", self.file, self.partition.display()),
        }
    }
}

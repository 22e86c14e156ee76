//! The `storage` driver: each consumer's root handle is its own directory under the data
//! directory; files inside are opened by single-component names.
//!
//! Durability (decision 0064): `fsync` on a file handle is `fdatasync(2)` on the file; on a
//! directory handle `fsync(2)` on the directory. When the driver *creates* a file (or a
//! consumer's directory), it syncs the parent directory once before answering, so a file
//! whose data a consumer synced cannot vanish with its directory entry in a power cut.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use testudo_scheme::{Errno, Grant, NodeKind, Opened, Rights, SchemeProvider};

/// Serves `storage` from a data directory.
#[derive(Debug)]
pub struct StorageProvider {
    data_dir: PathBuf,
}

/// A storage handle: a consumer's directory or an open file with its own offset.
#[derive(Debug, Clone)]
pub enum StorageNode {
    /// The consumer's directory.
    Dir(PathBuf),
    /// An open file.
    File {
        /// The file.
        file: Rc<File>,
        /// This handle's offset.
        offset: u64,
    },
}

fn errno(error: &std::io::Error) -> Errno {
    Errno::from_raw(error.raw_os_error().unwrap_or(libc::EIO))
}

/// Whether `name` is one plain path component.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && !name.contains(['/', '\0', '?'])
}

/// Makes `dir`'s entries durable: `fsync(2)` on the directory.
fn sync_dir(dir: &Path) -> Result<(), Errno> {
    let handle = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(dir)
        .map_err(|e| errno(&e))?;
    handle.sync_all().map_err(|e| errno(&e))
}

/// Opens `path` with `options`; with `create`, creates it when missing and then syncs `dir`
/// (the new entry's directory) before returning.
fn open_file(options: &OpenOptions, dir: &Path, path: &Path, create: bool) -> Result<File, Errno> {
    match options.open(path) {
        Ok(file) => return Ok(file),
        Err(error) if create && error.kind() == ErrorKind::NotFound => {}
        Err(error) => return Err(errno(&error)),
    }
    match options.clone().create_new(true).open(path) {
        Ok(file) => match sync_dir(dir) {
            Ok(()) => Ok(file),
            Err(errno) => {
                // Not made durable: take it back, so a retry creates (and syncs) it again.
                drop(file);
                let _ = std::fs::remove_file(path);
                Err(errno)
            }
        },
        // Created by someone else in between: it is theirs to make durable.
        Err(error) if error.kind() == ErrorKind::AlreadyExists => {
            options.open(path).map_err(|e| errno(&e))
        }
        Err(error) => Err(errno(&error)),
    }
}

impl StorageProvider {
    /// A provider over `data_dir` (which must exist).
    pub fn new(data_dir: &Path) -> StorageProvider {
        StorageProvider {
            data_dir: data_dir.to_owned(),
        }
    }
}

impl SchemeProvider for StorageProvider {
    type Node = StorageNode;

    fn root(&mut self, grant: &Grant) -> Result<StorageNode, Errno> {
        if !valid_name(&grant.consumer) {
            return Err(Errno::EINVAL);
        }
        let dir = testudo_plan::layout::storage_dir(&self.data_dir, &grant.consumer);
        if !dir.is_dir() {
            std::fs::create_dir_all(&dir).map_err(|e| errno(&e))?;
            sync_dir(&self.data_dir)?;
        }
        Ok(StorageNode::Dir(dir))
    }

    fn open(
        &mut self,
        parent: &StorageNode,
        path: &str,
        rights: Rights,
    ) -> Result<Opened<StorageNode>, Errno> {
        let StorageNode::Dir(dir) = parent else {
            return Err(Errno::ENOTDIR);
        };
        let (name, truncate) = match path.strip_suffix("?truncate") {
            Some(name) => (name, true),
            None => (path, false),
        };
        if !valid_name(name) {
            return Err(Errno::ENOENT);
        }
        if truncate && !rights.can_write() {
            return Err(Errno::EACCES);
        }
        let mut options = OpenOptions::new();
        options
            .read(rights.can_read())
            .write(rights.can_write())
            .truncate(truncate);
        let file = open_file(&options, dir, &dir.join(name), rights.can_write())?;
        Ok(Opened::Node(StorageNode::File {
            file: Rc::new(file),
            offset: 0,
        }))
    }

    fn read(&mut self, node: &mut StorageNode, buf: &mut [u8]) -> Result<usize, Errno> {
        let StorageNode::File { file, offset } = node else {
            return Err(Errno::EISDIR);
        };
        let n = file.read_at(buf, *offset).map_err(|e| errno(&e))?;
        *offset += n as u64;
        Ok(n)
    }

    fn write(&mut self, node: &mut StorageNode, data: &[u8]) -> Result<usize, Errno> {
        let StorageNode::File { file, offset } = node else {
            return Err(Errno::EISDIR);
        };
        let n = file.write_at(data, *offset).map_err(|e| errno(&e))?;
        *offset += n as u64;
        Ok(n)
    }

    fn fsync(&mut self, node: &mut StorageNode) -> Result<(), Errno> {
        match node {
            StorageNode::Dir(dir) => sync_dir(dir),
            StorageNode::File { file, .. } => file.sync_data().map_err(|e| errno(&e)),
        }
    }

    fn fstat(&mut self, node: &StorageNode) -> Result<(NodeKind, u64), Errno> {
        match node {
            StorageNode::Dir(_) => Ok((NodeKind::Directory, 0)),
            StorageNode::File { file, .. } => {
                let meta = file.metadata().map_err(|e| errno(&e))?;
                Ok((NodeKind::File, meta.len()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(consumer: &str) -> Grant {
        Grant {
            consumer: consumer.into(),
            capability: "files".into(),
            rights: Rights::ReadWrite,
            allow: Vec::new(),
        }
    }

    #[test]
    fn fsync_syncs_files_and_directories_and_only_writers_create() {
        let data = tempfile::tempdir().expect("tempdir");
        let mut provider = StorageProvider::new(data.path());
        let mut root = provider.root(&grant("app")).expect("root");
        assert!(data.path().join("app").is_dir());
        assert_eq!(
            provider
                .open(&root, "missing", Rights::Read)
                .expect_err("read-only does not create"),
            Errno::ENOENT
        );
        assert!(!data.path().join("app/missing").exists());
        let Opened::Node(mut file) = provider
            .open(&root, "journal", Rights::ReadWrite)
            .expect("created")
        else {
            panic!("a storage file is a node");
        };
        assert_eq!(provider.write(&mut file, b"line\n").expect("write"), 5);
        provider.fsync(&mut file).expect("fdatasync the file");
        provider.fsync(&mut root).expect("fsync the directory");
        assert_eq!(
            std::fs::read(data.path().join("app/journal")).expect("on disk"),
            b"line\n"
        );
        // Opening the existing file again (and truncating it) works the same way.
        let Opened::Node(mut again) = provider
            .open(&root, "journal?truncate", Rights::Write)
            .expect("reopened")
        else {
            panic!("a storage file is a node");
        };
        provider.fsync(&mut again).expect("fdatasync");
        assert_eq!(provider.fstat(&again).expect("fstat"), (NodeKind::File, 0));
    }

    #[test]
    fn names_are_single_components() {
        assert!(valid_name("state.json"));
        for bad in ["", ".", "..", "a/b", "../x", "a\0b", "x?y"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }
}

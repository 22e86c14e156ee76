//! The `storage` driver: each consumer's root handle is its own directory under the data
//! directory; files inside are opened by single-component names.
//!
//! Durability (decision 0064): `fsync` on a file handle is `fdatasync(2)` on the file; on a
//! directory handle `fsync(2)` on the directory. When the driver *creates* a file (or a
//! consumer's directory), it syncs the parent directory once before answering, so a file
//! whose data a consumer synced cannot vanish with its directory entry in a power cut.
//!
//! Atomic replacement: opening `NAME?replace` (write rights) gives a handle to a new, hidden
//! file beside `NAME`; its `fsync` makes the new content durable, renames it over `NAME` and
//! syncs the directory, so after a power cut at any point `NAME` holds either the old or the
//! new content, whole. A replacement closed without `fsync` is discarded.

use std::cell::Cell;
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
    replacements: u64,
}

/// A file being written to replace another one atomically (`NAME?replace`).
#[derive(Debug)]
pub struct Replacement {
    file: File,
    temp: PathBuf,
    target: PathBuf,
    dir: PathBuf,
    committed: Cell<bool>,
}

impl Replacement {
    /// Makes the new content durable and puts it in place of the target.
    fn commit(&self) -> Result<(), Errno> {
        if self.committed.get() {
            return self.file.sync_data().map_err(|e| errno(&e));
        }
        self.file.sync_all().map_err(|e| errno(&e))?;
        std::fs::rename(&self.temp, &self.target).map_err(|e| errno(&e))?;
        self.committed.set(true);
        sync_dir(&self.dir)
    }
}

impl Drop for Replacement {
    fn drop(&mut self) {
        if !self.committed.get() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
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
    /// A replacement being written (`NAME?replace`).
    Replace {
        /// The new file and where it goes.
        replacement: Rc<Replacement>,
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
            replacements: 0,
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
        if let Some(name) = path.strip_suffix("?replace") {
            return self.open_replacement(dir, name, rights);
        }
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
        let (file, offset) = file_of(node)?;
        let n = file.read_at(buf, *offset).map_err(|e| errno(&e))?;
        *offset += n as u64;
        Ok(n)
    }

    fn write(&mut self, node: &mut StorageNode, data: &[u8]) -> Result<usize, Errno> {
        let (file, offset) = file_of(node)?;
        let n = file.write_at(data, *offset).map_err(|e| errno(&e))?;
        *offset += n as u64;
        Ok(n)
    }

    fn fsync(&mut self, node: &mut StorageNode) -> Result<(), Errno> {
        match node {
            StorageNode::Dir(dir) => sync_dir(dir),
            StorageNode::File { file, .. } => file.sync_data().map_err(|e| errno(&e)),
            StorageNode::Replace { replacement, .. } => replacement.commit(),
        }
    }

    fn fstat(&mut self, node: &StorageNode) -> Result<(NodeKind, u64), Errno> {
        match node {
            StorageNode::Dir(_) => Ok((NodeKind::Directory, 0)),
            StorageNode::File { file, .. } => {
                let meta = file.metadata().map_err(|e| errno(&e))?;
                Ok((NodeKind::File, meta.len()))
            }
            StorageNode::Replace { replacement, .. } => {
                let meta = replacement.file.metadata().map_err(|e| errno(&e))?;
                Ok((NodeKind::File, meta.len()))
            }
        }
    }
}

/// The open file of a file or replacement handle and its offset.
fn file_of(node: &mut StorageNode) -> Result<(&File, &mut u64), Errno> {
    match node {
        StorageNode::Dir(_) => Err(Errno::EISDIR),
        StorageNode::File { file, offset } => Ok((file, offset)),
        StorageNode::Replace {
            replacement,
            offset,
        } => Ok((&replacement.file, offset)),
    }
}

impl StorageProvider {
    /// `NAME?replace`: a new hidden file in `dir` that `fsync` renames over `NAME`.
    fn open_replacement(
        &mut self,
        dir: &Path,
        name: &str,
        rights: Rights,
    ) -> Result<Opened<StorageNode>, Errno> {
        if !valid_name(name) {
            return Err(Errno::ENOENT);
        }
        if !rights.can_write() {
            return Err(Errno::EACCES);
        }
        self.replacements += 1;
        let temp = dir.join(format!(".{name}.replace-{}", self.replacements));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp)
            .map_err(|e| errno(&e))?;
        Ok(Opened::Node(StorageNode::Replace {
            replacement: Rc::new(Replacement {
                file,
                temp,
                target: dir.join(name),
                dir: dir.to_owned(),
                committed: Cell::new(false),
            }),
            offset: 0,
        }))
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

    #[test]
    fn a_replacement_takes_the_place_of_the_file_only_when_synced() {
        let data = tempfile::tempdir().expect("tempdir");
        let mut provider = StorageProvider::new(data.path());
        let root = provider.root(&grant("agent")).expect("root");
        let path = data.path().join("agent/state.json");
        std::fs::write(&path, b"old").expect("old content");
        let Ok(Opened::Node(mut abandoned)) =
            provider.open(&root, "state.json?replace", Rights::Write)
        else {
            panic!("replace handle");
        };
        provider.write(&mut abandoned, b"half").expect("write");
        drop(abandoned); // closed without fsync: a power cut or a crash mid-write
        assert_eq!(std::fs::read(&path).expect("read"), b"old");
        let Ok(Opened::Node(mut node)) = provider.open(&root, "state.json?replace", Rights::Write)
        else {
            panic!("replace handle");
        };
        provider.write(&mut node, b"new content").expect("write");
        assert_eq!(
            std::fs::read(&path).expect("read"),
            b"old",
            "not before fsync"
        );
        provider.fsync(&mut node).expect("commit");
        assert_eq!(std::fs::read(&path).expect("read"), b"new content");
        drop(node);
        let names: Vec<String> = std::fs::read_dir(data.path().join("agent"))
            .expect("dir")
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(names, ["state.json"], "no temporary file is left");
        assert_eq!(
            provider
                .open(&root, "state.json?replace", Rights::Read)
                .err(),
            Some(Errno::EACCES)
        );
    }
}

//! The `storage` driver: each consumer's root handle is its own directory under the data
//! directory; files inside are opened by single-component names.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
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
        let dir = self.data_dir.join(&grant.consumer);
        std::fs::create_dir_all(&dir).map_err(|e| errno(&e))?;
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
        let file = OpenOptions::new()
            .read(rights.can_read())
            .write(rights.can_write())
            .create(rights.can_write())
            .truncate(truncate)
            .open(dir.join(name))
            .map_err(|e| errno(&e))?;
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

    #[test]
    fn names_are_single_components() {
        assert!(valid_name("state.json"));
        for bad in ["", ".", "..", "a/b", "../x", "a\0b", "x?y"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }
}

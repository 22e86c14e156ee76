//! Content hashes (SHA-256) of files and byte strings, as lowercase hex.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{ImageError, Result};

/// SHA-256 and size of one file's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigest {
    /// Lowercase hex SHA-256.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

impl FileDigest {
    /// The SHA-256 as bytes (`None` if `sha256` is not 64 hex digits).
    pub fn sha256_bytes(&self) -> Option<[u8; 32]> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(&self.sha256, &mut bytes).ok()?;
        Some(bytes)
    }
}

/// Hashes a file's content, streaming.
pub fn file_digest(path: &Path) -> Result<FileDigest> {
    let mut file = File::open(path).map_err(ImageError::read(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(ImageError::read(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok(FileDigest {
        sha256: hex::encode(hasher.finalize()),
        size,
    })
}

/// SHA-256 of a byte string, as hex.
pub fn bytes_sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The digest and size of bytes in memory.
pub fn bytes_digest(bytes: &[u8]) -> FileDigest {
    FileDigest {
        sha256: bytes_sha256(bytes),
        size: bytes.len() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_and_bytes_digests_agree() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"abc").unwrap();
        let d = file_digest(&path).unwrap();
        assert_eq!(d.size, 3);
        assert_eq!(
            d.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(bytes_sha256(b"abc"), d.sha256);
    }
}

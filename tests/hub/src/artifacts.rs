//! The emulator's artifact store, an extension standing in for what Azure keeps in Blob
//! Storage for Device Update: files named by their sha256, uploaded with the service
//! credential (`PUT /testudo/artifacts/<sha256>`) and downloaded by devices without one
//! (`GET /testudo/artifacts/<sha256>`), as a blob is with a read SAS URL. A device trusts an
//! artifact for its signed hash, never for where it came from.
//!
//! Downloads honour `Range: bytes=N-` (`206` with `Content-Range`), so an interrupted
//! transfer resumes; any other range form is answered with the whole file (`200`), which
//! RFC 9110 allows. Files live in the state directory's `artifacts/`, written atomically.

use std::path::PathBuf;

use sha2::{Digest, Sha256};

use crate::error::HubError;
use crate::store::{write_atomic, Store};

/// Largest artifact accepted: a WASM module or an OS update bundle (a gateway's is tens of
/// MB). The emulator holds an artifact in memory while it receives or serves it: a test fake's
/// simplicity, bounded by this limit (Blob Storage streams).
pub const MAX_ARTIFACT: usize = 256 * 1024 * 1024;

/// The path prefix of the store under the service API.
pub const PATH: [&str; 2] = ["testudo", "artifacts"];

/// Whether `name` is an artifact name: 64 lower-case hex digits.
pub fn is_name(name: &str) -> bool {
    name.len() == 64
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Where the artifact `name` is kept.
fn path(store: &Store, name: &str) -> PathBuf {
    store.path("artifacts").join(name)
}

/// Why an upload was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadRefused {
    /// The name is not a sha256 in hex.
    Name,
    /// The bytes' sha256 is not the name.
    Hash {
        /// What the bytes hash to.
        found: String,
    },
}

/// Stores `bytes` as `name` (its sha256).
pub fn put(store: &Store, name: &str, bytes: &[u8]) -> Result<Result<(), UploadRefused>, HubError> {
    if !is_name(name) {
        return Ok(Err(UploadRefused::Name));
    }
    let found = hex::encode(Sha256::digest(bytes));
    if found != name {
        return Ok(Err(UploadRefused::Hash { found }));
    }
    let target = path(store, name);
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir).map_err(|source| HubError::WriteState {
            path: dir.to_owned(),
            source,
        })?;
    }
    write_atomic(&target, bytes)?;
    Ok(Ok(()))
}

/// The artifact `name`, if stored.
pub fn get(store: &Store, name: &str) -> Option<Vec<u8>> {
    if !is_name(name) {
        return None;
    }
    std::fs::read(path(store, name)).ok()
}

/// The first byte a `Range` header asks for, when it is the one form served partially
/// (`bytes=N-`, N within the file).
pub fn range_start(header: Option<&str>, size: usize) -> Option<usize> {
    let start: usize = header?
        .strip_prefix("bytes=")?
        .strip_suffix('-')?
        .parse()
        .ok()?;
    (start < size).then_some(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_open_ended_ranges_within_the_file_are_served_partially() {
        assert_eq!(range_start(Some("bytes=10-"), 100), Some(10));
        assert_eq!(range_start(Some("bytes=0-"), 100), Some(0));
        assert_eq!(range_start(Some("bytes=100-"), 100), None);
        assert_eq!(range_start(Some("bytes=10-20"), 100), None);
        assert_eq!(range_start(Some("bytes=-5"), 100), None);
        assert_eq!(range_start(None, 100), None);
    }

    #[test]
    fn an_upload_is_kept_under_its_hash_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let bytes = b"\0asm module";
        let name = hex::encode(Sha256::digest(bytes));
        assert_eq!(put(&store, &name, bytes).unwrap(), Ok(()));
        assert_eq!(get(&store, &name).unwrap(), bytes);
        let other = "0".repeat(64);
        assert!(matches!(
            put(&store, &other, bytes).unwrap(),
            Err(UploadRefused::Hash { .. })
        ));
        assert_eq!(
            put(&store, "../x", bytes).unwrap(),
            Err(UploadRefused::Name)
        );
        assert!(get(&store, "../hub.json").is_none());
    }
}

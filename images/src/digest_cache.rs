//! A stat-keyed digest cache, as git's index and ccache keep one: the SHA-256 of a file is
//! remembered under its `(device, inode, size, mtime_ns, ctime_ns)`, so an input that has
//! not been touched since the last build is not read again (the workspace's debug binaries
//! are ~200 MB per build).
//!
//! Only the *lookup* is stat-keyed: what goes into cache keys and the manifest is still the
//! content hash, computed from the bytes the first time the file is seen. The ctime in the
//! key catches every change a process can make without also changing it (content, mode,
//! rename over the file); an inode number reused by a new file gets a new ctime.
//!
//! "Racy" entries are never stored: a file whose mtime or ctime is within
//! [`RACY_WINDOW_NS`] of the moment it was hashed could be written again within the same
//! timestamp tick, so it is hashed every time until it is older (git's racy-clean rule).
//!
//! Entries are one small file each under `<cache>/digests/`, written to a temporary name and
//! renamed, so concurrent builds sharing a cache are safe. A missing or unreadable entry is a
//! miss, never an error.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::digest::{file_digest, FileDigest};
use crate::error::{ImageError, Result};

/// Files changed less than this long before they were hashed are not remembered.
pub const RACY_WINDOW_NS: i128 = 2_000_000_000;

/// The stat fields an entry is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatKey {
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// Status change time, nanoseconds since the epoch.
    pub ctime_ns: i128,
}

impl StatKey {
    /// The stat key of `path` (following symlinks).
    pub fn of(path: &Path) -> Result<StatKey> {
        let meta = fs::metadata(path).map_err(ImageError::read(path))?;
        Ok(StatKey {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
        })
    }

    /// Whether the file changed so recently before `now_ns` that it may change again
    /// without a visible timestamp difference.
    pub fn is_racy(&self, now_ns: i128) -> bool {
        now_ns - self.mtime_ns.max(self.ctime_ns) < RACY_WINDOW_NS
    }

    fn entry_name(&self, kind: &str) -> String {
        let text = format!(
            "{kind} {} {} {} {} {}",
            self.dev, self.ino, self.size, self.mtime_ns, self.ctime_ns
        );
        hex::encode(Sha256::digest(text.as_bytes()))
    }
}

/// Remembered digests under a cache directory.
#[derive(Debug, Clone)]
pub struct DigestCache {
    dir: PathBuf,
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

impl DigestCache {
    /// Opens (creating if needed) the digest cache in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir).map_err(ImageError::write(dir))?;
        Ok(DigestCache {
            dir: dir.to_path_buf(),
        })
    }

    /// The SHA-256 and size of `path`'s content, read from the cache when the file's stat
    /// key is known.
    pub fn file(&self, path: &Path) -> Result<FileDigest> {
        self.get_or_compute(path, "file-sha256", || file_digest(path))
    }

    /// A digest derived from `path`'s content by `compute` (`kind` names the derivation),
    /// remembered under `path`'s stat key.
    pub fn get_or_compute(
        &self,
        path: &Path,
        kind: &str,
        compute: impl FnOnce() -> Result<FileDigest>,
    ) -> Result<FileDigest> {
        let before = StatKey::of(path)?;
        let entry = self.dir.join(before.entry_name(kind));
        if let Some(digest) = read_entry(&entry, before.size) {
            return Ok(digest);
        }
        let digest = compute()?;
        let hashed_at = now_ns();
        // Store only if the file did not change while it was read and is not racy.
        if StatKey::of(path)? == before && !before.is_racy(hashed_at) {
            write_entry(&self.dir, &entry, &digest);
        }
        Ok(digest)
    }
}

fn read_entry(entry: &Path, size: u64) -> Option<FileDigest> {
    let text = fs::read_to_string(entry).ok()?;
    let (sha256, recorded) = text.trim().split_once(' ')?;
    let recorded: u64 = recorded.parse().ok()?;
    let valid = sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit());
    (valid && recorded == size).then(|| FileDigest {
        sha256: sha256.to_owned(),
        size,
    })
}

/// Numbers the temporary files of [`write_entry`] within this process: threads of one build
/// write entries at the same time, and two may read the same clock.
static TEMP_FILES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Best effort: a cache entry that cannot be written only costs a re-hash next time.
fn write_entry(dir: &Path, entry: &Path, digest: &FileDigest) {
    let number = TEMP_FILES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".tmp-{}-{number}", std::process::id()));
    if fs::write(&tmp, format!("{} {}\n", digest.sha256, digest.size)).is_ok()
        && fs::rename(&tmp, entry).is_err()
    {
        let _ = fs::remove_file(&tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn racy_rule_uses_the_newer_of_mtime_and_ctime() {
        let key = StatKey {
            dev: 1,
            ino: 2,
            size: 3,
            mtime_ns: 0,
            ctime_ns: 10 * RACY_WINDOW_NS,
        };
        assert!(key.is_racy(10 * RACY_WINDOW_NS + 1));
        assert!(!key.is_racy(11 * RACY_WINDOW_NS));
    }

    #[test]
    fn fresh_files_are_hashed_every_time_and_changes_are_seen() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DigestCache::open(&dir.path().join("digests")).unwrap();
        let file = dir.path().join("f");
        fs::write(&file, b"abc").unwrap();
        // Just written: racy, so not stored.
        let first = cache.file(&file).unwrap();
        assert_eq!(first, file_digest(&file).unwrap());
        assert_eq!(fs::read_dir(dir.path().join("digests")).unwrap().count(), 0);
        fs::write(&file, b"abd").unwrap();
        assert_eq!(cache.file(&file).unwrap(), file_digest(&file).unwrap());
    }

    #[test]
    fn known_stat_key_is_served_without_reading() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DigestCache::open(&dir.path().join("digests")).unwrap();
        let file = dir.path().join("f");
        fs::write(&file, b"abc").unwrap();
        let key = StatKey::of(&file).unwrap();
        let fake = FileDigest {
            sha256: "ab".repeat(32),
            size: 3,
        };
        write_entry(
            &dir.path().join("digests"),
            &dir.path()
                .join("digests")
                .join(key.entry_name("file-sha256")),
            &fake,
        );
        // The remembered value is returned: the file's bytes were not read.
        assert_eq!(cache.file(&file).unwrap(), fake);
        // Any write changes the key, so the real content hash is computed again.
        fs::write(&file, b"xyz").unwrap();
        assert_eq!(cache.file(&file).unwrap(), file_digest(&file).unwrap());
        // A corrupt entry is a miss.
        let key = StatKey::of(&file).unwrap();
        fs::write(
            dir.path()
                .join("digests")
                .join(key.entry_name("file-sha256")),
            "garbage",
        )
        .unwrap();
        assert_eq!(cache.file(&file).unwrap(), file_digest(&file).unwrap());
    }
}

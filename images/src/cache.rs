//! A content-addressed build cache. A step's output is stored under the hash of everything
//! that determines it (step name, builder version, input hashes, parameters), so a changed
//! input simply misses and an unchanged one is reused: changing one WASM app re-runs only the
//! steps whose key includes that app's hash.
//!
//! Objects are written to a temporary name and renamed into place, so an interrupted build
//! never leaves a truncated object behind. Each object's size and mtime are recorded when it
//! is stored and checked on every hit: outputs may be hard links to objects (see
//! `builder::link_out`), and an object written to through one since is rebuilt, never reused.
//! Stale objects are harmless; delete the directory to reclaim space.

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::digest::{file_digest, FileDigest};
use crate::error::{ImageError, Result};

/// Bumped whenever a step's output for the same inputs changes.
const CACHE_FORMAT: &str = "testudo-images-cache-3";

/// The memo holding an object's size and mtime as stored.
const STAT_MEMO: &str = "stat";

/// The key of one cached step output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey(String);

impl CacheKey {
    /// Builds a key from the step name and the parts that determine its output. Parts are
    /// length-prefixed, so `["ab","c"]` and `["a","bc"]` differ.
    pub fn new<I, P>(step: &str, parts: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: AsRef<[u8]>,
    {
        let mut hasher = Sha256::new();
        for part in [
            CACHE_FORMAT.as_bytes(),
            env!("CARGO_PKG_VERSION").as_bytes(),
            step.as_bytes(),
        ] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        for part in parts {
            let part = part.as_ref();
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        CacheKey(format!("{step}-{}", hex::encode(hasher.finalize())))
    }

    /// The key as a file name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A directory of cached step outputs (single files).
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

/// Whether a step's output came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// The output was already cached.
    Hit,
    /// The step ran and its output is now cached.
    Built,
}

impl Cache {
    /// Opens (creating if needed) the cache at `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir.join("objects")).map_err(ImageError::write(dir))?;
        fs::create_dir_all(dir.join("tmp")).map_err(ImageError::write(dir))?;
        Ok(Cache {
            dir: dir.to_path_buf(),
        })
    }

    /// The default cache location: `$XDG_CACHE_HOME/testudo/images`, else
    /// `$HOME/.cache/testudo/images`, else `.testudo-cache` in the working directory.
    pub fn default_dir() -> PathBuf {
        if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(xdg).join("testudo/images");
        }
        if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(home).join(".cache/testudo/images");
        }
        PathBuf::from(".testudo-cache")
    }

    /// Where the object for `key` lives (whether or not it exists).
    pub fn object_path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join("objects").join(key.as_str())
    }

    /// A digest of the object stored under `key` (`kind` names what is hashed, e.g.
    /// `sha256`), computed by `compute` once and kept next to the object: objects never
    /// change, so their digests never go stale.
    pub fn object_digest(
        &self,
        key: &CacheKey,
        kind: &str,
        compute: impl FnOnce(&Path) -> Result<FileDigest>,
    ) -> Result<FileDigest> {
        let object = self.object_path(key);
        let memo = self.memo_path(key, kind);
        if let Ok(text) = fs::read_to_string(&memo) {
            if let Some((sha256, size)) = text.trim().split_once(' ') {
                if let Ok(size) = size.parse() {
                    if sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Ok(FileDigest {
                            sha256: sha256.to_owned(),
                            size,
                        });
                    }
                }
            }
        }
        let digest = compute(&object)?;
        self.store_digest(key, kind, &digest)?;
        Ok(digest)
    }

    /// Records `digest` (of kind `kind`) for the object under `key`, for a step that computed
    /// it while building the object; [`Cache::object_digest`] then serves it.
    pub fn store_digest(&self, key: &CacheKey, kind: &str, digest: &FileDigest) -> Result<()> {
        self.write_memo(key, kind, &format!("{} {}\n", digest.sha256, digest.size))
    }

    fn memo_path(&self, key: &CacheKey, kind: &str) -> PathBuf {
        self.dir
            .join("objects")
            .join(format!("{}.{kind}", key.as_str()))
    }

    fn write_memo(&self, key: &CacheKey, kind: &str, text: &str) -> Result<()> {
        let memo = self.memo_path(key, kind);
        let tmp =
            self.dir
                .join("tmp")
                .join(format!("{}.{kind}.{}", key.as_str(), std::process::id()));
        fs::write(&tmp, text).map_err(ImageError::write(&tmp))?;
        fs::rename(&tmp, &memo).map_err(ImageError::write(&memo))
    }

    /// `size mtime` of `path` as recorded in a stat memo.
    fn stat_text(path: &Path) -> Result<String> {
        let meta = fs::metadata(path).map_err(ImageError::read(path))?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        Ok(format!("{} {mtime}\n", meta.len()))
    }

    /// Whether the object under `key` exists and is unchanged since it was stored.
    fn intact(&self, key: &CacheKey) -> bool {
        let object = self.object_path(key);
        match (
            fs::read_to_string(self.memo_path(key, STAT_MEMO)),
            Self::stat_text(&object),
        ) {
            (Ok(recorded), Ok(now)) => recorded == now,
            _ => false,
        }
    }

    /// Removes the object under `key` and everything recorded about it.
    fn evict(&self, key: &CacheKey) -> Result<()> {
        let prefix = format!("{}.", key.as_str());
        let objects = self.dir.join("objects");
        for entry in fs::read_dir(&objects).map_err(ImageError::read(&objects))? {
            let entry = entry.map_err(ImageError::read(&objects))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name == key.as_str() || name.starts_with(&prefix) {
                fs::remove_file(entry.path()).map_err(ImageError::write(entry.path()))?;
            }
        }
        Ok(())
    }

    /// The SHA-256 of the object stored under `key` (see [`Cache::object_digest`]).
    pub fn object_sha256(&self, key: &CacheKey) -> Result<FileDigest> {
        self.object_digest(key, "sha256", file_digest)
    }

    /// Returns the cached output for `key`, running `build` to produce it on a miss. `build`
    /// receives a fresh temporary path to write its single output file to. Threads may build
    /// different keys at once; one key is built by one thread at a time (its temporary path
    /// is the key's and the process's), so callers working concurrently build each key once.
    pub fn get_or_build<F>(&self, key: &CacheKey, build: F) -> Result<(PathBuf, Reuse)>
    where
        F: FnOnce(&Path) -> Result<()>,
    {
        let object = self.object_path(key);
        if self.intact(key) {
            return Ok((object, Reuse::Hit));
        }
        if object.exists() {
            // Changed since it was stored (written through a hard-linked output) or stored
            // by an interrupted build before its stat was recorded: build it afresh.
            self.evict(key)?;
        }
        let tmp = self
            .dir
            .join("tmp")
            .join(format!("{}.{}", key.as_str(), std::process::id()));
        if tmp.exists() {
            fs::remove_file(&tmp).map_err(ImageError::write(&tmp))?;
        }
        let built = build(&tmp);
        if let Err(err) = built {
            let _ = fs::remove_file(&tmp);
            return Err(err);
        }
        fs::rename(&tmp, &object).map_err(ImageError::write(&object))?;
        self.write_memo(key, STAT_MEMO, &Self::stat_text(&object)?)?;
        Ok((object, Reuse::Built))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_separate_parts_and_steps() {
        let a = CacheKey::new("s", ["ab", "c"]);
        let b = CacheKey::new("s", ["a", "bc"]);
        let c = CacheKey::new("t", ["ab", "c"]);
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, CacheKey::new("s", ["ab", "c"]));
    }

    #[test]
    fn second_lookup_hits_without_building() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let key = CacheKey::new("step", ["input"]);
        let (path, reuse) = cache
            .get_or_build(&key, |out| {
                fs::write(out, "x").map_err(ImageError::write(out))
            })
            .unwrap();
        assert_eq!(reuse, Reuse::Built);
        assert_eq!(fs::read_to_string(&path).unwrap(), "x");
        let (again, reuse) = cache
            .get_or_build(&key, |_| panic!("must not rebuild"))
            .unwrap();
        assert_eq!((&again, reuse), (&path, Reuse::Hit));
        let digest = cache.object_sha256(&key).unwrap();
        assert_eq!(digest, file_digest(&path).unwrap());
        // Kept next to the object and served from there.
        let memo = dir
            .path()
            .join("objects")
            .join(format!("{}.sha256", key.as_str()));
        assert!(memo.is_file());
        let served = cache
            .object_digest(&key, "sha256", |_| panic!("must not rehash"))
            .unwrap();
        assert_eq!(served, digest);
    }

    #[test]
    fn object_changed_after_storing_is_rebuilt_not_reused() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let key = CacheKey::new("step", ["input"]);
        let build = |out: &Path| fs::write(out, "good").map_err(ImageError::write(out));
        let (path, _) = cache.get_or_build(&key, build).unwrap();
        let before = cache.object_sha256(&key).unwrap();
        // An output hard-linked to the object is appended to.
        let output = dir.path().join("rootfs.img");
        fs::hard_link(&path, &output).unwrap();
        let mut file = fs::OpenOptions::new().append(true).open(&output).unwrap();
        std::io::Write::write_all(&mut file, b" and changed").unwrap();
        drop(file);

        let (again, reuse) = cache.get_or_build(&key, build).unwrap();
        assert_eq!(reuse, Reuse::Built);
        assert_eq!(fs::read_to_string(&again).unwrap(), "good");
        // The digest memo went with the changed object; the user's file is left as it is.
        assert_eq!(cache.object_sha256(&key).unwrap(), before);
        assert_eq!(fs::read_to_string(&output).unwrap(), "good and changed");
        let (_, reuse) = cache.get_or_build(&key, build).unwrap();
        assert_eq!(reuse, Reuse::Hit);
    }

    #[test]
    fn stored_digest_is_served_without_hashing() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let key = CacheKey::new("step", ["input"]);
        cache
            .get_or_build(&key, |out| {
                fs::write(out, "x").map_err(ImageError::write(out))
            })
            .unwrap();
        let digest = FileDigest {
            sha256: "ab".repeat(32),
            size: 9,
        };
        cache.store_digest(&key, "payload-sha256", &digest).unwrap();
        let served = cache
            .object_digest(&key, "payload-sha256", |_| panic!("must not rehash"))
            .unwrap();
        assert_eq!(served, digest);
    }

    #[test]
    fn failed_build_leaves_nothing_cached() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let key = CacheKey::new("step", ["input"]);
        let result = cache.get_or_build(&key, |out| {
            fs::write(out, "partial").map_err(ImageError::write(out))?;
            Err(ImageError::SourceDateEpoch { value: "x".into() })
        });
        assert!(result.is_err());
        assert!(!cache.object_path(&key).exists());
    }
}

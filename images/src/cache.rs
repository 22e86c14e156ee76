//! A content-addressed build cache. A step's output is stored under the hash of everything
//! that determines it (step name, builder version, input hashes, parameters), so a changed
//! input simply misses and an unchanged one is reused: changing one WASM app re-runs only the
//! steps whose key includes that app's hash.
//!
//! Objects are written to a temporary name and renamed into place, so an interrupted build
//! never leaves a truncated object behind. Stale objects are harmless; delete the directory
//! to reclaim space.

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::digest::{file_digest, FileDigest};
use crate::error::{ImageError, Result};

/// Bumped whenever a step's output for the same inputs changes.
const CACHE_FORMAT: &str = "testudo-images-cache-2";

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
        let memo = self
            .dir
            .join("objects")
            .join(format!("{}.{kind}", key.as_str()));
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
        let tmp =
            self.dir
                .join("tmp")
                .join(format!("{}.{kind}.{}", key.as_str(), std::process::id()));
        fs::write(&tmp, format!("{} {}\n", digest.sha256, digest.size))
            .map_err(ImageError::write(&tmp))?;
        fs::rename(&tmp, &memo).map_err(ImageError::write(&memo))?;
        Ok(digest)
    }

    /// The SHA-256 of the object stored under `key` (see [`Cache::object_digest`]).
    pub fn object_sha256(&self, key: &CacheKey) -> Result<FileDigest> {
        self.object_digest(key, "sha256", file_digest)
    }

    /// Returns the cached output for `key`, running `build` to produce it on a miss. `build`
    /// receives a fresh temporary path to write its single output file to.
    pub fn get_or_build<F>(&self, key: &CacheKey, build: F) -> Result<(PathBuf, Reuse)>
    where
        F: FnOnce(&Path) -> Result<()>,
    {
        let object = self.object_path(key);
        if object.is_file() {
            return Ok((object, Reuse::Hit));
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

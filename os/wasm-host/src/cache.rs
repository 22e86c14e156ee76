//! Compiled apps: the core-module/component distinction and the `.cwasm` cache, keyed by
//! the engine's compatibility hash and the app's sha256, so a device never compiles an app
//! it already knows.
//!
//! Layout: `<cache dir>/<engine key>/<sha256 of the app>.cwasm`, where the engine key is the
//! first 16 hex digits of sha256 over `Engine::precompile_compatibility_hash` (wasmtime
//! version, target, CPU features, settings). The image builder can fill the same layout,
//! or ship a precompiled sidecar `P.cwasm` next to `P.wasm` ([`crate::precompile`]), which
//! [`load_app`] tries first — see the trust invariant there.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Engine, Module};

use crate::error::{boxed, HostError};

/// Whether bytes are a core module (WASI preview 1) or a component (preview 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppKind {
    /// A core WebAssembly module.
    Module,
    /// A component.
    Component,
}

impl AppKind {
    /// Reads the 8-byte header: magic `\0asm`, then version 1 (module) or the component
    /// layer `0d 00 01 00`. The text format (`.wat`) is accepted as a module for tests.
    pub fn detect(bytes: &[u8]) -> Option<Self> {
        match bytes.get(..8) {
            Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => Some(Self::Module),
            Some([0, b'a', b's', b'm', 0x0d, 0, 0x01, 0]) => Some(Self::Component),
            _ if bytes.trim_ascii_start().starts_with(b"(module") => Some(Self::Module),
            _ if bytes.trim_ascii_start().starts_with(b"(component") => Some(Self::Component),
            _ => None,
        }
    }
}

/// Compiled app code.
#[derive(Clone)]
pub enum AppCode {
    /// A compiled core module.
    Module(Module),
    /// A compiled component.
    Component(Component),
}

impl std::fmt::Debug for AppCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Module(_) => f.write_str("AppCode::Module"),
            Self::Component(_) => f.write_str("AppCode::Component"),
        }
    }
}

/// An app ready to instantiate.
#[derive(Debug, Clone)]
pub struct CompiledApp {
    /// The app's name (component name or file name).
    pub name: String,
    /// Its code.
    pub code: AppCode,
    /// sha256 of the app's bytes, hex.
    pub sha256: String,
    /// Where the code came from.
    pub origin: CodeOrigin,
    /// Why a sidecar that was present was not used (one line), if so.
    pub sidecar_rejected: Option<String>,
    /// Why the freshly compiled code could not be written to the cache (one line), if so.
    pub cache_write_failed: Option<String>,
}

/// Where an app's compiled code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeOrigin {
    /// The precompiled sidecar `P.cwasm` next to the app (read-only filesystem).
    Sidecar,
    /// The host's `.cwasm` cache.
    Cache,
    /// Compiled now (and written to the cache, when there is one).
    Compiled,
}

/// Places compiled code may come from besides compiling.
#[derive(Debug, Clone, Copy, Default)]
pub struct CodeSources<'a> {
    /// The host's `.cwasm` cache.
    pub cache: Option<&'a ModuleCache>,
    /// A precompiled sidecar to try first (used only on a read-only filesystem).
    pub sidecar: Option<&'a Path>,
}

/// The `.cwasm` cache directory.
#[derive(Debug, Clone)]
pub struct ModuleCache {
    dir: PathBuf,
}

impl ModuleCache {
    /// A cache rooted at `dir` (created when first written). The directory must be writable
    /// only by the host: cached code is trusted native code.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The cache's root directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the compiled form of an app with hex digest `sha256` lives for `engine`.
    pub fn path_for(&self, engine: &Engine, sha256: &str) -> PathBuf {
        self.dir
            .join(engine_key(engine))
            .join(format!("{sha256}.cwasm"))
    }
}

/// First 16 hex digits of sha256 over the engine's precompile compatibility hash.
pub fn engine_key(engine: &Engine) -> String {
    let mut hasher = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let digest = hex::encode(hasher.0.finalize());
    digest[..16].to_owned()
}

/// Feeds `Hash` output into sha256, so the key does not depend on std's hasher.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// Compiles `bytes` (or loads them from `cache`), writing the cache on a miss.
pub fn compile_app(
    engine: &Engine,
    cache: Option<&ModuleCache>,
    name: &str,
    bytes: &[u8],
) -> Result<CompiledApp, HostError> {
    load_app(
        engine,
        CodeSources {
            cache,
            sidecar: None,
        },
        name,
        bytes,
    )
}

/// Loads the app's compiled code from the first source that has a compatible copy — the
/// sidecar (only on a read-only filesystem), then the cache — or compiles it, writing the
/// cache on a miss. A sidecar that exists but is not used is reported in
/// [`CompiledApp::sidecar_rejected`].
pub fn load_app(
    engine: &Engine,
    sources: CodeSources<'_>,
    name: &str,
    bytes: &[u8],
) -> Result<CompiledApp, HostError> {
    let kind = AppKind::detect(bytes).ok_or_else(|| HostError::NotWasm {
        app: name.to_owned(),
    })?;
    let sha256 = hex::encode(Sha256::digest(bytes));
    let mut sidecar_rejected = None;
    if let Some(sidecar) = sources.sidecar.filter(|path| path.exists()) {
        match load_sidecar(engine, kind, sidecar) {
            Ok(code) => {
                return Ok(CompiledApp {
                    name: name.to_owned(),
                    code,
                    sha256,
                    origin: CodeOrigin::Sidecar,
                    sidecar_rejected: None,
                    cache_write_failed: None,
                })
            }
            Err(reason) => sidecar_rejected = Some(reason),
        }
    }
    let cached_path = sources.cache.map(|cache| cache.path_for(engine, &sha256));
    if let Some(path) = cached_path.as_deref().filter(|path| path.is_file()) {
        if let Ok(code) = load_cached(engine, kind, path) {
            return Ok(CompiledApp {
                name: name.to_owned(),
                code,
                sha256,
                origin: CodeOrigin::Cache,
                sidecar_rejected,
                cache_write_failed: None,
            });
        }
        // A stale or damaged entry: recompile below and overwrite it.
    }
    let compile_error = |error| HostError::Compile {
        app: name.to_owned(),
        source: boxed(error),
    };
    let (code, serialized) = match kind {
        AppKind::Module => {
            let module = Module::new(engine, bytes).map_err(compile_error)?;
            let serialized = module.serialize().map_err(compile_error)?;
            (AppCode::Module(module), serialized)
        }
        AppKind::Component => {
            let component = Component::new(engine, bytes).map_err(compile_error)?;
            let serialized = component.serialize().map_err(compile_error)?;
            (AppCode::Component(component), serialized)
        }
    };
    // Only the host reads its cache. A cache that cannot be written costs the next start a
    // compile, not this run: the reason is reported, the app runs.
    let cache_write_failed = cached_path.and_then(|path| {
        write_atomically(&path, &serialized, 0o600)
            .err()
            .map(|error| format!("{}: {error}", path.display()))
    });
    Ok(CompiledApp {
        name: name.to_owned(),
        code,
        sha256,
        origin: CodeOrigin::Compiled,
        sidecar_rejected,
        cache_write_failed,
    })
}

/// Loads a precompiled sidecar, or says in one line why not: it must lie on a read-only
/// filesystem (the trust invariant of [`crate::precompile`]) and be compatible with
/// `engine` (wasmtime checks version, target, CPU features and settings).
pub fn load_sidecar(engine: &Engine, kind: AppKind, path: &Path) -> Result<AppCode, String> {
    let mut file = std::fs::File::open(path).map_err(|error| format!("cannot open it: {error}"))?;
    let mount = rustix::fs::fstatvfs(&file)
        .map_err(|error| format!("cannot check its filesystem: {error}"))?;
    if !mount.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY) {
        return Err("it is on a writable filesystem".to_owned());
    }
    let loaded = match kind {
        AppKind::Module => {
            // SAFETY: the file lies on a read-only filesystem (the image's rootfs, next to
            // its module), where the image builder's `precompile` output lives; wasmtime
            // checks its engine header (version, target, CPU features, settings) before use.
            unsafe { Module::deserialize_open_file(engine, file) }.map(AppCode::Module)
        }
        AppKind::Component => {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut file, &mut bytes)
                .map_err(|error| format!("cannot read it: {error}"))?;
            // SAFETY: as above, for a serialized component read from the same file.
            unsafe { Component::deserialize(engine, bytes) }.map(AppCode::Component)
        }
    };
    loaded.map_err(|error| {
        let text = format!("{error:#}");
        let line = text.lines().next().unwrap_or_default().trim().to_owned();
        format!("not loadable by this host: {line}")
    })
}

/// Loads a `.cwasm` written by [`compile_app`].
pub fn load_cached(engine: &Engine, kind: AppKind, path: &Path) -> Result<AppCode, HostError> {
    let load_error = |error| HostError::CacheLoad {
        path: path.to_owned(),
        source: boxed(error),
    };
    match kind {
        // SAFETY: the file was produced by `serialize` of this host into a cache directory
        // only the host writes (see `ModuleCache::new`), and its path is keyed by the
        // engine's compatibility hash; wasmtime additionally checks the version header.
        AppKind::Module => unsafe { Module::deserialize_file(engine, path) }
            .map(AppCode::Module)
            .map_err(load_error),
        // SAFETY: as above, for a serialized component.
        AppKind::Component => unsafe { Component::deserialize_file(engine, path) }
            .map(AppCode::Component)
            .map_err(load_error),
    }
}

/// Writes `bytes` to `path` with permission bits `mode` through a temporary file in the same
/// directory and a rename, so readers see the old file or the whole new one.
///
/// The temporary file is created with `mode` already (`open`'s mode, less the umask); only
/// when the umask took bits away is the mode set again (`fchmod`). The sandboxed host writes
/// its cache with `0o600`, which no umask narrows, so it never needs `fchmod` (not in the
/// `wasm_host` seccomp role).
pub(crate) fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    create_dir_all(dir)?;
    // Cleaned up here with `unlinkat` (rustix), not by tempfile's drop (std's `remove_file`
    // is glibc's `unlink`, outside the role): a failed write must not kill the host.
    let mut temporary = tempfile::Builder::new()
        .permissions(std::fs::Permissions::from_mode(mode))
        .disable_cleanup(true)
        .tempfile_in(dir)?;
    let written = (|| {
        std::io::Write::write_all(&mut temporary, bytes)?;
        let created = temporary.as_file().metadata()?.permissions().mode() & 0o7777;
        if created != mode {
            temporary
                .as_file()
                .set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        temporary.as_file().sync_all()
    })();
    let temporary_path = temporary.path().to_owned();
    let result = written.and_then(|()| {
        temporary
            .persist(path)
            .map(drop)
            .map_err(|error| error.error)
    });
    if result.is_err() {
        // Best effort: a leftover temporary file only costs space in the cache directory.
        let _ = rustix::fs::unlink(&temporary_path);
    }
    result
}

/// `std::fs::create_dir_all` with `mkdirat` instead of `mkdir`: the sandboxed host creates
/// its cache and granted directories with the one directory-making system call its seccomp
/// role allows, the one WASI's `path_create_directory` uses (`mkdirat`). Directories are
/// made with mode `0o777` less the umask, as `std` does; an existing directory is success.
pub fn create_dir_all(path: &Path) -> std::io::Result<()> {
    if path.as_os_str().is_empty() || path.is_dir() {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        create_dir_all(parent)?;
    }
    match rustix::fs::mkdirat(
        rustix::fs::CWD,
        path,
        rustix::fs::Mode::from_raw_mode(0o777),
    ) {
        Ok(()) => Ok(()),
        Err(_) if path.is_dir() => Ok(()),
        Err(error) => Err(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_tell_modules_from_components() {
        assert_eq!(AppKind::detect(b"\0asm\x01\0\0\0"), Some(AppKind::Module));
        assert_eq!(
            AppKind::detect(b"\0asm\x0d\0\x01\0"),
            Some(AppKind::Component)
        );
        assert_eq!(AppKind::detect(b"\0asm"), None);
        assert_eq!(AppKind::detect(b"#!/bin/sh\n"), None);
        assert_eq!(AppKind::detect(b"  (module)"), Some(AppKind::Module));
    }

    #[test]
    fn second_compile_comes_from_the_cache_and_damage_is_repaired() {
        let engine = Engine::default();
        let dir = tempfile::tempdir().unwrap();
        let cache = ModuleCache::new(dir.path());
        let wat = b"(module (func (export \"f\")))";
        let first = compile_app(&engine, Some(&cache), "f", wat).unwrap();
        assert_eq!(first.origin, CodeOrigin::Compiled);
        let second = compile_app(&engine, Some(&cache), "f", wat).unwrap();
        assert_eq!(second.origin, CodeOrigin::Cache);
        let path = cache.path_for(&engine, &second.sha256);
        // Loaded code maps the file: drop it, then damage the entry by replacing it (the
        // cache itself only ever replaces files by rename, never rewrites them in place).
        drop((first, second));
        let damaged = path.with_extension("damaged");
        std::fs::write(&damaged, b"garbage").unwrap();
        std::fs::rename(&damaged, &path).unwrap();
        let third = compile_app(&engine, Some(&cache), "f", wat).unwrap();
        assert_eq!(third.origin, CodeOrigin::Compiled);
        assert_eq!(
            compile_app(&engine, Some(&cache), "f", wat).unwrap().origin,
            CodeOrigin::Cache
        );
    }

    #[test]
    fn an_unwritable_cache_is_reported_and_the_app_still_loads() {
        let engine = Engine::default();
        let dir = tempfile::tempdir().unwrap();
        let not_a_dir = dir.path().join("file");
        std::fs::write(&not_a_dir, b"").unwrap();
        let cache = ModuleCache::new(&not_a_dir);
        let compiled = compile_app(&engine, Some(&cache), "f", b"(module)").unwrap();
        assert_eq!(compiled.origin, CodeOrigin::Compiled);
        assert!(compiled.cache_write_failed.is_some());
    }

    #[test]
    fn not_wasm_is_a_clear_error() {
        let engine = Engine::default();
        let error = compile_app(&engine, None, "x", b"hello").unwrap_err();
        assert!(matches!(error, HostError::NotWasm { .. }));
    }

    #[test]
    fn create_dir_all_makes_every_missing_level_and_accepts_existing_ones() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b/c");
        create_dir_all(&deep).unwrap();
        assert!(deep.is_dir());
        create_dir_all(&deep).unwrap();
        create_dir_all(Path::new("")).unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"").unwrap();
        assert!(create_dir_all(&file.join("below")).is_err());
        // Files are written with exactly the requested mode.
        for mode in [0o600, 0o644] {
            let path = dir.path().join(format!("d/{mode:o}.bin"));
            write_atomically(&path, b"x", mode).unwrap();
            let written = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
            assert_eq!(written, mode);
            assert_eq!(std::fs::read(&path).unwrap(), b"x");
        }
    }
}

//! Ahead-of-time compilation for images: `testudo-wasm-host precompile IN.wasm OUT.cwasm`
//! writes the compiled form of an app with the runtime host's engine settings, and the host
//! loads it as a *sidecar* (`P.cwasm` next to `P.wasm`) before its own cache.
//!
//! # Trust invariant
//! A `.cwasm` is native code that wasmtime maps executable without re-verifying it, so the
//! host loads one only from two places:
//! - a sidecar `P.cwasm` next to the app's `P.wasm`, and only when it lies on a filesystem
//!   mounted read-only (the image's rootfs; `testudo-init` binds it read-only into the host's
//!   sandbox) — checked with `fstatvfs` on the opened file;
//! - the host's own cache directory, which only the host writes ([`crate::ModuleCache`]).
//!
//! Anything else — a sidecar on a writable filesystem, one built by another wasmtime version
//! or for other CPU features (wasmtime checks the engine header on load), a damaged file —
//! is not used: the host says so in one line and falls back to its cache or compiles.

use std::path::{Path, PathBuf};

use wasmtime::Engine;

use crate::cache::{write_atomically, AppKind};
use crate::engine::{engine_config, EngineOptions};
use crate::error::{boxed, HostError};

/// The sidecar path of an app file: `P.wasm` -> `P.cwasm` (`P` -> `P.cwasm` without an
/// extension).
pub fn sidecar_path(app: &Path) -> PathBuf {
    app.with_extension("cwasm")
}

/// The engine the runtime host uses, without its epoch ticker (compiling needs none) and
/// compiling functions on all cores. Its compatibility hash is the host's, so what it writes
/// loads in the host.
pub fn precompile_engine() -> Result<Engine, HostError> {
    let mut config = engine_config(&EngineOptions::default());
    config.parallel_compilation(true);
    Engine::new(&config).map_err(|error| HostError::EngineConfig {
        source: boxed(error),
    })
}

/// Compiles `bytes` (a core module or a component) to its serialized `.cwasm` form.
pub fn precompile(engine: &Engine, name: &str, bytes: &[u8]) -> Result<Vec<u8>, HostError> {
    let kind = AppKind::detect(bytes).ok_or_else(|| HostError::NotWasm {
        app: name.to_owned(),
    })?;
    let compiled = match kind {
        AppKind::Module => engine.precompile_module(bytes),
        AppKind::Component => engine.precompile_component(bytes),
    };
    compiled.map_err(|error| HostError::Compile {
        app: name.to_owned(),
        source: boxed(error),
    })
}

/// Reads `input`, compiles it with the runtime host's engine settings and writes `output`
/// atomically (a temporary file in the same directory, then a rename), mode 0644: a failed
/// run leaves no partial `.cwasm` behind.
pub fn precompile_file(input: &Path, output: &Path) -> Result<AppKind, HostError> {
    let bytes = std::fs::read(input).map_err(|source| HostError::ReadApp {
        path: input.to_owned(),
        source,
    })?;
    let name = input.display().to_string();
    let kind = AppKind::detect(&bytes).ok_or_else(|| HostError::NotWasm { app: name.clone() })?;
    let engine = precompile_engine()?;
    let compiled = precompile(&engine, &name, &bytes)?;
    // World-readable like the module itself: the host runs under its own uid on the device.
    write_atomically(output, &compiled, 0o644).map_err(|source| HostError::Write {
        path: output.to_owned(),
        source,
    })?;
    Ok(kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecars_sit_next_to_their_module() {
        assert_eq!(
            sidecar_path(Path::new("/app/wasm-apps/hello.wasm")),
            Path::new("/app/wasm-apps/hello.cwasm")
        );
        assert_eq!(sidecar_path(Path::new("a/b")), Path::new("a/b.cwasm"));
    }

    #[test]
    fn precompiled_output_is_written_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("f.wat");
        let output = dir.path().join("f.cwasm");
        std::fs::write(&input, "(module (func (export \"f\")))").unwrap();
        assert_eq!(precompile_file(&input, &output).unwrap(), AppKind::Module);
        assert!(std::fs::read(&output).unwrap().starts_with(b"\x7fELF"));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&output).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o644);
        std::fs::write(&input, "(module (func (export \"f\") (i32.add)))").unwrap();
        let error = precompile_file(&input, &output.with_extension("bad")).unwrap_err();
        assert!(matches!(error, HostError::Compile { .. }), "{error:?}");
        assert!(!output.with_extension("bad").exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }
}

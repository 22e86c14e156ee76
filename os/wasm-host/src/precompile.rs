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

/// The processor a `.cwasm` is compiled for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CpuTarget {
    /// This machine's processor with every feature it has (what a running host compiles for).
    #[default]
    Native,
    /// The architecture's baseline plus exactly these features (Cranelift's names without
    /// `has_`, e.g. `sse3`, `sse41`, `popcnt`, `avx2`): code that runs on every processor of
    /// the architecture that has them. This is how an image is compiled for its board: the
    /// build host usually has more features than the device.
    Features(Vec<String>),
}

/// x86_64 features Cranelift can assume (settings `has_<name>`).
const X86_64_FEATURES: &[&str] = &[
    "sse3",
    "ssse3",
    "cmpxchg16b",
    "sse41",
    "sse42",
    "popcnt",
    "avx",
    "avx2",
    "fma",
    "bmi1",
    "bmi2",
    "lzcnt",
    "avx512bitalg",
    "avx512dq",
    "avx512vl",
    "avx512vbmi",
    "avx512f",
    "avx512vnni",
    "avx_vnni",
];

/// aarch64 features Cranelift can assume.
const AARCH64_FEATURES: &[&str] = &["lse", "pauth", "fp16"];

impl CpuTarget {
    /// Parses `native` or a comma-separated feature list (empty: the bare baseline).
    pub fn parse(text: &str) -> Self {
        match text.trim() {
            "native" => CpuTarget::Native,
            list => CpuTarget::Features(
                list.split(',')
                    .map(str::trim)
                    .filter(|f| !f.is_empty())
                    .map(str::to_owned)
                    .collect(),
            ),
        }
    }

    /// Applies this target to `config` (this machine's architecture; features checked by
    /// name, so a typo is an error rather than a silently slower or refused `.cwasm`).
    fn apply(&self, config: &mut wasmtime::Config) -> Result<(), HostError> {
        let CpuTarget::Features(features) = self else {
            return Ok(());
        };
        let arch = std::env::consts::ARCH;
        let known: &[&str] = match arch {
            "x86_64" => X86_64_FEATURES,
            "aarch64" => AARCH64_FEATURES,
            _ => &[],
        };
        if let Some(unknown) = features.iter().find(|f| !known.contains(&f.as_str())) {
            return Err(HostError::CpuFeature {
                feature: unknown.clone(),
                arch,
                known: known.join(", "),
            });
        }
        // An explicit target switches off Cranelift's detection of this machine's features.
        config
            .target(&format!("{arch}-unknown-linux-gnu"))
            .map_err(|error| HostError::EngineConfig {
                source: boxed(error),
            })?;
        for feature in features {
            // SAFETY: `has_<feature>` is a Cranelift ISA setting of this architecture (checked
            // against the list above). Code compiled with it runs only where the feature
            // exists: wasmtime records every enabled ISA flag in the `.cwasm` header and a
            // loading host whose processor lacks one refuses the file (`check_compatible`).
            unsafe {
                config.cranelift_flag_enable(&format!("has_{feature}"));
            }
        }
        Ok(())
    }
}

/// The engine the runtime host uses, without its epoch ticker (compiling needs none),
/// compiling functions on all cores, for `cpu`. Its compatibility hash is the host's, so what
/// it writes loads in the host (on a processor `cpu` describes).
pub fn precompile_engine(cpu: &CpuTarget) -> Result<Engine, HostError> {
    let mut config = engine_config(&EngineOptions::default());
    config.parallel_compilation(true);
    cpu.apply(&mut config)?;
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

/// Reads `input`, compiles it with the runtime host's engine settings for `cpu` and writes
/// `output` atomically (a temporary file in the same directory, then a rename), mode 0644: a
/// failed run leaves no partial `.cwasm` behind.
pub fn precompile_file(input: &Path, output: &Path, cpu: &CpuTarget) -> Result<AppKind, HostError> {
    let bytes = std::fs::read(input).map_err(|source| HostError::ReadApp {
        path: input.to_owned(),
        source,
    })?;
    let name = input.display().to_string();
    let kind = AppKind::detect(&bytes).ok_or_else(|| HostError::NotWasm { app: name.clone() })?;
    let engine = precompile_engine(cpu)?;
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
        assert_eq!(
            precompile_file(&input, &output, &CpuTarget::Native).unwrap(),
            AppKind::Module
        );
        assert!(std::fs::read(&output).unwrap().starts_with(b"\x7fELF"));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&output).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o644);
        std::fs::write(&input, "(module (func (export \"f\") (i32.add)))").unwrap();
        let error =
            precompile_file(&input, &output.with_extension("bad"), &CpuTarget::Native).unwrap_err();
        assert!(matches!(error, HostError::Compile { .. }), "{error:?}");
        assert!(!output.with_extension("bad").exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn cpu_targets_parse_and_unknown_features_are_named() {
        assert_eq!(CpuTarget::parse("native"), CpuTarget::Native);
        assert_eq!(CpuTarget::parse(""), CpuTarget::Features(vec![]));
        assert_eq!(
            CpuTarget::parse("sse3, cmpxchg16b"),
            CpuTarget::Features(vec!["sse3".into(), "cmpxchg16b".into()])
        );
        let error = precompile_engine(&CpuTarget::parse("sse3,warp-drive")).unwrap_err();
        assert!(error.to_string().contains("`warp-drive`"), "{error}");
    }
}

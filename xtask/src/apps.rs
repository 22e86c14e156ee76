//! `cargo xtask apps`: builds the WebAssembly apps in `wasm-apps/` from C with Debian's clang
//! and wasi-libc, and the component variant of the sensor reader.
//!
//! Outputs (next to their sources, as the plan's `run.module` paths name them):
//! - `wasm-apps/<name>.wasm` for every `wasm-apps/*.c` (WASI preview 1 command modules),
//! - `wasm-apps/hostile/<name>.wasm` for every `wasm-apps/hostile/*.c`,
//! - `wasm-apps/sensor-reader.component.wasm` (preview 2 component, via
//!   `testudo-wasm-host componentize`: wit-component + wasmtime's preview 1 adapter).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

use crate::util;

/// The C compiler (Debian `clang-14`; `lld-14`, `wasi-libc`, `libclang-rt-14-dev-wasm32`).
const CLANG: &str = "clang-14";

/// Flags for every app: wasm32-wasi against Debian's wasi-libc, small, stack first (a stack
/// overflow traps instead of overwriting data), no names (reproducible, small).
pub const CFLAGS: &[&str] = &[
    "--target=wasm32-wasi",
    "--sysroot=/usr",
    "-Os",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Wl,--stack-first",
    "-Wl,--strip-all",
];

/// Builds every app; `--no-component` skips the component variant (no wasmtime build).
pub fn run(args: &[String]) -> anyhow::Result<()> {
    let root = util::workspace_root();
    let apps = root.join("wasm-apps");
    let include = apps.join("include");
    for dir in [apps.clone(), apps.join("hostile")] {
        for source in c_sources(&dir)? {
            let output = source.with_extension("wasm");
            compile(&source, &output, &include)?;
        }
    }
    if !args.iter().any(|arg| arg == "--no-component") {
        util::build_workspace_binaries()?;
        util::run(
            util::workspace_binary("testudo-wasm-host")
                .arg("componentize")
                .arg(apps.join("sensor-reader.wasm"))
                .arg(apps.join("sensor-reader.component.wasm"))
                .arg("--wit")
                .arg(apps.join("wit")),
        )?;
    }
    Ok(())
}

fn c_sources(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut sources: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "c"))
        .collect();
    sources.sort();
    Ok(sources)
}

fn compile(source: &Path, output: &Path, include: &Path) -> anyhow::Result<()> {
    if Command::new(CLANG).arg("--version").output().is_err() {
        bail!("{CLANG} not found: install clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32 (cargo xtask deps)");
    }
    util::run(
        Command::new(CLANG)
            .args(CFLAGS)
            .arg("-I")
            .arg(include)
            .arg("-o")
            .arg(output)
            .arg(source),
    )
}

//! `cargo xtask apps`: builds the WebAssembly apps in `wasm-apps/` from C with Debian's clang
//! and wasi-libc (flags: `wasm-apps/cflags`), and the component variant of the sensor reader.
//!
//! Outputs (next to their sources, as the plan's `run.module` paths name them):
//! - `wasm-apps/<name>.wasm` for every `wasm-apps/*.c` (WASI preview 1 command modules),
//! - `wasm-apps/hostile/<name>.wasm` for every `wasm-apps/hostile/*.c`,
//! - `wasm-apps/sensor-reader.component.wasm` (preview 2 component, via
//!   `testudo-wasm-host componentize`: wit-component + wasmtime's preview 1 adapter).

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::util;

/// Builds every app; `--no-component` skips the component variant (no wasmtime build).
pub fn run(args: &[String]) -> anyhow::Result<()> {
    let root = util::workspace_root();
    let apps = root.join("wasm-apps");
    for dir in [apps.clone(), apps.join("hostile")] {
        for source in c_sources(&dir)? {
            let output = source.with_extension("wasm");
            compile(&source, &output)?;
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

fn compile(source: &Path, output: &Path) -> anyhow::Result<()> {
    eprintln!("+ {} {}", testudo_testkit::wasm::CLANG, source.display());
    testudo_testkit::wasm::compile_c_app(source, output, &[])?;
    Ok(())
}

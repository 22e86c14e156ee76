//! Precompiled WASM apps: each `P.wasm` in the image gets a `P.cwasm` next to it, compiled by
//! the image's own `testudo-wasm-host` (`testudo-wasm-host precompile --cpu-features F
//! IN.wasm OUT.cwasm`), so the compiled code matches the engine that loads it (wasmtime
//! version and settings) and assumes only the board's processor features (`board.cpu_features`),
//! not the build host's. The device still checks the header on load and compiles the app
//! itself when they differ.
//!
//! Compiling is the expensive per-app step of a build; it is cached under the app's hash and
//! the host binary's hash, so changing one app recompiles only that app.

use std::path::{Path, PathBuf};

use crate::error::{ImageError, Result};
use crate::tool::{path_arg, ToolCall, ToolRunner};

/// The host subcommand that compiles one app.
pub const PRECOMPILE_SUBCOMMAND: &str = "precompile";

/// The sidecar path of an app in the image: `a/b.wasm` -> `a/b.cwasm`.
pub fn sidecar_path(image_path: &str) -> String {
    let path = Path::new(image_path);
    path.with_extension("cwasm").to_string_lossy().into_owned()
}

/// Compiles `wasm` with `host` (the WASM host binary that goes into the image) into `out`,
/// for a processor with `cpu_features` (comma separated) beyond its architecture's baseline.
/// A host without the subcommand is named in the error.
pub fn precompile(
    tools: &dyn ToolRunner,
    host: &Path,
    module: &str,
    wasm: &Path,
    cpu_features: &str,
    out: &Path,
) -> Result<()> {
    let call = ToolCall::new(&host.to_string_lossy(), "precompiling a WASM app")
        .arg(PRECOMPILE_SUBCOMMAND)
        .arg(format!("--cpu-features={cpu_features}"))
        .arg(path_arg(wasm))
        .arg(path_arg(out));
    let fail = |detail: String| ImageError::Precompile {
        host: host.to_path_buf(),
        module: module.to_owned(),
        detail,
    };
    match tools.run(&call) {
        Ok(_) => {}
        Err(ImageError::ToolFailed { stderr, .. }) => {
            let missing = [
                "unrecognized subcommand",
                "unexpected argument",
                "applet not found",
            ]
            .iter()
            .any(|m| stderr.contains(m));
            return Err(fail(if missing {
                format!(
                    "this WASM host has no `{PRECOMPILE_SUBCOMMAND}` subcommand (build a current \
                     testudo-wasm-host: cargo build -p testudo-wasm-host): {}",
                    stderr.trim()
                )
            } else {
                stderr.trim().to_owned()
            }));
        }
        Err(ImageError::ToolMissing { .. }) => return Err(fail("it does not exist".into())),
        Err(ImageError::ToolStart { source, .. }) => {
            return Err(fail(format!("cannot run it: {source}")));
        }
        Err(other) => return Err(other),
    }
    if !out.is_file() {
        return Err(fail(format!(
            "it wrote no {}",
            PathBuf::from(out).display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tool::fake::RecordingTools;

    #[test]
    fn sidecar_replaces_the_extension() {
        assert_eq!(sidecar_path("wasm-apps/a.wasm"), "wasm-apps/a.cwasm");
        assert_eq!(sidecar_path("apps/b"), "apps/b.cwasm");
    }

    #[test]
    fn a_host_without_the_subcommand_is_named() {
        let tools = RecordingTools::new(|call| {
            Err(ImageError::ToolFailed {
                tool: call.program.clone(),
                step: call.step.clone(),
                status: "exit status: 2".into(),
                stderr: "error: unrecognized subcommand 'precompile'".into(),
            })
        });
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("testudo-wasm-host");
        let err = precompile(
            &tools,
            &host,
            "apps/a.wasm",
            &dir.path().join("a.wasm"),
            "sse3",
            &dir.path().join("a.cwasm"),
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.contains(&host.display().to_string()), "{err}");
        assert!(err.contains("no `precompile` subcommand"), "{err}");
        let call = &tools.calls()[0];
        assert_eq!(call.args[0], "precompile");
        assert_eq!(call.args[1], "--cpu-features=sse3");
    }
}

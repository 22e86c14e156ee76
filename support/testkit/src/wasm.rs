//! The WebAssembly apps of `wasm-apps/`, compiled from C with Debian's clang and wasi-libc.
//! `cargo xtask apps`, the tests and the benchmarks all compile through [`compile_c_app`], so
//! an app under test is built exactly as the one an image ships.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

/// The C compiler (Debian `clang-14`; with `lld-14`, `wasi-libc`, `libclang-rt-14-dev-wasm32`).
pub const CLANG: &str = "clang-14";

/// Flags for every app, one per line in `wasm-apps/cflags` (which the Nix build of the apps
/// reads too): wasm32-wasi, small, warnings are errors, stack first (a stack overflow traps
/// instead of overwriting data), no names (reproducible, small). The sysroot is Debian's
/// wasi-libc ([`SYSROOT`]).
pub fn cflags() -> impl Iterator<Item = &'static str> {
    include_str!("../../../wasm-apps/cflags")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
}

/// The wasi-libc sysroot (Debian's `wasi-libc` installs into /usr).
pub const SYSROOT: &str = "/usr";

/// The repository's `wasm-apps/` directory (C sources, `include/`, `wit/`).
pub fn apps_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../wasm-apps")
}

/// Compiling an app failed.
#[derive(Debug, thiserror::Error)]
pub enum WasmBuildError {
    /// The compiler did not start (not installed).
    #[error(
        "starting {CLANG} to compile {}: install clang-14 lld-14 wasi-libc \
         libclang-rt-14-dev-wasm32 (`cargo xtask deps` does)",
        source_file.display()
    )]
    StartCompiler {
        /// The app's C source.
        source_file: PathBuf,
        #[source]
        error: std::io::Error,
    },
    /// The compiler rejected the source.
    #[error("{CLANG} failed on {} ({status})", source_file.display())]
    Compile {
        /// The app's C source.
        source_file: PathBuf,
        /// How the compiler exited.
        status: ExitStatus,
    },
}

/// Compiles the C app `source_file` to `output` with [`cflags`] and `-D` for each of
/// `defines`, against the apps' shared headers (`wasm-apps/include`).
pub fn compile_c_app(
    source_file: &Path,
    output: &Path,
    defines: &[&str],
) -> Result<(), WasmBuildError> {
    let status = Command::new(CLANG)
        .args(cflags())
        .arg(format!("--sysroot={SYSROOT}"))
        .args(defines.iter().map(|define| format!("-D{define}")))
        .arg("-I")
        .arg(apps_dir().join("include"))
        .arg("-o")
        .arg(output)
        .arg(source_file)
        .status()
        .map_err(|error| WasmBuildError::StartCompiler {
            source_file: source_file.to_owned(),
            error,
        })?;
    if !status.success() {
        return Err(WasmBuildError::Compile {
            source_file: source_file.to_owned(),
            status,
        });
    }
    Ok(())
}

/// Compiles `wasm-apps/<name>.c` (e.g. `hello`, `hostile/spin`) into `out_dir`, naming the
/// output after the app (`/` becomes `_`); panics with the reason if it cannot (a test
/// fixture).
pub fn build_app(name: &str, out_dir: &Path, defines: &[&str]) -> PathBuf {
    let output = out_dir.join(format!(
        "{}{}.wasm",
        name.replace('/', "_"),
        defines.join("").replace(['=', '/'], "_")
    ));
    if let Err(error) = std::fs::create_dir_all(out_dir) {
        panic!("creating {}: {error}", out_dir.display());
    }
    let source = apps_dir().join(format!("{name}.c"));
    if let Err(error) = compile_c_app(&source, &output, defines) {
        panic!("{error}");
    }
    output
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_that_does_not_compile_is_named_in_the_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let source = dir.path().join("broken.c");
        std::fs::write(&source, "int main(void) { return undefined_name; }\n").expect("write");
        let error = compile_c_app(&source, &dir.path().join("broken.wasm"), &[])
            .expect_err("an undefined name does not compile");
        assert!(matches!(error, WasmBuildError::Compile { .. }), "{error}");
        assert!(error.to_string().contains("broken.c"), "{error}");
    }

    #[test]
    fn an_app_of_the_repository_compiles_to_a_wasm_module() {
        let dir = tempfile::tempdir().expect("temp dir");
        let module = build_app("hello", dir.path(), &[]);
        let bytes = std::fs::read(&module).expect("module written");
        assert_eq!(&bytes[..4], b"\0asm");
    }
}

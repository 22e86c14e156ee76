//! The Python interpreter that runs the project's Python peers (Microsoft's IoT Hub SDKs, the
//! PyPI wasmtime anchor). `cargo xtask deps` creates a virtual environment for them and every
//! cargo command `cargo xtask` runs names its interpreter in [`PYTHON_ENV`]; a stock Debian
//! `python3` refuses `pip install` outside such an environment (PEP 668).

use std::ffi::OsString;
use std::process::Command;

/// The environment variable naming the interpreter of the project's Python environment.
pub const PYTHON_ENV: &str = "TESTUDO_PYTHON";

/// The interpreter to run: [`PYTHON_ENV`] if set, else `python3` from PATH (a developer's own
/// environment when running `cargo test` directly).
pub fn interpreter() -> OsString {
    std::env::var_os(PYTHON_ENV).unwrap_or_else(|| OsString::from("python3"))
}

/// A command running [`interpreter`].
pub fn command() -> Command {
    Command::new(interpreter())
}

/// Fails naming what is missing unless [`interpreter`] can import every module in `modules`.
/// `packages` names the PyPI packages that provide them, for the message.
pub fn require_modules(modules: &[&str], packages: &str) -> Result<(), MissingPython> {
    let import = format!("import {}", modules.join(", "));
    match command().args(["-c", &import]).output() {
        Err(error) => Err(MissingPython {
            interpreter: interpreter(),
            detail: error.to_string(),
            packages: packages.to_owned(),
        }),
        Ok(output) if !output.status.success() => Err(MissingPython {
            interpreter: interpreter(),
            detail: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            packages: packages.to_owned(),
        }),
        Ok(_) => Ok(()),
    }
}

/// The project's Python environment lacks a module a test needs.
#[derive(Debug, thiserror::Error)]
#[error(
    "{} cannot import what this test needs: install PyPI {packages} into it (`cargo xtask deps` \
     creates the project's environment and sets {PYTHON_ENV}): {detail}",
    interpreter.to_string_lossy()
)]
pub struct MissingPython {
    /// The interpreter that was asked.
    pub interpreter: OsString,
    /// What it said (or why it did not start).
    pub detail: String,
    /// The PyPI packages to install.
    pub packages: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_module_nobody_has_is_reported_with_the_package_to_install() {
        let error = require_modules(&["testudo_no_such_module"], "no-such-package")
            .expect_err("no interpreter has this module");
        let message = error.to_string();
        assert!(message.contains("no-such-package"), "{message}");
        assert!(message.contains(PYTHON_ENV), "{message}");
    }
}

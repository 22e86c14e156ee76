//! Small helpers shared by tasks: running commands and locating the workspace.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

/// The workspace root (the parent of `xtask/`). Prefers the `CARGO_MANIFEST_DIR` that
/// `cargo run` sets at run time over the one compiled in, so a binary reused from a shared
/// target dir never points at another checkout.
pub fn workspace_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or(manifest_dir)
}

/// Runs `cmd` in the workspace root, echoing it first; fails if it exits non-zero.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    cmd.current_dir(workspace_root());
    eprintln!("+ {}", describe(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("starting `{}`", describe(cmd)))?;
    if !status.success() {
        bail!("`{}` failed with {status}", describe(cmd));
    }
    Ok(())
}

/// The files git tracks in the workspace that match `patterns` (git pathspecs), relative to
/// the workspace root.
pub fn tracked_files(patterns: &[&str]) -> anyhow::Result<Vec<String>> {
    let listing = Command::new("git")
        .args(["ls-files", "-z", "--"])
        .args(patterns)
        .current_dir(workspace_root())
        .output()
        .context("listing tracked files with git")?;
    if !listing.status.success() {
        bail!(
            "git ls-files failed: {}",
            String::from_utf8_lossy(&listing.stderr)
        );
    }
    Ok(listing
        .stdout
        .split(|b| *b == 0)
        .filter(|f| !f.is_empty())
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect())
}

/// The cargo target directory (`$CARGO_TARGET_DIR`, else `target/` in the workspace).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Builds every binary of the workspace with the same feature set `cargo test --workspace`
/// uses (dev-dependencies included), so tests, demo and apps share one set of artifacts
/// instead of recompiling wasmtime and Nickel per package selection.
pub fn build_workspace_binaries() -> anyhow::Result<()> {
    run(cargo().args(["build", "--quiet", "--workspace", "--bins", "--tests"]))
}

/// A workspace binary built by [`build_workspace_binaries`].
pub fn workspace_binary(name: &str) -> Command {
    Command::new(target_dir().join("debug").join(name))
}

/// The project's Python virtual environment for test peers and benchmark anchors: beside the
/// build outputs, so a clean clone with a kept target dir reuses it.
pub fn python_venv() -> PathBuf {
    target_dir().join("python-venv")
}

/// The interpreter of [`python_venv`].
pub fn venv_python() -> PathBuf {
    python_venv().join("bin").join("python3")
}

/// `cargo` as invoked by the current cargo (respects `$CARGO`), with `TESTUDO_PYTHON` naming
/// the project's Python environment for the tests and benchmarks it runs.
pub fn cargo() -> Command {
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
    cargo.env(testudo_testkit::python::PYTHON_ENV, venv_python());
    cargo
}

fn describe(cmd: &Command) -> String {
    let mut text = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

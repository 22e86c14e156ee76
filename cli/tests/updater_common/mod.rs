//! Helpers shared by the `updater_*` CLI tests: running `testudo` and the real tools, with a
//! clear failure naming a missing tool.
#![allow(dead_code, clippy::unwrap_used)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `testudo ARGS...`.
pub fn testudo(args: &[&dyn AsRef<OsStr>]) -> Output {
    testudo_command(args).output().unwrap()
}

/// `testudo ARGS...`, not yet run (to add environment variables).
pub fn testudo_command(args: &[&dyn AsRef<OsStr>]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_testudo"));
    for arg in args {
        command.arg(arg);
    }
    command
}

/// Asserts the command succeeded; returns its stdout.
pub fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs `program ARGS...` (from Debian package `package`), failing the test with a message
/// naming both when it is not installed (`cargo xtask deps` installs it).
pub fn tool(program: &str, package: &str, args: &[&dyn AsRef<OsStr>]) -> Output {
    let mut command = Command::new(program);
    for arg in args {
        command.arg(arg);
    }
    command.output().unwrap_or_else(|e| {
        panic!(
            "`{program}` is required by this test (Debian package `{package}`; \
             `cargo xtask deps` installs it): {e}"
        )
    })
}

/// `grub-editenv FILE ARGS...`; asserts success and returns stdout.
pub fn editenv(file: &Path, args: &[&str]) -> String {
    let mut all: Vec<&dyn AsRef<OsStr>> = vec![&file];
    for arg in args {
        all.push(arg);
    }
    ok(&tool("grub-editenv", "grub-common", &all))
}

/// `testudo keys init DIR`; returns its stdout.
pub fn keys_init(dir: &Path) -> String {
    ok(&testudo(&[&"keys", &"init", &dir]))
}

/// `testudo bundle create` of `image` for slot class rootfs, signed with the development
/// keys in `keys`, written to `out`.
pub fn bundle_create(keys: &Path, compatible: &str, version: &str, image: &Path, out: &Path) {
    bundle_create_as(keys, "verity", compatible, version, image, out);
}

/// [`bundle_create`] in bundle format `format`; returns what it printed.
pub fn bundle_create_as(
    keys: &Path,
    format: &str,
    compatible: &str,
    version: &str,
    image: &Path,
    out: &Path,
) -> String {
    let image_arg = format!("rootfs={}", image.display());
    ok(&testudo(&[
        &"bundle",
        &"create",
        &"--format",
        &format,
        &"--compatible",
        &compatible,
        &"--version",
        &version,
        &"--image",
        &image_arg,
        &"--cert",
        &keys.join("signing.pem"),
        &"--key",
        &keys.join("signing.key"),
        &"-o",
        &out,
    ]))
}

/// The keyring (`ca.pem`) of development keys in `keys`.
pub fn keyring(keys: &Path) -> PathBuf {
    keys.join("ca.pem")
}

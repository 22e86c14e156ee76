#![cfg(feature = "config")]
//! Promise: `testudo check` exits 0 with a one-line summary on the gateway, and exits 1 with
//! located errors — never a panic or backtrace — on invalid or unusable input. Output into a
//! pipe nobody reads any more (`testudo … | head`) ends it quietly by SIGPIPE, as `cat`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn check(config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_testudo"))
        .arg("check")
        .arg(config)
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run testudo")
}

fn assert_clean_failure(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("stack backtrace"), "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    stderr
}

#[test]
fn gateway_passes_with_a_one_line_summary() {
    let output = check(&repo().join("system-config/examples/gateway.ncl"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.contains("ok: system gateway 0.1.0 on qemu-x86_64, 9 components"),
        "{stdout}"
    );
}

#[test]
fn every_invalid_example_fails_with_a_located_error() {
    let dir = repo().join("system-config/examples/invalid");
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    assert!(entries.len() >= 15);
    for path in entries {
        let stderr = assert_clean_failure(&check(&path));
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("nickel-") {
            // file:line:col of the offending value in the example itself.
            let first = stderr.lines().next().unwrap();
            let located = first
                .strip_prefix("error: ")
                .and_then(|rest| rest.split_once(": "))
                .map(|(place, _)| place.to_owned())
                .unwrap_or_default();
            let parts: Vec<&str> = located.rsplitn(3, ':').collect();
            assert_eq!(parts.len(), 3, "{name}: {first}");
            assert!(parts[2].ends_with(&name), "{name}: {first}");
            assert!(
                parts[1].parse::<u32>().is_ok() && parts[0].parse::<u32>().is_ok(),
                "{first}"
            );
        }
    }
}

#[test]
fn graph_errors_name_component_and_capability() {
    let stderr = assert_clean_failure(&check(
        &repo().join("system-config/examples/invalid/unknown-capability.ncl"),
    ));
    assert!(
        stderr.contains(
            "error: components.app.uses.log: component `log` provides no capability `logs`"
        ),
        "{stderr}"
    );
}

#[test]
fn missing_empty_unreadable_and_binary_files_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.ncl");
    std::fs::write(&empty, "").unwrap();
    let binary = dir.path().join("binary.ncl");
    std::fs::write(&binary, [0u8, 159, 146, 150]).unwrap();
    let prose = dir.path().join("prose.ncl");
    std::fs::write(&prose, "hello world, this is { not nickel").unwrap();
    let cases = [
        (
            dir.path().join("missing.ncl"),
            "cannot read the config: No such file or directory",
        ),
        (dir.path().to_path_buf(), "cannot read the config"),
        (empty, "the config file is empty"),
        (binary, "not a Nickel file"),
        (prose, "prose.ncl:1:"),
    ];
    for (path, expected) in cases {
        let stderr = assert_clean_failure(&check(&path));
        assert!(stderr.contains(expected), "{}: {stderr}", path.display());
    }
}

#[test]
fn output_into_a_closed_pipe_ends_quietly_by_sigpipe() {
    use std::os::unix::process::ExitStatusExt;
    let (reader, writer) = std::io::pipe().expect("pipe");
    // The reading end is closed before testudo writes: its first line meets EPIPE.
    drop(reader);
    let output = Command::new(env!("CARGO_BIN_EXE_testudo"))
        .arg("check")
        .arg(repo().join("system-config/examples/gateway.ncl"))
        .env("RUST_BACKTRACE", "1")
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run testudo");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        output.status.signal(),
        Some(13),
        "{:?}: {stderr}",
        output.status
    );
}

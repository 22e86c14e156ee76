//! Promise: `testudo app precompile IN.wasm OUT.cwasm` writes the compiled form with the
//! device host's engine settings (so `testudo-wasm-host` can load it), for this machine or
//! for a board's processor features (`--cpu-features`, what images use), and a bad module or
//! an unknown feature is one clear line with nothing written.
#![cfg(feature = "wasm")]
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

/// `testudo app precompile ARGS.. INPUT OUTPUT`.
fn precompile(args: &[&str], input: &Path, output: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_testudo"))
        .args(["app", "precompile"])
        .args(args)
        .arg(input)
        .arg(output)
        .output()
        .unwrap()
}

/// Whether the device host's engine (this machine, native) loads `cwasm`.
fn loads_in_the_host(cwasm: &Path) {
    let host =
        testudo_wasm_host::HostEngine::new(&testudo_wasm_host::EngineOptions::default()).unwrap();
    let loaded = testudo_wasm_host::cache::load_cached(
        host.engine(),
        testudo_wasm_host::AppKind::Module,
        cwasm,
    );
    assert!(loaded.is_ok(), "{loaded:?}");
}

/// Asserts `out` failed with one line containing `expected` and `not_written` does not exist.
fn refused(out: &Output, expected: &str, not_written: &Path) {
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(said.lines().count(), 1, "{said}");
    assert!(said.contains(expected), "{said}");
    assert!(!not_written.exists());
}

#[test]
fn app_precompile_writes_a_loadable_cwasm_or_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("f.wat");
    let output = dir.path().join("out/f.cwasm");
    std::fs::write(&input, "(module (func (export \"_start\")))").unwrap();
    let made = precompile(&[], &input, &output);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    loads_in_the_host(&output);

    // For a board: only the named features (QEMU's default CPU model). Loads here too (this
    // machine has them), and differs from the native build (which assumes all of this
    // machine's features).
    let for_board = dir.path().join("out/f-board.cwasm");
    let made = precompile(&["--cpu-features", "sse3,cmpxchg16b"], &input, &for_board);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    loads_in_the_host(&for_board);
    assert_ne!(
        std::fs::read(&for_board).unwrap(),
        std::fs::read(&output).unwrap(),
        "--cpu-features made no difference"
    );
    let unknown = dir.path().join("unknown.cwasm");
    refused(
        &precompile(&["--cpu-features", "sse3,warp-drive"], &input, &unknown),
        "unknown CPU feature `warp-drive`",
        &unknown,
    );

    let bad = dir.path().join("bad.wasm");
    std::fs::write(&bad, b"\0asm\x01\0\0\0\x01\x05garbage").unwrap();
    let bad_out = dir.path().join("bad.cwasm");
    let out = precompile(&[], &bad, &bad_out);
    refused(&out, "error: compiling app ", &bad_out);
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: compiling app "));
}

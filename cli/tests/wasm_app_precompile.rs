//! Promise: `testudo app precompile IN.wasm OUT.cwasm` writes the compiled form with the
//! device host's engine settings (so `testudo-wasm-host` can load it), for this machine or
//! for a board's processor features (`--cpu-features`, what images use), and a bad module or
//! an unknown feature is one clear line with nothing written.
#![cfg(feature = "wasm")]
#![allow(clippy::unwrap_used)]

use std::process::Command;

#[test]
fn app_precompile_writes_a_loadable_cwasm_or_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("f.wat");
    let output = dir.path().join("out/f.cwasm");
    std::fs::write(&input, "(module (func (export \"_start\")))").unwrap();
    let made = Command::new(env!("CARGO_BIN_EXE_testudo"))
        .args(["app", "precompile"])
        .arg(&input)
        .arg(&output)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let host =
        testudo_wasm_host::HostEngine::new(&testudo_wasm_host::EngineOptions::default()).unwrap();
    let loaded = testudo_wasm_host::cache::load_cached(
        host.engine(),
        testudo_wasm_host::AppKind::Module,
        &output,
    );
    assert!(loaded.is_ok(), "{loaded:?}");

    // For a board: only the named features (QEMU's default CPU model). Loads here too (this
    // machine has them), and differs from the native build (which assumes all of this
    // machine's features).
    let for_board = dir.path().join("out/f-board.cwasm");
    let made = Command::new(env!("CARGO_BIN_EXE_testudo"))
        .args(["app", "precompile", "--cpu-features", "sse3,cmpxchg16b"])
        .arg(&input)
        .arg(&for_board)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let loaded = testudo_wasm_host::cache::load_cached(
        host.engine(),
        testudo_wasm_host::AppKind::Module,
        &for_board,
    );
    assert!(loaded.is_ok(), "{loaded:?}");
    assert_ne!(
        std::fs::read(&for_board).unwrap(),
        std::fs::read(&output).unwrap(),
        "--cpu-features made no difference"
    );
    let unknown = Command::new(env!("CARGO_BIN_EXE_testudo"))
        .args(["app", "precompile", "--cpu-features", "sse3,warp-drive"])
        .arg(&input)
        .arg(dir.path().join("unknown.cwasm"))
        .output()
        .unwrap();
    assert!(!unknown.status.success());
    let said = String::from_utf8_lossy(&unknown.stderr);
    assert_eq!(said.lines().count(), 1, "{said}");
    assert!(said.contains("unknown CPU feature `warp-drive`"), "{said}");
    assert!(!dir.path().join("unknown.cwasm").exists());

    let bad = dir.path().join("bad.wasm");
    std::fs::write(&bad, b"\0asm\x01\0\0\0\x01\x05garbage").unwrap();
    let refused = Command::new(env!("CARGO_BIN_EXE_testudo"))
        .args(["app", "precompile"])
        .arg(&bad)
        .arg(dir.path().join("bad.cwasm"))
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(said.lines().count(), 1, "{said}");
    assert!(said.starts_with("error: compiling app "), "{said}");
    assert!(!dir.path().join("bad.cwasm").exists());
}

//! Promise: `testudo app precompile IN.wasm OUT.cwasm` writes the compiled form with the
//! device host's engine settings (so `testudo-wasm-host` can load it), and a bad module is
//! one clear line with nothing written.
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
    let engine = testudo_wasm_host::precompile::precompile_engine().unwrap();
    let loaded =
        testudo_wasm_host::cache::load_cached(&engine, testudo_wasm_host::AppKind::Module, &output);
    assert!(loaded.is_ok(), "{loaded:?}");

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

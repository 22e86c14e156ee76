#![cfg(feature = "config")]
//! Promise: `testudo plan` writes the canonical plan: byte-identical across runs and working
//! directories, equal to the golden file, with its sha256 printed.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repository root exists")
}

#[test]
fn plan_is_byte_identical_across_runs_and_directories_and_matches_golden() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.json");
    let second = dir.path().join("second.json");
    let out = Command::new(env!("CARGO_BIN_EXE_testudo"))
        .args(["plan", "system-config/examples/gateway.ncl", "-o"])
        .arg(&first)
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    // Second run: absolute config path, another working directory, plan on stdout.
    let out2 = Command::new(env!("CARGO_BIN_EXE_testudo"))
        .arg("plan")
        .arg(repo().join("system-config/examples/gateway.ncl"))
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out2.status.success());
    std::fs::write(&second, &out2.stdout).unwrap();

    let a = std::fs::read(&first).unwrap();
    let b = std::fs::read(&second).unwrap();
    assert_eq!(a, b);
    let golden =
        std::fs::read(repo().join("system-config/tests/golden/gateway.plan.json")).unwrap();
    assert_eq!(a, golden);

    let plan = testudo_config::Plan::from_bytes(&a).unwrap();
    let hash = plan.content_hash().unwrap();
    assert!(stderr.contains(&format!("sha256 {hash}")), "{stderr}");
}

#[test]
fn plan_of_an_invalid_config_fails_without_output() {
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("plan.json");
    let out = Command::new(env!("CARGO_BIN_EXE_testudo"))
        .args([
            "plan",
            "system-config/examples/invalid/start-cycle.ncl",
            "-o",
        ])
        .arg(&out_file)
        .current_dir(repo())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("start-dependency cycle: a -> b -> a"));
    assert!(!out_file.exists());
}

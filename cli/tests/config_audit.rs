#![cfg(feature = "config")]
//! Promise: `testudo audit` prints per-component granted vs. total, trusted base and the
//! reduction, as a table or as JSON.

use std::path::{Path, PathBuf};
use std::process::Command;

fn gateway() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../system-config/examples/gateway.ncl")
}

#[test]
fn json_has_figures_for_every_component_and_slot() {
    let out = Command::new(env!("CARGO_BIN_EXE_testudo"))
        .arg("audit")
        .arg(gateway())
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let audit: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let total = audit["total"].as_u64().unwrap();
    assert_eq!(total, 11);
    let subjects = audit["subjects"].as_array().unwrap();
    assert_eq!(subjects.len(), 9);
    let agent = subjects.iter().find(|s| s["name"] == "agent").unwrap();
    assert_eq!(agent["granted_count"], 4);
    let reduction = agent["reduction"].as_f64().unwrap();
    assert!((reduction - (1.0 - 4.0 / 11.0)).abs() < 1e-9);
    assert_eq!(
        agent["trusted_base"],
        serde_json::json!(["log", "net", "storage", "tpm"])
    );
}

#[test]
fn table_lists_every_component() {
    let out = Command::new(env!("CARGO_BIN_EXE_testudo"))
        .arg("audit")
        .arg(gateway())
        .output()
        .unwrap();
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("component"), "{table}");
    for name in [
        "agent",
        "forwarder",
        "log",
        "net",
        "sensor",
        "sensor-reader",
        "storage",
        "tpm",
        "slot:cloud-app",
    ] {
        assert!(
            table.lines().any(|l| l.starts_with(name)),
            "{name} missing:\n{table}"
        );
    }
    assert!(
        table.contains("11 authorities in system gateway"),
        "{table}"
    );
}

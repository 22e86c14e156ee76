#![cfg(feature = "config")]
//! Promise: `testudo audit` prints per-component granted vs. total, trusted base, the
//! reduction and the sandbox role the plan assigns, as a table or as JSON.

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
    assert_eq!(
        total, 18,
        "15 configured authorities (the ESP and both rootfs partitions among them) + init.status, init.power and init.deployment"
    );
    let subjects = audit["subjects"].as_array().unwrap();
    assert_eq!(subjects.len(), 10);
    let agent = subjects.iter().find(|s| s["name"] == "agent").unwrap();
    assert_eq!(
        agent["granted_count"], 7,
        "log, net, storage, tpm, the updater's update and init's power and deployment"
    );
    let reduction = agent["reduction"].as_f64().unwrap();
    assert!((reduction - (1.0 - 7.0 / 18.0)).abs() < 1e-9);
    assert_eq!(
        agent["trusted_base"],
        serde_json::json!(["init", "log", "net", "storage", "tpm", "updater"])
    );
    let roles: Vec<(String, String)> = subjects
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_owned(),
                s["role"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("agent", "agent"),
        ("forwarder", "wasm_host"),
        ("log", "service"),
        ("net", "net_driver"),
        ("sensor", "driver"),
        ("sensor-reader", "wasm_host"),
        ("slot:cloud-app", "wasm_host"),
        ("storage", "storage_driver"),
        ("tpm", "tpm_driver"),
        ("updater", "updater"),
    ];
    assert_eq!(
        roles,
        expected
            .iter()
            .map(|(n, r)| (n.to_string(), r.to_string()))
            .collect::<Vec<_>>()
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
        "updater",
        "slot:cloud-app",
    ] {
        assert!(
            table.lines().any(|l| l.starts_with(name)),
            "{name} missing:\n{table}"
        );
    }
    assert!(
        table.contains("18 authorities in system gateway"),
        "{table}"
    );
}

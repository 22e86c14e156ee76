//! Promise: `testudo vm run --expect` exits non-zero when the console does not match in time,
//! says so, and leaves no QEMU or swtpm process behind.
#![cfg(feature = "images")]
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn plan() -> serde_json::Value {
    let limits = serde_json::json!({
        "memory_bytes": 33554432, "cpu_percent": 50, "restart": "always", "max_tasks": 8, "cpu_time_ms": 0
    });
    serde_json::json!({
        "format": testudo_plan::PLAN_FORMAT_VERSION, "name": "timeout", "version": "1.0.0", "compatible": "testudo-timeout",
        "board": {
            "name": "qemu-x86_64", "arch": "x86_64", "memory_bytes": 268435456,
            "kernel": "/vmlinuz", "bootloader": "grub", "console": "ttyS0",
            "partitions": {"esp_bytes": 33554432, "rootfs_bytes": 67108864, "data_bytes": 16777216}
        },
        "components": {
            "log": {
                "kind": "driver", "role": "driver", "run": {"type": "binary", "name": "testudo-log"},
                "devices": {"nodes": [], "pci": [], "network": false},
                "provides": {}, "uses": {}, "limits": limits,
                "after": [], "env": {}, "args": []
            }
        },
        "app_slots": {},
        "update": {"boot_tries": 3, "allow_downgrade": false, "bundle_format": "verity"},
        "cloud": {"hub": "hub.example", "device_id": "d", "identity": "sas"}
    })
}

#[test]
fn unmatched_expectation_times_out_and_stops_the_vm() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    for name in ["testudo-init", "testudo-log"] {
        std::fs::copy("/usr/bin/busybox", dir.join("bin").join(name))
            .expect("busybox-static is installed");
    }
    std::fs::write(dir.join("plan.json"), serde_json::to_vec(&plan()).unwrap()).unwrap();
    let exe = env!("CARGO_BIN_EXE_testudo");
    let built = Command::new(exe)
        .current_dir(dir)
        .args([
            "build",
            "plan.json",
            "-o",
            "out",
            "--cache",
            "cache",
            "--source-root",
            ".",
            "--bin-dir",
            "bin",
            "--plain",
        ])
        .env("XDG_DATA_HOME", dir.join("keys-home"))
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let disk = dir.join("out/disk.img");
    // A state directory of the test's own: QEMU's command line names it (the firmware
    // variables) and so does swtpm's (`--tpmstate dir=<state>/tpm`), so a search for it
    // finds either one left behind.
    let state = dir.join("vm-state");
    let run = Command::new(exe)
        .args(["vm", "run"])
        .arg(&disk)
        .arg("--state")
        .arg(&state)
        .args([
            "--expect",
            "this line never appears",
            "--timeout",
            "6",
            "--quiet",
        ])
        .output()
        .unwrap();
    assert!(!run.status.success(), "a timeout must fail");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("did not match") && stderr.contains("within 6 s"),
        "{stderr}"
    );
    assert!(
        state.join("tpm").is_dir(),
        "swtpm was given {} for its state",
        state.join("tpm").display()
    );
    for (what, pattern) in [
        ("QEMU", disk.to_str().unwrap().to_owned()),
        ("swtpm", format!("dir={}", state.join("tpm").display())),
        ("QEMU or swtpm", state.to_str().unwrap().to_owned()),
    ] {
        let left = Command::new("pgrep")
            .args(["-f", "--", &pattern])
            .output()
            .unwrap();
        assert!(
            left.stdout.is_empty(),
            "{what} still running ({pattern}): {}",
            String::from_utf8_lossy(&left.stdout)
        );
    }
}

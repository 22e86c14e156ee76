//! Promise: two builds of the same inputs in different directories, with different umask,
//! time zone, locale, home directory and wall clock, give bit-identical rootfs.img, disk.img,
//! update.raucb (signature included: no signing time, RFC 6979 ECDSA) and manifest.json.
//!
//! The WASM host is the workspace's real `testudo-wasm-host` (its `precompile` output goes
//! into the image, so compiled apps are covered too); the other binaries are stand-ins
//! (busybox under the plan's names): this checks the builder, not the binaries.
#![cfg(feature = "images")]
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

fn plan() -> serde_json::Value {
    let limits = serde_json::json!({
        "memory_bytes": 33554432, "cpu_percent": 50, "restart": "always", "max_tasks": 8, "cpu_time_ms": 0
    });
    let component = |kind: &str, run: serde_json::Value| {
        let role = if kind == "wasm" {
            "wasm_host"
        } else {
            "net_driver"
        };
        serde_json::json!({
            "kind": kind, "role": role, "run": run,
            "devices": {"nodes": [], "pci": [], "network": true},
            "provides": {}, "uses": {}, "limits": limits.clone(),
            "after": [], "env": {}, "args": []
        })
    };
    serde_json::json!({
        "format": testudo_plan::PLAN_FORMAT_VERSION, "name": "repro", "version": "1.2.3", "compatible": "testudo-repro",
        "board": {
            "name": "qemu-x86_64", "arch": "x86_64", "memory_bytes": 536870912,
            "kernel": "/vmlinuz", "bootloader": "grub", "console": "ttyS0",
            "partitions": {"esp_bytes": 33554432, "rootfs_bytes": 67108864, "data_bytes": 16777216}
        },
        "components": {
            "log": component("driver", serde_json::json!({"type": "binary", "name": "testudo-log"})),
            "app": component("wasm", serde_json::json!({"type": "wasm", "module": "apps/app.wasm"}))
        },
        "app_slots": {},
        "update": {"boot_tries": 3, "allow_downgrade": false, "bundle_format": "verity"},
        "cloud": {"hub": "hub.example", "device_id": "d", "identity": "sas"}
    })
}

/// Inputs at `dir` (a copy per build, so even the input paths differ).
fn inputs(dir: &Path, wasm_host: &Path) {
    std::fs::create_dir_all(dir.join("src/apps")).unwrap();
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::write(dir.join("src/apps/app.wasm"), b"\0asm\x01\0\0\0").unwrap();
    for name in ["testudo-init", "testudo-log"] {
        std::fs::copy("/usr/bin/busybox", dir.join("bin").join(name))
            .expect("busybox-static is installed");
    }
    // A link, not a copy: the debug host is large; the builder reads through it.
    std::os::unix::fs::symlink(wasm_host, dir.join("bin/testudo-wasm-host")).unwrap();
    std::fs::write(
        dir.join("plan.json"),
        serde_json::to_vec_pretty(&plan()).unwrap(),
    )
    .unwrap();
}

fn build(dir: &Path, umask: &str, tz: &str, data_home: &Path) {
    let exe = env!("CARGO_BIN_EXE_testudo");
    let script = format!(
        "umask {umask} && cd {d} && exec {exe} build plan.json -o deeper/out --cache cache --source-root src --bin-dir bin --plain",
        d = dir.display()
    );
    let out = Command::new("sh")
        .args(["-c", &script])
        .env("TZ", tz)
        .env("LC_ALL", if tz == "UTC" { "C" } else { "C.UTF-8" })
        .env("HOME", dir)
        .env("XDG_DATA_HOME", data_home)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "build in {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The workspace's real WASM host, next to `testudo` (as `cargo test --workspace` builds it).
fn wasm_host() -> std::path::PathBuf {
    let host = Path::new(env!("CARGO_BIN_EXE_testudo"))
        .parent()
        .unwrap()
        .join("testudo-wasm-host");
    assert!(
        host.is_file(),
        "{} not found: build it first (cargo build -p testudo-wasm-host)",
        host.display()
    );
    host
}

#[test]
fn two_builds_in_different_environments_are_bit_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let data_home = tmp.path().join("keys-home");
    let one = tmp.path().join("one");
    let two = tmp.path().join("a-much/longer/second-directory");
    let host = wasm_host();
    inputs(&one, &host);
    inputs(&two, &host);
    build(&one, "022", "UTC", &data_home);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    build(&two, "077", "Pacific/Chatham", &data_home);
    for name in ["rootfs.img", "disk.img", "update.raucb", "manifest.json"] {
        let a = std::fs::read(one.join("deeper/out").join(name)).unwrap();
        let b = std::fs::read(two.join("deeper/out").join(name)).unwrap();
        assert!(a == b, "{name} differs between the two builds");
    }
    // The manifest carries no host path.
    let manifest = std::fs::read_to_string(one.join("deeper/out/manifest.json")).unwrap();
    assert!(
        !manifest.contains(tmp.path().to_str().unwrap()),
        "host path leaked into the manifest"
    );
}

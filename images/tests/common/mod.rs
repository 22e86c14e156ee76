//! Shared setup for the image builder's integration tests: a small plan, a source tree with
//! one WASM app, a binary directory and keys, all in a fresh temporary directory.
//!
//! The WASM host is the workspace's real `testudo-wasm-host` (it precompiles the app into the
//! image's `.cwasm`); the other binaries are stand-ins (busybox copied under the names the
//! plan asks for, plus a dynamically linked `/bin/true` to exercise the shared-library
//! closure): these tests check what the builder produces, not what those binaries do. The VM
//! tests in `cli/tests/` boot the real ones.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use testudo_config::Plan;
use testudo_images::{BuildRequest, HostPaths, ProgressMode};

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub request: BuildRequest,
}

pub fn plan_json() -> serde_json::Value {
    let limits = serde_json::json!({
        "memory_bytes": 33554432, "cpu_percent": 50, "restart": "always", "max_tasks": 8, "cpu_time_ms": 0
    });
    let component = |kind: &str, run: serde_json::Value, network: bool| {
        let role = match (kind, network) {
            ("wasm", _) => "wasm_host",
            (_, true) => "net_driver",
            (other, false) => other,
        };
        serde_json::json!({
            "kind": kind, "role": role, "run": run,
            "devices": {"nodes": [], "pci": [], "network": network},
            "provides": {}, "uses": {}, "limits": limits.clone(),
            "after": [], "env": {}, "args": []
        })
    };
    serde_json::json!({
        "format": testudo_plan::PLAN_FORMAT_VERSION,
        "name": "imgtest",
        "version": "1.0.0",
        "compatible": "testudo-imgtest-qemu-x86_64",
        "board": {
            "name": "qemu-x86_64", "arch": "x86_64", "cpu_features": ["sse3", "cmpxchg16b"],
            "memory_bytes": 536870912,
            "kernel": "/vmlinuz", "bootloader": "grub", "console": "ttyS0",
            "partitions": {"esp_bytes": 33554432, "rootfs_bytes": 134217728, "data_bytes": 33554432},
            "modules": {"always": [], "network": ["virtio_net"], "tpm": []}
        },
        "components": {
            "log": component("driver", serde_json::json!({"type": "binary", "name": "testudo-log"}), false),
            "net": component("driver", serde_json::json!({"type": "binary", "name": "testudo-net"}), true),
            "app": component("wasm", serde_json::json!({"type": "wasm", "module": "apps/app.wasm"}), false)
        },
        "app_slots": {},
        "update": {"boot_tries": 3, "allow_downgrade": false, "bundle_format": "verity"},
        "cloud": {"hub": "hub.example", "device_id": "dev1", "identity": "sas"}
    })
}

/// A minimal valid WebAssembly module, varied by `tag` (a custom section).
pub fn wasm_module(tag: &str) -> Vec<u8> {
    let mut bytes = b"\0asm\x01\0\0\0".to_vec();
    let name = b"tag";
    let payload_len = 1 + name.len() + tag.len();
    bytes.push(0); // custom section
    bytes.push(payload_len as u8);
    bytes.push(name.len() as u8);
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(tag.as_bytes());
    bytes
}

/// Keys shared by every test in this process (RSA/EC generation is the slow part).
pub fn keys_dir() -> PathBuf {
    static KEYS: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("testudo-images-test-keys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        testudo_images::keys::ensure_dev_keys(&dir).expect("dev keys");
        dir
    })
    .clone()
}

/// The workspace's real `testudo-wasm-host`: from `TESTUDO_IMAGE_BIN_DIRS` (colon-separated)
/// if set, else from the cargo target directory this test runs from (`<target>/debug/deps/`
/// holds the test, `<target>/debug/` the workspace binaries that `cargo test --workspace`
/// and `cargo xtask test` build first).
pub fn wasm_host() -> PathBuf {
    const HOST: &str = "testudo-wasm-host";
    let dirs: Vec<PathBuf> = match std::env::var("TESTUDO_IMAGE_BIN_DIRS") {
        Ok(list) => list.split(':').map(PathBuf::from).collect(),
        Err(_) => {
            let exe = std::env::current_exe().expect("test executable path");
            exe.parent()
                .and_then(Path::parent)
                .map(Path::to_path_buf)
                .into_iter()
                .collect()
        }
    };
    dirs.iter()
        .map(|dir| dir.join(HOST))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{HOST} not found in {dirs:?}: the image builder's tests precompile apps with \
                 the real WASM host; build it first (cargo build -p testudo-wasm-host, with \
                 the same CARGO_TARGET_DIR)"
            )
        })
}

pub fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let source = root.join("src");
    std::fs::create_dir_all(source.join("apps")).expect("mkdir");
    std::fs::write(source.join("apps/app.wasm"), wasm_module("v1")).expect("write app");
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir bin");
    for name in ["testudo-init", "testudo-log"] {
        std::fs::copy("/usr/bin/busybox", bin.join(name)).expect("busybox-static is installed");
    }
    // A link, not a copy: the debug host is large; the builder reads through it.
    std::os::unix::fs::symlink(wasm_host(), bin.join("testudo-wasm-host")).expect("link host");
    std::fs::copy("/bin/true", bin.join("testudo-net")).expect("copy true");
    let plan: Plan = serde_json::from_value(plan_json()).expect("plan fixture parses");
    let keys = testudo_images::keys::open_keys(&keys_dir()).expect("keys");
    let request = BuildRequest {
        plan,
        source_root: source,
        out_dir: root.join("out"),
        keys,
        bin_dirs: vec![bin],
        cache_dir: root.join("cache"),
        source_date_epoch: Some("1700000000".into()),
        config_file: None,
        progress: ProgressMode::Quiet,
        host: HostPaths::default(),
    };
    Fixture { dir, request }
}

pub fn run(program: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} must be installed: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

//! Promise: the gateway example builds, boots under TCG through GRUB into slot A and reaches
//! testudo-init's ready line; after the update bundle is installed into slot B and the
//! grubenv makes B primary (as RAUC's install does), the next boot runs slot B. testudo-init
//! mounts the data partition itself, and the WASM hosts run the image's precompiled apps
//! (compiled for the board's CPU features, which QEMU's default CPU model has).
//!
//! Needs the workspace's binaries next to `testudo` (as `cargo test --workspace` builds them)
//! or in the directories named by `TESTUDO_IMAGE_BIN_DIRS` (colon-separated).
#![cfg(feature = "images")]
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BINARIES: &[&str] = &[
    "testudo-init",
    "testudo-log",
    "testudo-storage",
    "testudo-tpm",
    "testudo-net",
    "testudo-sensor",
    "testudo-agent",
    "testudo-wasm-host",
];

fn bin_dirs() -> Vec<PathBuf> {
    let dirs: Vec<PathBuf> = match std::env::var("TESTUDO_IMAGE_BIN_DIRS") {
        Ok(list) => list.split(':').map(PathBuf::from).collect(),
        Err(_) => vec![Path::new(env!("CARGO_BIN_EXE_testudo"))
            .parent()
            .unwrap()
            .to_path_buf()],
    };
    for name in BINARIES {
        assert!(
            dirs.iter().any(|d| d.join(name).is_file()),
            "{name} not found in {dirs:?}: build the workspace first (cargo build --workspace)"
        );
    }
    dirs
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} is needed: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn testudo(args: &[&str], data_home: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_testudo"))
        .args(args)
        .env("XDG_DATA_HOME", data_home)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap()
}

fn first_sector(disk: &str, partition: u32) -> u64 {
    let info = run("sgdisk", &["-i", &partition.to_string(), disk]);
    let line = info
        .lines()
        .find(|l| l.starts_with("First sector:"))
        .unwrap();
    line.split_whitespace().nth(2).unwrap().parse().unwrap()
}

fn boot(disk: &str, data_home: &Path, expect: &str) -> String {
    let out = testudo(
        &["vm", "run", disk, "--expect", expect, "--timeout", "240"],
        data_home,
    );
    let console = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "boot did not reach ready: {}\n{console}",
        String::from_utf8_lossy(&out.stderr)
    );
    console
}

#[test]
fn gateway_boots_slot_a_then_slot_b_after_installing_the_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    // The gateway's WASM apps, compiled as `cargo xtask apps` does, into a source root of our own.
    let apps = root.join("src/wasm-apps");
    std::fs::create_dir_all(&apps).unwrap();
    for app in ["sensor-reader", "forwarder"] {
        let source = repo.join(format!("wasm-apps/{app}.c"));
        let output = apps.join(format!("{app}.wasm"));
        if let Err(error) = testudo_testkit::wasm::compile_c_app(&source, &output, &[]) {
            panic!("{error}");
        }
    }
    let out = root.join("out");
    let data_home = root.join("data-home");
    let config = repo.join("system-config/examples/gateway.ncl");
    let mut args: Vec<String> = vec![
        "build".into(),
        config.display().to_string(),
        "-o".into(),
        out.display().to_string(),
        "--cache".into(),
        root.join("cache").display().to_string(),
        "--source-root".into(),
        root.join("src").display().to_string(),
        "--plain".into(),
    ];
    for dir in bin_dirs() {
        args.push("--bin-dir".into());
        args.push(dir.display().to_string());
    }
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let built = testudo(&arg_refs, &data_home);
    assert!(
        built.status.success(),
        "build failed: {}",
        String::from_utf8_lossy(&built.stderr)
    );

    let disk = out.join("disk.img");
    let disk_s = disk.to_str().unwrap();
    // Boot until a WASM host says where its app's code came from (after the ready line).
    let console = boot(
        disk_s,
        &data_home,
        // Either app's host saying where its code came from (`vm run` reports the whole
        // line), or either app failing: then the assertions below show the console at once.
        r"app (sensor-reader|forwarder): code |testudo-init: (sensor-reader|forwarder): (exited|killed|failed|restarting|denied|launch failed)",
    );
    assert!(console.contains("testudo: booting slot A"), "{console}");
    assert!(console.contains("slot A, rootfs rootfs-a"), "{console}");
    // testudo-init (not the initramfs) mounted the data partition before the components.
    assert!(
        console.contains("testudo-init: data partition data on /dev/"),
        "{console}"
    );
    assert!(console.contains("testudo-init: ready:"), "{console}");
    assert!(
        console.contains(": code precompiled /"),
        "the image's .cwasm was not used on the board's CPU: {console}"
    );
    assert!(!console.contains("not used"), "{console}");
    // Every component, the WASM hosts included, runs under a cgroup v2 memory limit.
    for component in ["storage", "sensor-reader", "forwarder"] {
        let started = format!("testudo-init: {component}: started");
        assert!(
            console
                .lines()
                .any(|l| l.contains(&started) && l.contains("memory.max=")),
            "{component} without memory.max: {console}"
        );
    }

    // GRUB recorded the attempt (A_TRY=1) as RAUC's script does.
    let esp = format!("{disk_s}@@{}", first_sector(disk_s, 1) * 512);
    let env = run("mtype", &["-i", &esp, "::/EFI/testudo/grubenv"]);
    assert!(env.contains("A_TRY=1"), "{env}");

    // Install the bundle into slot B: verify and extract with rauc, write the slot, then make
    // B primary and good-to-try in the grubenv (rauc's mark-active).
    let keyring = data_home.join("testudo/dev-keys/ca.pem");
    let extracted = root.join("extracted");
    run(
        "rauc",
        &[
            "extract",
            "--keyring",
            keyring.to_str().unwrap(),
            out.join("update.raucb").to_str().unwrap(),
            extracted.to_str().unwrap(),
        ],
    );
    let image = std::fs::read(extracted.join("rootfs.img")).unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&disk).unwrap();
    file.write_all_at(&image, first_sector(disk_s, 3) * 512)
        .unwrap();
    file.sync_all().unwrap();
    drop(file);
    let genv = root.join("grubenv");
    run(
        "mcopy",
        &[
            "-n",
            "-i",
            &esp,
            "::/EFI/testudo/grubenv",
            genv.to_str().unwrap(),
        ],
    );
    run(
        "grub-editenv",
        &[
            genv.to_str().unwrap(),
            "set",
            "ORDER=B A",
            "B_OK=1",
            "B_TRY=0",
        ],
    );
    run(
        "mcopy",
        &[
            "-o",
            "-i",
            &esp,
            genv.to_str().unwrap(),
            "::/EFI/testudo/grubenv",
        ],
    );

    let console = boot(disk_s, &data_home, "testudo-init: ready:");
    assert!(console.contains("testudo: booting slot B"), "{console}");
    assert!(console.contains("slot B, rootfs rootfs-b"), "{console}");
    let env = run("mtype", &["-i", &esp, "::/EFI/testudo/grubenv"]);
    assert!(
        env.contains("B_TRY=1") && env.contains("ORDER=B A"),
        "{env}"
    );
}

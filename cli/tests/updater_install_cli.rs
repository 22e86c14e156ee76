#![cfg(feature = "updater")]
//! Promise: `testudo update install|status|mark-*` drive an A/B device described by a plain
//! RAUC system.conf and a grubenv made by `grub-editenv`; killing the process (abort) before
//! any install write step leaves GRUB's first choice on the good slot, and a re-run completes.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns

mod updater_common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Output;

use updater_common::{editenv, keyring, ok};

/// `testudo update --conf CONF --override-boot-slot BOOTED ARGS...`, with the injected crash
/// point `crash_at` (the process aborts before that write step).
fn update_as(
    booted: &str,
    conf: &Path,
    args: &[&dyn AsRef<OsStr>],
    crash_at: Option<usize>,
) -> Output {
    let mut command = updater_common::testudo_command(&[
        &"update",
        &"--conf",
        &conf,
        &"--override-boot-slot",
        &booted,
    ]);
    for arg in args {
        command.arg(arg);
    }
    if let Some(step) = crash_at {
        command.env("TESTUDO_UPDATER_CRASH_AT", step.to_string());
    }
    command.output().unwrap()
}

/// `testudo update ...` booted from slot A.
fn testudo(conf: &Path, args: &[&dyn AsRef<OsStr>], crash_at: Option<usize>) -> Output {
    update_as("A", conf, args, crash_at)
}

struct Device {
    conf: PathBuf,
    env: PathBuf,
    slot_a: PathBuf,
    slot_b: PathBuf,
}

fn device(dir: &Path, keyring: &Path) -> Device {
    let slot_a = dir.join("a.img");
    let slot_b = dir.join("b.img");
    std::fs::write(&slot_a, vec![1u8; 50_000]).unwrap();
    std::fs::write(&slot_b, vec![2u8; 50_000]).unwrap();
    let env = dir.join("grubenv");
    editenv(&env, &["create"]);
    editenv(
        &env,
        &["set", "ORDER=A B", "A_OK=1", "A_TRY=0", "B_OK=1", "B_TRY=0"],
    );
    let conf = dir.join("system.conf");
    std::fs::write(
        &conf,
        format!(
            "[system]\ncompatible=acme-gw\nbootloader=grub\ngrubenv={}\ndata-directory={}\n\n[keyring]\npath={}\n\n[slot.rootfs.0]\ndevice={}\ntype=ext4\nbootname=A\n\n[slot.rootfs.1]\ndevice={}\ntype=ext4\nbootname=B\n",
            env.display(),
            dir.join("data").display(),
            keyring.display(),
            slot_a.display(),
            slot_b.display()
        ),
    )
    .unwrap();
    Device {
        conf,
        env,
        slot_a,
        slot_b,
    }
}

fn bundle(dir: &Path, keys: &Path, version: &str) -> PathBuf {
    let image = dir.join(format!("rootfs-{version}.img"));
    let data: Vec<u8> = (0..3_200_000usize)
        .map(|i| (i * 7 % 251) as u8 ^ version.len() as u8)
        .collect();
    std::fs::write(&image, data).unwrap();
    let out = dir.join(format!("update-{version}.raucb"));
    updater_common::bundle_create(keys, "acme-gw", version, &image, &out);
    out
}

#[test]
fn install_status_mark_and_killed_installs() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    updater_common::keys_init(&keys);
    let update = bundle(dir.path(), &keys, "2.0");
    let image = std::fs::read(dir.path().join("rootfs-2.0.img")).unwrap();

    // Every write step, killed: GRUB's first bootable choice stays A, A is untouched.
    let mut points = 0;
    for crash_at in 0.. {
        let dev_dir = dir.path().join(format!("dev{crash_at}"));
        std::fs::create_dir(&dev_dir).unwrap();
        let dev = device(&dev_dir, &keyring(&keys));
        let output = testudo(&dev.conf, &[&"install", &update], Some(crash_at));
        if output.status.success() {
            break; // crash_at is past the last step
        }
        assert_eq!(
            output.status.code(),
            None,
            "crash {crash_at}: expected death by signal (abort)"
        );
        let listed = editenv(&dev.env, &["list"]);
        let b_bootable = listed.contains("B_OK=1") && listed.contains("B_TRY=0");
        assert!(listed.contains("ORDER=A B"), "crash {crash_at}: {listed}");
        assert!(
            crash_at == 0 || !b_bootable,
            "crash {crash_at}: partially written B is bootable: {listed}"
        );
        assert_eq!(std::fs::read(&dev.slot_a).unwrap(), vec![1u8; 50_000]);
        let status = ok(&testudo(&dev.conf, &[&"status", &"--json"], None));
        assert!(status.contains("\"primary\": \"A\""), "{status}");
        ok(&testudo(&dev.conf, &[&"install", &update], None));
        assert_eq!(std::fs::read(&dev.slot_b).unwrap(), image);
        points += 1;
    }
    assert!(points >= 6, "only {points} interruption points");
    println!("killed installs: {points} interruption points, all recovered");

    // Normal flow on a fresh device.
    let dev_dir = dir.path().join("dev");
    std::fs::create_dir(&dev_dir).unwrap();
    let dev = device(&dev_dir, &keyring(&keys));
    let out = ok(&testudo(&dev.conf, &[&"install", &update], None));
    assert!(out.contains("into rootfs.1 (B)"), "{out}");
    // B primary with its tries ahead, and on trial until a boot of it is confirmed.
    assert_eq!(
        editenv(&dev.env, &["list"]),
        "ORDER=B A\nA_OK=1\nA_TRY=0\nB_OK=1\nB_TRY=0\nTESTUDO_TRIAL=B\n"
    );
    let status = ok(&testudo(&dev.conf, &[&"status", &"--json"], None));
    let json: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(json["primary"], "B");
    assert_eq!(json["slots"][1]["status"]["bundle_version"], "2.0");
    ok(&testudo(&dev.conf, &[&"mark-bad", &"other"], None));
    assert!(editenv(&dev.env, &["list"]).contains("B_OK=0"));
    ok(&testudo(&dev.conf, &[&"mark-active", &"B"], None));
    ok(&testudo(&dev.conf, &[&"mark-good"], None));

    // Downgrade refused (status file records 2.0 for B; booted as B now), allowed with flag.
    let old = bundle(dir.path(), &keys, "1.0");
    let refused = update_as("B", &dev.conf, &[&"install", &old], None);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("downgrade refused"));
    ok(&update_as(
        "B",
        &dev.conf,
        &[&"install", &"--allow-downgrade", &old],
        None,
    ));
}

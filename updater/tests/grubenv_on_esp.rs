//! Promise: the GRUB backend reads and writes the grubenv inside an ESP made as the image
//! builder makes it (`mkfs.vfat`, `mcopy`), through the partition and without mounting it:
//! what it writes is what mtools and `grub-editenv` read back, the file keeps its clusters
//! (GRUB's `save_env` writes through its block list), the FAT stays clean for `fsck.fat`, and
//! a damaged or missing grubenv is an error naming the file, with nothing written.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns

mod common;

use std::path::{Path, PathBuf};

use testudo_updater::bootloader::esp::EspGrubEnv;
use testudo_updater::bootloader::grub::{GrubBackend, GrubEnv};
use testudo_updater::bootloader::{BootState, Bootloader};

const GRUBENV: &str = "/EFI/testudo/grubenv";

fn tool(program: &str, args: &[&dyn AsRef<std::ffi::OsStr>]) -> String {
    let output = common::run(program, args);
    common::assert_success(program, &output);
    String::from_utf8(output.stdout).unwrap()
}

/// An 8 MiB ESP image holding `EFI/testudo/grubenv` (and a file before it, so the grubenv does
/// not start at the first cluster).
fn esp(dir: &Path, grubenv: &[u8]) -> PathBuf {
    let image = dir.join("esp.img");
    let mtools = |program: &str, args: &[&dyn AsRef<std::ffi::OsStr>]| {
        common::require(program);
        let output = std::process::Command::new(program)
            .env("MTOOLS_SKIP_CHECK", "1")
            .args(args)
            .output()
            .unwrap();
        common::assert_success(program, &output);
    };
    mtools("mkfs.vfat", &[&"-C", &"-n", &"ESP", &image, &"8192"]);
    mtools("mmd", &[&"-i", &image, &"::/EFI", &"::/EFI/testudo"]);
    let cfg = dir.join("grub.cfg");
    std::fs::write(&cfg, "set timeout=0\n".repeat(400)).unwrap();
    mtools("mcopy", &[&"-i", &image, &cfg, &"::/EFI/testudo/grub.cfg"]);
    let env = dir.join("grubenv");
    std::fs::write(&env, grubenv).unwrap();
    mtools("mcopy", &[&"-i", &image, &env, &"::/EFI/testudo/grubenv"]);
    image
}

fn clusters(image: &Path) -> String {
    tool("mshowfat", &[&"-i", &image, &"::/EFI/testudo/grubenv"])
}

#[test]
fn marks_are_written_in_place_and_read_by_grub_tools() {
    let dir = tempfile::tempdir().unwrap();
    let mut initial = GrubEnv::initial(&["A", "B"]);
    initial.set("B_OK", "0");
    let image = esp(dir.path(), &initial.render().unwrap());
    let before = clusters(&image);

    let mut backend = GrubBackend::on_esp(
        EspGrubEnv::new(&image, GRUBENV),
        vec!["A".into(), "B".into()],
    );
    assert_eq!(backend.load().unwrap(), initial);
    assert_eq!(backend.state("A").unwrap(), BootState::Good);
    backend.set_primary("B").unwrap();
    backend.set_state("A", BootState::Good).unwrap();

    assert_eq!(
        clusters(&image),
        before,
        "the grubenv moved: GRUB's block list is stale"
    );
    let copied = dir.path().join("copied");
    tool(
        "mcopy",
        &[&"-n", &"-i", &image, &"::/EFI/testudo/grubenv", &copied],
    );
    assert_eq!(std::fs::metadata(&copied).unwrap().len(), 1024);
    assert_eq!(
        tool("grub-editenv", &[&copied, &"list"]),
        "ORDER=B A\nA_OK=1\nA_TRY=0\nB_OK=1\nB_TRY=0\nTESTUDO_TRIAL=B\n"
    );
    let fsck = common::run("fsck.fat", &[&"-n", &image]);
    common::assert_success("fsck.fat -n", &fsck);
}

#[test]
fn a_damaged_or_missing_grubenv_is_named_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let image = esp(dir.path(), b"not an environment block");
    let original = std::fs::read(&image).unwrap();
    let mut backend = GrubBackend::on_esp(
        EspGrubEnv::new(&image, GRUBENV),
        vec!["A".into(), "B".into()],
    );
    let error = backend.set_state("A", BootState::Good).unwrap_err();
    let text = error.to_string();
    assert!(text.contains("EFI/testudo/grubenv"), "{text}");
    assert!(text.contains("not a 1024-byte environment block"), "{text}");
    assert_eq!(std::fs::read(&image).unwrap(), original);

    let elsewhere = EspGrubEnv::new(&image, "/EFI/other/grubenv");
    let error = elsewhere.load().unwrap_err().to_string();
    assert!(error.contains("cannot open EFI/other/grubenv"), "{error}");

    let not_fat = dir.path().join("zeros.img");
    std::fs::write(&not_fat, vec![0u8; 1 << 20]).unwrap();
    let error = EspGrubEnv::new(&not_fat, GRUBENV)
        .load()
        .unwrap_err()
        .to_string();
    assert!(error.contains("no FAT file system"), "{error}");
}

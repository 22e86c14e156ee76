//! Promise: the GRUB backend's grubenv is the format `grub-editenv` (GRUB's own tool) reads
//! and writes: each side reads what the other wrote, and the file stays 1024 bytes; and
//! `grub-script-check` accepts the boot-selection script testudo generates.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns

mod common;

use std::path::Path;

use testudo_updater::bootloader::grub::{GrubBackend, GrubEnv};
use testudo_updater::bootloader::{BootState, Bootloader};

fn editenv(file: &Path, args: &[&str]) -> String {
    let mut all: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&file];
    for arg in args {
        all.push(arg);
    }
    let output = common::run("grub-editenv", &all);
    common::assert_success("grub-editenv", &output);
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn grub_editenv_reads_ours_and_we_read_theirs() {
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join("grubenv");

    // grub-editenv creates, sets; we read.
    editenv(&env, &["create"]);
    editenv(
        &env,
        &["set", "ORDER=B A", "A_OK=1", "A_TRY=0", "B_OK=1", "B_TRY=1"],
    );
    let ours = GrubEnv::parse(&std::fs::read(&env).unwrap()).unwrap();
    assert_eq!(ours.order(), vec!["B", "A"]);
    let mut backend = GrubBackend::new(env.clone(), vec!["A".into(), "B".into()]);
    assert_eq!(
        backend.state("B").unwrap(),
        BootState::Bad,
        "B_TRY=1 means its try is used"
    );
    assert_eq!(backend.primary().unwrap().as_deref(), Some("A"));

    // We write; grub-editenv lists exactly our variables.
    backend.set_primary("B").unwrap();
    backend.set_state("A", BootState::Bad).unwrap();
    assert_eq!(std::fs::metadata(&env).unwrap().len(), 1024);
    let listed = editenv(&env, &["list"]);
    assert_eq!(
        listed,
        "ORDER=B A\nA_OK=0\nA_TRY=0\nB_OK=1\nB_TRY=0\nTESTUDO_TRIAL=B\n"
    );

    // Values with GRUB escapes survive both ways.
    editenv(&env, &["set", "NOTE=back\\slash"]);
    let ours = GrubEnv::parse(&std::fs::read(&env).unwrap()).unwrap();
    assert_eq!(ours.get("NOTE"), Some("back\\slash"));
    std::fs::write(&env, ours.render().unwrap()).unwrap();
    assert!(editenv(&env, &["list"]).contains("NOTE=back\\slash\n"));
}

#[test]
fn boot_selection_script_passes_grub_script_check() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("grub.cfg");
    use testudo_updater::bootloader::grub::{boot_selection_script, ScriptSlot};
    let slots = ["A", "B"].map(|bootname| ScriptSlot {
        bootname,
        on_select: vec![format!("set default=slot-{bootname}")],
    });
    let mut text = boot_selection_script(&slots, "/grubenv", 3);
    text.push_str("menuentry \"A\" --id slot-A {\n  linux /A/vmlinuz rauc.slot=A\n}\n");
    text.push_str("menuentry \"B\" --id slot-B {\n  linux /B/vmlinuz rauc.slot=B\n}\n");
    std::fs::write(&cfg, text).unwrap();
    let output = common::run("grub-script-check", &[&cfg]);
    common::assert_success("grub-script-check", &output);
}

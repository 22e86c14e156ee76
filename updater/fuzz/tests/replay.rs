//! Replays every stored corpus file of every fuzz target through its body: none may panic
//! (what fuzzing checks), and a target without corpus files fails.

use std::path::Path;

/// Replays `corpus/<target>/` of this fuzz crate through `fuzz`.
fn replay(target: &str, fuzz: fn(&[u8])) {
    testudo_testkit::fuzz::replay_corpus(Path::new(env!("CARGO_MANIFEST_DIR")), target, fuzz);
}

#[test]
fn bsdiff_patch() {
    replay("bsdiff_patch", testudo_updater_fuzz::bsdiff_patch::fuzz);
}

#[test]
fn bundle() {
    replay("bundle", testudo_updater_fuzz::bundle::fuzz);
}

#[test]
fn cms_envelope() {
    replay("cms_envelope", testudo_updater_fuzz::cms_envelope::fuzz);
}

#[test]
fn esp_grubenv() {
    replay("esp_grubenv", testudo_updater_fuzz::esp_grubenv::fuzz);
}

#[test]
fn grubenv() {
    replay("grubenv", testudo_updater_fuzz::grubenv::fuzz);
}

#[test]
fn manifest() {
    replay("manifest", testudo_updater_fuzz::manifest::fuzz);
}

#[test]
fn squashfs_payload() {
    replay(
        "squashfs_payload",
        testudo_updater_fuzz::squashfs_payload::fuzz,
    );
}

#[test]
fn status_file() {
    replay("status_file", testudo_updater_fuzz::status_file::fuzz);
}

#[test]
fn status_lines() {
    replay("status_lines", testudo_updater_fuzz::status_lines::fuzz);
}

#[test]
fn system_conf() {
    replay("system_conf", testudo_updater_fuzz::system_conf::fuzz);
}

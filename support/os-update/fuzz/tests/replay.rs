//! Replays every stored corpus file of every fuzz target through its body: none may panic
//! (what fuzzing checks), and a target without corpus files fails.

use std::path::Path;

/// Replays `corpus/<target>/` of this fuzz crate through `fuzz`.
fn replay(target: &str, fuzz: fn(&[u8])) {
    testudo_testkit::fuzz::replay_corpus(Path::new(env!("CARGO_MANIFEST_DIR")), target, fuzz);
}

#[test]
fn import_manifests() {
    replay(
        "import_manifests",
        testudo_os_update_fuzz::import_manifests::fuzz,
    );
}

#[test]
fn manifest_signatures() {
    replay(
        "manifest_signatures",
        testudo_os_update_fuzz::manifest_signatures::fuzz,
    );
}

#[test]
fn desired_device_updates() {
    replay(
        "desired_device_updates",
        testudo_os_update_fuzz::desired_device_updates::fuzz,
    );
}

#[test]
fn update_requests() {
    replay(
        "update_requests",
        testudo_os_update_fuzz::update_requests::fuzz,
    );
}

//! Replays every stored corpus file of every fuzz target through its body: none may panic
//! (what fuzzing checks), and a target without corpus files fails.

use std::path::Path;

/// Replays `corpus/<target>/` of this fuzz crate through `fuzz`.
fn replay(target: &str, fuzz: fn(&[u8])) {
    testudo_testkit::fuzz::replay_corpus(Path::new(env!("CARGO_MANIFEST_DIR")), target, fuzz);
}

#[test]
fn client_certificates() {
    replay(
        "client_certificates",
        testudo_hub_fuzz::client_certificates::fuzz,
    );
}

#[test]
fn mqtt_packets() {
    replay("mqtt_packets", testudo_hub_fuzz::mqtt_packets::fuzz);
}

#[test]
fn tpm_public() {
    replay("tpm_public", testudo_hub_fuzz::tpm_public::fuzz);
}

#[test]
fn twin_patches() {
    replay("twin_patches", testudo_hub_fuzz::twin_patches::fuzz);
}

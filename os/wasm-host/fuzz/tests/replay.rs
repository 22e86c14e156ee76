//! Replays every stored corpus file of every fuzz target through its body: none may panic
//! (what fuzzing checks), and a target without corpus files fails.

use std::path::Path;

/// Replays `corpus/<target>/` of this fuzz crate through `fuzz`.
fn replay(target: &str, fuzz: fn(&[u8])) {
    testudo_testkit::fuzz::replay_corpus(Path::new(env!("CARGO_MANIFEST_DIR")), target, fuzz);
}

#[test]
fn plan_fields() {
    replay("plan_fields", testudo_wasm_host_fuzz::plan_fields::fuzz);
}

#[test]
fn sidecar() {
    replay("sidecar", testudo_wasm_host_fuzz::sidecar::fuzz);
}

#[test]
fn untrusted_app() {
    replay("untrusted_app", testudo_wasm_host_fuzz::untrusted_app::fuzz);
}

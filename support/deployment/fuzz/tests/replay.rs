//! Replays every stored corpus file of every fuzz target through its body: none may panic
//! (what fuzzing checks), and a target without corpus files fails.

use std::path::Path;

/// Replays `corpus/<target>/` of this fuzz crate through `fuzz`.
fn replay(target: &str, fuzz: fn(&[u8])) {
    testudo_testkit::fuzz::replay_corpus(Path::new(env!("CARGO_MANIFEST_DIR")), target, fuzz);
}

#[test]
fn deployment_documents() {
    replay(
        "deployment_documents",
        testudo_deployment_fuzz::deployment_documents::fuzz,
    );
}

#[test]
fn desired_apps() {
    replay("desired_apps", testudo_deployment_fuzz::desired_apps::fuzz);
}

#[test]
fn session_states() {
    replay(
        "session_states",
        testudo_deployment_fuzz::session_states::fuzz,
    );
}

//! Replays every stored corpus file of every fuzz target through its body: none may panic
//! (what fuzzing checks), and a target without corpus files fails.

use std::path::Path;

/// Replays `corpus/<target>/` of this fuzz crate through `fuzz`.
fn replay(target: &str, fuzz: fn(&[u8])) {
    testudo_testkit::fuzz::replay_corpus(Path::new(env!("CARGO_MANIFEST_DIR")), target, fuzz);
}

#[test]
fn service_answers() {
    replay(
        "service_answers",
        testudo_hub_service_fuzz::service_answers::fuzz,
    );
}

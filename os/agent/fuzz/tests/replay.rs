//! Replays every stored corpus file of every fuzz target through its body: none may panic
//! (what fuzzing checks), and a target without corpus files fails.

use std::path::Path;

/// Replays `corpus/<target>/` of this fuzz crate through `fuzz`.
fn replay(target: &str, fuzz: fn(&[u8])) {
    testudo_testkit::fuzz::replay_corpus(Path::new(env!("CARGO_MANIFEST_DIR")), target, fuzz);
}

#[test]
fn device_documents() {
    replay(
        "device_documents",
        testudo_agent_fuzz::device_documents::fuzz,
    );
}

#[test]
fn hub_topics() {
    replay("hub_topics", testudo_agent_fuzz::hub_topics::fuzz);
}

#[test]
fn module_download_heads() {
    replay(
        "module_download_heads",
        testudo_agent_fuzz::module_download_heads::fuzz,
    );
}

#[test]
fn spool_journal() {
    replay("spool_journal", testudo_agent_fuzz::spool_journal::fuzz);
}

#[test]
fn tpm_hmac_response() {
    replay(
        "tpm_hmac_response",
        testudo_agent_fuzz::tpm_hmac_response::fuzz,
    );
}

#[test]
fn tpm_responses() {
    replay("tpm_responses", testudo_agent_fuzz::tpm_responses::fuzz);
}

#[test]
fn twin_documents() {
    replay("twin_documents", testudo_agent_fuzz::twin_documents::fuzz);
}

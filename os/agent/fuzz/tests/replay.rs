//! Replays every stored corpus file of every fuzz target through its body: none may panic
//! (what fuzzing checks), and a target without corpus files fails.

use std::path::Path;

/// Runs `fuzz` on each file of `corpus/<target>/`.
fn replay(target: &str, fuzz: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("corpus {}: {error}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} is empty", dir.display());
    for file in files {
        eprintln!("replaying {}", file.display());
        fuzz(&std::fs::read(&file).expect("corpus file"));
    }
}

#[test]
fn hub_topics() {
    replay("hub_topics", testudo_agent_fuzz::hub_topics::fuzz);
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
fn twin_documents() {
    replay("twin_documents", testudo_agent_fuzz::twin_documents::fuzz);
}

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
fn consumer_responses() {
    replay(
        "consumer_responses",
        testudo_scheme_fuzz::consumer_responses::fuzz,
    );
}

#[test]
fn provider_requests() {
    replay(
        "provider_requests",
        testudo_scheme_fuzz::provider_requests::fuzz,
    );
}

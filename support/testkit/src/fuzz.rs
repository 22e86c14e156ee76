//! Replaying a fuzz target's stored corpus on stable Rust: what every fuzz crate's
//! `tests/replay.rs` does for each of its targets.

use std::path::Path;

/// Runs `fuzz` on every file of `<fuzz_crate>/corpus/<target>/`, in name order: none may
/// panic (what fuzzing checks). Panics if the corpus cannot be read or is empty, so a target
/// that replays nothing fails.
pub fn replay_corpus(fuzz_crate: &Path, target: &str, fuzz: fn(&[u8])) {
    let dir = fuzz_crate.join("corpus").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("corpus {}: {error}", dir.display()))
        .map(|entry| {
            entry
                .unwrap_or_else(|error| panic!("corpus {}: {error}", dir.display()))
                .path()
        })
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} is empty", dir.display());
    for file in files {
        eprintln!("replaying {}", file.display());
        let bytes = std::fs::read(&file)
            .unwrap_or_else(|error| panic!("corpus file {}: {error}", file.display()));
        fuzz(&bytes);
    }
}

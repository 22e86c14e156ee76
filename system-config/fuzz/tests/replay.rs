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
fn plan_json() {
    replay("plan_json", testudo_config_fuzz::plan_json::fuzz);
}
